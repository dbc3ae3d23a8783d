"""GitKnowledgeBackend: files are commits, writes validated, reads at a commit or work tree."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest
from tests.conftest import git

from botreg.cli import main
from botreg.errors import BotregError
from botreg.knowledge.storage import (
    GitKnowledgeBackend,
    IngestionStatus,
    KnowledgePathError,
    KnowledgeValidationError,
)

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main_() -> T:
        return await asyncio.wait_for(coro, 120)

    return asyncio.run(main_())


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def count(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD"))


def test_each_write_is_one_commit_with_gits_ids(git_registry: Path) -> None:
    backend = GitKnowledgeBackend(repo=git_registry)

    async def scenario() -> None:
        await backend.initialize()
        before = count(git_registry)
        await backend.create_kb("support", metadata={"description": "Support docs"})
        put = await backend.put_file("support", "faq.md", b"# FAQ\n\n## Reset\n\nGo to settings.\n")
        assert count(git_registry) == before + 2
        assert git(git_registry, "log", "-1", "--format=%s").strip() == (
            "Put knowledge/support/faq.md"
        )
        blob = git(git_registry, "rev-parse", "HEAD:knowledge/support/faq.md").strip()
        assert put.checksum == blob
        [listed] = await backend.list_files("support")
        committed = git(git_registry, "log", "-1", "--format=%cI").strip()
        assert listed.uploaded_at == datetime.fromisoformat(committed)
        info = await backend.get_info("support")
        assert info is not None
        assert info.version == git(git_registry, "rev-parse", "HEAD:knowledge/support").strip()
        assert info.metadata == {"description": "Support docs"}
        assert git(git_registry, "status", "--porcelain") == ""
        # the template's domain: metadata is its _domain.yaml
        billing = await backend.get_info("billing")
        assert billing is not None and billing.metadata["owner"] == "billing-team"
        await backend.close()

    run(scenario())


def test_an_invalid_write_is_refused_and_nothing_committed(git_registry: Path) -> None:
    backend = GitKnowledgeBackend(repo=git_registry)
    before = head(git_registry)

    async def scenario() -> None:
        # metadata outside the domain schema
        with pytest.raises(KnowledgeValidationError) as info:
            await backend.create_kb("support", metadata={"bogus": 1})
        assert "nothing committed" in str(info.value) and info.value.findings
        assert any("_domain.yaml" in f.path for f in info.value.findings)
        # a domain that bots refer to (BR402 on the bot files)
        with pytest.raises(KnowledgeValidationError) as info:
            await backend.delete_kb("billing")
        assert {f.code for f in info.value.findings} == {"BR402"}
        # a knowledge file that does not parse
        with pytest.raises(KnowledgeValidationError):
            await backend.put_file("billing", "broken.json", b"{not json")

    run(scenario())
    assert head(git_registry) == before
    assert git(git_registry, "status", "--porcelain") == ""  # every file put back
    assert (git_registry / "knowledge/billing/_domain.yaml").exists()


def test_a_batch_is_one_commit_and_an_error_commits_nothing(git_registry: Path) -> None:
    backend = GitKnowledgeBackend(repo=git_registry)
    before = count(git_registry)

    async def scenario() -> None:
        async with backend.batch(message="Add support docs"):
            await backend.create_kb("support")
            await backend.put_file("support", "a.md", b"# A\n\none\n")
            await backend.put_file("support", "b.md", b"# B\n\ntwo\n")
            await backend.put_file("support", "tmp.md", b"# T\n\nthree\n")
            await backend.delete_file("support", "tmp.md")
        assert count(git_registry) == before + 1
        assert git(git_registry, "log", "-1", "--format=%s").strip() == "Add support docs"
        tree = git(git_registry, "ls-tree", "--name-only", "HEAD", "knowledge/support/")
        assert tree.split() == [
            "knowledge/support/_domain.yaml",
            "knowledge/support/a.md",
            "knowledge/support/b.md",
        ]
        with pytest.raises(RuntimeError, match="changed my mind"):
            async with backend.batch(message="never"):
                await backend.put_file("support", "c.md", b"# C\n\nthree\n")
                await backend.put_file("support", "a.md", b"# A\n\nedited\n")
                raise RuntimeError("changed my mind")
        with pytest.raises(KnowledgeValidationError):
            async with backend.batch(message="invalid"):
                await backend.put_file("support", "d.md", b"# D\n\nfour\n")
                await backend.put_file("support", "e.json", b"{broken")

    run(scenario())
    assert count(git_registry) == before + 1
    assert git(git_registry, "status", "--porcelain") == ""
    assert (git_registry / "knowledge/support/a.md").read_bytes() == b"# A\n\none\n"


def test_writes_need_a_clone_and_no_link_is_written_through(
    git_registry: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (git_registry / "knowledge" / "billing" / "out").symlink_to(outside)

    async def scenario() -> None:
        backend = GitKnowledgeBackend(repo=git_registry)
        with pytest.raises(KnowledgePathError, match="symbolic link"):
            await backend.put_file("billing", "out/x.md", b"# X\n\ny\n")
        mirror = GitKnowledgeBackend(data_dir=tmp_path / "data")
        with pytest.raises(BotregError, match="writes need a clone"):
            await mirror.put_file("billing", "x.md", b"# X\n\ny\n")

    run(scenario())
    assert list(outside.iterdir()) == []


def test_reads_at_a_revision_and_in_the_work_tree(git_registry: Path) -> None:
    first = head(git_registry)
    (git_registry / "knowledge/billing/new.md").write_text("# New\n\nnot committed\n")

    async def scenario() -> None:
        at_head = GitKnowledgeBackend(repo=git_registry)
        work = GitKnowledgeBackend(repo=git_registry, revision=None)
        pinned = GitKnowledgeBackend(repo=git_registry, revision=first)
        assert await at_head.get_file("billing", "new.md") is None
        assert await work.get_file("billing", "new.md") == b"# New\n\nnot committed\n"
        stream = await work.stream_file("billing", "new.md", chunk_size=4)
        assert stream is not None and b"".join([c async for c in stream]).startswith(b"# New")
        await at_head.put_file("billing", "later.md", b"# Later\n\nx\n")
        assert await pinned.get_file("billing", "later.md") is None
        assert await at_head.get_file("billing", "later.md") == b"# Later\n\nx\n"

    run(scenario())


def test_reads_at_the_daemons_applied_commit_with_its_status(
    git_registry: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 0
    applied = head(git_registry)
    (git_registry / "knowledge/billing/later.md").write_text("# Later\n\nx\n")
    git(git_registry, "add", "-A")
    git(git_registry, "commit", "-qm", "not applied yet")

    async def scenario() -> None:
        backend = GitKnowledgeBackend(data_dir=data)
        await backend.initialize()
        assert backend.commit() == applied
        assert [i.domain_id for i in await backend.list_kbs()] == ["billing", "product"]
        assert await backend.get_file("billing", "later.md") is None
        info = await backend.get_info("billing")
        assert info is not None and info.ingestion_status is IngestionStatus.READY
        assert info.vector_store_path  # the daemon's collection
        # an application's own record, kept beside the data dir: the newer wins
        await backend.set_ingestion_status("billing", IngestionStatus.ERROR, "re-ingest failed")
        assert await backend.get_ingestion_status("billing") is IngestionStatus.ERROR
        assert (data / "knowledge-status.json").exists()
        await backend.close()

    run(scenario())
    assert "knowledge-status" not in git(git_registry, "ls-files")


def test_nothing_applied_yet_is_an_empty_registry(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = GitKnowledgeBackend(data_dir=tmp_path)
        assert await backend.list_kbs() == []
        assert await backend.get_info("billing") is None

    run(scenario())


@pytest.mark.timeout(300)
def test_stream_file_holds_a_50_mb_blob_in_bounded_memory(git_registry: Path) -> None:
    size = 50 * 1024 * 1024
    line = b"0123456789abcdef" * 4 + b"\n"
    with (git_registry / "knowledge/billing/large.txt").open("wb") as handle:
        for _ in range(size // len(line) + 1):
            handle.write(line)
    git(git_registry, "add", "-A")
    git(git_registry, "commit", "-qm", "a large file (committed without the hook)")
    expected = (git_registry / "knowledge/billing/large.txt").stat().st_size

    async def scenario() -> tuple[int, int, int]:
        backend = GitKnowledgeBackend(repo=git_registry)
        stream = await backend.stream_file("billing", "large.txt", chunk_size=256 * 1024)
        assert stream is not None
        total = biggest = 0
        tracemalloc.start()
        try:
            async for chunk in stream:
                total += len(chunk)
                biggest = max(biggest, len(chunk))
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return total, biggest, peak

    total, biggest, peak = run(scenario())
    assert total == expected >= size
    assert biggest <= 256 * 1024
    assert peak < 8 * 1024 * 1024  # a 50 MB blob was never held whole


def test_stream_closed_early_ends_the_reader(git_registry: Path) -> None:
    async def scenario() -> None:
        backend = GitKnowledgeBackend(repo=git_registry)
        stream = await backend.stream_file("billing", "policies/refunds.md", chunk_size=8)
        assert stream is not None
        first = await anext(stream)
        assert len(first) <= 8
        await stream.aclose()  # type: ignore[attr-defined]

    run(scenario())
