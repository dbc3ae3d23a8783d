"""What bench/ingest.py compares botreg with, on the same corpus, chunks and embedding.

- LangChain's indexing API: `index()` with a SQL record manager and
  langchain-chroma, in `incremental` mode (pip install langchain-classic
  langchain-chroma sqlalchemy greenlet). It has no change detection of its own:
  every run chunks every file and hands all the documents over.
- A bare Chroma upsert: botreg's records (chunk ids, texts, the same metadata
  keys), embedded and upserted in batches of 256 as botreg embeds them, nothing
  else (no ledger, no change detection): the floor of a full ingest.

Each runs in this process (`LangChainRun`, `bare_upsert`) or as a whole
process (`python bench/rivals.py langchain|bare ROOT DATA`, one step per
process, printing {"embedded": N, "stored": N} as JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from botreg.knowledge.chunkers import chunk_file
from botreg.knowledge.ingest import chunk_id
from botreg.registry.settings import ChunkingSettings, Limits
from botreg.registry.source import git_blob_id
from botreg.store.embedding import HashEmbeddingFunction

DIMENSIONS = 384  # the template's development embedding: botreg's hash function


class Counting(HashEmbeddingFunction):
    """The hash embedding, counting texts."""

    def __init__(self, dimensions: int = DIMENSIONS, ngram_max: int = 2) -> None:
        super().__init__(dimensions, ngram_max)
        self.texts = 0

    def __call__(self, input: Any) -> Any:
        self.texts += len(input)
        return super().__call__(input)


def corpus_chunks(root: Path) -> list[tuple[str, str, str]]:
    """(path, chunk id, text) of every chunk of the corpus, as botreg chunks it."""
    return [(meta["path"], i, text) for i, text, meta in corpus_records(root)]


def corpus_records(root: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(chunk id, text, metadata) of every chunk, as botreg stores them (the same keys)."""
    out = []
    for path in sorted((root / "knowledge" / "docs").rglob("*.md")):
        rel = path.relative_to(root).as_posix()
        raw = path.read_bytes()
        blob = git_blob_id(raw)
        seen: dict[str, int] = {}
        for c in chunk_file(rel, raw, ChunkingSettings(), Limits()):
            occurrence = seen.get(c.content_hash, 0)
            seen[c.content_hash] = occurrence + 1
            meta = {
                "domain": "docs",
                "path": rel,
                "commit": "",
                "blob": blob,
                "heading": c.heading,
                "chunk_index": c.index,
                "content_hash": c.content_hash,
                "file_type": "markdown",
                "front_matter": str(c.metadata.get("front_matter", "")),
                "title": str(c.metadata.get("title", "")),
            }
            out.append((chunk_id("docs", rel, c.content_hash, occurrence), c.text, meta))
    return out


def _client(data: Path) -> Any:
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(
        path=str(data / "chroma"), settings=Settings(anonymized_telemetry=False)
    )


class LangChainRun:
    """LangChain's `index()` over one data dir, kept open across steps."""

    def __init__(self, data: Path) -> None:
        from langchain_chroma import Chroma
        from langchain_classic.indexes import SQLRecordManager
        from langchain_core.embeddings import Embeddings

        function = self.function = Counting()

        class Wrapped(Embeddings):
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return [list(map(float, v)) for v in function(texts)]

            def embed_query(self, text: str) -> list[float]:
                return list(map(float, function([text])[0]))

        self.client = _client(data)
        self.store = Chroma(
            collection_name="langchain-docs",
            embedding_function=Wrapped(),
            client=self.client,
            collection_configuration={"hnsw": {"space": "cosine"}},
        )
        self.records = SQLRecordManager(
            "chroma/docs", db_url=f"sqlite:///{data / 'records.sqlite'}"
        )
        self.records.create_schema()

    def step(self, root: Path) -> tuple[int, int]:
        """Index the corpus as it is now: (texts embedded, chunks stored)."""
        from langchain_classic.indexes import index
        from langchain_core.documents import Document

        before = self.function.texts
        docs = [  # index() needs every document: it has no change detection
            Document(page_content=text, metadata={"source": path})
            for path, _id, text in corpus_chunks(root)
        ]
        index(
            docs,
            self.records,
            self.store,
            cleanup="incremental",
            source_id_key="source",
            key_encoder="sha256",
        )
        stored = int(self.client.get_collection("langchain-docs").count())
        return self.function.texts - before, stored


def bare_upsert(root: Path, data: Path) -> tuple[int, int]:
    """Chunk, embed and upsert the whole corpus: (texts embedded, chunks stored)."""
    function = Counting()
    client = _client(data)
    collection = client.get_or_create_collection(
        "bare-docs", configuration={"hnsw": {"space": "cosine"}}
    )
    records = corpus_records(root)
    batch = max(1, min(int(client.get_max_batch_size()), 256))
    for start in range(0, len(records), batch):
        part = records[start : start + batch]
        collection.upsert(
            ids=[i for i, _t, _m in part],
            documents=[t for _i, t, _m in part],
            metadatas=[m for _i, _t, m in part],
            embeddings=function([t for _i, t, _m in part]),
        )
    return function.texts, int(collection.count())


def main(argv: list[str]) -> int:
    """One step as a whole process: `langchain|bare ROOT DATA`."""
    kind, root, data = argv[0], Path(argv[1]), Path(argv[2])
    if kind == "langchain":
        embedded, stored = LangChainRun(data).step(root)
    else:
        embedded, stored = bare_upsert(root, data)
    print(json.dumps({"embedded": embedded, "stored": stored}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
