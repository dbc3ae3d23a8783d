"""Helpers for ingestion tests: a counting embedding function and store inspection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from botreg.knowledge.chunkers import chunk_file
from botreg.knowledge.ingest import KnowledgeIngestionManager
from botreg.knowledge.ledger import Ledger
from botreg.registry.settings import ChunkingSettings, Limits
from botreg.registry.source import WorkingTreeSource
from botreg.store.chroma import ChromaStore
from botreg.store.embedding import HashEmbeddingFunction
from botreg.store.settings import EmbeddingSettings, StoreSettings


class CountingHash(HashEmbeddingFunction):
    """The hash function, counting the texts it embeds."""

    def __init__(self, dimensions: int = 64, ngram_max: int = 2) -> None:
        super().__init__(dimensions, ngram_max)
        self.texts = 0

    def __call__(self, input: Any) -> Any:
        self.texts += len(input)
        return super().__call__(input)


class Harness:
    """A registry folder, a data dir, and managers over them."""

    def __init__(
        self, repo: Path, data: Path, store: StoreSettings | None = None, dimensions: int = 64
    ) -> None:
        self.repo, self.data = repo, data
        self.store = ChromaStore(store or StoreSettings(), data)
        self.ledger = Ledger(data / "ledger.sqlite")
        self.function = CountingHash(dimensions)
        self.embedding = EmbeddingSettings("hash", {"dimensions": dimensions})

    def manager(self, **kwargs: Any) -> KnowledgeIngestionManager:
        return KnowledgeIngestionManager(
            WorkingTreeSource(self.repo),
            self.store,
            self.ledger,
            self.embedding,
            embedding_function=self.function,
            **kwargs,
        )

    def ingest(self, domain: str, **kwargs: Any) -> Any:
        before = self.function.texts
        result = self.manager().ingest(domain, **kwargs)
        assert result.chunks_embedded == self.function.texts - before  # the count is the bill
        return result

    def stored(self, domain: str) -> set[tuple[str, str]]:
        """(path, text) of every chunk in the domain's active collection."""
        state = self.ledger.domain(domain)
        assert state is not None
        got = self.store.collection(state.collection, self.function).get(
            include=["documents", "metadatas"]
        )
        return {(m["path"], d) for d, m in zip(got["documents"], got["metadatas"], strict=True)}

    def expected(self, domain: str) -> set[tuple[str, str]]:
        """(path, text) of every chunk the domain's files produce now."""
        out = set()
        for path in self.manager().domain_files(domain):
            raw = (self.repo / path).read_bytes()
            for chunk in chunk_file(path, raw, ChunkingSettings(), Limits()):
                out.add((path, chunk.text))
        return out

    def expected_counts(self, domain: str) -> Counter[tuple[str, str]]:
        """(path, text) of the tree's chunks, with a text repeated in a file counted per use."""
        out: Counter[tuple[str, str]] = Counter()
        for path in self.manager().domain_files(domain):
            raw = (self.repo / path).read_bytes()
            out.update((path, c.text) for c in chunk_file(path, raw, ChunkingSettings(), Limits()))
        return out

    def assert_exact(self, domain: str) -> None:
        """The store holds exactly the chunks of the tree: nothing stale, nothing missing,
        no duplicates; the ledger agrees."""
        state = self.ledger.domain(domain)
        assert state is not None
        collection = self.store.collection(state.collection, self.function)
        got = collection.get(include=["documents", "metadatas"])
        pairs = [(m["path"], d) for d, m in zip(got["documents"], got["metadatas"], strict=True)]
        assert Counter(pairs) == self.expected_counts(domain)  # no duplicate, none missing
        assert set(got["ids"]) == self.ledger.all_chunk_ids(state.collection)
