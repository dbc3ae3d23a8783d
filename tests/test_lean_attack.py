"""The one-file `botreg ingest` path (botreg.store.lean) attacked as operators use it: a
`default` provider whose model folder moved, the default model folder without Chroma,
and settling collections that someone else configured or a store that refuses it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from botreg.store import model_folder
from botreg.store.builtin import hash_vector
from botreg.store.chroma import SETTLED_SYNC_THRESHOLD, ChromaStore, settled
from botreg.store.settings import StoreSettings
from cli_ingest_helpers import assert_exact, harness, ingest, thresholds
from helpers import write

REFUNDS = "knowledge/billing/policies/refunds.md"


class _FakeMiniLM:
    """Stands in for the ONNX model (no weights in the tests): checks the folder's files
    as the real one needs them and embeds with the hash function, 384 dimensions."""

    def __init__(self, folder: Path, providers: Sequence[str] | None = None) -> None:
        for name in model_folder.NEEDED_FILES:
            if not (folder / name).is_file():
                raise model_folder.EmbeddingUnavailableError(f"{folder / name} is missing")

    def embed(self, texts: list[str]) -> list[Any]:
        return [np.array(hash_vector(t, 384, 2), dtype=np.float32) for t in texts]


def _model_folder(root: Path) -> Path:
    for name in model_folder.NEEDED_FILES:
        write(root, f"onnx/{name}", "not read: the model is faked")
    return root


def _use_default_provider(repo: Path, model_dir: Path | None) -> None:
    env = repo / "environments/development.yaml"
    text = env.read_text()
    current = text[text.index("provider: ") :]
    current = current[: current.index("\n\n")] + "\n"
    line = "provider: default\n" + (f"    model_dir: {model_dir}\n" if model_dir else "")
    env.write_text(text.replace(current, line))
    assert line in env.read_text()


def _assert_exact_any_function(repo: Path, data: Path) -> None:
    """`assert_exact` for collections that recorded another function than the hash."""
    with harness(repo, data) as h:
        h.function = None  # type: ignore[assignment]  # opened as recorded, only read
        for domain in ("billing", "product"):
            h.assert_exact(domain)


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_folder, "MiniLM", _FakeMiniLM)


@pytest.mark.usefixtures("fake_model")
def test_a_model_dir_that_moved_away_is_refused_offline_as_the_full_client_refuses_it(
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "data"
    _use_default_provider(git_registry, _model_folder(tmp_path / "model"))
    assert ingest(capsys, git_registry, data)["code"] == 0
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    downloads: list[Path] = []

    def download(self: ONNXMiniLM_L6_V2) -> None:
        downloads.append(Path(self.DOWNLOAD_PATH))
        raise OSError("no network in this test")

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "_download_model_if_not_exists", download)
    moved = tmp_path / "moved-model"  # a new location, not provisioned (yet)
    _use_default_provider(git_registry, moved)
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")
    doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 1
    assert f"model_dir {moved}" in doc["stderr"] and "holds neither onnx/" in doc["stderr"]
    assert "Traceback" not in doc["stderr"]
    assert downloads == [] and not moved.exists()  # never downloaded into, nor created
    _model_folder(moved)  # provided: the edit goes in
    assert ingest(capsys, git_registry, data)["code"] == 0
    _assert_exact_any_function(git_registry, data)


def test_builtin_default_function_without_model_dir_uses_chroma_s_folder_unimported(
    tmp_path: Path,
) -> None:
    probe = (
        "import json, sys\n"
        "from botreg.store.builtin import builtin_function\n"
        "from botreg.store.settings import EmbeddingSettings\n"
        "function = builtin_function(EmbeddingSettings('default'))\n"
        "imported = any(m.split('.')[0] == 'chromadb' for m in sys.modules)\n"
        "from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2\n"
        "print(json.dumps([str(function.folder), str(ONNXMiniLM_L6_V2.DOWNLOAD_PATH), imported]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    mine, chroma_s, imported = json.loads(done.stdout)
    assert mine == chroma_s and Path(mine).is_relative_to(Path.home())
    assert imported is False


def test_the_default_model_folder_follows_chroma_s_once_chroma_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "DOWNLOAD_PATH", tmp_path / "elsewhere")
    assert model_folder.default_model_dir() == tmp_path / "elsewhere"


_PROBE = """
import json, sys
import numpy as np
from botreg.store import model_folder
from botreg.store.builtin import hash_vector

class Fake:
    def __init__(self, folder, providers=None):
        assert (folder / "model.onnx").is_file(), folder
    def embed(self, texts):
        return [np.array(hash_vector(t, 384, 2), dtype=np.float32) for t in texts]

model_folder.MiniLM = Fake
from botreg.cli import main
code = main(sys.argv[1:])
chroma = any(m.split(".")[0] == "chromadb" for m in sys.modules)
print(json.dumps({"code": code, "chromadb": chroma}), file=sys.stderr)
"""


def test_a_one_file_edit_with_the_default_provider_and_chroma_s_folder_never_imports_chromadb(
    git_registry: Path, tmp_path: Path
) -> None:
    _model_folder(Path.home().joinpath(*model_folder.CHROMA_MODEL_FOLDER))
    _use_default_provider(git_registry, None)
    data = tmp_path / "data"

    def run() -> dict[str, Any]:
        command = [sys.executable, "-c", _PROBE, "ingest", "--repo", str(git_registry)]
        done = subprocess.run(
            [*command, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        result: dict[str, Any] = json.loads(done.stderr.strip().splitlines()[-1])
        return result

    assert run() == {"code": 0, "chromadb": True}  # collections to create: the full client
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")
    assert run() == {"code": 0, "chromadb": False}
    _assert_exact_any_function(git_registry, data)


@pytest.mark.parametrize("lean", [True, False])
def test_settling_keeps_a_lower_flush_threshold_someone_chose(
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    lean: bool,
) -> None:
    data = tmp_path / "data"
    assert ingest(capsys, git_registry, data)["code"] == 0
    store = ChromaStore(StoreSettings(), data)
    try:
        for found in store.client.list_collections():
            collection = store.client.get_collection(found.name, embedding_function=None)
            collection.modify(configuration={"hnsw": {"sync_threshold": 20}})
    finally:
        store.close()
    assert ingest(capsys, git_registry, data)["code"] == 0  # store checked: trusted again
    from botreg.knowledge import gate

    monkeypatch.setattr(gate, "lean_available", lambda: lean)
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")
    write(git_registry, "knowledge/product/new.md", "# New\n\nA new page.\n")
    assert ingest(capsys, git_registry, data)["code"] == 0
    assert set(thresholds(data).values()) == {20}
    assert_exact(git_registry, data)


def test_a_store_that_refuses_settling_keeps_the_run_s_writes(
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from chromadb.api.models.Collection import Collection

    def refuse(self: Collection, **kwargs: Any) -> None:
        raise ValueError("this server does not take configuration updates")

    monkeypatch.setattr(Collection, "modify", refuse)
    data = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="botreg.store.chroma"):
        doc = ingest(capsys, git_registry, data)
    assert doc["code"] == 0 and all(not r["errors"] for r in doc["results"])
    assert "does not take configuration updates" in caplog.text
    assert set(thresholds(data).values()) == {1000}  # Chroma's own, as the store left it
    monkeypatch.undo()
    assert_exact(git_registry, data)
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")
    assert ingest(capsys, git_registry, data)["code"] == 0  # the next run that writes settles
    found = thresholds(data)
    assert [found[n] for n in found if "-billing-" in n] == [SETTLED_SYNC_THRESHOLD]


@pytest.mark.parametrize(
    ("configuration", "expected"),
    [
        ({"hnsw": {"sync_threshold": 1000}}, False),
        ({"hnsw": {"sync_threshold": SETTLED_SYNC_THRESHOLD}}, True),
        ({"hnsw": {"sync_threshold": 10}}, True),
        ({"hnsw": None, "spann": {"space": "cosine"}}, True),  # no HNSW index: nothing to do
        (None, True),
    ],
)
def test_what_needs_settling(configuration: Any, expected: bool) -> None:
    assert settled(configuration) is expected


def test_a_collection_without_an_hnsw_index_is_not_modified(tmp_path: Path) -> None:
    calls: list[Any] = []

    class Spann:
        name = "botreg-x"
        configuration_json: dict[str, Any] = {"hnsw": None, "spann": {"space": "cosine"}}  # noqa: RUF012

        def modify(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    store = ChromaStore(StoreSettings(), tmp_path / "data")
    try:
        store.settle(Spann())
    finally:
        store.close()
    assert calls == []


def test_an_untested_chroma_core_is_never_opened_by_the_lean_store(
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another release's core may take other constructor arguments (a TypeError, exit 3)
    or write its own data: its release is checked before the lean store calls it."""
    import chromadb_rust_bindings as core

    from botreg.store import lean

    data = tmp_path / "data"
    assert ingest(capsys, git_registry, data)["code"] == 0
    write(git_registry, REFUNDS, "# Refunds\n\nRefunds take two weeks now.\n")
    monkeypatch.setattr(lean, "TESTED_CHROMA", ("0.1",))
    real = core.Bindings
    opened_by: list[str] = []

    def bindings(*args: Any, **kwargs: Any) -> Any:
        opened_by.append(sys._getframe(1).f_globals["__name__"])
        if opened_by[-1] == lean.__name__:
            raise TypeError("Bindings() got an unexpected keyword argument 'hnsw_cache_size'")
        return real(*args, **kwargs)

    for call in lean._CALLS:  # as installed: `lean_available` says yes
        setattr(bindings, call, getattr(real, call))
    monkeypatch.setattr(core, "Bindings", bindings)
    assert lean.lean_available()
    assert ingest(capsys, git_registry, data)["code"] == 0
    assert lean.__name__ not in opened_by and opened_by  # the full client wrote it
    monkeypatch.undo()
    assert_exact(git_registry, data)
