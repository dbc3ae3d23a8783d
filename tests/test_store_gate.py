"""`botreg ingest` trusts its ledger without opening the store only while the store is as
the last run left it: deleted, moved, restored from a backup, written by another process,
or left by a crash, the store is checked and the run converges on it exactly."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from botreg.knowledge import gate as gate_module
from botreg.knowledge.gate import MARKER_KEY, StoreGate, store_marker
from botreg.knowledge.ledger import Ledger
from botreg.store.chroma import ChromaStore
from botreg.store.lean import LeanStore
from botreg.store.settings import StoreSettings
from botreg.validation.confinement import ConfinementError, StorePolicy
from cli_ingest_helpers import assert_exact, harness, ingest, ingest_process, totals
from helpers import write

REFUNDS = "knowledge/billing/policies/refunds.md"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _edit(repo: Path, words: str = "Refunds take two weeks now.") -> None:
    (repo / REFUNDS).write_text(f"# Refunds\n\n{words}\n")


def test_a_deleted_store_is_filled_again(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = ingest(capsys, git_registry, data)
    shutil.rmtree(data / "chroma")
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 0 and "does not hold what the ledger records" in doc["stderr"]
    assert totals(doc, "chunks_embedded") == totals(first, "chunks_embedded")
    assert not ingest_process(git_registry, data)["chromadb"]  # trusted again
    assert_exact(git_registry, data)


def test_a_store_restored_from_an_older_backup_is_brought_in_line(
    git_registry: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(capsys, git_registry, data)
    shutil.copytree(data / "chroma", tmp_path / "backup")
    _edit(git_registry)  # one chunk replaced by another: the same count, other ids
    write(git_registry, "knowledge/product/new.md", "# New\n\n" + "Fresh words. " * 30)
    ingest(capsys, git_registry, data)
    shutil.rmtree(data / "chroma")
    shutil.copytree(tmp_path / "backup", data / "chroma")
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 0 and "does not hold what the ledger records" in doc["stderr"]
    assert totals(doc, "chunks_embedded") > 0  # what the backup lacks, and only that
    assert_exact(git_registry, data)


def test_a_ledger_started_afresh_adopts_the_full_store_without_embedding(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(capsys, git_registry, data)
    (data / "ledger.sqlite").unlink()
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 0 and totals(doc, "chunks_embedded") == 0
    assert_exact(git_registry, data)


def test_writes_by_another_process_make_the_next_run_check_the_store(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(capsys, git_registry, data)
    with harness(git_registry, data) as h:  # another writer: a chunk goes behind the ledger
        state = h.ledger.domain("billing")
        assert state is not None
        collection = h.store.collection(state.collection, h.function)
        victim = sorted(collection.get(include=[])["ids"])[0]
        h.store.delete(collection, [victim])
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 0 and totals(doc, "chunks_embedded") == 1  # the missing one only
    assert_exact(git_registry, data)


def test_a_moved_store_is_followed(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = ingest(capsys, git_registry, data)
    env = git_registry / "environments/development.yaml"
    env.write_text(env.read_text().replace("path: chroma ", "path: elsewhere "))
    doc = ingest(capsys, git_registry, data)
    assert "the store moved" in doc["stderr"]
    assert totals(doc, "chunks_embedded") == totals(first, "chunks_embedded")
    assert not ingest_process(git_registry, data)["chromadb"]
    with harness(git_registry, data, StoreSettings(path="elsewhere")) as h:
        h.assert_exact("billing")
        h.assert_exact("product")


class _CrashError(Exception):
    """Stands for the process dying mid-write."""


@pytest.mark.parametrize("store_class", [ChromaStore, LeanStore])
def test_a_run_that_crashed_mid_write_is_not_trusted_and_converges(
    git_registry: Path,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    store_class: type[ChromaStore] | type[LeanStore],
) -> None:
    ingest(capsys, git_registry, data)
    _edit(git_registry)
    write(git_registry, "knowledge/product/new.md", "# New\n\n" + "Fresh words. " * 30)
    # the full client, or the lean store a trusted run writes through (botreg.store.lean)
    monkeypatch.setattr(gate_module, "lean_available", lambda: store_class is LeanStore)
    original = store_class.delete

    def dying(self: Any, collection: Any, ids: Any) -> None:
        original(self, collection, ids)  # the store changed, the ledger does not know yet
        raise _CrashError

    monkeypatch.setattr(store_class, "delete", dying)
    assert ingest(capsys, git_registry, data)["code"] == 3
    monkeypatch.setattr(store_class, "delete", original)
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 0
    assert doc["by_domain"]["billing"]["chunks_embedded"] == 0  # its landed writes are kept
    assert doc["by_domain"]["product"]["chunks_embedded"] > 0  # not reached before the crash
    monkeypatch.undo()
    assert not ingest_process(git_registry, data)["chromadb"]
    assert_exact(git_registry, data)


def test_a_query_between_runs_keeps_the_ledger_trusted(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(capsys, git_registry, data)
    code = main(
        [
            "query",
            "--repo",
            str(git_registry),
            "--data-dir",
            str(data),
            "--domain",
            "billing",
            "refund",
        ]
    )
    capsys.readouterr()
    assert code == 0
    assert not ingest_process(git_registry, data)["chromadb"]


def test_the_marker_follows_the_store_folder(tmp_path: Path) -> None:
    folder = tmp_path / "chroma"
    assert store_marker(folder) == ""  # no store: never trusted
    folder.mkdir()
    assert store_marker(folder) == ""  # a folder without Chroma's database
    database = folder / "chroma.sqlite3"
    database.write_bytes(b"x" * 10)
    first = store_marker(folder)
    assert first and store_marker(folder) == first
    database.write_bytes(b"y" * 11)
    assert store_marker(folder) != first


def test_the_gate_trusts_only_the_recorded_store_as_it_was_left(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ledger = Ledger(data / "ledger.sqlite")
    try:
        gate = StoreGate(StoreSettings(), data, StorePolicy(), ledger)
        assert not gate.trusted() and not gate.opened  # nothing recorded yet
        gate.open()
        ledger.follow_store(StoreSettings().identity)
        gate.close()
        gate.seal()
        assert ledger.get(MARKER_KEY) and gate.trusted()
        other = StoreGate(StoreSettings(path="other"), data, StorePolicy(), ledger)
        assert not other.trusted()  # another store than the records describe
        (data / "chroma" / "chroma.sqlite3").touch()
        assert not gate.trusted()
        server = StoreGate(
            StoreSettings(type="http", host="localhost"), data, StorePolicy(), ledger
        )
        assert not server.trusted()
        ledger.follow_store(server.settings.identity)
        assert server.trusted() and server.folder is None  # a server's contents are its own
    finally:
        ledger.close()


def test_the_gate_confines_the_store_before_anything_is_opened(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "data" / "ledger.sqlite")
    try:
        with pytest.raises(ConfinementError):
            StoreGate(StoreSettings(path="../outside"), tmp_path / "data", StorePolicy(), ledger)
    finally:
        ledger.close()
