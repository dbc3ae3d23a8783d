"""A one-file `botreg ingest` writes through Chroma's Rust core without importing chromadb
(botreg.store.lean), and what it stores is exactly what the full client would store."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from botreg.knowledge import gate as gate_module
from botreg.store import lean
from botreg.store.builtin import HashVectors, MiniLMVectors, builtin_function
from botreg.store.chroma import SETTLED_SYNC_THRESHOLD, ChromaStore
from botreg.store.embedding import HashEmbeddingFunction
from botreg.store.lean import LeanCollection, LeanStore, SwitchingStore
from botreg.store.minilm_function import MiniLMEmbeddingFunction
from botreg.store.settings import EmbeddingSettings, StoreSettings
from botreg.validation.confinement import StorePolicy
from cli_ingest_helpers import assert_exact, ingest, ingest_process, thresholds
from conftest import git
from helpers import write
from test_minilm_embedding import MODEL_DIR, needs_model

REFUNDS = "knowledge/billing/policies/refunds.md"
HASH = EmbeddingSettings("hash", {"dimensions": 384})


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _everything(data: Path) -> dict[str, dict[str, Any]]:
    """Every record of every collection, read through the full client."""
    store = ChromaStore(StoreSettings(), data)
    try:
        out: dict[str, dict[str, Any]] = {}
        for found in store.client.list_collections():
            got = store.client.get_collection(found.name).get(
                include=["documents", "metadatas", "embeddings"]
            )
            out[found.name] = {
                i: (d, m, np.asarray(e, dtype=np.float32).round(6).tolist())
                for i, d, m, e in zip(
                    got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
                )
            }
        return out
    finally:
        store.close()


def _counts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """An ingest's results without their times."""
    timing = ("started_at", "completed_at", "duration_seconds")
    return [{k: v for k, v in r.items() if k not in timing} for r in doc["results"]]


def _edits(repo: Path) -> list[tuple[str, Any]]:
    """Changes a platform team makes between runs, one per run."""

    def paragraph() -> None:
        write(repo, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")

    def new_file() -> None:
        write(repo, "knowledge/product/new.md", "# New\n\n" + "Fresh words. " * 30)

    def rename() -> None:
        (repo / "knowledge/product/new.md").rename(repo / "knowledge/product/moved.md")

    def shift() -> None:  # a chunk moves down: same text, new chunk_index (metadata only)
        path = repo / "knowledge/product/moved.md"
        path.write_text("# Intro\n\nA first section.\n\n" + path.read_text())

    def delete() -> None:
        (repo / REFUNDS).unlink()

    return [("paragraph", paragraph), ("new file", new_file), ("rename", rename),
            ("shift", shift), ("delete", delete)]  # fmt: skip


def test_a_one_file_edit_never_imports_chromadb_and_stays_trusted(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ingest(capsys, git_registry, data)["code"] == 0
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")
    probe = ingest_process(git_registry, data)
    assert probe["code"] == 0 and probe["chunkers"] and not probe["chromadb"]
    assert not ingest_process(git_registry, data)["chromadb"]  # the next run trusts it
    assert_exact(git_registry, data)


def test_the_lean_path_stores_exactly_what_the_full_client_stores(
    git_registry: Path,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full_repo = tmp_path / "full-repo"
    shutil.copytree(git_registry, full_repo)
    full_data = tmp_path / "full-data"
    assert ingest(capsys, git_registry, data)["code"] == 0
    assert ingest(capsys, full_repo, full_data)["code"] == 0
    used: list[str] = []
    original = SwitchingStore.upsert

    def spy(self: SwitchingStore, *args: Any) -> None:
        used.append("lean" if self.lean else "full")
        original(self, *args)

    monkeypatch.setattr(SwitchingStore, "upsert", spy)
    for (name, edit), (_, twin) in zip(_edits(git_registry), _edits(full_repo), strict=True):
        edit()
        twin()
        monkeypatch.setattr(gate_module, "lean_available", lambda: True)
        lean_doc = ingest(capsys, git_registry, data)
        monkeypatch.setattr(gate_module, "lean_available", lambda: False)
        full_doc = ingest(capsys, full_repo, full_data)
        assert lean_doc["code"] == full_doc["code"] == 0, name
        assert _counts(lean_doc) == _counts(full_doc), name
        assert _everything(data) == _everything(full_data), name
    assert used and set(used) == {"lean"}  # every write went through the Rust core
    assert_exact(git_registry, data)


def test_a_new_domain_switches_to_the_full_store(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(capsys, git_registry, data)
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")
    write(git_registry, "knowledge/legal/_domain.yaml", "name: Legal\n")
    write(git_registry, "knowledge/legal/terms.md", "# Terms\n\nThe terms of service.\n")
    probe = ingest_process(git_registry, data)
    assert probe["code"] == 0 and probe["chromadb"]  # a collection to create: the full client
    assert not ingest_process(git_registry, data)["chromadb"]  # trusted: lean again
    assert_exact(git_registry, data, "billing", "product", "legal")


def test_an_untested_chroma_core_falls_back_to_the_full_store(
    git_registry: Path,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingest(capsys, git_registry, data)
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")
    monkeypatch.setattr(lean, "TESTED_CHROMA", ("0.1",))
    opened: list[str] = []
    original = ChromaStore.__init__

    def spy(self: ChromaStore, *args: Any, **kwargs: Any) -> None:
        opened.append("full")
        original(self, *args, **kwargs)

    monkeypatch.setattr(ChromaStore, "__init__", spy)
    assert ingest(capsys, git_registry, data)["code"] == 0
    assert opened
    monkeypatch.undo()
    assert_exact(git_registry, data)


def _store_with(data: Path, name: str, texts: list[str]) -> None:
    store = ChromaStore(StoreSettings(), data)
    try:
        collection = store.collection(name, HashEmbeddingFunction())
        vectors = HashEmbeddingFunction()(texts)
        ids = [f"id{i}" for i in range(len(texts))]
        store.upsert(collection, ids, texts, [{"n": i} for i in range(len(texts))], vectors)
    finally:
        store.close()


def test_handles_given_out_stay_valid_after_the_switch(data: Path) -> None:
    _store_with(data, "botreg-one", ["alpha words", "beta words"])
    folder = (data / "chroma").resolve()
    store = SwitchingStore(StoreSettings(), data, StorePolicy(), folder, HashVectors(), HASH)
    try:
        handle = store.collection("botreg-one")
        assert isinstance(handle, LeanCollection) and store.lean
        assert store.count(handle) == 2
        store.collection("botreg-two", store.builtin_function)  # missing: the full client
        assert not store.lean
        store.upsert(handle, ["id9"], ["gamma words"], [{"n": 9}], HashVectors()(["gamma"]))
        assert store.count(handle) == 3
        assert set(store.embeddings(handle, ["id0", "id9", "nope"])) == {"id0", "id9"}
    finally:
        store.close()
    everything = _everything(data)
    assert set(everything) == {"botreg-one", "botreg-two"}
    assert everything["botreg-one"]["id9"][1] == {"n": 9}


def test_a_collection_that_recorded_another_function_is_left_to_the_full_client(
    data: Path,
) -> None:
    _store_with(data, "botreg-one", ["alpha words"])
    folder = (data / "chroma").resolve()
    minilm = EmbeddingSettings("default", {})
    store = SwitchingStore(StoreSettings(), data, StorePolicy(), folder, HashVectors(), minilm)
    try:
        lean_store = store._lean
        assert lean_store is not None
        found = lean_store.find("botreg-one")
        assert found is not None and found.function == "botreg_hash"
        handle = store.collection("botreg-one", None)  # not MiniLM's: Chroma's own checks
        assert not isinstance(handle, LeanCollection) and not store.lean
    finally:
        store.close()


def test_the_lean_store_takes_the_store_lock(data: Path) -> None:
    _store_with(data, "botreg-one", ["alpha words"])
    folder = (data / "chroma").resolve()
    probe = (
        "import sys; from pathlib import Path\n"
        "from botreg.store.chroma import ChromaStore\n"
        "from botreg.store.settings import StoreSettings\n"
        "from botreg.validation.confinement import StoreLockedError\n"
        "try:\n    ChromaStore(StoreSettings(), Path(sys.argv[1])).close()\n"
        "except StoreLockedError as exc:\n    print(exc)\n"
    )

    def other_process() -> str:
        run = [sys.executable, "-c", probe, str(data)]
        return subprocess.run(run, capture_output=True, text=True, check=True).stdout

    first = LeanStore(folder, "the first")
    try:
        assert "the first" in other_process()  # another process is refused, told by whom
    finally:
        first.close()
    assert other_process() == ""  # released


def test_builtin_functions_give_their_registered_twins_vectors() -> None:
    texts = ["Refunds take two weeks.", "", "ünïcödé wörds 123", "a " * 300]
    plain = builtin_function(EmbeddingSettings("hash", {"dimensions": 97, "ngram_max": 3}))
    assert isinstance(plain, HashVectors)
    twin = HashEmbeddingFunction(dimensions=97, ngram_max=3)
    for mine, theirs in zip(plain(texts), twin(texts), strict=True):
        assert np.array_equal(mine, theirs)


@pytest.mark.parametrize(
    "settings",
    [
        EmbeddingSettings("openai", {"model_name": "text-embedding-3-small"}),
        EmbeddingSettings("hash", {"dimensions": 0}),
        EmbeddingSettings("hash", {"dimensions": 384, "surprise": 1}),
        EmbeddingSettings("default", {"preferred_providers": "CPUExecutionProvider"}),
        EmbeddingSettings("default", {"model_dir": "/m"}, operator_vars=("MODEL_DIR",)),
    ],
)
def test_settings_the_builtin_path_does_not_fully_understand_take_the_general_path(
    settings: EmbeddingSettings,
) -> None:
    assert builtin_function(settings) is None


def test_a_crash_in_a_lean_write_leaves_the_store_untrusted_and_the_next_run_converges(
    git_registry: Path,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingest(capsys, git_registry, data)
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")
    original = LeanStore.upsert

    def dying(self: LeanStore, *args: Any) -> None:
        original(self, *args)  # landed in the store; the ledger does not know yet
        raise RuntimeError("the process died")

    monkeypatch.setattr(LeanStore, "upsert", dying)
    assert ingest(capsys, git_registry, data)["code"] == 3
    monkeypatch.setattr(LeanStore, "upsert", original)
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 0 and doc["by_domain"]["billing"]["chunks_embedded"] == 0
    assert_exact(git_registry, data)
    git(git_registry, "add", "-A")  # the index moves on: still nothing to embed
    assert ingest(capsys, git_registry, data)["by_domain"]["billing"]["chunks_embedded"] == 0


@needs_model
@pytest.mark.timeout(600)
def test_the_default_model_is_written_lean_with_the_registered_function_s_vectors(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = git_registry / "environments/development.yaml"
    env.write_text(
        env.read_text().replace(
            "provider: hash          # built in, offline, lexical: for development and CI\n"
            "    dimensions: 384\n",
            f"provider: default\n    model_dir: {MODEL_DIR}\n",
        )
    )
    assert "provider: default" in env.read_text()
    assert ingest(capsys, git_registry, data)["code"] == 0
    text = "Refunds take two weeks now, for every plan."
    write(git_registry, REFUNDS, f"# Refunds\n\n{text}\n")
    probe = ingest_process(git_registry, data)
    assert probe["code"] == 0 and not probe["chromadb"]
    stored = {
        document: vector
        for records in _everything(data).values()
        for document, _meta, vector in records.values()
    }
    [document] = [d for d in stored if text in d]
    registered = MiniLMEmbeddingFunction(model_dir=str(MODEL_DIR))
    [expected] = registered([document])
    plain = builtin_function(EmbeddingSettings("default", {"model_dir": str(MODEL_DIR)}))
    assert isinstance(plain, MiniLMVectors)
    assert np.array_equal(plain([document])[0], expected)  # the same code runs
    cosine = float(np.dot(stored[document], expected))
    assert cosine >= 0.9999


def test_a_collection_is_filled_at_chroma_s_threshold_then_settled(
    git_registry: Path,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    upsert, settle = ChromaStore.upsert, ChromaStore.settle

    def spy_upsert(self: ChromaStore, collection: Any, *args: Any) -> None:
        hnsw = collection.configuration_json["hnsw"]
        calls.append(f"upsert at {hnsw['sync_threshold']}")
        upsert(self, collection, *args)

    def spy_settle(self: ChromaStore, collection: Any) -> None:
        calls.append("settle")
        settle(self, collection)

    monkeypatch.setattr(ChromaStore, "upsert", spy_upsert)
    monkeypatch.setattr(ChromaStore, "settle", spy_settle)
    assert ingest(capsys, git_registry, data)["code"] == 0
    # each domain's bulk write at Chroma's 1000, then settled once it is written
    assert calls == ["upsert at 1000", "settle"] * 2
    monkeypatch.undo()
    assert set(thresholds(data).values()) == {SETTLED_SYNC_THRESHOLD}


def test_a_lean_run_settles_a_collection_filled_before_settling_existed(data: Path) -> None:
    _store_with(data, "botreg-one", ["alpha words"])  # created at Chroma's 1000
    assert thresholds(data) == {"botreg-one": 1000}
    folder = (data / "chroma").resolve()
    store = SwitchingStore(StoreSettings(), data, StorePolicy(), folder, HashVectors(), HASH)
    try:
        handle = store.collection("botreg-one")
        assert isinstance(handle, LeanCollection) and not handle.settled
        store.settle(handle)
        assert store.lean
    finally:
        store.close()
    assert thresholds(data) == {"botreg-one": SETTLED_SYNC_THRESHOLD}
    store = SwitchingStore(StoreSettings(), data, StorePolicy(), folder, HashVectors(), HASH)
    try:
        again = store.collection("botreg-one")
        assert isinstance(again, LeanCollection) and again.settled
    finally:
        store.close()


@pytest.mark.parametrize("where", ["constructor", "upsert", "find"])
def test_a_core_that_refuses_the_tested_calls_falls_back_to_the_full_client(
    git_registry: Path,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """A chromadb patch release whose core takes other arguments (pyo3 raises TypeError
    before the call does anything) costs speed, never a run."""
    ingest(capsys, git_registry, data)
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise TypeError("Bindings.upsert() takes 9 positional arguments but 8 were given")

    target = {"constructor": "__init__", "upsert": "upsert", "find": "find"}[where]
    monkeypatch.setattr(LeanStore, target, refused)
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 0 and doc["by_domain"]["billing"]["chunks_embedded"] == 1
    monkeypatch.undo()
    assert_exact(git_registry, data)


def _unflushed(data: Path) -> dict[str, int]:
    """Per collection: writes logged but not yet in its index on disk (Chroma's log
    entries after the vector segment's last persisted one; all of them if never)."""
    import sqlite3

    db = sqlite3.connect(f"file:{data / 'chroma' / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT c.name, (SELECT count(*) FROM embeddings_queue q "
            "WHERE q.topic = 'persistent://default/default/' || c.id "
            "AND q.seq_id > coalesce(m.seq_id, 0)) "
            "FROM collections c JOIN segments s ON s.collection = c.id AND s.scope = 'VECTOR' "
            "LEFT JOIN max_seq_id m ON m.segment_id = s.id"
        ).fetchall()
    finally:
        db.close()
    return {name: int(count) for name, count in rows}


def test_the_run_that_fills_a_collection_leaves_nothing_for_the_next_to_replay(
    git_registry: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(3):  # 300 or so chunks: a fill that Chroma's 1,000 does not flush
        write(git_registry, f"knowledge/product/big{n}.csv", "sku,name,price\n" + "".join(
            f"S{n}-{i},Seat pack {i} of line {n},{i}.00\n" for i in range(2500)
        ))  # fmt: skip
    assert ingest(capsys, git_registry, data)["code"] == 0
    # the fill's tail (under Chroma's 1,000 writes) is in the index on disk: the next
    # process replays at most what a settled index leaves (under 100 writes)
    assert max(_unflushed(data).values()) < SETTLED_SYNC_THRESHOLD
    assert set(thresholds(data).values()) == {SETTLED_SYNC_THRESHOLD}
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")
    assert ingest_process(git_registry, data)["code"] == 0
    assert max(_unflushed(data).values()) <= SETTLED_SYNC_THRESHOLD
    assert_exact(git_registry, data)
