"""Ingest knowledge domains into Chroma, incrementally to the chunk.

Embedding is the expensive step, so nothing is embedded twice:

- an unchanged file (same git blob and size) is skipped without being read, and
  a domain whose files are all unchanged never opens the store (nor imports
  Chroma: the store is opened on first need, see `StoreRef`);
- a changed file is chunked again; chunks whose id is already stored are kept
  (only their metadata is updated if it changed), vanished chunks are deleted;
- a new chunk whose text is stored anywhere in the collection (a renamed or
  copied file, a moved paragraph) reuses that vector;
- only the remaining texts are sent to the embedding function, once each.

Chunk ids are derived from the domain, the file path and the chunk text (plus
its occurrence, for a text repeated within one file), so they are stable.

Ingestion applies the same bounds as validation (`snapshot.settings.limits`:
file size, decompressed size, ratio) plus the chunkers' bounds; a file over one
fails alone, with the limit named, and the rest of the domain is ingested. A
domain or file whose name breaks the rules (a control character, a domain that
is not an identifier) never reaches the store: it is reported as failed.
See `botreg.knowledge.ledger` for how a crash at any point converges.

New chunks are embedded and written batch by batch, each batch recorded in the
ledger as it lands: a stop asked between batches (`should_stop`) ends the
ingestion with `IngestInterrupted`, and the next run embeds only what is
missing (a file's blob is recorded once all its chunks are in; until then the
file is re-chunked, which is cheap, and its stored chunks are kept).

`DomainIngester` is that core, synchronous, over one registry tree. Applications,
the daemon and `botreg ingest` drive it through the seed's
`botreg.knowledge.KnowledgeIngestionManager` (async, with events; `ingest_sync`
for threads that own their loop), so one code path ingests. The old name
`botreg.knowledge.ingest.KnowledgeIngestionManager` still names the core here
for existing callers; new code uses the manager.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botreg.knowledge.ledger import DomainState, IngestionStatus, Ledger, StoredChunk
from botreg.knowledge.names import (
    domain_folder,
    escape_controls,
    folder_files,
    valid_domain,
)
from botreg.knowledge.scan import DomainScan, domain_version, scan_domain
from botreg.registry.content import ContentError
from botreg.registry.layout import knowledge_type
from botreg.registry.snapshot import Snapshot
from botreg.registry.source import RegistrySource
from botreg.registry.view import RegistryView
from botreg.secrets import locate_token
from botreg.store.chroma import ChromaStore, active_collection, collection_name
from botreg.store.lean import SwitchingStore
from botreg.store.settings import EmbeddingSettings

if TYPE_CHECKING:  # the chunkers cost 0.1 s to import: only a changed file needs them
    from botreg.knowledge.chunkers import Chunk

__all__ = [
    "DomainIngester",
    "IngestInterrupted",
    "IngestionResult",
    "IngestionStatus",
    "KnowledgeIngestionManager",
    "QueryHit",
    "StoreRef",
    "chunk_id",
    "query_domain",
]

Progress = Callable[[str, int, int], None]  # (phase, done, total)
# The store, or what opens it when first needed (`botreg ingest` passes an opener, so
# a run with nothing to write never imports Chroma).
# (a `SwitchingStore` writes without importing Chroma: see botreg.store.lean)
AnyStore = ChromaStore | SwitchingStore
StoreRef = AnyStore | Callable[[], AnyStore]
EmbedObserver = Callable[[int, float], None]  # (texts in the batch, seconds it took)
_EMBED_BATCH = 256
_WRITE_BATCH = 1024  # chunks whose vectors are reused: written (and stop-checked) this many a time


class IngestInterrupted(Exception):  # noqa: N818 - a stop asked for, not an error
    """A stop was asked for between batches: what was written is stored and recorded.

    Not a `BotregError`: the cycle it ends is interrupted, not failed.
    """


@dataclass
class IngestionResult:
    """What one ingestion of a domain did (names follow the seed)."""

    domain_id: str
    files_processed: int = 0
    files_skipped: int = 0
    chunks_created: int = 0
    chunks_deleted: int = 0
    chunks_unchanged: int = 0
    chunks_embedded: int = 0  # texts sent to the embedding function: the bill
    # One per failed file: path (control characters escaped) and message.
    errors: list[dict[str, str]] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    completed_at: datetime | None = None
    version: str = ""  # the source's version ingested (set by the seed-style manager)

    @property
    def success(self) -> bool:
        """True if every file ingested."""
        return not self.errors

    @property
    def duration_seconds(self) -> float | None:
        """Wall time of the ingestion, once completed."""
        if self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "domain_id": self.domain_id,
            "files_processed": self.files_processed,
            "files_skipped": self.files_skipped,
            "chunks_created": self.chunks_created,
            "chunks_deleted": self.chunks_deleted,
            "chunks_unchanged": self.chunks_unchanged,
            "chunks_embedded": self.chunks_embedded,
            "errors": self.errors,
            "started_at": self.started_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "success": self.success,
            "duration_seconds": self.duration_seconds,
            **({"version": self.version} if self.version else {}),
        }


@dataclass(frozen=True, slots=True)
class QueryHit:
    """One ranked chunk of a query."""

    id: str
    path: str
    heading: str
    text: str
    distance: float
    metadata: dict[str, Any]

    @property
    def content(self) -> str:
        """The chunk's text (the seed's name for it)."""
        return self.text


@dataclass(slots=True)
class _Planned:
    """A chunk of the new state of a file, with its id and full metadata."""

    id: str
    chunk: Chunk
    metadata: dict[str, Any]

    @property
    def meta_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.metadata, sort_keys=True).encode()).hexdigest()

    def record(self, path: str) -> StoredChunk:
        return StoredChunk(self.id, path, self.chunk.content_hash, self.meta_hash)


def chunk_id(domain: str, path: str, content_hash: str, occurrence: int) -> str:
    """The stable id of a chunk."""
    key = f"{domain}\0{path}\0{content_hash}\0{occurrence}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


class DomainIngester:
    """Ingests the knowledge domains of a registry tree into a Chroma store (the core).

    Args:
        source: The registry tree (working tree or git revision), or a `Snapshot`
            of it (its loaded documents are shared).
        store: The Chroma store, or a callable that opens it (called once, when a
            domain first needs the store: a run that writes nothing never calls it).
        ledger: The ledger beside the store.
        embedding: The environment's embedding settings.
        embedding_function: Use this function instead of building one from the
            settings (tests wrap one to count calls); built lazily otherwise.
        commit: The commit being ingested, recorded in chunk metadata.
        progress: Called with (phase, done, total) during long runs.
        max_chunks_per_file: A file that needs more chunks fails (an operator ceiling;
            None: the chunkers' `MAX_CHUNKS_PER_FILE`).
        on_embed: Called after each batch sent to the embedding function with the
            number of texts and the seconds it took (the daemon's metrics).
        should_stop: Asked between batches; True ends the ingestion with `IngestInterrupted`.
    """

    def __init__(
        self,
        source: RegistrySource | Snapshot,
        store: StoreRef,
        ledger: Ledger,
        embedding: EmbeddingSettings,
        *,
        embedding_function: Any = None,
        commit: str = "",
        progress: Progress | None = None,
        max_chunks_per_file: int | None = None,
        on_embed: EmbedObserver | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.snapshot = source if isinstance(source, Snapshot) else Snapshot(source)
        self.view = RegistryView(self.snapshot)  # file selection: the daemon's and review's
        self._store = store if isinstance(store, ChromaStore | SwitchingStore) else None
        self._open_store = None if isinstance(store, ChromaStore | SwitchingStore) else store
        self.ledger = ledger
        self.embedding = embedding
        self.commit = commit
        self._function = embedding_function
        self._proven = embedding_function is not None  # a given function is the caller's
        self._progress = progress or (lambda _phase, _done, _total: None)
        self.max_chunks_per_file = max_chunks_per_file
        self._on_embed = on_embed
        self._should_stop = should_stop or (lambda: False)

    @property
    def store(self) -> AnyStore:
        """The store (opened now if it was given as an opener and not opened yet)."""
        if self._store is None:
            assert self._open_store is not None
            self._store = self._open_store()
        return self._store

    # --- what is there -----------------------------------------------------------------

    def domains(self) -> list[str]:
        """The knowledge domains of the registry tree."""
        return self.view.domains()

    def domain_files(self, domain_id: str) -> list[str]:
        """The ingestible files of a domain (see `RegistryView.domain_files`).

        Raises:
            DomainConfigError: if the domain's `_domain.yaml` cannot be read.
        """
        return self.view.domain_files(domain_id)

    def domain_version(self, domain_id: str) -> str:
        """A version of a domain's content and embedding: equal versions, equal stores."""
        files = self.domain_files(domain_id)
        blobs = {path: self.snapshot.source.blob_id(path) for path in files}
        return domain_version(self.embedding.fingerprint, files, blobs)

    # --- ingestion ---------------------------------------------------------------------

    def ingest_if_changed(self, domain_id: str, last_version: str | None) -> IngestionResult | None:
        """Ingest only if the domain's version differs from `last_version` (None: unchanged)."""
        if last_version and self.domain_version(domain_id) == last_version:
            return None
        return self.ingest(domain_id)

    def ingest(self, domain_id: str, clear_existing: bool = False) -> IngestionResult:
        """Bring the store in line with the domain's files.

        Args:
            domain_id: The domain (a folder under knowledge/).
            clear_existing: Drop the domain's collection first (everything is embedded again).
        """
        if not valid_domain(domain_id):
            return self._refuse_domain(domain_id)
        result = IngestionResult(domain_id)
        state = self.ledger.domain(domain_id)
        name = collection_name(domain_id, self.embedding.fingerprint)
        # a compacted generation of it (see botreg.store.chroma) stays the one written
        collection_id = active_collection(name, state.collection if state else "")
        previous = state.collection if state and state.collection != collection_id else None
        if clear_existing:
            self.store.drop_collection(collection_id)
            self.ledger.forget_collection(collection_id)
        try:
            scan = scan_domain(self.view, self.ledger, domain_id, collection_id)
        except BaseException as exc:  # an unreadable _domain.yaml: recorded as a failed run
            self._begin(domain_id, state, previous, collection_id)
            self.ledger.set_status(domain_id, IngestionStatus.ERROR, f"{type(exc).__name__}: {exc}")
            raise
        # every file as recorded, in the collection the domain is served from: nothing to do
        # (no store, no ledger write unless the commit moved)
        if (
            scan.unchanged
            and not clear_existing
            and state is not None
            and state.collection == collection_id
            and state.status is IngestionStatus.READY
        ):
            return self._unchanged(state, scan, result)
        self._begin(domain_id, state, previous, collection_id)
        try:
            self._apply(domain_id, collection_id, scan, result)
            if result.chunks_created or result.chunks_deleted:
                # cheap cold writes from now on (see "Settling" in botreg.store.chroma)
                self.store.settle(self.store.collection(collection_id, self._function_object()))
        except IngestInterrupted:
            # not an error: the finished batches are recorded and the next run resumes
            self.ledger.set_status(
                domain_id, IngestionStatus.PENDING, "interrupted by a stop; resumes on the next run"
            )
            raise
        except BaseException as exc:
            self.ledger.set_status(domain_id, IngestionStatus.ERROR, f"{type(exc).__name__}: {exc}")
            raise
        result.completed_at = datetime.now(UTC)
        version = domain_version(self.embedding.fingerprint, scan.files, scan.blobs)
        if result.errors:
            summary = "; ".join(f"{e['path']}: {e['message']}" for e in result.errors[:3])
            more = f" (+{len(result.errors) - 3} more)" if len(result.errors) > 3 else ""
            error = f"{len(result.errors)} file(s) failed: {summary}{more}"
            if previous:  # do not switch models while files are missing from the new one
                self.ledger.set_status(domain_id, IngestionStatus.ERROR, error)
                return result
            self.ledger.set_domain(
                domain_id,
                collection=collection_id,
                embedding=self.embedding.describe(),
                status=IngestionStatus.ERROR,
                error=error,
                version=version,
                commit=self.commit,
            )
            return result
        self.ledger.set_domain(
            domain_id,
            collection=collection_id,
            embedding=self.embedding.describe(),
            status=IngestionStatus.READY,
            version=version,
            commit=self.commit,
        )
        if previous:  # the new collection is complete: the old model's goes
            self.store.drop_collection(previous)
            self.ledger.forget_collection(previous)
        return result

    def _begin(
        self, domain_id: str, state: DomainState | None, previous: str | None, collection_id: str
    ) -> None:
        """Record a run under way (queries keep the old model's collection until done)."""
        self.ledger.set_domain(
            domain_id,
            collection=previous or collection_id,
            embedding=state.embedding if previous and state else self.embedding.describe(),
            status=IngestionStatus.INGESTING,
            version=state.version if state else "",
            commit=state.commit if state else "",
        )

    def _unchanged(
        self, state: DomainState, scan: DomainScan, result: IngestionResult
    ) -> IngestionResult:
        """The result of a domain found unchanged: nothing is read, nothing written to the
        store; the ledger is written only if its row differs (a new commit, say)."""
        result.files_skipped = len(scan.files)
        result.completed_at = datetime.now(UTC)
        version = domain_version(self.embedding.fingerprint, scan.files, scan.blobs)
        embedding = self.embedding.describe()
        if (state.version, state.commit, state.embedding) != (version, self.commit, embedding):
            self.ledger.set_domain(
                state.domain,
                collection=state.collection,
                embedding=embedding,
                status=IngestionStatus.READY,
                version=version,
                commit=self.commit,
            )
        return result

    def invalid_domains(self) -> list[str]:
        """Folders under knowledge/ whose names are not identifiers: never ingested, reported."""
        folders = {domain_folder(path) for path in self.snapshot.entries}
        return sorted(f for f in folders if f is not None and not valid_domain(f))

    def _refuse_domain(self, domain_id: str) -> IngestionResult:
        """A domain whose folder name is not an identifier: every file fails, nothing is stored.

        No collection name or ledger row can hold such a name (`billing\\n`), and a
        look-alike of a real domain must not be served in its place.
        """
        shown = escape_controls(domain_id)
        result = IngestionResult(shown)
        message = (
            f"invalid domain name '{shown}': not ingested; rename knowledge/{shown}/ using "
            "lowercase letters, digits, '_' and '-' (at most 63 characters)"
        )
        paths = folder_files(self.snapshot.entries, domain_id)
        for path in paths or [f"knowledge/{domain_id}/"]:
            result.errors.append({"path": escape_controls(path), "message": message})
        result.completed_at = datetime.now(UTC)
        return result

    def remove_domain(self, domain_id: str) -> int:
        """Drop a domain that no longer exists (collection and records); returns chunks dropped."""
        state = self.ledger.domain(domain_id)
        if state is None:
            return 0
        dropped = len(self.ledger.all_chunk_ids(state.collection))
        self.store.drop_collection(state.collection)
        self.ledger.forget_collection(state.collection)
        self.ledger.forget_domain(domain_id)
        return dropped

    def _metadata(
        self, domain: str, path: str, blob: str, chunk: Chunk, ftype: str
    ) -> dict[str, Any]:
        # Always the same keys: Chroma merges metadata on update, so a fixed key
        # set is what makes each write replace the metadata whole.
        return {
            "domain": domain,
            "path": path,
            "commit": self.commit,
            "blob": blob,
            "heading": chunk.heading,
            "chunk_index": chunk.index,
            "content_hash": chunk.content_hash,
            "file_type": ftype,
            "front_matter": str(chunk.metadata.get("front_matter", "")),
            "title": str(chunk.metadata.get("title", "")),
        }

    def _plan_file(self, domain: str, path: str, blob: str) -> list[_Planned]:
        from botreg.knowledge.chunkers import chunk_file
        from botreg.knowledge.chunkers.base import MAX_CHUNKS_PER_FILE

        limits = self.snapshot.settings.limits
        size = self.snapshot.entries[path].size
        if size > limits.max_file_bytes:  # refused before it is read
            raise ContentError(
                "BR504",
                f"{size} bytes, over the limit of {limits.max_file_bytes} "
                "(limits.max_file_bytes); split the file",
            )
        raw = self.snapshot.source.read(path)
        ktype = knowledge_type(path)
        ftype = ktype.kind if ktype else "unknown"
        chunks = chunk_file(
            path,
            raw,
            self.snapshot.settings.chunking,
            limits,
            max_chunks=(
                MAX_CHUNKS_PER_FILE
                if self.max_chunks_per_file is None
                else self.max_chunks_per_file
            ),
        )
        # A credential in knowledge would be served to whoever can query: validation
        # reports it (BR303); `botreg ingest` runs without validation, so refuse it here
        # too. Checked on the joined texts: a key split over chunks is still one key.
        found = locate_token("\n".join(c.text for c in chunks), generic=False)
        if found is not None and found[0] != "password in URL":
            raise ContentError(
                "BR303",
                f"holds an inline credential ({found[0]}): not ingested; remove it from the "
                "file, then rotate the credential",
            )
        seen: dict[str, int] = {}
        planned = []
        for chunk in chunks:
            occurrence = seen.get(chunk.content_hash, 0)
            seen[chunk.content_hash] = occurrence + 1
            planned.append(
                _Planned(
                    chunk_id(domain, path, chunk.content_hash, occurrence),
                    chunk,
                    self._metadata(domain, path, blob, chunk, ftype),
                )
            )
        return planned

    def _apply(
        self, domain: str, collection_id: str, scan: DomainScan, result: IngestionResult
    ) -> None:
        for path in scan.refused:  # never stored (validation reports it as BR403): say so
            result.errors.append(
                {
                    "path": escape_controls(path),
                    "message": "file name with a control character: not ingested; rename the file",
                }
            )
        changed, removed = scan.changed, scan.removed
        result.files_skipped = len(scan.files) - len(changed)
        prior = self.ledger.chunks_of(collection_id, changed + removed)
        # a collection the ledger knows nothing of may still hold chunks (a ledger started
        # afresh beside a filled store, a store another data dir filled): ask for them all
        unknown = not self.ledger.knows_collection(collection_id)

        adds: list[tuple[str, _Planned]] = []
        maybe_stored: set[str] = set()  # ids of adds that a crashed write may have stored
        updates: list[tuple[str, _Planned]] = []
        deletes: list[str] = []
        done_files: dict[str, tuple[str, int]] = {}
        for number, path in enumerate(changed, 1):
            self._progress("chunking", number, len(changed))
            try:
                planned = self._plan_file(domain, path, scan.blobs[path])
            except (ContentError, OSError) as exc:
                message = exc.message if isinstance(exc, ContentError) else str(exc)
                result.errors.append({"path": path, "message": message})
                continue  # its previous chunks stay: the last good version keeps serving
            old = {c.id: c for c in prior.get(path, [])}
            new_ids = {p.id for p in planned}
            for item in planned:
                before = old.get(item.id)
                if before is None or not before.stored:
                    adds.append((path, item))
                    if before is not None or unknown:
                        maybe_stored.add(item.id)
                elif before.meta_hash != item.meta_hash:
                    updates.append((path, item))
                else:
                    result.chunks_unchanged += 1
            deletes.extend(i for i in old if i not in new_ids)
            done_files[path] = (scan.keys[path], len(planned))
            result.files_processed += 1
        for path in removed:
            deletes.extend(c.id for c in prior.get(path, []))
        result.chunks_unchanged += len(updates)

        if adds:
            collection = self.store.collection(collection_id, self._function_object())
            self._write_adds(collection, collection_id, adds, maybe_stored, result)
        self._check_stop()
        if updates or deletes:  # the store is opened only when there is something to change
            collection = self.store.collection(collection_id, self._function_object())
            self.ledger.record_pending(collection_id, [], deletes)
            if updates:
                self.store.update_metadata(
                    collection, [i.id for _, i in updates], [i.metadata for _, i in updates]
                )
            if deletes:
                self.store.delete(collection, deletes)
        self.ledger.record_applied(
            collection_id,
            written=[item.record(path) for path, item in updates],
            deleted=deletes,
            files=done_files,
            removed_files=removed,
            sizes={path: scan.sizes[path] for path in done_files},
        )
        result.chunks_created = len(adds)
        result.chunks_deleted = len(deletes)

    def _check_stop(self) -> None:
        if self._should_stop():
            raise IngestInterrupted("ingestion interrupted by a stop")

    def _write(
        self,
        collection: Any,
        collection_id: str,
        items: list[tuple[str, _Planned]],
        vectors: dict[str, Any],
    ) -> None:
        """Write new chunks whose vectors are known, recorded before and after (see ledger)."""
        self.ledger.record_pending(collection_id, [item.record(path) for path, item in items], [])
        self.store.upsert(
            collection,
            [item.id for _, item in items],
            [item.chunk.text for _, item in items],
            [item.metadata for _, item in items],
            [vectors[item.chunk.content_hash] for _, item in items],
        )
        self.ledger.record_applied(
            collection_id,
            written=[item.record(path) for path, item in items],
            deleted=[],
            files={},
            removed_files=[],
        )

    def _write_adds(
        self,
        collection: Any,
        collection_id: str,
        adds: list[tuple[str, _Planned]],
        maybe_stored: set[str],
        result: IngestionResult,
    ) -> None:
        """Write every new chunk: reused vectors first, then one embedding batch at a time.

        Each batch is stored and recorded before the next is embedded, and a stop is
        checked between batches: an interrupted run loses at most the batch under way.
        """
        if not adds:
            return
        by_hash: dict[str, list[tuple[str, _Planned]]] = {}
        for path, item in adds:
            by_hash.setdefault(item.chunk.content_hash, []).append((path, item))
        vectors = self._reusable(collection, collection_id, [i for _, i in adds], maybe_stored)
        ready = [pair for h in by_hash if h in vectors for pair in by_hash[h]]
        for start in range(0, len(ready), _WRITE_BATCH):
            self._check_stop()
            self._write(collection, collection_id, ready[start : start + _WRITE_BATCH], vectors)
        missing = [h for h in by_hash if h not in vectors]
        if not missing:
            return
        self._check_stop()
        function = self.embedding_function()
        for start in range(0, len(missing), _EMBED_BATCH):
            self._check_stop()
            self._progress("embedding", start, len(missing))
            hashes = missing[start : start + _EMBED_BATCH]
            started = time.monotonic()
            embedded = function([by_hash[h][0][1].chunk.text for h in hashes])
            if self._on_embed is not None:  # the bill and the latency, per batch
                self._on_embed(len(hashes), time.monotonic() - started)
            result.chunks_embedded += len(hashes)
            vectors.update(zip(hashes, embedded, strict=True))
            self._write(collection, collection_id, [p for h in hashes for p in by_hash[h]], vectors)
        self._progress("embedding", len(missing), len(missing))

    def _reusable(
        self, collection: Any, collection_id: str, adds: list[_Planned], maybe_stored: set[str]
    ) -> dict[str, Any]:
        """Vectors for new chunks' texts that the store already holds (by content hash)."""
        needed = {item.chunk.content_hash for item in adds}
        # Candidates: recorded chunks with the same text, and the chunk's own id when it
        # may be stored: recorded as maybe stored (a write that a crash interrupted may
        # have landed), or in a collection the ledger knows nothing of. Otherwise an id
        # the ledger does not know is not in the store (see the ledger).
        # The store says which hold a vector; with no candidate it is not asked at all
        # (a read loads the collection's whole index: most of a one-file edit's time).
        candidates = self.ledger.ids_by_hash(collection_id, needed)
        for item in adds:
            if item.id in maybe_stored:
                candidates.setdefault(item.chunk.content_hash, []).append(item.id)
        wanted = sorted({ref for refs in candidates.values() for ref in refs})
        if not wanted:
            return {}
        found = self.store.embeddings(collection, wanted)
        vectors: dict[str, Any] = {}
        for content_hash, refs in candidates.items():
            for ref in refs:
                if found.get(ref) is not None:
                    vectors[content_hash] = found[ref]
                    break
        return vectors

    # --- embedding and queries ---------------------------------------------------------

    def _function_object(self) -> Any:
        """The embedding function, built but not yet run (collections record it)."""
        if self._function is None:
            # a lean store's writes embed with the built-in provider's own code (same
            # vectors), so that a one-file run never imports Chroma
            builtin = getattr(self._store, "builtin_function", None)
            if builtin is not None:
                self._function = builtin
            else:
                from botreg.store.embedding import build_embedding_function

                self._function = build_embedding_function(self.embedding)
        return self._function

    @property
    def proven_function(self) -> Any:
        """The embedding function if it was built and proven, else None (nothing built)."""
        return self._function if self._proven else None

    def embedding_function(self) -> Any:
        """The embedding function, proven to work before its first real use."""
        function = self._function_object()
        if not self._proven:
            from botreg.store.builtin import preflight

            preflight(function, self.embedding)
            self._proven = True
        return function

    def query(self, domain_id: str, text: str, k: int = 5) -> list[QueryHit]:
        """The k chunks of a domain nearest to `text` (in its active collection).

        Raises:
            BotregError: if the domain was never ingested.
        """
        state = self.ledger.domain(domain_id)
        same = (
            state is not None
            and EmbeddingSettings.from_description(state.embedding) == self.embedding
        )
        return query_domain(
            self.store, self.ledger, domain_id, text, k, self.embedding_function() if same else None
        )


# The core's former name, for existing callers (the public manager is in botreg.knowledge).
KnowledgeIngestionManager = DomainIngester


def query_domain(
    store: AnyStore, ledger: Ledger, domain_id: str, text: str, k: int, function: Any = None
) -> list[QueryHit]:
    """The k chunks of a domain nearest to `text`, embedded as the domain was.

    Args:
        store: The store.
        ledger: The ledger (which collection and embedding the domain has).
        domain_id: The domain.
        text: The query.
        k: How many results.
        function: The embedding function to use (built from the ledger if None).

    Raises:
        BotregError: if the domain was never ingested.
    """
    from botreg.errors import BotregError
    from botreg.store.embedding import create_embedding_function

    state = ledger.domain(domain_id)
    if state is None:
        known = ", ".join(d.domain for d in ledger.domains()) or "none"
        raise BotregError(f"domain {domain_id!r} has not been ingested (ingested: {known})")
    if function is None:
        function = create_embedding_function(EmbeddingSettings.from_description(state.embedding))
    collection = store.collection(state.collection, function)
    [vector] = function([text])
    return [
        QueryHit(
            h["id"],
            str(h["metadata"].get("path", "")),
            str(h["metadata"].get("heading", "")),
            h["text"],
            h["distance"],
            dict(h["metadata"]),
        )
        for h in store.query(collection, vector, k)
    ]
