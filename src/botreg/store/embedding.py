"""Embedding providers: Chroma's default model, the built-in `hash`, or any registered one.

- `default`: all-MiniLM-L6-v2 as ONNX, Chroma's default model on botreg's own
  runtime (`botreg.store.minilm_function`: same vectors, padded per batch
  rather than to 256 tokens). `model_dir` points at a pre-provisioned copy;
  without the model and without network it fails before anything is written,
  saying how to provide it.
- `hash`: deterministic feature hashing over word n-grams. Offline, no model,
  lexical only (it matches words, not meaning): for tests, CI and air-gapped
  demos. Registered with Chroma as `botreg_hash`, so collections record it.
- any other name: a Chroma embedding function from its registry, built from
  the remaining settings (`build_from_config`).

Chroma's functions read their API key from the variable a setting names
(`api_key_env_var`), from the process environment, bypassing `--allow-env`. So
before a function is built and again on the built object (some read a fixed
variable such as HUGGINGFACE_API_KEY whatever the settings say): every
variable a setting names must be one the operator allows (`--allow-env`), and
a provider that gets a credential (such a variable, or a value of the
operator's environment) may only be pointed (`url`, `api_base`, ...) at a host
the operator named with `--store-host`, over TLS unless it is loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import (
    known_embedding_functions,
    register_embedding_function,
)

from botreg.store.builtin import hash_vector, preflight
from botreg.store.minilm import EmbeddingUnavailableError
from botreg.store.minilm_function import MiniLMEmbeddingFunction
from botreg.store.model_folder import HOW_TO_PROVIDE, has_model
from botreg.store.settings import EmbeddingSettings
from botreg.validation.confinement import (
    ConfinementError,
    StorePolicy,
    check_credential_url,
    store_policy,
)

__all__ = [
    "EmbeddingUnavailableError",
    "HashEmbeddingFunction",
    "MiniLMEmbeddingFunction",
    "build_embedding_function",
    "create_embedding_function",
    "preflight",
]


@register_embedding_function
class HashEmbeddingFunction(EmbeddingFunction[Documents]):
    """Feature hashing of lowercase word n-grams into a fixed-size, L2-normalised vector."""

    def __init__(self, dimensions: int = 384, ngram_max: int = 2) -> None:
        self.dimensions = int(dimensions)
        self.ngram_max = int(ngram_max)

    def __call__(self, input: Documents) -> Embeddings:
        return [self._embed(text) for text in input]

    def _embed(self, text: str) -> Any:
        return np.array(hash_vector(text, self.dimensions, self.ngram_max), dtype=np.float32)

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


def _default_function(params: dict[str, Any]) -> EmbeddingFunction[Documents]:
    model_dir = params.get("model_dir")
    if model_dir:
        folder = Path(str(model_dir)).expanduser()
        if not has_model(folder) and not (folder / "onnx.tar.gz").is_file():
            raise EmbeddingUnavailableError(
                HOW_TO_PROVIDE.format(
                    where=f" in model_dir {folder}",
                    reason="model_dir holds neither onnx/ nor onnx.tar.gz",
                )
            )
    return MiniLMEmbeddingFunction(
        model_dir=str(model_dir) if model_dir else None,
        preferred_providers=params.get("preferred_providers"),
    )


# Settings that name an environment variable, and settings that say where requests go.
_URL_KEYS = frozenset(
    {"url", "uri", "api_base", "base_url", "endpoint", "host", "hostname", "api_url", "server"}
)
_URL_SUFFIXES = ("_url", "_uri", "_endpoint", "_host", "_base")


def _names_variable(key: str) -> bool:
    lowered = key.lower().lstrip("_")
    return lowered.endswith(("env_var", "_env")) or lowered in ("env", "env_var")


def _names_destination(key: str) -> bool:
    lowered = key.lower().lstrip("_")
    return lowered in _URL_KEYS or lowered.endswith(_URL_SUFFIXES)


def _check_variable(setting: str, value: Any, policy: StorePolicy) -> None:
    if not isinstance(value, str) or not policy.allows_env(value):
        shown = value if isinstance(value, str) and len(value) <= 100 else "this variable"
        raise ConfinementError(
            f"{setting} names the environment variable {shown!r}, which the operator did not "
            f"allow, so botreg does not let the embedding provider read it: the operator "
            f"allows a variable with --allow-env (e.g. --allow-env {shown!r}), or fix the "
            "environment file"
        )


def _check_settings(settings: EmbeddingSettings, policy: StorePolicy) -> bool:
    """Check the settings before building; True if they give the provider a credential."""
    credential = bool(settings.operator_vars)
    for key, value in settings.params.items():
        if isinstance(key, str) and _names_variable(key) and value is not None:
            _check_variable(f"knowledge.embedding.{key}", value, policy)
            credential = True
    if credential:
        for key, value in settings.params.items():
            if isinstance(key, str) and _names_destination(key) and isinstance(value, str):
                check_credential_url(f"knowledge.embedding.{key}", value, policy)
    return credential


def _check_function(
    function: Any, settings: EmbeddingSettings, credential: bool, policy: StorePolicy
) -> None:
    """Check the built function: the variables it really reads, where it really sends them."""
    import os

    attributes = {
        str(k): v for k, v in getattr(function, "__dict__", {}).items() if isinstance(k, str)
    }
    for key, value in attributes.items():
        if _names_variable(key) and isinstance(value, str) and os.environ.get(value):
            # read whatever the settings said (e.g. HUGGINGFACE_API_KEY, if set, wins)
            _check_variable(f"knowledge.embedding ({settings.provider}: {key})", value, policy)
            credential = True
    if attributes.get("api_key"):
        credential = True
    if credential:
        for key, value in attributes.items():
            if _names_destination(key) and isinstance(value, str) and value:
                check_credential_url(
                    f"knowledge.embedding ({settings.provider}: {key.lstrip('_')})", value, policy
                )


def build_embedding_function(
    settings: EmbeddingSettings, policy: StorePolicy | None = None
) -> EmbeddingFunction[Documents]:
    """Build the embedding function (cheap: models load on first use).

    Args:
        settings: The environment's (or the ledger's) embedding settings.
        policy: The operator's policy (default: `store_policy()`).

    Raises:
        ConfinementError: for a variable the operator did not allow, or a
            credential bound for a host the operator did not name (see the
            module docstring).
        EmbeddingUnavailableError: for an unknown provider or invalid parameters.
    """
    policy = policy or store_policy()
    credential = _check_settings(settings, policy)
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
        function = factory.build_from_config(params)
    except Exception as exc:  # third-party constructors raise anything
        raise EmbeddingUnavailableError(f"embedding provider {provider!r}: {exc}") from None
    _check_function(function, settings, credential, policy)  # before its first request
    return function


def create_embedding_function(
    settings: EmbeddingSettings, policy: StorePolicy | None = None
) -> EmbeddingFunction[Documents]:
    """Build the embedding function and prove it works (see `preflight`)."""
    function = build_embedding_function(settings, policy)
    preflight(function, settings)
    return function
