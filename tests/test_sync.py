"""One sync cycle against real repositories (file:// remotes, git daemon on 127.0.0.1)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from botreg.knowledge.chunkers import chunk_file
from botreg.registry.settings import ChunkingSettings, Limits
from chroma_server import free_port
from conftest import git
from helpers import write
from sync_helpers import SyncHarness, commit


@pytest.fixture
def h(git_registry: Path, tmp_path: Path) -> Iterator[SyncHarness]:
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    yield harness
    harness.close()


def expected_chunks(repo: Path, domain: str) -> set[tuple[str, str]]:
    out = set()
    for path in sorted((repo / "knowledge" / domain).rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if path.is_file() and path.name != "_domain.yaml":
            out |= {
                (rel, c.text)
                for c in chunk_file(rel, path.read_bytes(), ChunkingSettings(), Limits())
            }
    return out


def test_first_sync_then_nothing_to_do(h: SyncHarness, git_registry: Path) -> None:
    result = h.sync()
    head = git(git_registry, "rev-parse", "HEAD").strip()
    assert (result.result, result.to_commit, result.exit_code) == ("synced", head, 0)
    assert h.types().count("botreg.bot.created") == 3
    assert h.types().count("botreg.knowledge.file.added") == 7
    assert h.types().count("botreg.environment.changed") == 2
    assert h.types().count("botreg.knowledge.ingested") == 2
    assert h.types()[-1] == "botreg.sync.completed"
    done = h.events[-1]
    assert done.data["to"] == head and done.data["from"] == ""
    assert done.data["counts"]["bots_created"] == 3
    assert set(done.data["durations"]) >= {"fetch", "validate", "diff", "ingest"}
    for domain in ("billing", "product"):
        assert h.stored(domain) == expected_chunks(git_registry, domain)
    again = h.sync()
    assert again.result == "noop" and h.events == []
    status = h.status.snapshot()
    assert status["applied_commit"] == head
    assert status["conditions"]["Ready"]["status"] == "True"


def test_cloudevents_shape(h: SyncHarness, git_registry: Path) -> None:
    h.sync()
    [event] = [
        e
        for e in h.logged()
        if e["type"] == "botreg.bot.created" and e["subject"] == "bots/product-guide.yaml"
    ]
    assert event["specversion"] == "1.0" and event["datacontenttype"] == "application/json"
    assert event["source"] == git_registry.as_uri() and len(event["id"]) == 32
    assert event["time"].endswith("+00:00")
    assert event["data"]["bot_id"] == "product-guide"


def test_bot_updates_activation_rename_delete(h: SyncHarness, git_registry: Path) -> None:
    h.sync()
    bot = git_registry / "bots/product-guide.yaml"
    bot.write_text(bot.read_text().replace("model: gpt-4o-mini", "model: gpt-4o"))
    commit(git_registry)
    h.sync()
    [updated] = h.of("botreg.bot.updated")
    assert updated.data["changes"] == [
        {"path": "llm.model", "kind": "changed", "old": "gpt-4o-mini", "new": "gpt-4o"}
    ]
    helpdesk = git_registry / "bots/internal-helpdesk.yaml"
    helpdesk.write_text(helpdesk.read_text().replace("status: inactive", "status: active"))
    bot.write_text(bot.read_text().replace("status: active", "status: inactive"))
    commit(git_registry)
    h.sync()
    assert [e.data["bot_id"] for e in h.of("botreg.bot.activated")] == ["internal-helpdesk"]
    assert [e.data["bot_id"] for e in h.of("botreg.bot.deactivated")] == ["product-guide"]
    git(git_registry, "mv", "bots/product-guide.yaml", "bots/guide.yaml")
    (git_registry / "bots/internal-helpdesk.yaml").unlink()
    commit(git_registry)
    h.sync()
    assert sorted(e.data["bot_id"] for e in h.of("botreg.bot.deleted")) == [
        "internal-helpdesk",
        "product-guide",
    ]
    assert [e.data["bot_id"] for e in h.of("botreg.bot.created")] == ["guide"]


def test_tool_list_changes_are_matched_by_name(h: SyncHarness, git_registry: Path) -> None:
    h.sync()
    bot = git_registry / "bots/billing-assistant.yaml"
    bot.write_text(bot.read_text().replace("    method: GET\n", "    method: POST\n"))
    commit(git_registry)
    h.sync()
    [updated] = h.of("botreg.bot.updated")
    assert updated.data["changes"] == [
        {"path": "tools[lookup_invoice].method", "kind": "changed", "old": "GET", "new": "POST"}
    ]


def test_knowledge_changes_apply_incrementally(h: SyncHarness, git_registry: Path) -> None:
    h.sync()
    refunds = git_registry / "knowledge/billing/policies/refunds.md"
    refunds.write_text(refunds.read_text().replace("5 to 10\nbusiness", "five to ten\nbusiness"))
    git(git_registry, "mv", "knowledge/product/release-notes.txt", "knowledge/product/notes.txt")
    (git_registry / "knowledge/billing/plans.json").unlink()
    write(git_registry, "knowledge/product/new.md", "# New\n\nSomething new.\n")
    commit(git_registry)
    result = h.sync()
    assert result.result == "synced"
    kinds = sorted(
        (e.type.rsplit(".", 1)[1], e.data["path"])
        for e in h.events
        if e.type.startswith("botreg.knowledge.file.")
    )
    assert kinds == [
        ("added", "knowledge/product/new.md"),
        ("deleted", "knowledge/billing/plans.json"),
        ("modified", "knowledge/billing/policies/refunds.md"),
        ("renamed", "knowledge/product/notes.txt"),
    ]
    [renamed] = h.of("botreg.knowledge.file.renamed")
    assert renamed.data["old_path"] == "knowledge/product/release-notes.txt"
    # the edited section, the new file and the renamed text file (titled by its name)
    assert result.counts["chunks_embedded"] == 3
    for domain in ("billing", "product"):
        assert h.stored(domain) == expected_chunks(git_registry, domain)


def test_rejected_commit_then_fix(h: SyncHarness, git_registry: Path) -> None:
    h.sync()
    good = git(git_registry, "rev-parse", "HEAD").strip()
    before = h.stored("billing")
    bot = git_registry / "bots/billing-assistant.yaml"
    bot.write_text(bot.read_text().replace("status: active", "status: enabled"))
    write(git_registry, "knowledge/billing/extra.md", "# Extra\n\nNot yet.\n")
    bad = commit(git_registry, "bad")
    result = h.sync()
    assert (result.result, result.exit_code) == ("rejected", 1)
    [rejected] = h.events
    assert rejected.type == "botreg.sync.rejected"
    assert rejected.data["from"] == good and rejected.data["to"] == bad
    assert rejected.data["findings"][0]["code"] == "BR201"
    assert h.stored("billing") == before  # still serving the last good commit
    status = h.status.snapshot()
    assert status["applied_commit"] == good and status["rejected_commit"] == bad
    assert status["conditions"]["ValidationFailed"]["status"] == "True"
    assert status["conditions"]["Ready"]["status"] == "True"
    assert h.sync().result == "rejected" and h.events == []  # not re-validated, not re-sent
    bot.write_text(bot.read_text().replace("status: enabled", "status: active"))
    fixed = commit(git_registry, "fix")
    result = h.sync()
    assert result.result == "synced" and result.from_commit == good and result.to_commit == fixed
    assert h.types().count("botreg.knowledge.file.added") == 1
    assert "botreg.bot.updated" not in h.types()  # good -> fixed: the bot did not change
    assert h.status.snapshot()["conditions"]["ValidationFailed"]["status"] == "False"


def test_force_push_is_followed(h: SyncHarness, git_registry: Path) -> None:
    h.sync()
    write(git_registry, "knowledge/billing/a.md", "# A\n\nFirst try.\n")
    first = commit(git_registry, "a")
    h.sync()
    git(git_registry, "reset", "-q", "--hard", "HEAD~1")
    write(git_registry, "knowledge/billing/b.md", "# B\n\nSecond try.\n")
    rewritten = commit(git_registry, "b")
    result = h.sync()
    assert result.result == "synced" and result.to_commit == rewritten
    [event] = h.of("botreg.sync.history_rewritten")
    assert event.data == {"from": first, "to": rewritten, "reconciled": False}
    assert h.stored("billing") == expected_chunks(git_registry, "billing")


def test_lost_applied_commit_reconciles_against_the_ledger(
    h: SyncHarness, git_registry: Path, tmp_path: Path
) -> None:
    h.sync()
    h.close()
    # The mirror is lost and the branch was rewritten: the applied commit exists nowhere.
    shutil.rmtree(tmp_path / "data" / "mirror.git")
    git(git_registry, "checkout", "-q", "--orphan", "rewritten")
    write(git_registry, "knowledge/billing/c.md", "# C\n\nAfter the loss.\n")
    (git_registry / "knowledge/billing/plans.json").unlink()
    commit(git_registry, "squashed history")
    git(git_registry, "branch", "-q", "-D", "main")
    git(git_registry, "branch", "-q", "-m", "main")
    again = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        result = again.sync()
        assert result.result == "synced"
        assert again.of("botreg.sync.history_rewritten")[0].data["reconciled"] is True
        assert again.stored("billing") == expected_chunks(git_registry, "billing")
        assert result.counts["chunks_embedded"] == 1  # only c.md: the ledger knew the rest
    finally:
        again.close()


def test_event_ids_are_stable_when_a_cycle_is_redone(
    h: SyncHarness, git_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h.sync()
    write(git_registry, "knowledge/billing/d.md", "# D\n\nRedo me.\n")
    commit(git_registry)
    original = h.syncer.mirror.keep_applied

    def crash(_sha: str) -> None:
        raise KeyboardInterrupt  # the process dies before the ledger advances

    monkeypatch.setattr(h.syncer.mirror, "keep_applied", crash)
    with pytest.raises(KeyboardInterrupt):
        h.sync()
    first = {e.id: e.type for e in h.events}
    monkeypatch.setattr(h.syncer.mirror, "keep_applied", original)
    result = h.sync()
    assert result.result == "synced"
    redone = {e.id: e.type for e in h.events}
    # Every change event is sent again with the same id (consumers dedupe); the
    # ingestion itself had finished, so there is nothing new to report about it.
    expected = {i: t for i, t in first.items() if t != "botreg.knowledge.ingested"}
    assert expected and expected.items() <= redone.items()
    assert "botreg.knowledge.file.added" in expected.values()


def test_embedding_change_reembeds_the_domain(h: SyncHarness, git_registry: Path) -> None:
    h.sync()
    env = git_registry / "environments/development.yaml"
    env.write_text(env.read_text().replace("dimensions: 384", "dimensions: 256"))
    commit(git_registry)
    result = h.sync()
    assert result.result == "synced"
    assert result.counts["chunks_embedded"] == 29  # every chunk, with the new setting
    assert h.syncer.ledger.domain("billing").embedding["dimensions"] == 256  # type: ignore[union-attr]
    [changed] = h.of("botreg.environment.changed")
    assert {
        "path": "knowledge.embedding.dimensions",
        "kind": "changed",
        "old": 384,
        "new": 256,
    } in changed.data["changes"]


def test_fetch_failure_is_reported_without_secrets(tmp_path: Path) -> None:
    harness = SyncHarness(
        "https://user:s3cret@127.0.0.1:9/none.git", tmp_path / "data", fetch_timeout=20
    )
    try:
        result = harness.sync()
        assert (result.result, result.phase) == ("failed", "fetch")
        assert "s3cret" not in result.error
        [failed] = harness.events
        assert failed.type == "botreg.sync.failed" and "s3cret" not in failed.to_json()
        assert harness.status.snapshot()["conditions"]["FetchFailed"]["status"] == "True"
        assert "s3cret" not in (tmp_path / "data" / "status.json").read_text()
    finally:
        harness.close()


@pytest.fixture
def git_daemon(git_registry: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={git_registry.parent}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(git_registry.parent),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"git://127.0.0.1:{port}/{git_registry.name}"
    deadline = time.monotonic() + 20
    while (
        subprocess.run(["git", "ls-remote", url], capture_output=True, check=False).returncode != 0
    ):
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("git daemon did not start")
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_sync_over_git_daemon(git_daemon: str, git_registry: Path, tmp_path: Path) -> None:
    harness = SyncHarness(git_daemon, tmp_path / "data")
    try:
        assert harness.sync().result == "synced"
        write(git_registry, "knowledge/product/e.md", "# E\n\nOver git://.\n")
        commit(git_registry)
        result = harness.sync()
        assert result.result == "synced" and result.counts["chunks_embedded"] == 1
        assert harness.stored("product") == expected_chunks(git_registry, "product")
    finally:
        harness.close()


def test_embedding_that_cannot_run_fails_the_domain_not_the_store(
    h: SyncHarness, git_registry: Path, tmp_path: Path
) -> None:
    h.sync()
    before = h.stored("billing")
    env = git_registry / "environments/development.yaml"
    env.write_text(
        env.read_text().replace(
            "    provider: hash          # built in, offline, lexical: for development and CI\n"
            "    dimensions: 384\n",
            f"    provider: default\n    model_dir: ${{NO_MODEL_DIR:{tmp_path / 'no-model'}}}\n",
        )
    )
    broken = commit(git_registry)
    result = h.sync()
    assert (result.result, result.phase, result.exit_code) == ("failed", "apply", 1)
    failed = h.of("botreg.knowledge.ingest_failed")
    assert sorted(e.data["domain"] for e in failed) == ["billing", "product"]
    assert "model_dir" in failed[0].data["error"]
    assert h.types()[-1] == "botreg.sync.failed"
    status = h.status.snapshot()
    assert status["conditions"]["IngestFailed"]["status"] == "True"
    assert status["applied_commit"] != broken  # not advanced: retried next cycle
    assert h.stored("billing") == before  # the old model's collection keeps serving


def test_emitted_event_types_are_the_documented_ones(h: SyncHarness, git_registry: Path) -> None:
    from botreg.events.model import EVENT_TYPES

    h.sync()
    (git_registry / "bots/internal-helpdesk.yaml").unlink()
    commit(git_registry)
    h.sync()
    assert {e["type"] for e in h.logged()} <= set(EVENT_TYPES)
