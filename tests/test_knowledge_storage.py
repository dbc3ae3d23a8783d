"""Knowledge storage: one contract for the memory, file and git backends, plus each one's own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from botreg.errors import BotregError, UsageError
from botreg.knowledge.storage import (
    FileKnowledgeBackend,
    GitKnowledgeBackend,
    IngestionStatus,
    InMemoryKnowledgeBackend,
    KnowledgeBaseExistsError,
    KnowledgeBaseNotFoundError,
    KnowledgePathError,
    KnowledgeResourceBackend,
    create_knowledge_backend,
)
from botreg.registry.source import git_blob_id

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(main())


@pytest.fixture(params=["memory", "file", "git"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KnowledgeResourceBackend]:
    kind = request.param
    if kind == "git":
        repo = request.getfixturevalue("git_registry")
        made = create_knowledge_backend("git", {"repo": str(repo)})
    elif kind == "file":
        made = create_knowledge_backend("file", {"path": str(tmp_path / "kb")})
    else:
        made = create_knowledge_backend("memory", {})
    run(made.initialize())
    yield made
    run(made.close())


# --- the contract, for every backend -----------------------------------------------------


def test_every_backend_is_the_protocol(backend: KnowledgeResourceBackend) -> None:
    assert isinstance(backend, KnowledgeResourceBackend)


def test_create_put_get_list_delete(backend: KnowledgeResourceBackend) -> None:
    async def scenario() -> None:
        info = await backend.create_kb("my-domain", metadata={"description": "My KB"})
        assert info.domain_id == "my-domain" and info.file_count == 0
        assert info.metadata["description"] == "My KB"
        with pytest.raises(KnowledgeBaseExistsError):
            await backend.create_kb("my-domain")
        body = b"# Introduction\n\nWelcome to our knowledge base!\n"
        put = await backend.put_file("my-domain", "content/intro.md", body)
        assert put.checksum == git_blob_id(body) and put.size_bytes == len(body)
        assert put.content_type == "text/markdown"
        await backend.put_file("my-domain", "data/faq.json", b'{"q": "a"}\n')
        assert await backend.get_file("my-domain", "content/intro.md") == body
        assert await backend.get_file("my-domain", "content/missing.md") is None
        listed = await backend.list_files("my-domain")
        assert [f.path for f in listed] == ["content/intro.md", "data/faq.json"]
        assert listed[0].checksum == git_blob_id(body)
        assert listed[1].content_type == "application/json"
        only = await backend.list_files("my-domain", prefix="content/")
        assert [f.path for f in only] == ["content/intro.md"]
        info = await backend.get_info("my-domain")
        assert info is not None and info.file_count == 2
        assert info.total_size_bytes == len(body) + len(b'{"q": "a"}\n')
        assert "my-domain" in [i.domain_id for i in await backend.list_kbs()]
        assert await backend.delete_file("my-domain", "data/faq.json") is True
        assert await backend.delete_file("my-domain", "data/faq.json") is False
        assert [f.path for f in await backend.list_files("my-domain")] == ["content/intro.md"]
        assert await backend.delete_kb("my-domain") is True
        assert await backend.get_info("my-domain") is None
        assert await backend.delete_kb("my-domain") is False
        assert await backend.list_files("my-domain") == []

    run(scenario())


def test_checksum_moves_with_every_change(backend: KnowledgeResourceBackend) -> None:
    async def scenario() -> None:
        await backend.create_kb("docs")
        await backend.put_file("docs", "a.md", b"# A\n\none\n")
        first = await backend.get_checksum("docs")
        assert first and not await backend.has_changes_since("docs", first)
        assert await backend.has_changes_since("docs", None)
        await backend.put_file("docs", "a.md", b"# A\n\ntwo\n")
        second = await backend.get_checksum("docs")
        assert second != first and await backend.has_changes_since("docs", first)
        await backend.put_file("docs", "a.md", b"# A\n\none\n")  # the content again
        assert await backend.get_checksum("docs") == first
        assert await backend.get_checksum("nothing-here") == ""

    run(scenario())


def test_missing_base_is_none_or_a_key_error(backend: KnowledgeResourceBackend) -> None:
    async def scenario() -> None:
        assert await backend.get_info("absent") is None
        assert await backend.get_file("absent", "a.md") is None
        assert await backend.stream_file("absent", "a.md") is None
        with pytest.raises(KnowledgeBaseNotFoundError) as info:
            await backend.put_file("absent", "a.md", b"# A\n\nx\n")
        assert isinstance(info.value, KeyError) and isinstance(info.value, BotregError)
        assert "create_kb" in str(info.value)
        with pytest.raises(KeyError):
            await backend.set_ingestion_status("absent", IngestionStatus.READY)

    run(scenario())


def test_ingestion_status_round_trip(backend: KnowledgeResourceBackend) -> None:
    async def scenario() -> None:
        await backend.create_kb("docs")
        await backend.put_file("docs", "a.md", b"# A\n\none\n")
        assert await backend.get_ingestion_status("docs") is IngestionStatus.PENDING
        await backend.set_ingestion_status("docs", IngestionStatus.ERROR, "boom")
        info = await backend.get_info("docs")
        assert info is not None
        assert (info.ingestion_status, info.ingestion_error) == (IngestionStatus.ERROR, "boom")
        await backend.set_ingestion_status("docs", IngestionStatus.READY)
        assert await backend.get_ingestion_status("docs") is IngestionStatus.READY
        info = await backend.get_info("docs")
        assert info is not None and info.ingestion_error is None

    run(scenario())


def test_stream_file_yields_bounded_chunks(backend: KnowledgeResourceBackend) -> None:
    async def scenario() -> None:
        await backend.create_kb("docs")
        body = b"# Big\n\n" + b"word " * 5000 + b"\n"
        await backend.put_file("docs", "big.txt", body)
        stream = await backend.stream_file("docs", "big.txt", chunk_size=1000)
        assert stream is not None
        chunks = [chunk async for chunk in stream]
        assert b"".join(chunks) == body
        assert max(len(c) for c in chunks) <= 1000 and len(chunks) >= len(body) // 1000

    run(scenario())


HOSTILE_PATHS = [
    "",
    "../escape.md",
    "a/../../escape.md",
    "/etc/passwd",
    "C:/windows.md",
    "a\\b.md",
    "a//b.md",
    "./a.md",
    ".git/config",
    "content/.hidden.md",
    "line\nbreak.md",
    "bidi\u202egnp.md",
    "zero\u200bwidth.md",
    "_domain.yaml",
    "_metadata.json",
    "x" * 2000 + ".md",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=range(len(HOSTILE_PATHS)))
def test_hostile_paths_are_refused(backend: KnowledgeResourceBackend, path: str) -> None:
    async def scenario() -> None:
        await backend.create_kb("docs")
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: backend.put_file("docs", path, b"# x\n\ny\n"),
            lambda: backend.get_file("docs", path),
            lambda: backend.delete_file("docs", path),
            lambda: backend.stream_file("docs", path),
        ]
        for call in calls:
            with pytest.raises(KnowledgePathError) as info:
                await call()
            assert isinstance(info.value, ValueError)
            assert "\n" not in str(info.value)  # one line, the character escaped

    run(scenario())


@pytest.mark.parametrize("domain", ["../x", "Docs", "a/b", "", "docs\n", "-x", "x" * 64])
def test_hostile_domains_are_refused(backend: KnowledgeResourceBackend, domain: str) -> None:
    async def scenario() -> None:
        with pytest.raises(KnowledgePathError, match="invalid knowledge base name"):
            await backend.create_kb(domain)
        with pytest.raises(KnowledgePathError):
            await backend.get_info(domain)

    run(scenario())


# --- the seed's Quick Start, imports changed only ----------------------------------------


def test_seed_quick_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    from botreg.knowledge import IngestionStatus, KnowledgeFile, create_knowledge_backend

    async def quick_start() -> list[Any]:
        backend = create_knowledge_backend("file", {"path": "./data/knowledge"})
        await backend.initialize()
        info = await backend.create_kb("my-domain", metadata={"description": "My KB"})
        file_info = await backend.put_file(
            "my-domain",
            "content/intro.md",
            b"# Introduction\n\nWelcome to our knowledge base!",
            content_type="text/markdown",
        )
        files = await backend.list_files("my-domain", prefix="content/")
        content = await backend.get_file("my-domain", "content/intro.md")
        previous_checksum = await backend.get_checksum("my-domain")
        checksum = await backend.get_checksum("my-domain")
        has_changes = await backend.has_changes_since("my-domain", previous_checksum)
        await backend.set_ingestion_status("my-domain", IngestionStatus.READY)
        status = await backend.get_ingestion_status("my-domain")
        await backend.delete_file("my-domain", "content/intro.md")
        await backend.delete_kb("my-domain")
        await backend.close()
        return [info, file_info, files, content, checksum, has_changes, status]

    info, file_info, files, content, checksum, has_changes, status = run(quick_start())
    assert info.metadata == {"description": "My KB"}
    assert isinstance(file_info, KnowledgeFile) and file_info.content_type == "text/markdown"
    assert [f.path for f in files] == ["content/intro.md"]
    assert content == b"# Introduction\n\nWelcome to our knowledge base!"
    assert checksum and has_changes is False and status is IngestionStatus.READY
    assert not (tmp_path / "data/knowledge/my-domain").exists()


# --- factory ------------------------------------------------------------------------------


def test_factory_types_and_errors(tmp_path: Path) -> None:
    assert isinstance(create_knowledge_backend("memory", {}), InMemoryKnowledgeBackend)
    made = create_knowledge_backend("file", {"path": str(tmp_path)})
    assert isinstance(made, FileKnowledgeBackend)
    assert isinstance(create_knowledge_backend("git", {"repo": tmp_path}), GitKnowledgeBackend)
    with pytest.raises(UsageError, match="unknown knowledge backend type 'postgres'"):
        create_knowledge_backend("postgres", {})
    with pytest.raises(UsageError, match="use 'git'"):
        create_knowledge_backend("s3", {"bucket": "b"})
    with pytest.raises(UsageError, match="needs"):
        create_knowledge_backend("file", {})
    with pytest.raises(UsageError, match="bucket"):
        create_knowledge_backend("git", {"repo": ".", "bucket": "b"})
    with pytest.raises(UsageError, match="exactly one"):
        create_knowledge_backend("git", {})


# --- the file backend: nothing leaves the root --------------------------------------------


def test_file_backend_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\ntop\n")
    root = tmp_path / "kb"

    async def scenario() -> None:
        backend = FileKnowledgeBackend(root)
        await backend.initialize()
        await backend.create_kb("docs")
        (root / "docs" / "linked").symlink_to(outside, target_is_directory=True)
        (root / "docs" / "file-link.md").symlink_to(outside / "secret.md")
        (root / "evil").symlink_to(outside, target_is_directory=True)
        assert await backend.list_files("docs") == []  # links are not files of the base
        with pytest.raises(KnowledgePathError, match="symbolic link"):
            await backend.get_file("docs", "linked/secret.md")
        with pytest.raises(KnowledgePathError, match="symbolic link"):
            await backend.put_file("docs", "linked/new.md", b"# x\n\ny\n")
        with pytest.raises(KnowledgePathError, match="symbolic link"):
            await backend.get_file("docs", "file-link.md")
        with pytest.raises(KnowledgePathError, match="symbolic link"):
            await backend.get_info("evil")
        assert [i.domain_id for i in await backend.list_kbs()] == ["docs"]

    run(scenario())
    assert sorted(p.name for p in outside.iterdir()) == ["secret.md"]
    assert (outside / "secret.md").read_text() == "# Secret\n\ntop\n"


def test_file_backend_notices_a_file_edited_on_disk(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = FileKnowledgeBackend(tmp_path / "kb")
        await backend.initialize()
        await backend.create_kb("docs")
        await backend.put_file("docs", "a.md", b"# A\n\none\n", metadata={"lang": "en"})
        before = await backend.get_checksum("docs")
        (tmp_path / "kb" / "docs" / "a.md").write_bytes(b"# A\n\nchanged on disk, longer\n")
        [listed] = await backend.list_files("docs")
        assert listed.checksum == git_blob_id(b"# A\n\nchanged on disk, longer\n")
        assert listed.metadata == {"lang": "en"}
        assert await backend.has_changes_since("docs", before)

    run(scenario())
