"""Chroma, embedded (PersistentClient) or a server (HttpClient), behind one small API.

Collections: one per knowledge domain and embedding setting, named
`botreg-<domain>-<first 10 hex digits of the embedding fingerprint>`: within
Chroma's rules (3-512 characters of [a-zA-Z0-9._-], starting and ending with a
letter or digit), and two models' vectors never share a collection.

Every write is split into batches of at most the client's `get_max_batch_size()`.

Compaction: Chroma never gives back the space of deleted chunks (an HNSW index
keeps them as tombstones), so a collection that lost most of its chunks is
copied into a new generation `<name>.g<N>` (ids, vectors, texts, metadata: no
re-embedding) and the old one is dropped; the embedded store leaves a dropped
collection's index folder on disk (chroma-core/chroma#5259), so those folders,
which no segment names any more, are removed too (`remove_orphan_segments`).

Recorded functions: Chroma records the embedding function a collection was
created with and refuses to open it with a function of another name. A function
that gives the same vectors under another name (botreg's all-MiniLM-L6-v2, for
collections that recorded Chroma's `onnx_mini_lm_l6_v2`) says so with
`recorded_as(name)`; such a collection is opened with that view, as it is,
without re-embedding (see `botreg.store.minilm_function`).

Settling: Chroma persists a collection's index every `sync_threshold` writes
(1000 by default) and logs the writes in between; a process that first touches
the collection replays that log into the index (0.5 to 1 ms a write: up to 0.7 s
before a one-file `botreg ingest` can write its one chunk). A new collection is
filled with Chroma's 1000 (flushing every 100 writes costs a bulk write about a
third more wall time); once a run has written it, `settle` lowers it to
`SETTLED_SYNC_THRESHOLD`, so later small runs replay at most that many writes
(Chroma's loaded index keeps the threshold it was loaded with, so the fill's
unflushed tail would be replayed once more: `botreg ingest` has it flushed when
it closes the store, `botreg.store.lean.flush_settled`; the daemon replays it
once when it restarts). A lower threshold is
kept; a store that refuses the change keeps its own (a warning: settling is an
optimisation, never a reason to fail a run whose writes landed).

Reopening: the embedded client (Chroma 1.5) keeps the index of every collection
it has loaded open, files and memory, until the client is closed, even after the
collection is dropped. `reopen()` closes the client and opens a new one on the
same folder, so a long-running process gets them back; the daemon does it after
a compaction dropped a collection, with its readers held off by a
`ReadWriteLock` meanwhile.
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botreg.datadir import disk_bytes
from botreg.errors import BotregError
from botreg.store.settings import StoreSettings
from botreg.validation.confinement import (
    StoreLock,
    StorePolicy,
    check_http_store,
    resolve_store_path,
    store_policy,
)

__all__ = [
    "SETTLED_SYNC_THRESHOLD",
    "ChromaStore",
    "CopyStoppedError",
    "ReadWriteLock",
    "StoreUnavailableError",
    "active_collection",
    "check_server",
    "collection_name",
    "next_generation",
    "settled",
]


SETTLED_SYNC_THRESHOLD = 100  # writes between index flushes once a collection is filled
_log = logging.getLogger(__name__)


def settled(configuration: Any) -> bool:
    """True if a collection's configuration (Chroma's JSON) needs no settling: its index
    flushes at most every `SETTLED_SYNC_THRESHOLD` writes (a lower threshold someone
    chose is kept), or it has no HNSW index (a distributed server's SPANN has no such
    threshold)."""
    hnsw = configuration.get("hnsw") if isinstance(configuration, dict) else None
    if not isinstance(hnsw, dict):
        return True
    threshold = hnsw.get("sync_threshold")
    return isinstance(threshold, int) and threshold <= SETTLED_SYNC_THRESHOLD


class StoreUnavailableError(BotregError):
    """The Chroma store cannot be opened or reached."""


def collection_name(domain: str, fingerprint: str) -> str:
    """The collection of a domain for one embedding setting (see the module docstring)."""
    return f"botreg-{domain}-{fingerprint[:10]}"


_GENERATION = re.compile(r"\.g(\d+)$")
# Chunks per batch of a compaction copy: a stop is noticed between batches, and a
# full client batch (5,461 chunks of 384 dimensions) took 3.5 s to copy, most of
# the 5 s a SIGTERM may take; 1,000 take about 0.6 s.
COPY_BATCH = 1000
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class CopyStoppedError(BotregError):
    """A collection copy was stopped (the daemon is stopping); the copy was dropped."""


def next_generation(name: str) -> str:
    """The name a compacted copy of collection `name` gets (`x` -> `x.g1` -> `x.g2`)."""
    found = _GENERATION.search(name)
    base = name[: found.start()] if found else name
    return f"{base}.g{int(found[1]) + 1 if found else 1}"


def active_collection(name: str, recorded: str) -> str:
    """The collection to write for `name`: `recorded` if it is a compacted generation of
    `name` (the ledger names the active one), else `name` itself."""
    found = _GENERATION.search(recorded)
    return recorded if found and recorded[: found.start()] == name else name


class ReadWriteLock:
    """Many readers at once, or one writer; a waiting writer holds new readers back.

    Guards a store's client: queries read (in parallel), a reopen writes (it
    swaps the client under them). Writers go first so that a steady stream of
    queries cannot starve a reopen; a write is short (close and open a client).
    Not reentrant: a reader must not read again inside its read.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    def acquire_read(self, timeout: float | None = None) -> bool:
        """Take a read share; False if a writer held the lock past `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: not self._writer and not self._waiting_writers, timeout
            ):
                return False
            self._readers += 1
            return True

    def release_read(self) -> None:
        """Give back a read share taken with `acquire_read`."""
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lock alone for the `with` block (waits for the readers to finish)."""
        with self._cond:
            self._waiting_writers += 1
            try:
                self._cond.wait_for(lambda: not self._writer and not self._readers)
            finally:
                self._waiting_writers -= 1
                self._cond.notify_all()  # readers held back by this writer re-check
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def _batches(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, start + size)


class ChromaStore:
    """A Chroma client with batched writes.

    The operator's policy confines it (see `botreg.validation.confinement`): an
    embedded store opens only inside the store root and is locked for as long
    as it is open; an http store that carries headers or any value of the
    operator's environment opens only on a host the operator named, and sends
    credentials over plain HTTP only to loopback (`check_http_store`). These
    checks hold even if validation was bypassed.
    """

    def __init__(
        self, settings: StoreSettings, data_dir: Path, policy: StorePolicy | None = None
    ) -> None:
        """Open the store an environment names.

        Args:
            settings: The environment's `knowledge.store`, variables expanded.
            data_dir: The data dir (relative store paths are below it by default).
            policy: The operator's policy; default: `store_policy()`.

        Raises:
            ConfinementError: for a store path outside the store root, the
                operator's values for a host the operator did not name, or
                credentials over plain HTTP beyond loopback.
            StoreLockedError: if another process holds the embedded store.
            StoreUnavailableError: if the store cannot be opened or reached.
        """
        import chromadb
        from chromadb.config import Settings

        policy = policy or store_policy()
        # No `.env` of the working directory (a registry checkout may hold one),
        # and no credentials from CHROMA_* variables: only what the environment
        # file says, checked below, reaches the client.
        chroma_settings = Settings(  # type: ignore[call-arg]  # pydantic-settings init keyword
            _env_file=None,
            anonymized_telemetry=False,
            chroma_client_auth_provider=None,
            chroma_client_auth_credentials=None,
        )
        self.settings = settings
        self._chroma_settings = chroma_settings  # for a reopen: the same client again
        # Called before every write (upsert, metadata update, delete, drop, copy): an HA
        # leader sets its fence here, so a deposed leader fails before it writes.
        self.before_write: Callable[[], None] | None = None
        # collections `settle` lowered since the store was opened (`flush_settled`)
        self.settled_now: list[str] = []
        self._lock: StoreLock | None = None
        check_server(settings, policy)
        try:
            if settings.type == "http":
                kwargs: dict[str, Any] = {}
                if settings.tenant:
                    kwargs["tenant"] = settings.tenant
                if settings.database:
                    kwargs["database"] = settings.database
                self.client = chromadb.HttpClient(
                    host=settings.host,
                    port=settings.port,
                    ssl=settings.ssl,
                    headers=settings.headers or None,
                    settings=chroma_settings,
                    **kwargs,
                )
                self.location = (
                    f"{'https' if settings.ssl else 'http'}://{settings.host}:{settings.port}"
                )
            else:
                # absolute and symlink-free: Chroma caches one client system per path string
                path = resolve_store_path(settings.path, data_dir, policy)
                path.mkdir(parents=True, exist_ok=True)
                # again on the created folder: a link may have appeared on the way
                path = resolve_store_path(str(path), data_dir, policy)
                self._lock = StoreLock(path, f"data dir {Path(data_dir).resolve()}")
                self.client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
                self.location = str(path)
            self.batch_size = max(1, int(self.client.get_max_batch_size()))
        except BotregError:
            self._release()
            raise
        except Exception as exc:  # connection refused, bad TLS, unreadable folder...
            self._release()
            where = f"{settings.host}:{settings.port}" if settings.type == "http" else settings.path
            raise StoreUnavailableError(f"cannot open the Chroma store at {where}: {exc}") from None

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def close(self) -> None:
        """Release the client (its database handles or HTTP connections) and the store lock."""
        # chromadb's HTTP component does not close its httpx session when stopped:
        # close it here so long-running processes do not leak connections.
        sessions = [
            getattr(getattr(owner, "_server", None), "_session", None)
            for owner in (self.client, getattr(self.client, "_admin_client", None))
        ]
        close_client = getattr(self.client, "close", None)
        if close_client is not None:
            close_client()
        for session in sessions:
            if session is not None:
                session.close()
        self._release()

    def reopen(self) -> bool:
        """Close the embedded client and open a new one on the same folder.

        Chroma keeps a dropped collection's loaded index (open files, memory)
        until its client closes, and the files of a removed index folder take
        disk space until then; a reopen gives them back without a restart. The
        store lock stays held throughout, so no other process can take the
        store in between. Nothing may use this store meanwhile (collection
        objects got before are stale): callers hold their readers off.

        Returns:
            True if the client was reopened; False for a server store (the
            server holds the indexes; there is nothing to give back here) or
            a chromadb client without `close`.

        Raises:
            StoreUnavailableError: if the new client cannot be opened (the
                store is then closed: open it again).
        """
        if self.settings.type == "http":
            return False
        import chromadb

        close = getattr(self.client, "close", None)  # Client.close: chromadb 1.x releases
        if close is None:  # an older client cannot let go: a restart gives it back
            return False
        close()  # the last reference to the path's shared System: it stops
        try:
            self.client = chromadb.PersistentClient(
                path=self.location, settings=self._chroma_settings
            )
        except Exception as exc:  # a folder that went away, a full disk...
            self._release()
            raise StoreUnavailableError(
                f"cannot reopen the Chroma store at {self.location}: {exc}"
            ) from None
        return True

    def collection(self, name: str, embedding_function: Any = None) -> Any:
        """Get or create a collection (cosine space).

        An existing collection that recorded another name for the same vectors is
        opened as it is (see "Recorded functions" in the module docstring).
        """

        def create(name: str, embedding_function: Any) -> Any:
            return self.client.get_or_create_collection(  # fresh dicts: Chroma fills them in
                name,
                embedding_function=embedding_function,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"created_by": "botreg"},
            )

        return self._open(name, embedding_function, create)

    def _open(self, name: str, function: Any, opener: Callable[..., Any]) -> Any:
        """`opener(name, embedding_function=function)`, or with the view of `function` under
        the name the collection recorded if Chroma refused `function`'s own name."""
        try:
            return opener(name, embedding_function=function)
        except ValueError:  # Chroma's "embedding function conflict" (or another refusal)
            recorded_as = getattr(function, "recorded_as", None)
            recorded = self.recorded_function(name) if recorded_as is not None else None
            view = recorded_as(recorded) if recorded_as is not None and recorded else None
            if view is None or view is function:
                raise
        return opener(name, embedding_function=view)

    def recorded_function(self, name: str) -> str | None:
        """The name of the embedding function collection `name` recorded (None: none, or
        no such collection)."""
        try:
            collection = self.client.get_collection(name, embedding_function=None)
        except Exception:  # no such collection (Chroma's NotFoundError is a ValueError)
            return None
        recorded = (collection.configuration_json or {}).get("embedding_function")
        found = recorded.get("name") if isinstance(recorded, dict) else None
        return str(found) if found else None

    def settle(self, collection: Any) -> None:
        """Lower a filled collection's index flush threshold (see "Settling" above).

        An optimisation: a store that refuses it keeps its threshold (logged as a
        warning) and the run's writes stand; the next run that writes tries again.
        """
        if settled(collection.configuration_json):
            return
        self._writing()
        try:
            collection.modify(configuration={"hnsw": {"sync_threshold": SETTLED_SYNC_THRESHOLD}})
        except Exception as exc:  # any refusal: Chroma's errors, HTTP errors
            _log.warning("collection %s keeps its index flush threshold: %s", collection.name, exc)
            return
        self.settled_now.append(str(collection.name))

    def has_collection(self, name: str) -> bool:
        """True if the collection exists."""
        return name in {c.name for c in self.client.list_collections()}

    def _writing(self) -> None:
        """The before-write hook (a fence check), if one is set."""
        if self.before_write is not None:
            self.before_write()

    def drop_collection(self, name: str) -> None:
        """Delete a collection if it exists."""
        if self.has_collection(name):
            self._writing()
            self.client.delete_collection(name)

    def upsert(
        self,
        collection: Any,
        ids: Sequence[str],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        embeddings: Sequence[Any],
    ) -> None:
        """Write chunks whole, in batches."""
        for part in _batches(len(ids), self.batch_size):
            self._writing()
            collection.upsert(
                ids=list(ids[part]),
                documents=list(documents[part]),
                metadatas=list(metadatas[part]),
                embeddings=list(embeddings[part]),
            )

    def update_metadata(
        self, collection: Any, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]
    ) -> None:
        """Replace chunk metadata (same key set) without touching text or vectors."""
        for part in _batches(len(ids), self.batch_size):
            self._writing()
            collection.update(ids=list(ids[part]), metadatas=list(metadatas[part]))

    def delete(self, collection: Any, ids: Sequence[str]) -> None:
        """Delete chunks by id, in batches (missing ids are ignored)."""
        for part in _batches(len(ids), self.batch_size):
            self._writing()
            collection.delete(ids=list(ids[part]))

    def embeddings(self, collection: Any, ids: Sequence[str]) -> dict[str, Any]:
        """Stored vectors by chunk id (ids not stored are absent)."""
        found: dict[str, Any] = {}
        for part in _batches(len(ids), self.batch_size):
            got = collection.get(ids=list(ids[part]), include=["embeddings"])
            found.update(zip(got["ids"], got["embeddings"], strict=True))
        return found

    def count(self, collection: Any) -> int:
        """Number of chunks in a collection."""
        return int(collection.count())

    def query(self, collection: Any, embedding: Any, k: int) -> list[dict[str, Any]]:
        """The k nearest chunks: id, text, metadata, distance."""
        got = collection.query(
            query_embeddings=[embedding],
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        return [
            {"id": i, "text": d, "metadata": m, "distance": float(dist)}
            for i, d, m, dist in zip(
                got["ids"][0],
                got["documents"][0],
                got["metadatas"][0],
                got["distances"][0],
                strict=True,
            )
        ]

    # --- compaction -----------------------------------------------------------------

    def copy_collection(
        self,
        source: str,
        target: str,
        embedding_function: Any = None,
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Copy every chunk of `source` into a new collection `target`, as stored.

        Ids, vectors, texts and metadata are copied in batches; nothing is
        embedded again. `target` is created (an existing one is dropped first: a
        copy a crash interrupted). Nothing may write to `source` meanwhile (the
        daemon copies between cycles).

        Args:
            source: The collection to copy.
            target: The new collection's name.
            embedding_function: The function the collection records (the one
                queries use), as when it was created.
            stop: Checked between batches (of at most `COPY_BATCH` chunks);
                when true, `CopyStoppedError` is raised at once and the partial
                copy is left as it is: dropping it can take longer than the
                copy so far (seconds for 20,000 chunks), time a stopping daemon
                has not got. The caller records it and drops it later.

        Returns:
            The number of chunks copied.

        Raises:
            CopyStoppedError: if `stop()` became true (the partial copy stays).
            StoreUnavailableError: if the copy does not hold what the source holds
                (the copy is dropped).
        """
        self._writing()
        self.drop_collection(target)
        origin = self._open(source, embedding_function, self.client.get_collection)
        copy = self.collection(target, embedding_function)
        size = max(1, min(self.batch_size, COPY_BATCH))
        copied = 0
        try:
            while True:
                if stop is not None and stop():
                    raise CopyStoppedError(f"copy of {source} stopped")
                got = origin.get(
                    limit=size,
                    offset=copied,
                    include=["embeddings", "documents", "metadatas"],
                )
                if not got["ids"]:
                    break
                self._writing()
                copy.upsert(
                    ids=got["ids"],
                    embeddings=got["embeddings"],
                    documents=got["documents"],
                    metadatas=got["metadatas"],
                )
                copied += len(got["ids"])
            # paging by offset is sound only if every id came exactly once
            if not copied == self.count(copy) == self.count(origin):
                raise StoreUnavailableError(
                    f"copy of {source} is incomplete ({self.count(copy)} of "
                    f"{self.count(origin)} chunks); the old collection stays"
                )
        except CopyStoppedError:
            raise  # prompt: the partial copy stays for the caller to drop later
        except Exception:
            self.drop_collection(target)
            raise
        return copied

    def disk_usage(self) -> int | None:
        """Bytes an embedded store takes on disk (None for a server)."""
        if self.settings.type == "http":
            return None
        return disk_bytes(Path(self.location))

    def remove_orphan_segments(self) -> int:
        """Remove the index folders of dropped collections (embedded store); returns bytes.

        A folder is removed only if its name is a segment id and the store's
        catalogue names no such segment. The folders are listed before the
        catalogue is read, so a collection created meanwhile is never touched.
        """
        if self.settings.type == "http":
            return 0
        root = Path(self.location)
        folders = [p for p in root.iterdir() if p.is_dir() and _UUID.fullmatch(p.name)]
        if not folders:
            return 0
        try:
            catalogue = sqlite3.connect(f"{(root / 'chroma.sqlite3').as_uri()}?mode=ro", uri=True)
            try:
                catalogue.execute("PRAGMA busy_timeout = 5000")
                known = {str(r[0]) for r in catalogue.execute("SELECT id FROM segments")}
            finally:
                catalogue.close()
        except sqlite3.Error:
            return 0  # cannot tell what is in use: remove nothing
        freed = 0
        for folder in folders:
            if folder.name not in known:
                size = disk_bytes(folder)
                shutil.rmtree(folder, ignore_errors=True)
                freed += size - (disk_bytes(folder) if folder.exists() else 0)
        return freed


def check_server(settings: StoreSettings, policy: StorePolicy) -> None:
    """Refuse an http store the operator's policy does not allow (no-op for an embedded one).

    Raises:
        BotregError: the host, scheme or credentials are not allowed (the message says which flag).
    """
    if settings.type == "http":
        check_http_store(
            settings.host,
            settings.port,
            ssl=settings.ssl,
            has_headers=bool(settings.headers),
            operator_vars=settings.operator_vars,
            policy=policy,
        )
