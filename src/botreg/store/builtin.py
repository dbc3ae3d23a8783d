"""The built-in providers' vectors, computed without importing Chroma.

`hash` and `default` are botreg's own code (`HashEmbeddingFunction`,
`MiniLMEmbeddingFunction` wrap it to register with Chroma). A one-file
`botreg ingest` writes through `botreg.store.lean`, which never imports the
chromadb package (0.6 s of CPU): it embeds with these plain functions, which
give exactly the vectors of their registered twins (the same code runs).

`builtin_function` returns one only for settings it fully understands (the
provider's own keys, no value of the operator's environment): anything else
goes through `botreg.store.embedding`, whose checks and messages stay the one
place such settings are judged.
"""

from __future__ import annotations

import math
import re
import zlib
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from botreg.errors import EmbeddingUnavailableError
from botreg.store.settings import EmbeddingSettings

__all__ = [
    "HashVectors",
    "MiniLMVectors",
    "builtin_function",
    "hash_vector",
    "preflight",
]

_WORD = re.compile(r"\w+")
# The keys each built-in provider reads; settings with any other stay on the general path.
_KEYS = {"hash": {"dimensions", "ngram_max"}, "default": {"model_dir", "preferred_providers"}}


def hash_vector(text: str, dimensions: int, ngram_max: int) -> array[float]:
    """Feature hashing of lowercase word n-grams into an L2-normalised float32 vector.

    Plain Python (summed in float64, rounded to float32 once): a one-file run
    embeds a handful of texts, and importing numpy would cost more than that.

    Args:
        text: The text.
        dimensions: The vector's length.
        ngram_max: The longest word n-gram hashed (1: words only).
    """
    words = _WORD.findall(text.lower())
    vector = [0.0] * dimensions
    for n in range(1, ngram_max + 1):
        weight = 1.0 / n
        for i in range(len(words) - n + 1):
            feature = " ".join(words[i : i + n]).encode()
            bucket = zlib.crc32(feature) % dimensions
            vector[bucket] += weight if zlib.crc32(feature, 0x5BD1E995) & 1 else -weight
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:  # no words: a fixed unit vector (a zero vector has no direction)
        vector[0] = 1.0
        return array("f", vector)
    return array("f", [x / norm for x in vector])


class HashVectors:
    """The `hash` provider as a plain function: texts in, vectors out."""

    provider = "hash"

    def __init__(self, dimensions: int = 384, ngram_max: int = 2) -> None:
        self.dimensions = int(dimensions)
        self.ngram_max = int(ngram_max)
        if self.dimensions < 1 or self.ngram_max < 1:
            raise ValueError("dimensions and ngram_max must be at least 1")

    def __call__(self, texts: Sequence[str]) -> list[Any]:
        return [hash_vector(text, self.dimensions, self.ngram_max) for text in texts]


class MiniLMVectors:
    """The `default` provider as a plain function: all-MiniLM-L6-v2 on botreg's runtime."""

    provider = "default"

    def __init__(
        self, model_dir: str | None = None, preferred_providers: list[str] | None = None
    ) -> None:
        # here, not at the top: the model's runtime imports numpy, which `hash` does without
        from botreg.store.model_folder import ModelRuntime, default_model_dir

        folder = Path(model_dir).expanduser() if model_dir else default_model_dir()
        self.folder = folder
        self._runtime = ModelRuntime(folder, preferred_providers or None)

    def __call__(self, texts: Sequence[str]) -> list[Any]:
        return list(self._runtime.model().embed(list(texts)))


def builtin_function(settings: EmbeddingSettings) -> Callable[[Sequence[str]], list[Any]] | None:
    """The provider's plain function, or None if the settings need the general path.

    None for a provider other than `hash` and `default`, a key the provider does
    not read, a value taken from the operator's environment, parameters the
    provider refuses, or a `model_dir` that holds no model (the general path
    says why, without trying to download it there).

    Args:
        settings: The environment's embedding settings.
    """
    keys = _KEYS.get(settings.provider)
    if keys is None or settings.operator_vars or not set(settings.params) <= keys:
        return None
    params = dict(settings.params)
    try:
        if settings.provider == "hash":
            return HashVectors(**params)
        providers = params.get("preferred_providers")
        model_dir = params.get("model_dir")
        if (providers is not None and not _distinct_names(providers)) or not (
            model_dir is None or isinstance(model_dir, str)
        ):
            return None
        if model_dir and not _provisioned(Path(model_dir).expanduser()):
            # the general path refuses it, offline: an operator's model_dir is used as
            # provisioned, never downloaded into (only Chroma's own folder is)
            return None
        return MiniLMVectors(model_dir or None, providers)
    except (TypeError, ValueError):
        return None


def _provisioned(folder: Path) -> bool:
    """True if an operator's `model_dir` holds the model, unpacked or as Chroma's archive."""
    from botreg.store.model_folder import has_model

    return has_model(folder) or (folder / "onnx.tar.gz").is_file()


def _distinct_names(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(p, str) for p in value)
        and len(set(value)) == len(value)
    )


def preflight(function: Callable[[list[str]], Any], settings: EmbeddingSettings) -> None:
    """Embed one text, so a missing model or key fails before anything is written.

    Args:
        function: The embedding function (registered with Chroma or plain).
        settings: The settings it was built from (for the message).

    Raises:
        EmbeddingUnavailableError: saying what to do.
    """
    try:
        function(["botreg preflight"])
    except EmbeddingUnavailableError:
        raise  # says what and how already (a missing or damaged model folder)
    except Exception as exc:
        if settings.provider == "default":
            from botreg.store.model_folder import HOW_TO_PROVIDE

            folder = getattr(function, "folder", None) or getattr(function, "DOWNLOAD_PATH", "")
            raise EmbeddingUnavailableError(
                HOW_TO_PROVIDE.format(where=f" in {folder}", reason=f"{type(exc).__name__}: {exc}")
            ) from None
        raise EmbeddingUnavailableError(
            f"embedding provider {settings.provider!r} failed: {exc}"
        ) from None
