"""The ledger: what is stored, per collection and file, in SQLite beside the store.

It is the record that makes ingestion incremental and crash-safe:

- before chunks are written to Chroma their ids are recorded (so a crash can
  never leave a chunk that the ledger does not know, and therefore could not
  delete later);
- after the writes, ids that were deleted are dropped and each file's blob and
  size are recorded (so an unchanged file is skipped without being read or chunked).

The ledger may thus list a chunk that a crash kept from being written, never
the reverse; every later run converges (writes are idempotent upserts and
deletes of known ids).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from botreg.errors import BotregError

__all__ = [
    "SCHEMA_VERSION",
    "DomainState",
    "FileRecord",
    "IngestionStatus",
    "Ledger",
    "LedgerError",
    "StoredChunk",
]

# The schema this code writes (SQLite's user_version). 0: no size per file (before
# botreg recorded it); 1: `files.size`. Older ledgers are upgraded in place on open.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (
    domain TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    embedding TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL DEFAULT '',
    commit_sha TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    blob TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT -1,  -- bytes when ingested; -1: unknown (an older ledger)
    PRIMARY KEY (collection, path)
);
CREATE TABLE IF NOT EXISTS chunks (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    meta_hash TEXT NOT NULL,
    stored INTEGER NOT NULL,  -- 1: in Chroma with this meta_hash; 0: maybe (a write was under way)
    PRIMARY KEY (collection, id)
);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks (collection, path);
CREATE INDEX IF NOT EXISTS chunks_by_hash ON chunks (collection, content_hash);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


_STORE_KEY = "sync.store"  # which store the records describe (`follow_store`)


class IngestionStatus(StrEnum):
    """Where a domain's ingestion stands (as in the seed)."""

    PENDING = "pending"
    INGESTING = "ingesting"
    READY = "ready"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class DomainState:
    """The ledger's row for one domain: its active collection and status."""

    domain: str
    collection: str
    embedding: dict[str, Any]
    status: IngestionStatus
    error: str
    version: str
    commit: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk the ledger records as (possibly) stored."""

    id: str
    path: str
    content_hash: str
    meta_hash: str
    stored: bool = True


@dataclass(frozen=True, slots=True)
class FileRecord:
    """What the ledger records of an ingested file: its key (`<blob>:<settings>`), the
    chunks it gave and its size in bytes (-1: unknown, recorded by an older botreg)."""

    key: str
    chunks: int
    size: int = -1

    def matches(self, key: str, size: int) -> bool:
        """True if a file with this key and size is the one recorded (unchanged)."""
        return self.key == key and (self.size < 0 or self.size == size)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    """`value` as text SQLite can store: never raises on a lone surrogate.

    A path git gave with a byte that is not UTF-8 (surrogateescape) or a lone
    surrogate from a file is refused upstream (BR403, BR105); should one get
    here, sqlite3's strict UTF-8 encoding would crash the ingest, so it is
    stored escaped instead (`\\xe9` for such a byte, `\\ud800` otherwise).
    """
    if _SURROGATE.search(value) is None:
        return value
    return _SURROGATE.sub(
        lambda m: (
            f"\\x{ord(m[0]) - 0xDC00:02x}"
            if 0xDC80 <= ord(m[0]) <= 0xDCFF
            else f"\\u{ord(m[0]):04x}"
        ),
        value,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LedgerError(BotregError):
    """The ledger cannot be opened: the data dir is unreadable (exit code 2)."""

    exit_code = 2


def _unusable(path: Path, exc: Exception) -> LedgerError:
    """What an operator reads when the ledger does not open: the file, why, and the way out.

    The ledger records what the Chroma store holds (chunk ids, file blobs, the
    applied commit), so a new ledger beside the old store would not know the
    chunks already there: they would never be deleted. Hence both go, together.
    """
    reason = " ".join(str(exc).split()) or type(exc).__name__
    store = path.parent / "chroma"
    return LedgerError(
        f"cannot open the ledger {path}: {reason}. It records what the knowledge store "
        "holds and cannot be rebuilt on its own: restore it from a backup taken with the "
        f"store, or (with no botreg process running on this data dir) move it away together "
        f"with the store folder (by default {store}), e.g. `mv {path} {path}.bad` and "
        f"`mv {store} {store}.bad`; the next sync then ingests every knowledge file again "
        "and sends the change events of the whole registry"
    )


class Ledger:
    """SQLite ledger (WAL, synchronous=FULL: a committed record survives a crash)."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the ledger.

        Args:
            path: The SQLite file (its folder is created if missing).

        Raises:
            LedgerError: if the file is not a usable SQLite database (corrupt,
                not a database, unreadable): exit 2, with what to do.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            # usable from the worker thread an async ingestion runs in (one at a time:
            # the manager serializes its runs); sqlite itself is built thread-safe
            self._db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:  # a folder in its place, no permission
            raise LedgerError(
                f"cannot open the ledger {path}: {exc}: check that the data dir is "
                "readable and writable by this user"
            ) from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._upgrade()
        except sqlite3.OperationalError as exc:
            self._db.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise  # another process holds it for longer than the timeout: not damage
            raise LedgerError(
                f"cannot open the ledger {path}: {exc}: check that the data dir is "
                "readable and writable by this user"
            ) from None
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
            self._db.close()
            raise _unusable(path, exc) from None

    def _upgrade(self) -> None:
        """Bring an older ledger to `SCHEMA_VERSION` in place, in one transaction.

        Nothing is dropped or rewritten: a column is added with its "unknown"
        default, so every record keeps serving (a crash leaves the old schema,
        upgraded again on the next open). A ledger of a newer botreg is refused.
        """
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            self._db.close()
            raise LedgerError(
                f"the ledger {self.path} was written by a newer botreg (schema {version}, "
                f"this one knows {SCHEMA_VERSION}): upgrade botreg, or point --data-dir "
                "at another folder"
            )
        with self.transaction() as db:  # another process may have upgraded it meanwhile
            columns = {row[1] for row in db.execute("PRAGMA table_info(files)")}
            if "size" not in columns:
                db.execute("ALTER TABLE files ADD COLUMN size INTEGER NOT NULL DEFAULT -1")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable write."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- domains ---------------------------------------------------------------------

    def domain(self, domain: str) -> DomainState | None:
        """The domain's state, or None if it was never ingested."""
        row = self._db.execute(
            "SELECT domain, collection, embedding, status, error, version, commit_sha,"
            " updated_at FROM domains WHERE domain = ?",
            (_text(domain),),
        ).fetchone()
        if row is None:
            return None
        return DomainState(
            row[0],
            row[1],
            json.loads(row[2]),
            IngestionStatus(row[3]),
            row[4],
            row[5],
            row[6],
            row[7],
        )

    def domains(self) -> list[DomainState]:
        """Every domain the ledger knows."""
        names = [r[0] for r in self._db.execute("SELECT domain FROM domains ORDER BY domain")]
        return [state for name in names if (state := self.domain(name)) is not None]

    def set_domain(
        self,
        domain: str,
        *,
        collection: str,
        embedding: dict[str, Any],
        status: IngestionStatus,
        error: str = "",
        version: str = "",
        commit: str = "",
    ) -> None:
        """Record a domain's active collection and status."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO domains VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(domain) DO "
                "UPDATE SET collection=excluded.collection, embedding=excluded.embedding, "
                "status=excluded.status, error=excluded.error, version=excluded.version, "
                "commit_sha=excluded.commit_sha, updated_at=excluded.updated_at",
                (
                    _text(domain),
                    collection,
                    json.dumps(embedding, sort_keys=True),
                    str(status),
                    _text(error),
                    version,
                    commit,
                    _now(),
                ),
            )

    def set_status(self, domain: str, status: IngestionStatus, error: str = "") -> None:
        """Update a known domain's status."""
        with self.transaction() as db:
            db.execute(
                "UPDATE domains SET status = ?, error = ?, updated_at = ? WHERE domain = ?",
                (str(status), _text(error), _now(), _text(domain)),
            )

    def forget_domain(self, domain: str) -> None:
        """Drop a domain's row (its collections' rows are dropped with `forget_collection`)."""
        with self.transaction() as db:
            db.execute("DELETE FROM domains WHERE domain = ?", (_text(domain),))

    # --- files and chunks ------------------------------------------------------------

    def files(self, collection: str) -> dict[str, str]:
        """path -> blob id of every file recorded in a collection."""
        return dict(
            self._db.execute("SELECT path, blob FROM files WHERE collection = ?", (collection,))
        )

    def file_records(self, collection: str) -> dict[str, FileRecord]:
        """path -> what is recorded of every file ingested into a collection."""
        rows = self._db.execute(
            "SELECT path, blob, chunks, size FROM files WHERE collection = ?", (collection,)
        )
        return {row[0]: FileRecord(row[1], int(row[2]), int(row[3])) for row in rows}

    def knows_collection(self, collection: str) -> bool:
        """True if the ledger records any chunk of the collection."""
        row = self._db.execute(
            "SELECT 1 FROM chunks WHERE collection = ? LIMIT 1", (collection,)
        ).fetchone()
        return row is not None

    def collections(self) -> list[str]:
        """Every collection the ledger records chunks of, sorted."""
        rows = self._db.execute("SELECT DISTINCT collection FROM chunks ORDER BY collection")
        return [row[0] for row in rows]

    def chunk_states(self, collection: str) -> dict[str, bool]:
        """chunk id -> True if recorded as stored, False if maybe (a write was under way).

        A store that holds what the ledger says holds, in the collection, every id
        recorded as stored and no id the ledger does not record (see the module
        docstring).
        """
        rows = self._db.execute("SELECT id, stored FROM chunks WHERE collection = ?", (collection,))
        return {row[0]: bool(row[1]) for row in rows}

    def chunks_of(self, collection: str, paths: Iterable[str]) -> dict[str, list[StoredChunk]]:
        """Recorded chunks per path."""
        result: dict[str, list[StoredChunk]] = {}
        for path in paths:
            rows = self._db.execute(
                "SELECT id, path, content_hash, meta_hash, stored FROM chunks "
                "WHERE collection = ? AND path = ?",
                (collection, _text(path)),
            )
            result[path] = [StoredChunk(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]
        return result

    def ids_by_hash(self, collection: str, hashes: Iterable[str]) -> dict[str, list[str]]:
        """content hash -> recorded chunk ids with that text (stored or maybe stored:
        the caller asks the store which of them really hold a vector)."""
        found: dict[str, list[str]] = {}
        for content_hash in set(hashes):
            rows = self._db.execute(
                "SELECT id FROM chunks WHERE collection = ? AND content_hash = ? "
                "ORDER BY stored DESC LIMIT 4",
                (collection, content_hash),
            ).fetchall()
            if rows:
                found[content_hash] = [row[0] for row in rows]
        return found

    def all_chunk_ids(self, collection: str) -> set[str]:
        """Every chunk id recorded for a collection."""
        return {
            r[0]
            for r in self._db.execute("SELECT id FROM chunks WHERE collection = ?", (collection,))
        }

    def record_pending(
        self, collection: str, adding: Iterable[StoredChunk], deleting: Iterable[str]
    ) -> None:
        """Before writing: record the ids about to be stored, unmark those about to go.

        After this, every id that may be in Chroma is in the ledger, and `stored`
        is 1 only for chunks known to be in Chroma as recorded.
        """
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT(collection, id) DO "
                "UPDATE SET stored = 0",
                [(collection, c.id, _text(c.path), c.content_hash, c.meta_hash) for c in adding],
            )
            db.executemany(
                "UPDATE chunks SET stored = 0 WHERE collection = ? AND id = ?",
                [(collection, i) for i in deleting],
            )

    def record_applied(
        self,
        collection: str,
        *,
        written: Iterable[StoredChunk],
        deleted: Iterable[str],
        files: dict[str, tuple[str, int]],
        removed_files: Iterable[str],
        sizes: dict[str, int] | None = None,
    ) -> None:
        """After writing: mark written chunks stored (with their metadata hash), drop
        deleted ids, record files (path -> (key, chunks); `sizes`: path -> bytes, -1
        where absent) and forget removed files."""
        sizes = sizes or {}
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT(collection, id) DO "
                "UPDATE SET path=excluded.path, meta_hash=excluded.meta_hash, stored = 1",
                [(collection, c.id, _text(c.path), c.content_hash, c.meta_hash) for c in written],
            )
            db.executemany(
                "DELETE FROM chunks WHERE collection = ? AND id = ?",
                [(collection, i) for i in deleted],
            )
            db.executemany(
                "INSERT INTO files (collection, path, blob, chunks, size) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(collection, path) DO "
                "UPDATE SET blob=excluded.blob, chunks=excluded.chunks, size=excluded.size",
                [
                    (collection, _text(p), blob, n, sizes.get(p, -1))
                    for p, (blob, n) in files.items()
                ],
            )
            db.executemany(
                "DELETE FROM files WHERE collection = ? AND path = ?",
                [(collection, _text(p)) for p in removed_files],
            )

    def forget_collection(self, collection: str) -> None:
        """Drop every record of a collection (after the collection itself was dropped)."""
        with self.transaction() as db:
            db.execute("DELETE FROM chunks WHERE collection = ?", (collection,))
            db.execute("DELETE FROM files WHERE collection = ?", (collection,))

    def adopt(self, collections: dict[str, list[StoredChunk]], blob: str) -> None:
        """Replace every chunk and file record with what a store holds (an HA takeover).

        Each chunk is recorded as stored; each of its paths as a file with `blob`
        (a marker no real blob key equals), so the next ingest re-plans every file
        and finds the stored chunks by id instead of embedding them again.

        Args:
            collections: collection -> the chunks it holds (id, path, hashes).
            blob: The file record's blob marker.
        """
        with self.transaction() as db:
            db.execute("DELETE FROM chunks")
            db.execute("DELETE FROM files")
            for collection, chunks in collections.items():
                db.executemany(
                    "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, 1)",
                    [
                        (collection, c.id, _text(c.path), c.content_hash, c.meta_hash)
                        for c in chunks
                    ],
                )
                per_path: dict[str, int] = {}
                for c in chunks:
                    per_path[c.path] = per_path.get(c.path, 0) + 1
                db.executemany(
                    "INSERT OR REPLACE INTO files (collection, path, blob, chunks) "
                    "VALUES (?, ?, ?, ?)",
                    [(collection, _text(p), blob, n) for p, n in per_path.items()],
                )

    def store_identity(self) -> str:
        """The identity of the store the records describe ("" if none was recorded)."""
        return self.get(_STORE_KEY)

    def follow_store(self, identity: str) -> str:
        """Record which store the ledger describes; if it was another one, forget every
        domain's records so the next ingest fills the new store (instead of skipping
        every file as unchanged and leaving it empty). Returns the previous identity
        when the store moved, else "". The old store itself is left as it is."""
        recorded = self.get(_STORE_KEY)
        if recorded == identity:
            return ""
        moved = recorded if recorded else ""
        with self.transaction() as db:
            if moved:
                db.execute("DELETE FROM chunks")
                db.execute("DELETE FROM files")
                db.execute("DELETE FROM domains")
            db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                "value=excluded.value",
                (_STORE_KEY, _text(identity)),
            )
        return moved

    # --- free-form values (the daemon's applied commit, ...) -------------------------

    def get(self, key: str, default: str = "") -> str:
        """A stored value."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (_text(key),)).fetchone()
        return str(row[0]) if row else default

    def put(self, key: str, value: str) -> None:
        """Store a value."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                "value=excluded.value",
                (_text(key), _text(value)),
            )
