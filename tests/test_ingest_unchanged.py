"""`botreg ingest` pays only for what changed: an unchanged file is neither read nor
hashed, a run with nothing to write never imports Chroma, and what it reads is the
work tree (committed or not), under the settings in force."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from botreg.knowledge.worktree import IndexedWorkingTree
from botreg.registry.source import WorkingTreeSource
from cli_ingest_helpers import assert_exact, ingest, ingest_process, totals
from conftest import git
from helpers import write

REFUNDS = "knowledge/billing/policies/refunds.md"
FEATURES = "knowledge/product/features.yaml"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _commit(repo: Path, message: str = "change") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def test_a_run_with_nothing_to_write_never_imports_chroma(git_registry: Path, data: Path) -> None:
    first = ingest_process(git_registry, data)
    assert first["code"] == 0 and first["chromadb"]  # the first run fills the store
    again = ingest_process(git_registry, data)
    assert again["code"] == 0
    assert not again["chromadb"] and not again["chunkers"]
    rows = {line.split()[0]: line.split() for line in again["stdout"].splitlines()[1:]}
    assert rows["billing"][1:3] == ["0", "3"] and rows["product"][1:3] == ["0", "4"]  # skipped
    (git_registry / REFUNDS).write_text("# Refunds\n\nRefunds take two weeks now.\n")
    edited = ingest_process(git_registry, data)  # written through Chroma's core (store.lean)
    assert edited["code"] == 0 and edited["chunkers"] and not edited["chromadb"]
    rows = {line.split()[0]: line.split() for line in edited["stdout"].splitlines()[1:]}
    assert rows["billing"][1:4] == ["1", "2", "1"]  # one file read, one chunk created
    assert not ingest_process(git_registry, data)["chromadb"]


class _Reads:
    """Counts reads of knowledge files through any registry source."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        original = WorkingTreeSource.read

        def read(source: WorkingTreeSource, path: str) -> bytes:
            if path.startswith("knowledge/") and not path.endswith("_domain.yaml"):
                self.paths.append(path)
            return original(source, path)

        monkeypatch.setattr(WorkingTreeSource, "read", read)


def test_unchanged_files_are_never_opened(
    git_registry: Path,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ingest(capsys, git_registry, data)["code"] == 0
    reads = _Reads(monkeypatch)
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 0 and totals(doc, "files_skipped") == 7
    assert reads.paths == []  # no file read, none hashed
    (git_registry / REFUNDS).write_text("# Refunds\n\nRefunds take two weeks now.\n")
    doc = ingest(capsys, git_registry, data)
    assert doc["by_domain"]["billing"]["files_processed"] == 1
    assert set(reads.paths) == {REFUNDS}  # hashed (git says it changed) and chunked, nothing else
    assert reads.paths.count(REFUNDS) <= 2
    reads.paths.clear()
    _commit(git_registry)
    doc = ingest(capsys, git_registry, data)
    assert totals(doc, "files_processed") == 0 and reads.paths == []


def test_git_index_gives_the_same_ids_and_files_as_reading_them(git_registry: Path) -> None:
    repo = git_registry
    write(repo, "knowledge/product/untracked.md", "# New\n\nNot added yet.\n")
    (repo / REFUNDS).write_text("# Refunds\n\nEdited, not added.\n")
    write(repo, "knowledge/product/staged.md", "# Staged\n\nAdded, not committed.\n")
    git(repo, "add", "knowledge/product/staged.md")
    (repo / "knowledge/product/release-notes.txt").unlink()  # deleted, still in the index
    (repo / "knowledge/product/link.md").symlink_to("getting-started.md")
    write(repo, ".gitignore", ".botreg/\nignored.md\n")
    write(repo, "knowledge/product/ignored.md", "# Ignored\n")
    # assume-unchanged: git no longer looks at the file on disk, so its id must be hashed
    git(repo, "update-index", "--assume-unchanged", FEATURES)
    (repo / FEATURES).write_text("features:\n  - name: changed behind git's back\n")
    indexed, plain = IndexedWorkingTree(repo), WorkingTreeSource(repo)
    assert indexed.entries() == plain.entries()
    for entry in plain.entries():
        if not entry.is_symlink:
            assert indexed.blob_id(entry.path) == plain.blob_id(entry.path), entry.path
    vouched = indexed.indexed()
    assert "knowledge/product/getting-started.md" in vouched
    assert "knowledge/product/staged.md" in vouched  # the index holds what is on disk
    for doubtful in (REFUNDS, FEATURES, "knowledge/product/untracked.md"):
        assert doubtful not in vouched


def test_a_file_rewritten_with_the_same_size_and_time_is_seen(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same size, modification time put back: git's stat check still sees the change
    (the inode's change time moved), so the index's id is not trusted for it. botreg
    trusts the index exactly as far as `git status` does (git compares whole seconds
    unless built with USE_NSEC: a rewrite that keeps size and mtime within the second
    the file was added escapes git too)."""
    ingest(capsys, git_registry, data)
    path = git_registry / REFUNDS
    before = path.stat()
    time.sleep(max(0.0, before.st_ctime + 1.05 - time.time()))  # the next whole second
    path.write_text(path.read_text().replace("business", "BUSINESS"))  # same length
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    doc = ingest(capsys, git_registry, data)
    assert doc["by_domain"]["billing"]["files_processed"] == 1
    assert_exact(git_registry, data)


def test_the_work_tree_is_ingested_committed_or_not(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = git_registry
    ingest(capsys, repo, data)
    original = (repo / REFUNDS).read_text()
    (repo / REFUNDS).write_text("# Refunds\n\nEdited in the work tree only.\n")
    write(repo, "knowledge/product/untracked.md", "# Untracked\n\n" + "Fresh words. " * 30)
    doc = ingest(capsys, repo, data)
    assert totals(doc, "files_processed") == 2
    assert_exact(repo, data)
    # back to the committed content: ingested again, the store follows the work tree
    git(repo, "checkout", "--", REFUNDS)
    assert (repo / REFUNDS).read_text() == original
    (repo / "knowledge/product/untracked.md").unlink()
    doc = ingest(capsys, repo, data)
    assert doc["by_domain"]["billing"]["files_processed"] == 1
    assert doc["by_domain"]["product"]["chunks_deleted"] > 0
    assert_exact(repo, data)
    # staged, then committed: no work left once the store holds it
    (repo / REFUNDS).write_text("# Refunds\n\nStaged text.\n")
    git(repo, "add", REFUNDS)
    assert ingest(capsys, repo, data)["by_domain"]["billing"]["files_processed"] == 1
    _commit(repo)
    assert totals(ingest(capsys, repo, data), "files_processed") == 0
    assert_exact(repo, data)


def test_new_chunking_settings_rechunk_every_file_without_embedding_again(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = git_registry
    ingest(capsys, repo, data)
    settings = repo / "registry.yaml"
    settings.write_text(settings.read_text().replace("overlap_tokens: 32", "overlap_tokens: 31"))
    doc = ingest(capsys, repo, data)
    assert totals(doc, "files_processed") == 7  # every file: the key holds the settings
    assert totals(doc, "files_skipped") == 0
    assert totals(ingest(capsys, repo, data), "files_processed") == 0  # then recorded


def test_new_embedding_settings_fill_a_new_collection(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = git_registry
    first = ingest(capsys, repo, data)
    env = repo / "environments/development.yaml"
    env.write_text(env.read_text().replace("dimensions: 384", "dimensions: 384\n    ngram_max: 1"))
    doc = ingest(capsys, repo, data)
    assert totals(doc, "files_processed") == 7
    assert totals(doc, "chunks_embedded") == totals(first, "chunks_embedded")
    probe = ingest_process(repo, data)
    assert probe["code"] == 0 and not probe["chromadb"]


def test_an_edit_writes_without_reading_the_stores_vectors(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new text whose id the ledger does not know is not in the store: it is embedded
    without asking the store first (a read loads the collection's whole index)."""
    from botreg.store.chroma import ChromaStore
    from knowledge_helpers import Harness

    h = Harness(registry, tmp_path / "data")
    try:
        h.ingest("billing")
        asked: list[int] = []
        original = ChromaStore.embeddings

        def embeddings(store: ChromaStore, collection: Any, ids: Any) -> Any:
            asked.append(len(ids))
            return original(store, collection, ids)

        monkeypatch.setattr(ChromaStore, "embeddings", embeddings)
        (registry / REFUNDS).write_text("# Refunds\n\nA sentence never seen before.\n")
        assert h.ingest("billing").chunks_embedded == 1
        assert asked == []
        (registry / "knowledge/billing/policies/refunds.md").rename(
            registry / "knowledge/billing/policies/moved.md"
        )
        assert h.ingest("billing").chunks_embedded == 0  # a rename reuses the stored vector
        assert asked  # found by its text: that needs the store
        h.assert_exact("billing")
    finally:
        h.store.close()
        h.ledger.close()


def test_a_fresh_ledger_beside_a_filled_store_embeds_nothing(
    registry: Path, tmp_path: Path
) -> None:
    """The core (the daemon's path too) asks the store for every chunk of a collection the
    ledger knows nothing of: a store filled by another data dir is reused, not re-embedded."""
    from botreg.knowledge.ledger import Ledger
    from knowledge_helpers import Harness

    h = Harness(registry, tmp_path / "data")
    try:
        first = h.ingest("billing")
        assert first.chunks_embedded > 0
        h.ledger.close()
        h.ledger = Ledger(tmp_path / "data" / "another-ledger.sqlite")
        assert h.ingest("billing").chunks_embedded == 0
        h.assert_exact("billing")
    finally:
        h.store.close()
        h.ledger.close()


def test_an_unreadable_domain_file_records_the_failed_run(registry: Path, tmp_path: Path) -> None:
    """The change check reads `_domain.yaml` first: its failure is recorded as before."""
    from botreg.knowledge.ledger import IngestionStatus
    from botreg.registry.view import DomainConfigError
    from knowledge_helpers import Harness

    h = Harness(registry, tmp_path / "data")
    try:
        h.ingest("billing")
        write(registry, "knowledge/billing/_domain.yaml", "include: [unclosed\n")
        with pytest.raises(DomainConfigError):
            h.ingest("billing")
        state = h.ledger.domain("billing")
        assert state is not None and state.status is IngestionStatus.ERROR
        assert "DomainConfigError" in state.error
    finally:
        h.store.close()
        h.ledger.close()
