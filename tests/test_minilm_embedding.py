"""botreg's all-MiniLM-L6-v2 runtime (`botreg.store.minilm`, `minilm_function`).

The model cannot be downloaded on the project's machines: the tests that run it
need a provisioned copy (BOTREG_TEST_MODEL_DIR, as `python bench/model.py`
assembles it) and skip without one, saying so. The rest (batching, session
options, registration, how old collections open, missing and damaged model
folders) runs everywhere.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chromadb.utils.embedding_functions import known_embedding_functions
from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

from botreg.cli import main
from botreg.store.chroma import ChromaStore, next_generation
from botreg.store.embedding import (
    EmbeddingUnavailableError,
    HashEmbeddingFunction,
    MiniLMEmbeddingFunction,
    build_embedding_function,
    create_embedding_function,
)
from botreg.store.minilm import MAX_TOKENS, MiniLM, length_batches, session_options, usable_cores
from botreg.store.minilm_function import CHROMA_FUNCTION, default_model_dir
from botreg.store.settings import EmbeddingSettings, StoreSettings

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))


def _model_dir() -> Path | None:
    candidate = os.environ.get("BOTREG_TEST_MODEL_DIR", "")
    if candidate and (Path(candidate) / "onnx" / "model.onnx").is_file():
        return Path(candidate)
    return None


MODEL_DIR = _model_dir()
needs_model = pytest.mark.skipif(
    MODEL_DIR is None,
    reason="all-MiniLM-L6-v2 ONNX model not provisioned: set BOTREG_TEST_MODEL_DIR to a folder "
    "holding onnx/model.onnx (`python bench/model.py --dest DIR` assembles it offline)",
)


# --- the test corpus -----------------------------------------------------------------


def _edge_texts() -> list[str]:
    rnd = random.Random(15)
    words = "refund invoice plan seat workspace project export billing policy limit".split()
    texts = [
        "",
        "a",
        " ",
        "\n\n\t",
        "é",
        "Ünïcödé façade naïve coöperate",
        "日本語のテキストと中文字符",
        "مرحبا بالعالم",
        "emoji 🙂🚀 and symbols ©®™ ∑∫√",
        "e\u0301 combining accent, zero\u200bwidth space",
        "word " * 600,  # far past 256 tokens: truncated
        "x" * 5000,  # one long word: many word pieces
        "日本" * 400,
    ]
    texts += [" ".join(rnd.choice(words) for _ in range(n)) for n in range(1, 300, 7)]
    return texts


def _corpus() -> list[str]:
    """botreg's chunks of bench/quality/ files, then the edge texts."""
    quality: Any = importlib.import_module("quality")
    corpus = quality.load_corpus(quality.HERE / "corpus")
    chunks = [text for _, text in quality.chunk_corpus(corpus, quality.botreg_chunks)]
    assert len(chunks) > 100
    return chunks + _edge_texts()


@pytest.fixture(scope="module")
def reference() -> Iterator[tuple[list[str], np.ndarray]]:
    """The corpus and Chroma's ONNXMiniLM_L6_V2 vectors of it (the reference)."""
    assert MODEL_DIR is not None
    chroma = ONNXMiniLM_L6_V2()
    chroma.DOWNLOAD_PATH = MODEL_DIR
    texts = _corpus()
    yield texts, np.array(chroma(texts), dtype=np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


# --- with the model ------------------------------------------------------------------


@needs_model
@pytest.mark.timeout(900)
def test_vectors_equal_chromas_on_every_chunk_of_the_test_corpus(
    reference: tuple[list[str], np.ndarray],
) -> None:
    texts, expected = reference
    ours = np.array(MiniLMEmbeddingFunction(str(MODEL_DIR))(texts), dtype=np.float32)
    assert ours.shape == expected.shape == (len(texts), 384)
    cosines = _cosines(ours, expected)
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= 0.9999, (worst, texts[worst][:80], float(cosines[worst]))
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@needs_model
@pytest.mark.timeout(900)
def test_order_is_the_callers_and_batch_boundaries_do_not_matter(
    reference: tuple[list[str], np.ndarray],
) -> None:
    texts, expected = reference
    assert MODEL_DIR is not None
    shuffled = list(range(len(texts)))
    random.Random(7).shuffle(shuffled)
    model = MiniLM(MODEL_DIR / "onnx")
    got = model.embed([texts[i] for i in shuffled])
    assert _cosines(got, expected[shuffled]).min() >= 0.9999  # row i is text i, shuffled too
    sample = shuffled[:60]  # other batch caps, on a sample (the whole corpus takes minutes)
    for texts_cap, tokens_cap in ((1, 10**6), (3, 10**6), (1000, 300), (1000, 10**6)):
        other = MiniLM(MODEL_DIR / "onnx", max_batch_texts=texts_cap, max_batch_tokens=tokens_cap)
        got = other.embed([texts[i] for i in sample])
        assert _cosines(got, expected[sample]).min() >= 0.9999, (texts_cap, tokens_cap)
    halves = np.concatenate([model.embed(texts[:50]), model.embed(texts[50:])])
    assert _cosines(halves, expected).min() >= 0.9999
    assert model.embed([]).shape == (0, 384)


@needs_model
def test_truncation_is_chromas_256_tokens() -> None:
    assert MODEL_DIR is not None
    chroma = ONNXMiniLM_L6_V2()
    chroma.DOWNLOAD_PATH = MODEL_DIR
    texts = [t for t in _edge_texts() if chroma.tokenizer.encode(t).ids[-1] != 0]  # truncated
    assert len(texts) >= 2
    model = MiniLM(MODEL_DIR / "onnx")
    for text, ids in zip(texts, model.token_ids(texts), strict=True):
        chroma_ids = [i for i in chroma.tokenizer.encode(text).ids if i != 0]  # unpadded
        assert ids == chroma_ids and len(ids) == MAX_TOKENS == chroma.max_tokens()
        assert ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
    assert model.token_ids([""]) == [[101, 102]]


@needs_model
def test_chroma_itself_embeds_a_botreg_collection_with_botreg_s_function(tmp_path: Path) -> None:
    import chromadb
    from chromadb.config import Settings

    function = MiniLMEmbeddingFunction(str(MODEL_DIR))
    texts = ["Annual plans are refunded within 14 days.", "Guests are not paid seats.", ""]
    store = ChromaStore(StoreSettings(), tmp_path)
    try:
        store.collection("botreg-x-0123456789", function).add(ids=["a", "b", "c"], documents=texts)
    finally:
        store.close()
    # a user of the collection, with only the store: Chroma builds the recorded function
    client = chromadb.PersistentClient(
        str(tmp_path / "chroma"), Settings(anonymized_telemetry=False)
    )
    try:
        collection = client.get_collection("botreg-x-0123456789")
        recorded = collection.configuration_json["embedding_function"]
        assert recorded["name"] == "botreg_minilm_l6_v2"
        assert recorded["config"]["model_dir"] == str(MODEL_DIR)
        stored = collection.get(ids=["a", "b", "c"], include=["embeddings"])["embeddings"]
        assert _cosines(np.array(stored), np.array(function(texts))).min() >= 0.9999
        [[nearest, *_]] = collection.query(query_texts=["money back on a yearly plan"])["ids"]
        assert nearest == "a"
    finally:
        client.close()


# --- without the model ---------------------------------------------------------------


def test_batches_are_sorted_by_length_within_both_caps() -> None:
    lengths = [5, 300, 2, 40, 40, 7, 256, 1, 90, 12] * 7
    batches = list(length_batches(lengths, max_texts=4, max_tokens=256))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(lengths)  # shortest first: each batch pads to a similar length
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 4
        assert len(batch) == 1 or len(batch) * longest <= 256  # a longer text runs alone
    assert [len(b) for b in length_batches([3] * 10, max_texts=100, max_tokens=12)] == [4] * 2 + [2]
    assert list(length_batches([])) == []


def test_the_session_uses_every_usable_core_one_inter_op_thread_and_all_optimisations() -> None:
    import onnxruntime as ort

    options = session_options()
    assert options.intra_op_num_threads == usable_cores() == len(os.sched_getaffinity(0))
    assert options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session_options(3).intra_op_num_threads == 3


def test_registered_with_chroma_and_rebuilt_from_its_config(tmp_path: Path) -> None:
    assert known_embedding_functions["botreg_minilm_l6_v2"] is MiniLMEmbeddingFunction
    function = MiniLMEmbeddingFunction(str(tmp_path), ["CPUExecutionProvider"])
    config = function.get_config()
    assert config == {"model_dir": str(tmp_path), "preferred_providers": ["CPUExecutionProvider"]}
    rebuilt = MiniLMEmbeddingFunction.build_from_config(json.loads(json.dumps(config)))
    assert isinstance(rebuilt, MiniLMEmbeddingFunction) and rebuilt.get_config() == config
    assert not function.is_legacy() and function.default_space() == "cosine"
    assert function.max_tokens() == 256


def test_the_default_provider_runs_botreg_s_function_on_the_same_folder_as_chroma(
    tmp_path: Path,
) -> None:
    function = build_embedding_function(EmbeddingSettings("default"))
    assert isinstance(function, MiniLMEmbeddingFunction)
    assert function.folder == default_model_dir() == Path(ONNXMiniLM_L6_V2.DOWNLOAD_PATH)
    folder = tmp_path / "model"
    (folder / "onnx").mkdir(parents=True)
    for name in ("model.onnx", "tokenizer.json"):
        (folder / "onnx" / name).write_bytes(b"")
    given = build_embedding_function(EmbeddingSettings("default", {"model_dir": str(folder)}))
    assert isinstance(given, MiniLMEmbeddingFunction) and given.folder == folder


def test_an_empty_download_folder_is_filled_by_chroma_s_function_or_says_how_to_provide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders: list[Path] = []

    def offline(self: ONNXMiniLM_L6_V2) -> None:
        folders.append(Path(self.DOWNLOAD_PATH))
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "_download_model_if_not_exists", offline)
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "DOWNLOAD_PATH", tmp_path / "cache")
    function = build_embedding_function(EmbeddingSettings("default"))
    with pytest.raises(EmbeddingUnavailableError) as info:
        function(["x"])
    message = str(info.value)
    assert folders == [tmp_path / "cache"]  # Chroma's download, into Chroma's folder
    assert str(tmp_path / "cache") in message and "name resolution" in message
    assert "model_dir" in message and "bench/model.py" in message


def _damaged_folder(tmp_path: Path, tokenizer: bytes, weights: bytes) -> Path:
    folder = tmp_path / "model"
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx" / "tokenizer.json").write_bytes(tokenizer)
    (folder / "onnx" / "model.onnx").write_bytes(weights)
    return folder


def _word_level_tokenizer() -> bytes:
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).to_str().encode()


@pytest.mark.parametrize(
    ("tokenizer", "weights", "what"),
    [
        (b"{not json", b"\x08\x07", "tokenizer.json is not a tokenizer"),
        (None, b"this is not an ONNX graph", "model.onnx is not a loadable ONNX model"),
        (None, b"", "model.onnx is not a loadable ONNX model"),
    ],
)
def test_a_damaged_model_folder_is_a_clear_error_naming_the_folder_and_the_fix(
    tmp_path: Path, tokenizer: bytes | None, weights: bytes, what: str
) -> None:
    folder = _damaged_folder(tmp_path, tokenizer or _word_level_tokenizer(), weights)
    settings = EmbeddingSettings("default", {"model_dir": str(folder)})
    with pytest.raises(EmbeddingUnavailableError) as info:
        create_embedding_function(settings)  # the preflight: before anything is written
    message = str(info.value)
    assert str(folder / "onnx") in message and what in message
    assert "bench/model.py --dest" in message and "model_dir" in message
    assert "Traceback" not in message and len(message) < 1200


def test_the_cli_reports_a_damaged_model_without_a_traceback(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    folder = _damaged_folder(tmp_path, _word_level_tokenizer(), b"garbage")
    env = registry / "environments/development.yaml"
    env.write_text(
        env.read_text().replace(
            "    provider: hash          # built in, offline, lexical: for development and CI\n"
            "    dimensions: 384\n",
            f"    provider: default\n    model_dir: {folder}\n",
        )
    )
    monkeypatch.chdir(registry.parent)
    code = main(["ingest", "--repo", "registry"])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert str(folder / "onnx") in out + err and "model.onnx" in out + err
    assert "Traceback" not in out + err


def test_preferred_providers_must_be_distinct_names_and_available(tmp_path: Path) -> None:
    for bad in (["CPUExecutionProvider", "CPUExecutionProvider"], "CPUExecutionProvider", [1]):
        with pytest.raises(EmbeddingUnavailableError, match="preferred_providers"):
            MiniLMEmbeddingFunction(str(tmp_path), bad)  # type: ignore[arg-type]
    folder = _damaged_folder(tmp_path, _word_level_tokenizer(), b"")
    with pytest.raises(EmbeddingUnavailableError) as info:
        MiniLM(folder / "onnx", providers=["NoSuchExecutionProvider"])
    assert "NoSuchExecutionProvider" in str(info.value) and "available" in str(info.value)


def test_a_collection_that_recorded_chroma_s_function_opens_as_it_is_and_copies_as_botreg_s(
    tmp_path: Path,
) -> None:
    """Stores made before botreg's function: not re-embedded, not refused (no model needed:
    the functions load nothing until they embed)."""
    store = ChromaStore(StoreSettings(), tmp_path)
    name = "botreg-billing-0123456789"
    try:
        store.collection(name, ONNXMiniLM_L6_V2())  # as botreg created it until now
        ours = MiniLMEmbeddingFunction(str(tmp_path / "model"))
        collection = store.collection(name, ours)
        vectors = [[1.0] + [0.0] * 383, [0.0, 1.0] + [0.0] * 382]
        store.upsert(collection, ["a", "b"], ["A", "B"], [{"p": 1}, {"p": 2}], vectors)
        assert store.recorded_function(name) == CHROMA_FUNCTION  # as it was
        assert store.count(store.collection(name, ours)) == 2
        copy = next_generation(name)
        assert store.copy_collection(name, copy, ours) == 2
        assert store.recorded_function(copy) == "botreg_minilm_l6_v2"
        assert store.embeddings(store.collection(copy, ours), ["a"])["a"][0] == 1.0
        with pytest.raises(ValueError, match="conflict"):  # another model stays refused
            store.collection(name, HashEmbeddingFunction())
        assert ours.recorded_as("openai") is None
        assert store.recorded_function("botreg-none-0123456789") is None
    finally:
        store.close()


@needs_model
@pytest.mark.timeout(600)
def test_a_store_chroma_s_function_filled_stays_and_grows_with_botreg_s(
    registry: Path, tmp_path: Path
) -> None:
    from botreg.knowledge.ingest import KnowledgeIngestionManager
    from botreg.knowledge.ledger import Ledger
    from botreg.registry.source import WorkingTreeSource

    settings = EmbeddingSettings("default", {"model_dir": str(MODEL_DIR)})
    chroma = ONNXMiniLM_L6_V2()
    chroma.DOWNLOAD_PATH = MODEL_DIR
    ledger = Ledger(tmp_path / "ledger.sqlite")
    store = ChromaStore(StoreSettings(), tmp_path)
    try:

        def manager(function: Any = None) -> Any:
            source = WorkingTreeSource(registry)
            return KnowledgeIngestionManager(
                source, store, ledger, settings, embedding_function=function
            )

        first = manager(chroma).ingest("billing")  # the store as botreg filled it until now
        assert first.success and first.chunks_embedded > 0
        state = ledger.domain("billing")
        assert state is not None and store.recorded_function(state.collection) == CHROMA_FUNCTION
        query = "money back for a cancelled subscription"
        [before, *_] = manager(chroma).query("billing", query, 3)
        again = manager().ingest("billing")  # botreg's function, the same settings
        assert again.success and again.chunks_embedded == 0  # nothing re-embedded
        refunds = registry / "knowledge/billing/policies/refunds.md"
        refunds.write_text(refunds.read_text() + "\n## Gift cards\n\nGift cards never expire.\n")
        edited = manager().ingest("billing")
        assert edited.success and 0 < edited.chunks_embedded < first.chunks_embedded
        [after, *_] = manager().query("billing", query, 3)
        assert after.path == before.path == "knowledge/billing/policies/refunds.md"
        assert abs(after.distance - before.distance) < 0.05
        assert store.recorded_function(state.collection) == CHROMA_FUNCTION
    finally:
        store.close()
        ledger.close()
