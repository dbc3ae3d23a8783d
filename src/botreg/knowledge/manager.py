"""`KnowledgeIngestionManager`: the seed's async ingestion, with events, on botreg's core.

    manager = KnowledgeIngestionManager(source=backend, destination=store, event_bus=bus)
    result = await manager.ingest("support")
    result = await manager.ingest_if_changed("support", last_version=seen)  # None: unchanged

One code path ingests: every run, async or not, is `DomainIngester.ingest`
(`botreg.knowledge.ingest`) over a registry tree, so nothing is embedded twice
and chunk ids are the same whoever ingests. The source is

- a `KnowledgeResourceBackend`: the git backend hands over its tree (blobs read
  directly); any other is wrapped as one (`BackendTree`);
- a registry tree (`RegistrySource` or `Snapshot`): what the sync daemon and
  `botreg ingest` pass, calling `ingest_sync` from their own threads.

The destination is a `KnowledgeStore` (store, ledger, embedding), or a
`ChromaStore` with `ledger=` and `embedding=`, or a callable that opens that
`ChromaStore` when a run first needs it (what `botreg ingest` passes: a run
that finds nothing to write never opens the store, nor imports Chroma). With an
`event_bus`, each async run publishes on `knowledge:ingestion` what the daemon's
CloudEvents carry: `EventType.UPDATED` with the result when every file ingested
(`botreg.knowledge.ingested`), `EventType.FAILED` with the result or the error
otherwise (`botreg.knowledge.ingest_failed`). A backend source also gets its
ingestion status: INGESTING, then READY or ERROR.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from botreg.errors import UsageError
from botreg.knowledge.backend_tree import BackendTree
from botreg.knowledge.destination import KnowledgeStore
from botreg.knowledge.ingest import DomainIngester, IngestionResult, QueryHit, StoreRef
from botreg.knowledge.ledger import IngestionStatus, Ledger
from botreg.knowledge.storage.errors import KnowledgeBaseNotFoundError
from botreg.knowledge.storage.git import GitKnowledgeBackend
from botreg.knowledge.storage.paths import check_domain
from botreg.knowledge.storage.protocol import KnowledgeResourceBackend
from botreg.registry.snapshot import Snapshot
from botreg.registry.source import RegistrySource
from botreg.store.chroma import ChromaStore
from botreg.store.settings import EmbeddingSettings

__all__ = ["KnowledgeIngestionManager"]

Tree = RegistrySource | Snapshot


class KnowledgeIngestionManager:
    """Ingests knowledge bases into botreg's store (see the module docstring).

    Args:
        source: A `KnowledgeResourceBackend`, or a registry tree.
        destination: A `KnowledgeStore`, or a `ChromaStore` or a callable opening one
            on first need (then `ledger` and `embedding` are required).
        event_bus: A seed event bus (`botreg.api.create_event_bus`): results are
            published on `knowledge:ingestion`.
        ledger: The ledger (overrides the destination's).
        embedding: The embedding settings (overrides the destination's).
        embedding_function: Use this function (tests count its calls).
        commit: The commit recorded in chunk metadata (default: the git source's).
        progress: Called with (phase, done, total) during long runs.
        max_chunks_per_file: A file that needs more chunks fails (None: the chunkers'
            `MAX_CHUNKS_PER_FILE`).
        on_embed: Called after each embedding batch with (texts, seconds).
        should_stop: Asked between batches; True ends the run (`IngestInterrupted`).

    Raises:
        UsageError: for a destination of another kind, or a `ChromaStore` without
            `ledger` and `embedding`.
    """

    def __init__(
        self,
        source: KnowledgeResourceBackend | Tree,
        destination: KnowledgeStore | StoreRef,
        event_bus: Any = None,
        *,
        ledger: Ledger | None = None,
        embedding: EmbeddingSettings | None = None,
        embedding_function: Any = None,
        commit: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        max_chunks_per_file: int | None = None,
        on_embed: Callable[[int, float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        store: StoreRef
        if isinstance(destination, KnowledgeStore):
            ledger = ledger or destination.ledger
            embedding = embedding or destination.embedding
            embedding_function = embedding_function or destination.embedding_function
            store = destination.store
        elif isinstance(destination, ChromaStore) or callable(destination):
            store = destination
        else:
            raise UsageError(
                f"destination must be a KnowledgeStore or a ChromaStore, not "
                f"{type(destination).__name__} (open one with KnowledgeStore.open(data_dir))"
            )
        if ledger is None or embedding is None:
            raise UsageError("a ChromaStore destination needs ledger= and embedding=")
        self.source = source
        self.store = store
        self.ledger = ledger
        self.embedding = embedding
        self.event_bus = event_bus
        self.commit = commit
        self._options: dict[str, Any] = {
            "progress": progress,
            "max_chunks_per_file": max_chunks_per_file,
            "on_embed": on_embed,
            "should_stop": should_stop,
        }
        self._function = embedding_function
        self._lock = threading.Lock()  # one run at a time: the ledger's connection is shared
        self._tree_core = (
            None if isinstance(source, KnowledgeResourceBackend) else self._core(source)
        )

    # --- the core ----------------------------------------------------------------------

    def _core(self, tree: Tree, commit: str = "") -> DomainIngester:
        core = DomainIngester(
            tree,
            self.store,
            self.ledger,
            self.embedding,
            embedding_function=self._function,
            commit=self.commit if self.commit is not None else commit,
            **self._options,
        )
        return core

    def _run(self, core: DomainIngester, domain_id: str, clear_existing: bool) -> IngestionResult:
        with self._lock:
            try:
                return core.ingest(domain_id, clear_existing)
            finally:
                self._function = self._function or core.proven_function  # built once

    def _git_core(self, source: GitKnowledgeBackend) -> DomainIngester:
        commit = source.commit()
        return self._core(source.registry_source(commit or None), commit)

    async def _prepare(self, domain_id: str) -> DomainIngester:
        """The core over the source's current tree (for a backend: of this domain)."""
        if self._tree_core is not None:
            return self._tree_core
        source = self.source
        assert isinstance(source, KnowledgeResourceBackend)
        check_domain(domain_id)
        if isinstance(source, GitKnowledgeBackend):
            return await asyncio.to_thread(self._git_core, source)
        files = await source.list_files(domain_id)
        tree = BackendTree(source, domain_id, files, asyncio.get_running_loop())
        return await asyncio.to_thread(self._core, tree)

    # --- the seed's async API ----------------------------------------------------------

    async def version(self, domain_id: str) -> str:
        """The source's version of a domain (a backend's checksum: git's tree id)."""
        if isinstance(self.source, KnowledgeResourceBackend):
            return await self.source.get_checksum(domain_id)
        core = await self._prepare(domain_id)
        return await asyncio.to_thread(core.domain_version, domain_id)

    async def ingest(self, domain_id: str, clear_existing: bool = False) -> IngestionResult:
        """Bring the store in line with a domain's files (only what changed is embedded).

        Args:
            domain_id: The knowledge base.
            clear_existing: Drop what the store holds for it first (all re-embedded).

        Returns:
            The result (`errors` lists the files that failed; the rest is ingested).

        Raises:
            KnowledgeBaseNotFoundError: if a backend source has no such knowledge base.
            BotregError: if the store or the embedding fails (a FAILED event is sent).
        """
        backend = self.source if isinstance(self.source, KnowledgeResourceBackend) else None
        if backend is not None:
            if await backend.get_info(check_domain(domain_id)) is None:
                raise KnowledgeBaseNotFoundError(f"knowledge base {domain_id!r} not found")
            await backend.set_ingestion_status(domain_id, IngestionStatus.INGESTING)
        try:
            version = await self.version(domain_id)
            core = await self._prepare(domain_id)
            result = await asyncio.to_thread(self._run, core, domain_id, clear_existing)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if backend is not None:
                await backend.set_ingestion_status(domain_id, IngestionStatus.ERROR, error)
            await self._publish("failed", {"domain": domain_id, "error": error})
            raise
        result.version = version
        if backend is not None:
            status = IngestionStatus.READY if result.success else IngestionStatus.ERROR
            error_text = "; ".join(f"{e['path']}: {e['message']}" for e in result.errors[:3])
            await backend.set_ingestion_status(domain_id, status, error_text or None)
        await self._publish("updated" if result.success else "failed", result.to_dict())
        return result

    async def ingest_if_changed(
        self, domain_id: str, last_version: str | None = None
    ) -> IngestionResult | None:
        """Ingest only if the domain changed; None when it did not.

        Args:
            domain_id: The knowledge base.
            last_version: A version seen before (`result.version`, `get_checksum`,
                `KnowledgeBaseInfo.version`). None: compare with what this store
                last ingested (the ledger), so an unchanged domain costs no read.
        """
        if last_version is not None:
            if await self.version(domain_id) == last_version:
                return None
        else:
            core = await self._prepare(domain_id)
            state = await asyncio.to_thread(self.ledger.domain, domain_id)
            if state is not None and state.status is IngestionStatus.READY:
                current = await asyncio.to_thread(core.domain_version, domain_id)
                if current == state.version:
                    return None
        return await self.ingest(domain_id)

    async def _publish(self, kind: str, payload: dict[str, Any]) -> None:
        if self.event_bus is None:
            return
        from botreg.api.events import KNOWLEDGE_TOPIC, Event, EventType

        event = Event(EventType(kind), KNOWLEDGE_TOPIC, payload, source="botreg.knowledge")
        await self.event_bus.publish(KNOWLEDGE_TOPIC, event)

    # --- the same runs for threads that own no loop (the daemon, `botreg ingest`) -------

    def _tree(self) -> DomainIngester:
        if self._tree_core is not None:
            return self._tree_core
        if isinstance(self.source, GitKnowledgeBackend):
            return self._git_core(self.source)
        raise UsageError(
            f"{type(self.source).__name__} is read on its event loop: use `await ingest()`"
        )

    def ingest_sync(self, domain_id: str, clear_existing: bool = False) -> IngestionResult:
        """`ingest` in the calling thread, without events (the daemon sends its own).

        For a registry tree or a git backend source.
        """
        return self._run(self._tree(), domain_id, clear_existing)

    def domains(self) -> list[str]:
        """The domains of the registry tree."""
        return self._tree().domains()

    def invalid_domains(self) -> list[str]:
        """Folders under knowledge/ whose names are not domains (reported, never ingested)."""
        return self._tree().invalid_domains()

    def domain_files(self, domain_id: str) -> list[str]:
        """The ingestible files of a domain of the registry tree."""
        return self._tree().domain_files(domain_id)

    def remove_domain(self, domain_id: str) -> int:
        """Drop a domain that is gone from the tree; returns the chunks dropped."""
        with self._lock:
            return self._tree().remove_domain(domain_id)

    def query(self, domain_id: str, text: str, k: int = 5) -> list[QueryHit]:
        """The k chunks of a domain nearest to `text`."""
        with self._lock:
            return self._tree().query(domain_id, text, k)
