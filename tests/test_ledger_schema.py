"""The ledger's schema: a ledger of an earlier botreg is read and upgraded in place, its
records kept and trusted; one of a later botreg is refused, untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from botreg.knowledge.gate import MARKER_KEY
from botreg.knowledge.ledger import SCHEMA_VERSION, FileRecord, Ledger, LedgerError
from cli_ingest_helpers import assert_exact, ingest, totals

REFUNDS = "knowledge/billing/policies/refunds.md"

# `files` as botreg wrote it before schema 1 (no size)
_FILES_BEFORE = """
CREATE TABLE files (
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    blob TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    PRIMARY KEY (collection, path)
)
"""


def _as_before_schema_1(path: Path) -> None:
    """Rewrite a ledger as an earlier botreg left it: no size column, no user_version, no
    store marker."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        db.execute("ALTER TABLE files RENAME TO files_new")
        db.execute(_FILES_BEFORE)
        db.execute("INSERT INTO files SELECT collection, path, blob, chunks FROM files_new")
        db.execute("DROP TABLE files_new")
        db.execute("DELETE FROM meta WHERE key = ?", (MARKER_KEY,))
        db.execute("PRAGMA user_version = 0")
        db.execute("COMMIT")
    finally:
        db.close()


def _columns(path: Path) -> tuple[int, set[str]]:
    db = sqlite3.connect(path)
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        return version, {row[1] for row in db.execute("PRAGMA table_info(files)")}
    finally:
        db.close()


def test_an_older_ledger_is_upgraded_in_place_and_its_records_trusted(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    first = ingest(capsys, git_registry, data)
    ledger_file = data / "ledger.sqlite"
    _as_before_schema_1(ledger_file)
    assert _columns(ledger_file) == (0, {"collection", "path", "blob", "chunks"})
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 0
    assert totals(doc, "files_processed") == 0  # every record kept and trusted
    assert totals(doc, "chunks_embedded") == 0
    assert totals(doc, "files_skipped") == totals(first, "files_processed")
    version, columns = _columns(ledger_file)
    assert version == SCHEMA_VERSION and "size" in columns
    ledger = Ledger(ledger_file)
    try:
        state = ledger.domain("billing")
        assert state is not None
        records = ledger.file_records(state.collection)
        assert {r.size for r in records.values()} == {-1}  # unknown until re-ingested
    finally:
        ledger.close()
    # a file ingested again gets its size recorded
    (git_registry / REFUNDS).write_text("# Refunds\n\nWithin two weeks.\n")
    assert ingest(capsys, git_registry, data)["by_domain"]["billing"]["files_processed"] == 1
    ledger = Ledger(ledger_file)
    try:
        assert state is not None
        record = ledger.file_records(state.collection)[REFUNDS]
        assert record.size == (git_registry / REFUNDS).stat().st_size
    finally:
        ledger.close()
    assert_exact(git_registry, data)


def test_opening_an_upgraded_ledger_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    _as_before_schema_1(path)
    for _ in range(2):  # the second open finds the column and the version in place
        ledger = Ledger(path)
        ledger.record_applied(
            "c", written=[], deleted=[], files={"k/a.md": ("blob:key", 3)}, removed_files=[]
        )
        assert ledger.file_records("c") == {"k/a.md": FileRecord("blob:key", 3, -1)}
        assert ledger.files("c") == {"k/a.md": "blob:key"}
        ledger.close()
    assert _columns(path)[0] == SCHEMA_VERSION


def test_a_ledger_of_a_later_botreg_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="newer botreg") as raised:
        Ledger(path)
    assert raised.value.exit_code == 2
    assert path.read_bytes() == before


def test_a_record_matches_only_its_key_and_size() -> None:
    record = FileRecord("b:k", 2, 120)
    assert record.matches("b:k", 120)
    assert not record.matches("b:k", 121)  # same blob id claimed, other bytes on disk
    assert not record.matches("c:k", 120)
    assert FileRecord("b:k", 2).matches("b:k", 5)  # size unknown (an older ledger): the key


def test_the_cli_reports_a_later_ledger_with_exit_2(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    ingest(capsys, git_registry, data)
    db = sqlite3.connect(data / "ledger.sqlite")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 2 and "newer botreg" in doc["stderr"]
