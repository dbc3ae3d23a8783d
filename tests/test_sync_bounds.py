"""One bad knowledge file never holds back later commits; change events are bounded.

Regression tests for issue #9 (found by trying the daemon as a committer would):
a JSON file that validates but makes more chunks than the per-file ceiling
failed every cycle and kept every later commit from being applied, and a commit
that changed 96,000 aliased values wrote one 7 MB event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from botreg.cli import main
from sync_helpers import SyncHarness, commit


@pytest.fixture
def h(git_registry: Path, tmp_path: Path) -> Iterator[SyncHarness]:
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    yield harness
    harness.close()


def test_a_file_over_the_chunk_ceiling_does_not_hold_back_later_commits(
    h: SyncHarness, git_registry: Path
) -> None:
    assert h.sync().result == "synced"
    # valid JSON, within every ceiling, but more chunks than one file may make
    many = git_registry / "knowledge/billing/many.json"
    # records too long to share a chunk: one chunk each
    many.write_text(
        json.dumps([{"id": i, "text": "words of a record " * 3} for i in range(21_000)])
    )
    assert main(["validate", "--repo", str(git_registry)]) == 0
    first = commit(git_registry, "a file the ingester refuses")
    result = h.sync()
    assert (result.result, result.to_commit, result.exit_code) == ("synced", first, 1)
    assert result.counts["files_failed"] == 1
    [failed] = h.of("botreg.knowledge.ingest_failed")
    assert failed.data["errors"][0]["path"] == "knowledge/billing/many.json"
    assert "botreg.sync.completed" in h.types()
    condition = h.status.snapshot()["conditions"]["IngestFailed"]
    assert (condition["status"], condition["reason"]) == ("True", "FileErrors")
    assert all(path != "knowledge/billing/many.json" for path, _ in h.stored("billing"))

    # the next commit (a bot change) is applied: the bad file no longer blocks anything
    bot = git_registry / "bots/product-guide.yaml"
    bot.write_text(bot.read_text().replace("name: Product Guide", "name: Product Guide 2"))
    second = commit(git_registry, "a bot change")
    result = h.sync()
    assert (result.result, result.to_commit) == ("synced", second)
    assert h.status.snapshot()["applied_commit"] == second

    # removing the file clears the condition
    many.unlink()
    commit(git_registry, "remove it")
    assert h.sync().exit_code == 0
    assert h.status.snapshot()["conditions"]["IngestFailed"]["status"] == "False"


def test_change_events_are_bounded(h: SyncHarness, git_registry: Path) -> None:
    h.sync()
    bot = git_registry / "bots/product-guide.yaml"
    keys = "\n".join(f"    k{i}: {'v' * 200}{i}" for i in range(1_000))
    bot.write_text(bot.read_text() + f"  big:\n{keys}\n")  # under metadata:
    commit(git_registry, "a thousand values")
    h.sync()
    [created] = h.of("botreg.bot.updated")
    assert len(created.data["changes"]) <= 200
    assert len(json.dumps(created.data)) < 100_000  # was 220 KB
    bot.write_text(bot.read_text().replace(": v", ": w"))
    commit(git_registry, "a thousand changes")
    h.sync()
    [updated] = h.of("botreg.bot.updated")
    assert len(updated.data["changes"]) == 200
    assert updated.data["changes_truncated"] == 800
    assert len(json.dumps(updated.data)) < 100_000  # was 440 KB
    assert "truncated" in json.dumps(updated.data)  # values cut, with a marker
