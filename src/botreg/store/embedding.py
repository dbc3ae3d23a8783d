"""Embedding providers: Chroma's default model, the built-in `hash`, or any registered one.

- `default`: all-MiniLM-L6-v2 as ONNX (Chroma's default function). `model_dir`
  points at a pre-provisioned copy; without the model and without network it
  fails before anything is written, saying how to provide it.
- `hash`: deterministic feature hashing over word n-grams. Offline, no model,
  lexical only (it matches words, not meaning): for tests, CI and air-gapped
  demos. Registered with Chroma as `botreg_hash`, so collections record it.
- any other name: a Chroma embedding function from its registry, built from
  the remaining settings (`build_from_config`).
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import (
    known_embedding_functions,
    register_embedding_function,
)

from botreg.errors import BotregError
from botreg.store.settings import EmbeddingSettings

__all__ = [
    "EmbeddingUnavailableError",
    "HashEmbeddingFunction",
    "build_embedding_function",
    "create_embedding_function",
    "preflight",
]

_WORD = re.compile(r"\w+")
_ONNX_FILES = (
    "config.json",
    "model.onnx",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.txt",
)


class EmbeddingUnavailableError(BotregError):
    """The configured embedding function cannot run here."""


@register_embedding_function
class HashEmbeddingFunction(EmbeddingFunction[Documents]):
    """Feature hashing of lowercase word n-grams into a fixed-size, L2-normalised vector."""

    def __init__(self, dimensions: int = 384, ngram_max: int = 2) -> None:
        self.dimensions = int(dimensions)
        self.ngram_max = int(ngram_max)

    def __call__(self, input: Documents) -> Embeddings:
        return [self._embed(text) for text in input]

    def _embed(self, text: str) -> Any:
        words = _WORD.findall(text.lower())
        vector = np.zeros(self.dimensions, dtype=np.float32)
        for n in range(1, self.ngram_max + 1):
            for i in range(len(words) - n + 1):
                feature = " ".join(words[i : i + n]).encode()
                bucket = zlib.crc32(feature) % self.dimensions
                sign = 1.0 if zlib.crc32(feature, 0x5BD1E995) & 1 else -1.0
                vector[bucket] += sign / n
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:  # no words: a fixed unit vector (a zero vector has no direction)
            vector[0] = 1.0
            return vector
        return vector / norm

    @staticmethod
    def name() -> str:
        return "botreg_hash"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "l2", "ip"]

    def get_config(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions, "ngram_max": self.ngram_max}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HashEmbeddingFunction:
        return HashEmbeddingFunction(**config)


_HOW_TO_PROVIDE = (
    "the default embedding model (all-MiniLM-L6-v2, ONNX) is not available{where} and could "
    "not be downloaded ({reason}). Provide it offline: on a machine with network access run "
    '`python -c "from chromadb.utils.embedding_functions import DefaultEmbeddingFunction as '
    "E; E()(['x'])\"`, copy ~/.cache/chroma/onnx_models/all-MiniLM-L6-v2 to this machine and "
    "set knowledge.embedding.model_dir to that folder (it holds onnx/ or onnx.tar.gz). For "
    "development without a model, use `provider: hash`."
)


def _default_function(params: dict[str, Any]) -> EmbeddingFunction[Documents]:
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    function = ONNXMiniLM_L6_V2(preferred_providers=params.get("preferred_providers"))
    model_dir = params.get("model_dir")
    if model_dir:
        folder = Path(str(model_dir)).expanduser()
        has_files = all((folder / "onnx" / name).is_file() for name in _ONNX_FILES)
        if not has_files and not (folder / "onnx.tar.gz").is_file():
            raise EmbeddingUnavailableError(
                _HOW_TO_PROVIDE.format(
                    where=f" in model_dir {folder}",
                    reason="model_dir holds neither onnx/ nor onnx.tar.gz",
                )
            )
        function.DOWNLOAD_PATH = folder  # the model's folder, instead of ~/.cache/chroma
    return function


def build_embedding_function(settings: EmbeddingSettings) -> EmbeddingFunction[Documents]:
    """Build the embedding function (cheap: models load on first use).

    Raises:
        EmbeddingUnavailableError: for an unknown provider or invalid parameters.
    """
    params = dict(settings.params)
    provider = settings.provider
    if provider == "hash":
        try:
            return HashEmbeddingFunction(**params)
        except (TypeError, ValueError) as exc:
            raise EmbeddingUnavailableError(f"embedding provider 'hash': {exc}") from None
    if provider == "default":
        return _default_function(params)
    factory = known_embedding_functions.get(provider)
    if factory is None:
        known = ", ".join(sorted(["default", "hash", *known_embedding_functions]))
        raise EmbeddingUnavailableError(f"unknown embedding provider {provider!r}; known: {known}")
    try:
        return factory.build_from_config(params)
    except Exception as exc:  # third-party constructors raise anything
        raise EmbeddingUnavailableError(f"embedding provider {provider!r}: {exc}") from None


def preflight(function: EmbeddingFunction[Documents], settings: EmbeddingSettings) -> None:
    """Embed one text, so a missing model or key fails before anything is written.

    Raises:
        EmbeddingUnavailableError: saying what to do.
    """
    try:
        function(["botreg preflight"])
    except Exception as exc:
        if settings.provider == "default":
            where = f" in {getattr(function, 'DOWNLOAD_PATH', '')}"
            raise EmbeddingUnavailableError(
                _HOW_TO_PROVIDE.format(where=where, reason=f"{type(exc).__name__}: {exc}")
            ) from None
        raise EmbeddingUnavailableError(
            f"embedding provider {settings.provider!r} failed: {exc}"
        ) from None


def create_embedding_function(settings: EmbeddingSettings) -> EmbeddingFunction[Documents]:
    """Build the embedding function and prove it works (see `preflight`)."""
    function = build_embedding_function(settings)
    preflight(function, settings)
    return function
