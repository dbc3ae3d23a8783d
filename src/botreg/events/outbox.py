"""The webhook outbox: a durable FIFO of events to deliver, and their dead letters.

One SQLite file in the data dir (`outbox.sqlite`), the source of truth across
restarts. Table `outbox` holds the events not acknowledged yet, in publish order
(`seq`); table `dead_letter` holds the events given up on (too old and still
failing), with the last error, until an operator replays them
(`botreg events --dead-letter` / `--replay`). A replayed event keeps its `seq`,
so it is delivered before anything published after it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DeadLetter", "Outbox", "OutboxEntry"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "id TEXT NOT NULL, body BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
    "queued_at REAL NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '')",
    "CREATE TABLE IF NOT EXISTS dead_letter (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, "
    "body BLOB NOT NULL, attempts INTEGER NOT NULL, queued_at REAL NOT NULL, "
    "dead_at REAL NOT NULL, last_error TEXT NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One event waiting for delivery."""

    seq: int
    id: str
    body: bytes
    attempts: int
    queued_at: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One event given up on: too old and its receiver still failing."""

    seq: int
    id: str
    body: bytes
    attempts: int
    queued_at: float
    dead_at: float
    last_error: str

    def event(self) -> dict[str, Any]:
        """The event as JSON (an empty mapping if the stored body is damaged)."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}


class Outbox:
    """A thread-safe handle on `outbox.sqlite`.

    Args:
        path: The SQLite file.
        create: Create (and migrate) the file; False opens an existing one and
            changes no schema (the `botreg events` commands, beside a daemon).
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if create:
            self._db = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30
            )
        else:  # never create an empty file where the operator mistyped a data dir
            self._db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=rw",
                uri=True,
                check_same_thread=False,
                isolation_level=None,
                timeout=30,
            )
        self._lock = threading.Lock()
        try:
            if create:
                self._db.execute("PRAGMA journal_mode=WAL")
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._migrate()
            else:
                self._db.execute(_SCHEMA[1])  # replay needs it; harmless on an old file
        except sqlite3.Error:
            self._db.close()
            raise

    def _migrate(self) -> None:
        """Bring an outbox written by an older botreg to this schema."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "queued_at" not in columns:
            self._db.execute("ALTER TABLE outbox ADD COLUMN queued_at REAL NOT NULL DEFAULT 0")
            # the age of an old event is unknown: count it from now, not from 1970
            self._db.execute("UPDATE outbox SET queued_at = ?", (time.time(),))
        if "last_error" not in columns:
            self._db.execute("ALTER TABLE outbox ADD COLUMN last_error TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        """Close the connection (later calls raise sqlite3.ProgrammingError)."""
        with self._lock:
            self._db.close()

    def enqueue(self, event_id: str, body: bytes, now: float | None = None) -> None:
        """Append an event at the tail."""
        with self._lock:
            self._db.execute(
                "INSERT INTO outbox (id, body, queued_at) VALUES (?, ?, ?)",
                (event_id, body, time.time() if now is None else now),
            )

    def head(self) -> OutboxEntry | None:
        """The oldest event not delivered yet (the only one a receiver is sent)."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, id, body, attempts, queued_at FROM outbox ORDER BY seq LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return OutboxEntry(int(row[0]), str(row[1]), bytes(row[2]), int(row[3]), float(row[4]))

    def delivered(self, seq: int) -> None:
        """Remove an acknowledged event."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def failed(self, seq: int, error: str) -> None:
        """Count a failed attempt on an event, and keep its error for the dead letter."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                (error, seq),
            )

    def stats(self) -> tuple[int, float | None]:
        """How many events wait, and when the oldest was queued (None if none)."""
        with self._lock:
            count, oldest = self._db.execute(
                "SELECT COUNT(*), MIN(queued_at) FROM outbox"
            ).fetchone()
        return int(count), None if oldest is None else float(oldest)

    def expire(
        self, queued_before: float, now: float | None = None, unsent_error: str = ""
    ) -> list[DeadLetter]:
        """Move the events queued before `queued_before` to the dead letters, in order.

        Args:
            queued_before: Events queued before this time (epoch seconds) go.
            now: The time of death (default: now).
            unsent_error: The error recorded for an event never attempted (one that
                waited behind a failing head): why it was not sent.

        Returns:
            The new dead letters, oldest first.
        """
        dead_at = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # an event never attempted has no error of its own: it gets the reason
                # it was not sent, so no dead letter reads "0 attempts" and nothing else
                rows = self._db.execute(
                    "SELECT seq, id, body, attempts, queued_at, "
                    "CASE WHEN attempts = 0 AND last_error = '' THEN ? ELSE last_error END "
                    "FROM outbox WHERE queued_at < ? ORDER BY seq",
                    (unsent_error, queued_before),
                ).fetchall()
                self._db.executemany(
                    "INSERT OR REPLACE INTO dead_letter (seq, id, body, attempts, queued_at, "
                    "dead_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(*row[:5], dead_at, row[5]) for row in rows],
                )
                self._db.execute("DELETE FROM outbox WHERE queued_at < ?", (queued_before,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [
            DeadLetter(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), float(r[4]), dead_at, r[5])
            for r in rows
        ]

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, body, attempts, queued_at, dead_at, last_error "
                "FROM dead_letter ORDER BY seq"
            ).fetchall()
        return [
            DeadLetter(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), float(r[4]), float(r[5]), r[6])
            for r in rows
        ]

    def replay(self, event_id: str | None = None, now: float | None = None) -> int:
        """Move dead letters (all, or those with `event_id`) back to the outbox.

        They keep their place in the line (`seq`) and their age starts again, so
        they get a full dead-letter period before being given up on again.

        Returns:
            How many events were moved.
        """
        where, params = ("WHERE id = ?", (event_id,)) if event_id is not None else ("", ())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                moved = self._db.execute(
                    "INSERT INTO outbox (seq, id, body, attempts, queued_at, last_error) "
                    f"SELECT seq, id, body, 0, ?, '' FROM dead_letter {where}",
                    (time.time() if now is None else now, *params),
                ).rowcount
                self._db.execute(f"DELETE FROM dead_letter {where}", params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(moved)
