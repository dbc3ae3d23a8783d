"""The daemon validates each commit incrementally: unchanged blobs are not re-checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import git
import pytest

from botreg.git.tree import GitTreeSource
from botreg.validation import runner
from botreg.validation.runner import validate_registry
from conftest import git as run_git
from helpers import write
from sync_helpers import commit


def test_only_changed_files_are_checked_again(
    git_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = git.Repo(git_registry)
    checked: list[str] = []
    original = runner._file_findings

    def counting(snap: Any, path: str) -> Any:
        checked.append(path)
        return original(snap, path)

    monkeypatch.setattr(runner, "_file_findings", counting)
    cache: dict[Any, Any] = {}
    first = run_git(git_registry, "rev-parse", "HEAD").strip()
    assert validate_registry(GitTreeSource(repo, first), cache=cache).ok
    assert len(checked) == 15
    bot = git_registry / "bots/product-guide.yaml"
    bot.write_text(bot.read_text().replace("status: active", "status: maybe"))
    second = commit(git_registry)
    checked.clear()
    report = validate_registry(GitTreeSource(repo, second), cache=cache)
    assert checked == ["bots/product-guide.yaml"]
    assert [f.code for f in report.findings] == ["BR201"]
    # the cached results are the same as a fresh run's
    fresh = validate_registry(GitTreeSource(repo, second))
    assert [(f.path, f.line, f.code) for f in fresh.findings] == [
        (f.path, f.line, f.code) for f in report.findings
    ]
    # entries of files that left the tree are dropped
    (git_registry / "knowledge/billing/plans.json").unlink()
    third = commit(git_registry)
    validate_registry(GitTreeSource(repo, third), cache=cache)
    assert not [k for k in cache if k[0] == "knowledge/billing/plans.json"]


def test_git_trees_are_never_checked_in_forked_workers(
    git_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(450):
        write(git_registry, f"knowledge/billing/many/f{i}.txt", f"text {i}\n")
    head = commit(git_registry)
    monkeypatch.setenv("BOTREG_JOBS", "2")
    forked: list[int] = []
    monkeypatch.setattr(
        runner.multiprocessing,
        "get_context",
        lambda *_a: forked.append(1) or (_ for _ in ()).throw(AssertionError),
    )
    report = validate_registry(GitTreeSource(git.Repo(git_registry), head))
    assert report.ok and forked == []


def test_a_cycle_reads_each_tree_once(git_registry: Path, tmp_path: Path) -> None:
    """Validation, the diff, the knowledge settings and the ingest share one snapshot
    of the head, and the next cycle's old side is the snapshot the last one applied:
    a commit lists the new tree once and the applied one not again (each listing of a
    5,000-bot tree cost about 0.1 s per cycle, five times over)."""
    from sync_helpers import SyncHarness

    listed: list[str] = []
    original = GitTreeSource.entries

    def counting(self: GitTreeSource) -> Any:
        if self._entries is None:
            listed.append(self.commit)
        return original(self)

    h = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(GitTreeSource, "entries", counting)
            first = h.sync()
            assert first.result == "synced"
            assert listed == [first.to_commit]
            bot = git_registry / "bots/product-guide.yaml"
            bot.write_text(bot.read_text().replace("description: ", "description: Now ", 1))
            second = commit(git_registry)
            listed.clear()
            result = h.sync()
            assert (result.result, result.to_commit) == ("synced", second)
            assert listed == [second]
            assert [e.subject for e in h.of("botreg.bot.updated")] == ["bots/product-guide.yaml"]
    finally:
        h.close()
