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

Changed files are planned and written in groups of about 2,048 chunks
(`botreg.knowledge.stream`), so a full ingest's memory does not grow with the
domain; files gone from the tree are deleted after every group, so a renamed
folder reuses its vectors. A paragraph moved between two changed files that
fall into different groups may be embedded again (see that module).

Chunk ids are derived from the domain, the file path and the chunk text (plus
its occurrence, for a text repeated within one file), so they are stable
(`botreg.knowledge.plan`).

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

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botreg.knowledge.ledger import DomainState, IngestionStatus, Ledger
from botreg.knowledge.names import (
    domain_folder,
    escape_controls,
    folder_files,
    valid_domain,
)
from botreg.knowledge.outcome import IngestInterrupted, IngestionResult
from botreg.knowledge.plan import PlannedChunk, chunk_id, plan_file
from botreg.knowledge.query import QueryHit, query_domain
from botreg.knowledge.scan import DomainScan, domain_version, scan_domain
from botreg.knowledge.stream import EmbedObserver, Progress, StreamedApply
from botreg.registry.snapshot import Snapshot
from botreg.registry.source import RegistrySource
from botreg.registry.view import RegistryView
from botreg.store.chroma import ChromaStore, active_collection, collection_name
from botreg.store.lean import AnyStore, SwitchingStore
from botreg.store.settings import EmbeddingSettings

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

# The store, or what opens it when first needed (`botreg ingest` passes an opener, so
# a run with nothing to write never imports Chroma).
# (a `SwitchingStore` writes without importing Chroma: see botreg.store.lean)
StoreRef = AnyStore | Callable[[], AnyStore]


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

    def _plan_file(self, domain: str, path: str, blob: str) -> list[PlannedChunk]:
        """A changed file's planned chunks (see `botreg.knowledge.plan.plan_file`)."""
        return plan_file(
            self.snapshot,
            domain,
            path,
            blob,
            commit=self.commit,
            max_chunks=self.max_chunks_per_file,
        )

    def _apply(
        self, domain: str, collection_id: str, scan: DomainScan, result: IngestionResult
    ) -> None:
        """Write the scan's changes, a group of files at a time (`botreg.knowledge.stream`)."""
        StreamedApply(
            self.ledger,
            lambda: self.store,
            lambda: self.store.collection(collection_id, self._function_object()),
            self.embedding_function,
            lambda path: self._plan_file(domain, path, scan.blobs[path]),
            progress=self._progress,
            on_embed=self._on_embed,
            should_stop=self._should_stop,
        ).run(collection_id, scan, result)

    # --- embedding and queries ---------------------------------------------------------

    def _function_object(self) -> Any:
        """The embedding function, built but not yet run (collections record it)."""
        if self._function is None:
            # a lean store's writes embed with the built-in provider's own code (same
            # vectors), so that a one-file run never imports Chroma
            # (the store is opened first: only a write needs the function)
            builtin = getattr(self.store, "builtin_function", None)
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
