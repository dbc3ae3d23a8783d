"""Benchmark incremental ingestion against LangChain's indexing API.

Usage: python bench/ingest.py [--files 2000] [--sections 10]

Builds a corpus of Markdown files (2,000 files, about 20,000 chunks), then runs
five steps with the `hash` provider behind a counting wrapper: full ingest,
re-ingest with no change, one paragraph edited, one file renamed, one file
deleted. Side by side on the same corpus, the same chunks and the same edits:
LangChain's `index()` with a SQL record manager and langchain-chroma, in
`incremental` mode (pip install langchain-classic langchain-chroma sqlalchemy
greenlet; without them only botreg runs).

Targets: no change, rename and delete embed zero texts and need no full pass;
one paragraph embeds at most two; each incremental step at least 50 times
faster than the full ingest; the full ingest no slower than LangChain's.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
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

WORDS = (
    "refund invoice plan seat workspace project automation export billing customer support "
    "policy shortcut release feature limit account payment card transfer approval guest "
    "history version template member role permission audit report schedule reminder"
).split()


class Counting(HashEmbeddingFunction):
    """The hash embedding, counting texts."""

    def __init__(self, dimensions: int = 384, ngram_max: int = 2) -> None:
        super().__init__(dimensions, ngram_max)
        self.texts = 0

    def __call__(self, input: Any) -> Any:
        self.texts += len(input)
        return super().__call__(input)


def paragraph(rnd: random.Random) -> str:
    sentences = []
    for _ in range(rnd.randint(3, 5)):
        words = [rnd.choice(WORDS) for _ in range(rnd.randint(8, 14))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def build_corpus(root: Path, files: int, sections: int) -> None:
    (root / "knowledge" / "docs").mkdir(parents=True)
    (root / "registry.yaml").write_text("format_version: 1\n")
    for i in range(files):
        rnd = random.Random(i)
        body = [f"# Document {i}\n"]
        for s in range(sections):
            body.append(f"## Section {s} of document {i}\n\n{paragraph(rnd)}\n")
        folder = root / "knowledge" / "docs" / f"part-{i % 20:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"doc-{i:05d}.md").write_text("\n".join(body))


def edit_one_paragraph(root: Path) -> None:
    path = root / "knowledge/docs/part-07/doc-00007.md"
    text = path.read_text()
    path.write_text(
        text.replace(
            "## Section 3 of document 7\n\n",
            "## Section 3 of document 7\n\nAn edited opening sentence. ",
            1,
        )
    )


def rename_one(root: Path) -> None:
    (root / "knowledge/docs/part-08/doc-00008.md").rename(root / "knowledge/docs/part-08/moved.md")


def delete_one(root: Path) -> None:
    (root / "knowledge/docs/part-09/doc-00009.md").unlink()


STEPS = [
    ("full ingest", None),
    ("re-ingest, no change", lambda root: None),
    ("one paragraph edited", edit_one_paragraph),
    ("one file renamed", rename_one),
    ("one file deleted", delete_one),
]


def run_botreg(root: Path, data: Path) -> list[tuple[float, int, int]]:
    function = Counting()
    store = ChromaStore(StoreSettings(path="chroma"), data)
    ledger = Ledger(data / "ledger.sqlite")
    out = []
    for _name, change in STEPS:
        if change:
            change(root)
        before = function.texts
        start = time.perf_counter()
        manager = KnowledgeIngestionManager(
            WorkingTreeSource(root),
            store,
            ledger,
            EmbeddingSettings("hash", {"dimensions": 384}),
            embedding_function=function,
        )
        manager.ingest("docs")
        seconds = time.perf_counter() - start
        state = ledger.domain("docs")
        assert state is not None
        stored = store.count(store.collection(state.collection, function))
        out.append((seconds, function.texts - before, stored))
    ledger.close()
    return out


def corpus_chunks(root: Path) -> list[tuple[str, str]]:
    """(path, text) of every chunk of the corpus, as botreg chunks it."""
    out = []
    for path in sorted((root / "knowledge" / "docs").rglob("*.md")):
        rel = path.relative_to(root).as_posix()
        out += [
            (rel, c.text) for c in chunk_file(rel, path.read_bytes(), ChunkingSettings(), Limits())
        ]
    return out


def chunk_documents(root: Path) -> list[Any]:
    from langchain_core.documents import Document

    return [
        Document(page_content=text, metadata={"source": path}) for path, text in corpus_chunks(root)
    ]


def run_langchain(root: Path, data: Path) -> list[tuple[float, int, int]] | None:
    try:
        from langchain_chroma import Chroma
        from langchain_classic.indexes import SQLRecordManager, index
        from langchain_core.embeddings import Embeddings
    except ImportError as exc:
        print(f"LangChain comparison skipped ({exc})")
        return None

    function = Counting()

    class Wrapped(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [list(map(float, v)) for v in function(texts)]

        def embed_query(self, text: str) -> list[float]:
            return list(map(float, function([text])[0]))

    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(
        path=str(data / "chroma"), settings=Settings(anonymized_telemetry=False)
    )
    store = Chroma(
        collection_name="langchain-docs",
        embedding_function=Wrapped(),
        client=client,
        collection_configuration={"hnsw": {"space": "cosine"}},
    )
    manager = SQLRecordManager("chroma/docs", db_url=f"sqlite:///{data / 'records.sqlite'}")
    manager.create_schema()
    out = []
    for _name, change in STEPS:
        if change:
            change(root)
        before = function.texts
        start = time.perf_counter()
        docs = chunk_documents(root)  # index() needs the documents: it has no change detection
        index(
            docs,
            manager,
            store,
            cleanup="incremental",
            source_id_key="source",
            key_encoder="sha256",
        )
        seconds = time.perf_counter() - start
        stored = client.get_collection("langchain-docs").count()
        out.append((seconds, function.texts - before, stored))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--sections", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="botreg-ingest-bench-"))
    try:
        build_corpus(work / "a", args.files, args.sections)
        shutil.copytree(work / "a", work / "b")
        ours = run_botreg(work / "a", work / "data-a")
        theirs = run_langchain(work / "b", work / "data-b")
        expected = len(corpus_chunks(work / "a"))
        print(
            f"\ncorpus: {args.files} Markdown files, {ours[0][1]} chunks at the start; "
            f"{expected} chunks expected at the end\n"
        )
        header = f"| {'step':<22} | {'botreg s':>9} | {'embedded':>8} | {'stored':>6} |"
        rule = f"|{'-' * 24}|{'-' * 11}|{'-' * 10}|{'-' * 8}|"
        if theirs:
            header += f" {'LangChain s':>11} | {'embedded':>8} | {'stored':>6} |"
            rule += f"{'-' * 13}|{'-' * 10}|{'-' * 8}|"
        print(header)
        print(rule)
        for i, (name, _) in enumerate(STEPS):
            seconds, embedded, stored = ours[i]
            row = f"| {name:<22} | {seconds:9.3f} | {embedded:8d} | {stored:6d} |"
            if theirs:
                ts, te, tst = theirs[i]
                row += f" {ts:11.3f} | {te:8d} | {tst:6d} |"
            print(row)
        full = ours[0][0]
        print()
        for i, (name, _) in enumerate(STEPS[1:], 1):
            print(
                f"{name}: {full / ours[i][0]:.0f}x faster than the full ingest "
                f"(target >= 50x), {ours[i][1]} texts embedded"
            )
        if theirs:
            print(
                f"full ingest: botreg {full:.2f} s, LangChain {theirs[0][0]:.2f} s "
                f"(target: botreg no slower)"
            )
        print(
            f"store after the last step: botreg {ours[-1][2]} chunks"
            + (f", LangChain {theirs[-1][2]}" if theirs else "")
            + f" (the tree has {expected})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
