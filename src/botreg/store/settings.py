"""Knowledge store and embedding settings, read from an environment file.

knowledge:
  store: {type: persistent, path: chroma}          # or {type: http, host, port, ssl, headers}
  embedding: {provider: hash, dimensions: 384}      # or default, or a Chroma function name
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botreg.errors import BotregError
from botreg.resolve import expand_variables

__all__ = ["EmbeddingSettings", "KnowledgeSettings", "StoreSettings"]

# Settings that say where a model lives, not which model it is: they do not
# change the vectors, so they do not force a re-embedding.
_LOCATION_KEYS = frozenset({"model_dir", "api_key_env_var", "timeout", "preferred_providers"})


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where the Chroma store is."""

    type: str = "persistent"  # persistent | http
    path: str = "chroma"  # persistent: relative to the data dir
    host: str = ""
    port: int = 8000
    ssl: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    tenant: str = ""
    database: str = ""


@dataclass(frozen=True, slots=True)
class EmbeddingSettings:
    """Which embedding function, and its parameters."""

    provider: str = "default"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Identity of the vectors this setting produces (location keys excluded)."""
        identity = {k: v for k, v in self.params.items() if k not in _LOCATION_KEYS}
        text = json.dumps({"provider": self.provider, "params": identity}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (as recorded in the ledger)."""
        return {"provider": self.provider, **self.params}

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> EmbeddingSettings:
        """The settings a `describe()` output stands for."""
        params = dict(description)
        return cls(str(params.pop("provider", "default")), params)


@dataclass(frozen=True, slots=True)
class KnowledgeSettings:
    """The `knowledge` section of an environment file, variables expanded."""

    store: StoreSettings = field(default_factory=StoreSettings)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)

    @classmethod
    def from_environment(
        cls, environment: Any, env: Mapping[str, str] | None = None
    ) -> KnowledgeSettings:
        """Read and resolve `knowledge` of an environment file's data.

        Raises:
            BotregError: if a value has the wrong type after `${VAR}` expansion.
            ResolutionError: if a variable is unset and has no default.
        """
        section = environment.get("knowledge") if isinstance(environment, Mapping) else None
        section = expand_variables(section or {}, env)
        store = dict(section.get("store") or {})
        embedding = dict(section.get("embedding") or {})
        try:
            store_settings = StoreSettings(
                type=str(store.pop("type", "persistent")),
                path=str(store.pop("path", "chroma")),
                host=str(store.pop("host", "")),
                port=int(store.pop("port", 8000)),
                ssl=bool(store.pop("ssl", False)),
                headers={str(k): str(v) for k, v in (store.pop("headers", None) or {}).items()},
                tenant=str(store.pop("tenant", "")),
                database=str(store.pop("database", "")),
            )
        except (TypeError, ValueError) as exc:
            raise BotregError(f"knowledge.store: {exc}; run `botreg validate`") from None
        provider = str(embedding.pop("provider", "default"))
        return cls(store_settings, EmbeddingSettings(provider, embedding))
