"""Write an embedded store through Chroma's Rust core, without importing the chromadb package.

Why: importing chromadb costs about 0.6 s of CPU (pydantic models, telemetry,
signature checks of every class), twice the real work of a one-file `botreg
ingest`. The embedded store itself is Chroma's Rust core (`chromadb_rust_bindings`,
imported in 0.02 s), which the chromadb package only wraps: `LeanStore` calls
the same core with the same arguments the package's `RustBindingsAPI` passes.

When: only through `SwitchingStore`, which `StoreGate` gives `botreg ingest`
when the ledger is trusted (the store is as the last run left it, see
`botreg.knowledge.gate`), the store is embedded, the provider is built in
(`botreg.store.builtin`) and the installed chromadb is a version these calls
were tested on (`TESTED_CHROMA`; tests/test_lean_store.py writes both ways and
compares everything stored). Otherwise the full `ChromaStore` is opened, as before.

What it does: write, update, delete and read back chunks of a collection that
exists and recorded the provider's function. Anything else (creating a
collection, one that recorded another function, dropping one, a query) switches
to a full `ChromaStore`: the lean handle is closed first, so one store folder
never has two writers, and collection handles given out before stay valid.
"""

from __future__ import annotations

import json
import logging
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botreg.store.chroma import SETTLED_SYNC_THRESHOLD, ChromaStore, settled
from botreg.store.settings import EmbeddingSettings, StoreSettings
from botreg.validation.confinement import StoreLock, StorePolicy

__all__ = [
    "TESTED_CHROMA",
    "AnyStore",
    "LeanCollection",
    "LeanStore",
    "SwitchingStore",
    "UntestedCoreError",
    "flush_settled",
    "lean_available",
]

_log = logging.getLogger(__name__)
# chromadb releases (major.minor) whose Rust core takes the calls below.
TESTED_CHROMA = ("1.5",)
_TENANT, _DATABASE = "default_tenant", "default_database"  # PersistentClient's
_CALLS = (
    "list_collections", "upsert", "update", "delete", "get", "count", "get_max_batch_size",
    "update_collection",
)  # fmt: skip
# The function names a collection may record for each built-in provider's vectors.
_RECORDED = {"hash": {"botreg_hash"}, "default": {"botreg_minilm_l6_v2", "onnx_mini_lm_l6_v2"}}


class UntestedCoreError(Exception):
    """The installed Chroma core is not a release the lean store was tested on (it is not
    opened; the caller opens the full store)."""


def lean_available() -> bool:
    """True if Chroma's Rust core is installed with the calls the lean store makes (its
    release is checked before the core is opened: `UntestedCoreError`)."""
    try:
        import chromadb_rust_bindings  # type: ignore[import-untyped]
    except ImportError:
        return False
    return all(hasattr(chromadb_rust_bindings.Bindings, call) for call in _CALLS)


def _chroma_release(core_file: Path) -> str:
    """The installed chromadb release, from the metadata folder beside its core.

    Not the core's `get_version()` (it imports the chromadb package), nor
    `importlib.metadata` (it scans every installed package: 40 ms).
    """
    site = core_file.resolve().parent.parent
    found = sorted(site.glob("chromadb-*.dist-info"))
    if len(found) == 1:
        return found[0].name[len("chromadb-") : -len(".dist-info")]
    import importlib.metadata

    try:
        return importlib.metadata.version("chromadb")
    except importlib.metadata.PackageNotFoundError:
        return ""  # not known: not a tested release


@dataclass(frozen=True)
class LeanCollection:
    """A collection of the store, as the lean store knows it."""

    name: str
    id: str
    function: str  # the embedding function's name the collection recorded ("" if none)
    settled: bool  # its index flush threshold is botreg's (see botreg.store.chroma)


def _batches(count: int, size: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, count, size)]


class LeanStore:
    """An embedded store's collections, read and written through Chroma's Rust core.

    Args:
        folder: The store folder (absolute, symlink-free, inside the store root).
        owner: Who holds the store lock (shown to a process that finds it held).

    Raises:
        StoreLockedError: if another process holds the store.
        UntestedCoreError: if the installed core is not of a tested release.
    """

    def __init__(self, folder: Path, owner: str) -> None:
        import chromadb_rust_bindings as core

        # before any call: another release's core may take other arguments, or other data
        version = _chroma_release(Path(core.__file__))
        if ".".join(version.split(".")[:2]) not in TESTED_CHROMA:
            raise UntestedCoreError(f"Chroma core {version or '?'} (tested: {TESTED_CHROMA})")
        self.location = str(folder)
        self._lock: StoreLock | None = StoreLock(folder, owner)
        try:
            config = core.SqliteDBConfig(
                hash_type=core.MigrationHash.MD5,
                migration_mode=core.MigrationMode.Apply,
                url=str(folder / "chroma.sqlite3"),
            )
            self._core: Any = core.Bindings(
                allow_reset=False,
                sqlite_db_config=config,
                persist_path=str(folder),
                hnsw_cache_size=100,
            )
            self.batch_size = max(1, int(self._core.get_max_batch_size()))
        except BaseException:
            self.close()
            raise

    def find(self, name: str) -> LeanCollection | None:
        """The collection named `name`, or None if the store has none."""
        # listed rather than fetched: the core reports a missing one with chromadb's
        # exception class, which would import the whole package
        for found in self._core.list_collections(None, 0, _TENANT, _DATABASE):
            if found.name == name:
                configuration = found.configuration or {}
                recorded = configuration.get("embedding_function")
                function = recorded.get("name") if isinstance(recorded, dict) else None
                return LeanCollection(
                    name, str(found.id), str(function or ""), settled(configuration)
                )
        return None

    def upsert(
        self,
        collection: LeanCollection,
        ids: Sequence[str],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        embeddings: Sequence[Any],
    ) -> None:
        """Write chunks whole, in batches."""
        for part in _batches(len(ids), self.batch_size):
            self._core.upsert(
                collection.id,
                list(ids[part]),
                [[float(x) for x in vector] for vector in embeddings[part]],
                list(metadatas[part]),
                list(documents[part]),
                None,
                _TENANT,
                _DATABASE,
            )

    def update_metadata(
        self, collection: LeanCollection, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]
    ) -> None:
        """Replace chunk metadata (same key set) without touching text or vectors."""
        for part in _batches(len(ids), self.batch_size):
            self._core.update(
                collection.id, list(ids[part]), None, list(metadatas[part]), None, None,
                _TENANT, _DATABASE,
            )  # fmt: skip

    def delete(self, collection: LeanCollection, ids: Sequence[str]) -> None:
        """Delete chunks by id, in batches (missing ids are ignored)."""
        for part in _batches(len(ids), self.batch_size):
            self._core.delete(collection.id, list(ids[part]), None, None, None, _TENANT, _DATABASE)

    def embeddings(self, collection: LeanCollection, ids: Sequence[str]) -> dict[str, Any]:
        """Stored vectors by chunk id (ids not stored are absent)."""
        found: dict[str, Any] = {}
        for part in _batches(len(ids), self.batch_size):
            got = self._core.get(
                collection.id, list(ids[part]), None, None, 0, None, ["embeddings"],
                _TENANT, _DATABASE,
            )  # fmt: skip
            found.update(zip(got.ids, got.embeddings, strict=True))
        return found

    def count(self, collection: LeanCollection) -> int:
        """Number of chunks in a collection."""
        return int(self._core.count(collection.id, _TENANT, _DATABASE))

    def settle(self, collection: LeanCollection) -> bool:
        """Lower the collection's index flush threshold (see `ChromaStore.settle`); True if
        it was lowered now."""
        if collection.settled:
            return False
        # the JSON the chromadb package sends for `modify(configuration=...)`
        update = {"hnsw": {"sync_threshold": SETTLED_SYNC_THRESHOLD}, "spann": None,
                  "embedding_function": None}  # fmt: skip
        self._core.update_collection(collection.id, None, None, json.dumps(update))
        return True

    def close(self) -> None:
        """Release the core (its database handle and loaded indexes) and the store lock."""
        self._core = None  # the core closes when its last reference goes
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class SwitchingStore:
    """`ChromaStore`'s interface for one ingestion: lean while it can be, full when needed.

    Args:
        settings: The environment's `knowledge.store` (embedded).
        data_dir: The data dir.
        policy: The operator's policy.
        folder: The store folder, resolved and confined.
        function: The built-in provider's plain function (`botreg.store.builtin`).
        embedding: The settings `function` was built from.

    Raises:
        StoreLockedError: if another process holds the store.
        UntestedCoreError: if the installed core is not of a tested release.
    """

    def __init__(
        self,
        settings: StoreSettings,
        data_dir: Path,
        policy: StorePolicy,
        folder: Path,
        function: Callable[[Sequence[str]], list[Any]],
        embedding: EmbeddingSettings,
    ) -> None:
        self.settings = settings
        self._data_dir = data_dir
        self._policy = policy
        self._embedding = embedding
        self.builtin_function = function
        self.location = str(folder)
        self._lean: LeanStore | None = LeanStore(folder, f"data dir {Path(data_dir).resolve()}")
        self._full: ChromaStore | None = None
        self._handles: dict[str, Any] = {}  # collection name -> the full store's handle
        self._settled_lean: list[str] = []

    @property
    def lean(self) -> bool:
        """True while writes go through the lean store."""
        return self._lean is not None

    def full(self) -> ChromaStore:
        """The full store, opened now (closing the lean one first) if it is not yet."""
        if self._full is None:
            from botreg.store.chroma import ChromaStore

            if self._lean is not None:
                self._lean.close()
                self._lean = None
            self._full = ChromaStore(self.settings, self._data_dir, self._policy)
        return self._full

    def _chroma_function(self, function: Any) -> Any:
        """The registered twin of a plain built-in function (Chroma records it)."""
        if function is self.builtin_function:
            from botreg.store.embedding import build_embedding_function

            return build_embedding_function(self._embedding, self._policy)
        return function

    def _resolve(self, collection: Any) -> Any:
        """A handle of the full store for any handle given out (lean ones included)."""
        if isinstance(collection, LeanCollection):
            handle = self._handles.get(collection.name)
            if handle is None:
                function = self._chroma_function(self.builtin_function)
                handle = self.full().collection(collection.name, function)
                self._handles[collection.name] = handle
            return handle
        return collection

    def _try_lean(self, call: Callable[[LeanStore], Any]) -> tuple[bool, Any]:
        """(True, what `call` returned) if the lean store made it; (False, None) if the
        full store must.

        A call the core refuses by its arguments (a TypeError, raised before it does
        anything: a chromadb release whose core takes other arguments) switches to the
        full client for the rest of the run.
        """
        if self._lean is None:
            return False, None
        try:
            return True, call(self._lean)
        except TypeError as exc:
            _log.warning("Chroma's core refused a call (%s): writing through chromadb", exc)
            self.full()
            return False, None

    def _via_lean(self, collection: Any, call: Callable[[LeanStore], Any]) -> tuple[bool, Any]:
        """`_try_lean` for a call on a collection handle the lean store gave out."""
        if not isinstance(collection, LeanCollection):
            return False, None
        return self._try_lean(call)

    def collection(self, name: str, embedding_function: Any = None) -> Any:
        """The collection `name`: a lean handle if it exists with the provider's function."""
        _, found = self._try_lean(lambda lean: lean.find(name))
        if found is not None and found.function in _RECORDED.get(self._embedding.provider, ()):
            return found
        handle = self.full().collection(name, self._chroma_function(embedding_function))
        self._handles[name] = handle
        return handle

    def upsert(
        self,
        collection: Any,
        ids: Sequence[str],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        embeddings: Sequence[Any],
    ) -> None:
        """Write chunks whole, in batches."""
        done, _ = self._via_lean(
            collection, lambda lean: lean.upsert(collection, ids, documents, metadatas, embeddings)
        )
        if done:
            return
        # the chromadb package takes lists or numpy arrays, not the built-in `array`s
        vectors = [list(v) if isinstance(v, array) else v for v in embeddings]
        self.full().upsert(self._resolve(collection), ids, documents, metadatas, vectors)

    def update_metadata(
        self, collection: Any, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]
    ) -> None:
        """Replace chunk metadata (same key set) without touching text or vectors."""
        done, _ = self._via_lean(
            collection, lambda lean: lean.update_metadata(collection, ids, metadatas)
        )
        if not done:
            self.full().update_metadata(self._resolve(collection), ids, metadatas)

    def delete(self, collection: Any, ids: Sequence[str]) -> None:
        """Delete chunks by id, in batches (missing ids are ignored)."""
        done, _ = self._via_lean(collection, lambda lean: lean.delete(collection, ids))
        if not done:
            self.full().delete(self._resolve(collection), ids)

    def embeddings(self, collection: Any, ids: Sequence[str]) -> dict[str, Any]:
        """Stored vectors by chunk id (ids not stored are absent)."""
        done, found = self._via_lean(collection, lambda lean: lean.embeddings(collection, ids))
        return found if done else self.full().embeddings(self._resolve(collection), ids)

    def count(self, collection: Any) -> int:
        """Number of chunks in a collection."""
        done, found = self._via_lean(collection, lambda lean: lean.count(collection))
        return int(found) if done else self.full().count(self._resolve(collection))

    def settle(self, collection: Any) -> None:
        """Lower a filled collection's index flush threshold (see `ChromaStore.settle`)."""
        done, lowered = self._via_lean(collection, lambda lean: lean.settle(collection))
        if done and lowered:
            self._settled_lean.append(collection.name)
        elif not done:
            self.full().settle(self._resolve(collection))

    @property
    def settled_now(self) -> list[str]:
        """Collections settled since the store was opened (see `flush_settled`)."""
        return self._settled_lean + (self._full.settled_now if self._full is not None else [])

    def drop_collection(self, name: str) -> None:
        """Delete a collection if it exists (through the full store)."""
        self._handles.pop(name, None)
        self.full().drop_collection(name)

    def query(self, collection: Any, embedding: Any, k: int) -> list[dict[str, Any]]:
        """The k nearest chunks (through the full store)."""
        return self.full().query(self._resolve(collection), embedding, k)

    def close(self) -> None:
        """Close whichever store is open."""
        if self._lean is not None:
            self._lean.close()
            self._lean = None
        if self._full is not None:
            self._full.close()


# What ingestion and queries write and read through: either store has the same methods.
AnyStore = ChromaStore | SwitchingStore


# chunk ids are 40 hex digits (botreg.knowledge.plan): deleting this one changes nothing
_NO_SUCH_ID = "botreg-no-such-chunk"


def flush_settled(folder: Path, owner: str, names: Sequence[str]) -> None:
    """Have Chroma write to disk the indexes of collections settled by a run now closed.

    A process keeps the flush threshold an index had when it loaded it, so the run
    that filled and settled a collection leaves up to 999 writes logged, which the
    next process would replay before its first write (0.3 to 0.7 s at 20,000
    chunks). A fresh core loads the index at the settled threshold, and deleting an
    id that no chunk has (nothing changes) makes it replay the log and flush.

    An optimisation: anything that stops it (an untested core, a store held by
    another process) leaves the log for the next run to replay.

    Args:
        folder: The embedded store's folder (closed by the caller).
        owner: Who holds the store lock meanwhile.
        names: The collections settled.
    """
    try:
        store = LeanStore(folder, owner)
    except Exception as exc:  # UntestedCoreError, StoreLockedError, a core of another release
        _log.debug("the settled collections' logs stay for the next run: %s", exc)
        return
    try:
        for name in names:
            found = store.find(name)
            if found is not None:
                store.delete(found, [_NO_SUCH_ID])
    except Exception as exc:  # the core refused: an optimisation only
        _log.debug("the settled collections' logs stay for the next run: %s", exc)
    finally:
        store.close()
