"""Where the git backend keeps ingestion status: beside the data, never in git.

Status is runtime state, not content: committing it would make every ingestion a
commit and every commit a new ingestion. So `GitKnowledgeBackend` reads it from

1. the daemon's ledger (`<data dir>/ledger.sqlite`, read-only): what the sync
   daemon ingested, with its Chroma collection;
2. a small JSON file `knowledge-status.json` that `set_ingestion_status` writes
   (in the data dir, or in the clone's `.git/botreg/` when there is none: never
   committed, never seen as registry content);

and the newer of the two records wins. A domain with neither is PENDING.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from botreg.knowledge.storage.models import IngestionStatus

__all__ = ["STATUS_FILE", "StatusRecord", "StatusStore"]

STATUS_FILE = "knowledge-status.json"


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """A domain's ingestion status, when it was recorded, and its collection if known."""

    status: IngestionStatus
    error: str | None
    updated_at: str
    collection: str | None = None


class StatusStore:
    """Ingestion status of knowledge domains (see the module docstring).

    Args:
        folder: Where `knowledge-status.json` lives (created on the first write).
        ledger: The daemon's ledger to read, if any.
    """

    def __init__(self, folder: Path, ledger: Path | None = None) -> None:
        self.file = folder / STATUS_FILE
        self.ledger = ledger
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, str | None]]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _from_ledger(self, domain_id: str) -> StatusRecord | None:
        if self.ledger is None or not self.ledger.exists():
            return None
        try:
            db = sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True, timeout=10)
        except sqlite3.Error:
            return None
        try:
            row = db.execute(
                "SELECT status, error, updated_at, collection FROM domains WHERE domain = ?",
                (domain_id,),
            ).fetchone()
        except sqlite3.Error:
            return None
        finally:
            db.close()
        if row is None:
            return None
        status = IngestionStatus(row[0])
        error = row[1] or None
        return StatusRecord(status, error, str(row[2]), str(row[3]))

    def get(self, domain_id: str) -> StatusRecord:
        """The newest record of a domain (PENDING if none)."""
        found = []
        entry = self._load().get(domain_id)
        if isinstance(entry, dict) and entry.get("status") in {s.value for s in IngestionStatus}:
            found.append(
                StatusRecord(
                    IngestionStatus(str(entry["status"])),
                    entry.get("error"),
                    str(entry.get("updated_at") or ""),
                )
            )
        ledger = self._from_ledger(domain_id)
        if ledger is not None:
            found.append(ledger)
        if not found:
            return StatusRecord(IngestionStatus.PENDING, None, "")
        return max(found, key=lambda r: _instant(r.updated_at))

    def set(self, domain_id: str, status: IngestionStatus, error: str | None) -> None:
        """Record a domain's status now (atomically replacing the file)."""
        with self._lock:
            data = self._load()
            data[domain_id] = {
                "status": IngestionStatus(status).value,
                "error": error if status is IngestionStatus.ERROR else None,
                "updated_at": datetime.now(UTC).isoformat(),
            }
            self.file.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.file.parent, prefix=".status-")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
            os.replace(temp, self.file)

    def forget(self, domain_id: str) -> None:
        """Drop a deleted domain's record."""
        with self._lock:
            data = self._load()
            if data.pop(domain_id, None) is not None:
                self.file.write_text(json.dumps(data, indent=2, sort_keys=True), "utf-8")


def _instant(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)
