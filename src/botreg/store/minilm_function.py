"""The `default` provider's embedding function: botreg's all-MiniLM-L6-v2, registered with Chroma.

`MiniLMEmbeddingFunction` runs `botreg.store.minilm.MiniLM` (dynamic padding,
sized session) on the model folder Chroma's `ONNXMiniLM_L6_V2` uses: the
operator's `model_dir`, or without one Chroma's own download folder
(`~/.cache/chroma/onnx_models/all-MiniLM-L6-v2`), which Chroma's function
still fills (downloads, checks and unpacks `onnx.tar.gz`) when it is empty.
Chroma's function stays the reference: tests and bench/embed.py compare the
vectors (cosine >= 0.9999 on every chunk) and the throughput.

Registered with Chroma as `botreg_minilm_l6_v2` (config: `model_dir`,
`preferred_providers`), so a collection botreg creates records it and a Chroma
user of that collection (with botreg imported) gets the same vectors from
Chroma itself.

Collections created before this function existed record Chroma's
`onnx_mini_lm_l6_v2`, and Chroma refuses to open a collection with a function
of another name. They are not re-embedded: both functions run the same weights
on the same token ids, and their vectors agree within float rounding (cosine
>= 0.9999, measured >= 0.9999999). `recorded_as("onnx_mini_lm_l6_v2")` gives
this function under that name, and `ChromaStore` opens such a collection with
it; a compaction's copy records botreg's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from botreg.store.minilm import MAX_TOKENS, EmbeddingUnavailableError, MiniLM
from botreg.store.model_folder import (
    HOW_TO_PROVIDE,
    NEEDED_FILES,
    ModelRuntime,
    default_model_dir,
    has_model,
)

__all__ = [
    "CHROMA_FUNCTION",
    "HOW_TO_PROVIDE",
    "NEEDED_FILES",
    "MiniLMEmbeddingFunction",
    "default_model_dir",
    "has_model",
]

CHROMA_FUNCTION = "onnx_mini_lm_l6_v2"  # the name Chroma's own function records


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 on botreg's runtime: Chroma's model and vectors, at the model's cost."""

    def __init__(
        self, model_dir: str | None = None, preferred_providers: list[str] | None = None
    ) -> None:
        """A function on the model in `model_dir` (cheap: the model loads on first use).

        Args:
            model_dir: The folder holding `onnx/` (or `onnx.tar.gz`); default:
                Chroma's download folder (`default_model_dir()`).
            preferred_providers: onnxruntime execution providers, in order
                (default: every available one, as Chroma's function).

        Raises:
            EmbeddingUnavailableError: if `preferred_providers` is not a list of
                distinct names.
        """
        if preferred_providers is not None and (
            not isinstance(preferred_providers, list)
            or not all(isinstance(p, str) for p in preferred_providers)
            or len(set(preferred_providers)) != len(preferred_providers)
        ):
            raise EmbeddingUnavailableError(
                "knowledge.embedding.preferred_providers must be a list of distinct "
                "onnxruntime provider names (e.g. [CPUExecutionProvider])"
            )
        self.model_dir = str(model_dir) if model_dir else None
        self.preferred_providers = preferred_providers or None
        folder = Path(self.model_dir).expanduser() if self.model_dir else default_model_dir()
        self._runtime = ModelRuntime(folder, self.preferred_providers)

    @property
    def folder(self) -> Path:
        """The model's folder (the one holding `onnx/`)."""
        return self._runtime.folder

    def model(self) -> MiniLM:
        """The loaded model (unpacked or downloaded first if Chroma's folder is empty).

        Raises:
            EmbeddingUnavailableError: if the model is missing or damaged (naming
                the folder and how to provide it).
        """
        return self._runtime.model()

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.model().embed(list(input)))

    @staticmethod
    def name() -> str:
        return "botreg_minilm_l6_v2"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "l2", "ip"]

    def max_tokens(self) -> int:
        """The model's window, [CLS] and [SEP] included; longer texts are truncated."""
        return MAX_TOKENS

    def get_config(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir, "preferred_providers": self.preferred_providers}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> EmbeddingFunction[Documents]:
        return MiniLMEmbeddingFunction(
            model_dir=config.get("model_dir"),
            preferred_providers=config.get("preferred_providers"),
        )

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Any update is valid: both settings say where and how, not which vectors."""

    def recorded_as(self, name: str) -> EmbeddingFunction[Documents] | None:
        """This function under the name a collection recorded, if it gives that one's vectors.

        Returns:
            This function for its own name; a view of it named as Chroma's
            `ONNXMiniLM_L6_V2` (same model, same loaded session) for that name;
            None for any other function.
        """
        if name == self.name():
            return self
        if name == CHROMA_FUNCTION:
            return _AsChromaFunction(self)
        return None


class _AsChromaFunction(MiniLMEmbeddingFunction):
    """botreg's function named as Chroma's, for collections that recorded Chroma's.

    Not registered: Chroma's own function keeps its name, and what Chroma builds
    from such a collection's config is Chroma's own function.
    """

    def __init__(self, function: MiniLMEmbeddingFunction) -> None:
        self.model_dir = function.model_dir
        self.preferred_providers = function.preferred_providers
        self._runtime = function._runtime

    @staticmethod
    def name() -> str:
        return CHROMA_FUNCTION

    def get_config(self) -> dict[str, Any]:
        return {"preferred_providers": self.preferred_providers}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> EmbeddingFunction[Documents]:
        from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

        return ONNXMiniLM_L6_V2.build_from_config(config)
