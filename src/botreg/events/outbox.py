"""The event outbox: a durable FIFO of events to deliver, per sink, and dead letters.

One SQLite file in the data dir (`outbox.sqlite`), the source of truth across
restarts, shared by every sink that delivers events elsewhere (the webhook, the
Redis stream): each sink has its own queue in it (column `sink`), so one sink's
outage never holds another's line. Table `outbox` holds the events not
acknowledged yet, in publish order (`seq`); table `dead_letter` holds the
events given up on (too old and still failing), with the last error, until an
operator replays them (`botreg events --dead-letter` / `--replay`). A replayed
event keeps its `seq`, so it is delivered before anything published after it.
Each row also keeps the fencing token its publisher held (0 without a lease),
so a sink can refuse what a deposed leader queued.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["WEBHOOK", "DeadLetter", "Outbox", "OutboxEntry"]

WEBHOOK = "webhook"  # the sink name of the webhook's queue (and of an older file's rows)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "id TEXT NOT NULL, body BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
    "queued_at REAL NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '', "
    "sink TEXT NOT NULL DEFAULT 'webhook', token INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS dead_letter (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, "
    "body BLOB NOT NULL, attempts INTEGER NOT NULL, queued_at REAL NOT NULL, "
    "dead_at REAL NOT NULL, last_error TEXT NOT NULL, sink TEXT NOT NULL DEFAULT 'webhook')",
)
_INDEX = "CREATE INDEX IF NOT EXISTS outbox_by_sink ON outbox (sink, seq)"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One event waiting for delivery."""

    seq: int
    id: str
    body: bytes
    attempts: int
    queued_at: float
    token: int = 0  # the fencing token its publisher held (0: no lease)


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
        sink: Whose queue this handle reads and writes (`webhook`, `redis`, ...).
    """

    def __init__(self, path: Path, *, create: bool = True, sink: str = WEBHOOK) -> None:
        self.path = path
        self.sink = sink
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
                self._db.execute(_INDEX)
            else:
                self._db.execute(_SCHEMA[1])  # replay needs it; harmless on an old file
            # An older file opened without migrating has one queue: the webhook's.
            self._mine = self._sink_filter()
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
            self._token = "token" if "token" in columns else "0"
        except sqlite3.Error:
            self._db.close()
            raise

    def _sink_filter(self) -> tuple[str, str, tuple[str, ...]]:
        """(`sink = ?` for the outbox, for the dead letters, their parameter), or
        empty clauses on a file with no sink column (only webhook rows exist there)."""
        outbox = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        dead = {row[1] for row in self._db.execute("PRAGMA table_info(dead_letter)")}
        if "sink" in outbox and "sink" in dead:
            return "sink = ?", "sink = ?", (self.sink,)
        if self.sink != WEBHOOK:
            raise sqlite3.OperationalError(
                f"{self.path}: an older outbox with no {self.sink} queue"
            )
        return "1", "1", ()

    def _migrate(self) -> None:
        """Bring an outbox written by an older botreg to this schema."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        if "queued_at" not in columns:
            self._db.execute("ALTER TABLE outbox ADD COLUMN queued_at REAL NOT NULL DEFAULT 0")
            # the age of an old event is unknown: count it from now, not from 1970
            self._db.execute("UPDATE outbox SET queued_at = ?", (time.time(),))
        if "last_error" not in columns:
            self._db.execute("ALTER TABLE outbox ADD COLUMN last_error TEXT NOT NULL DEFAULT ''")
        if "sink" not in columns:  # rows of an older file are the webhook's
            self._db.execute("ALTER TABLE outbox ADD COLUMN sink TEXT NOT NULL DEFAULT 'webhook'")
        if "token" not in columns:
            self._db.execute("ALTER TABLE outbox ADD COLUMN token INTEGER NOT NULL DEFAULT 0")
        dead = {row[1] for row in self._db.execute("PRAGMA table_info(dead_letter)")}
        if "sink" not in dead:
            self._db.execute(
                "ALTER TABLE dead_letter ADD COLUMN sink TEXT NOT NULL DEFAULT 'webhook'"
            )

    def close(self) -> None:
        """Close the connection (later calls raise sqlite3.ProgrammingError)."""
        with self._lock:
            self._db.close()

    def enqueue(self, event_id: str, body: bytes, now: float | None = None, token: int = 0) -> int:
        """Append an event at the tail of this sink's queue; returns its `seq`.

        Args:
            event_id: The event's id.
            body: What is delivered.
            now: When it was queued (default: now).
            token: The fencing token the publisher holds (0: no lease).
        """
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO outbox (id, body, queued_at, sink, token) VALUES (?, ?, ?, ?, ?)",
                (event_id, body, time.time() if now is None else now, self.sink, token),
            )
        return int(cursor.lastrowid or 0)

    def head(self) -> OutboxEntry | None:
        """The oldest event not delivered yet (the only one a receiver is sent)."""
        batch = self.batch(1)
        return batch[0] if batch else None

    def batch(self, limit: int) -> list[OutboxEntry]:
        """Up to `limit` of the oldest events not delivered yet, oldest first."""
        where, _, params = self._mine
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, id, body, attempts, queued_at, {self._token} FROM outbox "
                f"WHERE {where} ORDER BY seq LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [
            OutboxEntry(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), float(r[4]), int(r[5]))
            for r in rows
        ]

    def delivered_through(self, seq: int) -> None:
        """Remove this sink's events up to and including `seq` (a batch acknowledged)."""
        where, _, params = self._mine
        with self._lock:
            self._db.execute(f"DELETE FROM outbox WHERE {where} AND seq <= ?", (*params, seq))

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
        where, _, params = self._mine
        with self._lock:
            count, oldest = self._db.execute(
                f"SELECT COUNT(*), MIN(queued_at) FROM outbox WHERE {where}", params
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
        where, _, params = self._mine
        columns, marks = (", sink", ", ?") if params else ("", "")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # an event never attempted has no error of its own: it gets the reason
                # it was not sent, so no dead letter reads "0 attempts" and nothing else
                rows = self._db.execute(
                    "SELECT seq, id, body, attempts, queued_at, "
                    "CASE WHEN attempts = 0 AND last_error = '' THEN ? ELSE last_error END "
                    f"FROM outbox WHERE {where} AND queued_at < ? ORDER BY seq",
                    (unsent_error, *params, queued_before),
                ).fetchall()
                self._db.executemany(
                    "INSERT OR REPLACE INTO dead_letter (seq, id, body, attempts, queued_at, "
                    f"dead_at, last_error{columns}) VALUES (?, ?, ?, ?, ?, ?, ?{marks})",
                    [(*row[:5], dead_at, row[5], *params) for row in rows],
                )
                self._db.execute(
                    f"DELETE FROM outbox WHERE {where} AND queued_at < ?",
                    (*params, queued_before),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [
            DeadLetter(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), float(r[4]), dead_at, r[5])
            for r in rows
        ]

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter of this sink, oldest first."""
        _, where, params = self._mine
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, body, attempts, queued_at, dead_at, last_error "
                f"FROM dead_letter WHERE {where} ORDER BY seq",
                params,
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
        _, mine, sink = self._mine
        where, params = (
            (f"WHERE {mine} AND id = ?", (*sink, event_id))
            if event_id is not None
            else (
                f"WHERE {mine}",
                sink,
            )
        )
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # the queue it goes back to is the sink's; an older file has only one
                target, value = (", sink", ", sink") if sink else ("", "")
                moved = self._db.execute(
                    f"INSERT INTO outbox (seq, id, body, attempts, queued_at, last_error{target}) "
                    f"SELECT seq, id, body, 0, ?, ''{value} FROM dead_letter {where}",
                    (time.time() if now is None else now, *params),
                ).rowcount
                self._db.execute(f"DELETE FROM dead_letter {where}", params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(moved)
