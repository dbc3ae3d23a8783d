"""`KnowledgeStore`: botreg's vector store as the seed's ingestion destination.

The seed ingests into a `RAGKnowledgeBase` and searches it with
`await kb.search(query, k=...)`. In botreg the destination is the Chroma store
an environment names, with the ledger beside it that makes ingestion
incremental: this class holds both and the embedding settings, and offers
the same `search` (hits have `.content`, `.path`, `.heading`, `.distance`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botreg.knowledge.ingest import QueryHit, query_domain
from botreg.knowledge.ledger import Ledger
from botreg.store.chroma import ChromaStore
from botreg.store.settings import EmbeddingSettings, KnowledgeSettings

__all__ = ["KnowledgeStore"]


class KnowledgeStore:
    """A Chroma store, its ledger and embedding: where ingested knowledge goes.

    Args:
        store: The opened Chroma store.
        ledger: The ledger of what the store holds.
        embedding: The embedding settings new chunks are embedded with.
        embedding_function: Use this function (tests count its calls).
    """

    def __init__(
        self,
        store: ChromaStore,
        ledger: Ledger,
        embedding: EmbeddingSettings,
        *,
        embedding_function: Any = None,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.embedding = embedding
        self.embedding_function = embedding_function

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        settings: KnowledgeSettings | None = None,
        *,
        embedding_function: Any = None,
    ) -> KnowledgeStore:
        """Open the store and ledger of a data dir (embedded store: `<data_dir>/chroma`).

        Args:
            data_dir: Where the ledger (and an embedded store) live.
            settings: Store and embedding (default: embedded store, `default` model).
            embedding_function: Use this function instead of building one.
        """
        settings = settings or KnowledgeSettings()
        root = Path(data_dir)
        root.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(root / "ledger.sqlite")
        try:
            store = ChromaStore(settings.store, root)
        except BaseException:
            ledger.close()
            raise
        return cls(store, ledger, settings.embedding, embedding_function=embedding_function)

    @classmethod
    async def from_config(cls, config: Mapping[str, Any]) -> KnowledgeStore:
        """The seed's `from_config`: `{"data_dir": ..., "store": {...}, "embedding": {...}}`.

        `store` and `embedding` take an environment file's `knowledge.store` and
        `knowledge.embedding` keys (e.g. `{"provider": "hash", "dimensions": 384}`
        for the built-in offline embedding).

        Args:
            config: The settings; `data_dir` defaults to `.botreg`.
        """
        section = {k: config[k] for k in ("store", "embedding") if k in config}
        settings = KnowledgeSettings.from_environment({"knowledge": section})
        data_dir = str(config.get("data_dir", ".botreg"))
        return await asyncio.to_thread(cls.open, data_dir, settings)

    def close(self) -> None:
        """Close the ledger and the store."""
        self.ledger.close()
        self.store.close()

    def domains(self) -> list[str]:
        """The domains ingested into this store."""
        return [state.domain for state in self.ledger.domains()]

    def query(self, query: str, k: int = 5, domain_id: str | None = None) -> list[QueryHit]:
        """The k chunks nearest to `query` (in one domain, or across every domain).

        Raises:
            BotregError: if `domain_id` was never ingested.
        """
        domains = [domain_id] if domain_id is not None else self.domains()
        hits: list[QueryHit] = []
        for domain in domains:
            hits.extend(
                query_domain(self.store, self.ledger, domain, query, k, self._function(domain))
            )
        return sorted(hits, key=lambda h: h.distance)[:k]

    async def search(self, query: str, k: int = 5, domain_id: str | None = None) -> list[QueryHit]:
        """The seed's `search`: `query` in a worker thread."""
        return await asyncio.to_thread(self.query, query, k, domain_id)

    def _function(self, domain: str) -> Any:
        state = self.ledger.domain(domain)
        if state is None or self.embedding_function is None:
            return None
        same = EmbeddingSettings.from_description(state.embedding) == self.embedding
        return self.embedding_function if same else None
