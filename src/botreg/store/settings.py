"""Knowledge store and embedding settings, read from an environment file.

knowledge:
  store: {type: persistent, path: chroma}          # or {type: http, host, port, ssl, headers}
  embedding: {provider: hash, dimensions: 384}      # or default, or a Chroma function name
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botreg.envref import REF
from botreg.errors import BotregError
from botreg.resolve import expand_variables

__all__ = ["EmbeddingSettings", "KnowledgeSettings", "StoreSettings"]

# Settings that say where a model lives, not which model it is: they do not
# change the vectors, so they do not force a re-embedding.
_LOCATION_KEYS = frozenset({"model_dir", "api_key_env_var", "timeout", "preferred_providers"})

_REF = REF  # as botreg.resolve


def _operator_vars(section: Any, env: Mapping[str, str]) -> tuple[str, ...]:
    """The variables of `env` whose value a `${VAR}` of `section` expands to (sorted).

    A reference whose variable is unset or empty takes its committed default:
    only the others carry the operator's values (see `botreg.resolve`).
    """
    found: set[str] = set()
    stack = [section]
    while stack:  # iterative: a committed section is any depth
        node = stack.pop()
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and "${" in node:
            for match in _REF.finditer(node):
                escaped, name, _default = match.groups()
                if not escaped and env.get(name):
                    found.add(name)
    return tuple(sorted(found))


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
    # variables of the operator's environment expanded into the section (names, not values)
    operator_vars: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        """Which store this is (where its data lives), without any credential: the
        ledger records it, so a move to another store is noticed."""
        persistent = self.type == "persistent"
        return "|".join(
            str(v)
            for v in (
                self.type,
                self.path if persistent else "",
                "" if persistent else self.host,
                "" if persistent else self.port,
                self.tenant,
                self.database,
            )
        )


@dataclass(frozen=True, slots=True)
class EmbeddingSettings:
    """Which embedding function, and its parameters."""

    provider: str = "default"
    params: dict[str, Any] = field(default_factory=dict)
    # variables of the operator's environment expanded into the params: where the
    # values go, not which vectors come out (not compared, not recorded)
    operator_vars: tuple[str, ...] = field(default=(), compare=False)

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
        raw = environment.get("knowledge") if isinstance(environment, Mapping) else None
        raw = raw if isinstance(raw, Mapping) else {}
        variables = os.environ if env is None else env
        store_vars = _operator_vars(raw.get("store"), variables)
        embedding_vars = _operator_vars(raw.get("embedding"), variables)
        section = expand_variables(raw, env)
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
                operator_vars=store_vars,
            )
        except (TypeError, ValueError) as exc:
            raise BotregError(f"knowledge.store: {exc}; run `botreg validate`") from None
        provider = str(embedding.pop("provider", "default"))
        return cls(store_settings, EmbeddingSettings(provider, embedding, embedding_vars))
