"""`create_registry_backend` and `GitRegistryAdapter` (the seed's factory and adapter).

The seed stores registrations in databases (`postgres`, `sqlite`, `s3`, `file`
through its `DataKnobsRegistryAdapter`). In botreg the registry is a git
repository: bots are YAML files, every write is a validated commit, and the
sync daemon applies what is pushed. So `create_registry_backend` knows three
types - "memory", "git" and "http" - and the seed's database types are refused
with a message saying what replaces them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

from botreg.api.backends import InMemoryBackend, RegistryBackend
from botreg.api.git_backend import GitRegistryBackend
from botreg.errors import UsageError

__all__ = [
    "BackendConfigError",
    "DataKnobsRegistryAdapter",
    "GitRegistryAdapter",
    "create_registry_backend",
]

DOCS = "docs/python-api.md#what-git-replaces"
_DATABASES = ("postgres", "postgresql", "sqlite", "s3", "file", "dataknobs")
_GIT_KEYS = ("data_dir", "repo", "revision", "push", "remote")
_HTTP_KEYS = (
    "base_url",
    "url",
    "auth_header",
    "auth_token",
    "token",
    "timeout",
    "consistent_with",
    "transport",
)


class BackendConfigError(UsageError, ValueError):
    """A backend type or config botreg cannot build (a ValueError, as in the seed)."""


def _replaced_by_git(kind: str) -> BackendConfigError:
    return BackendConfigError(
        f"registry backend {kind!r} is replaced by git in botreg: bots are files in the "
        "registry repository and every write is a validated commit. Use "
        "create_registry_backend('git', {'repo': <a clone>}) to read and write, "
        "{'data_dir': <the daemon's data dir>} to read what the daemon applied, or "
        f"'http' for a daemon's API (see {DOCS})"
    )


def _check_keys(kind: str, config: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in config if k not in allowed)
    if unknown:
        raise BackendConfigError(
            f"unknown {kind} registry backend option(s): {', '.join(unknown)} "
            f"(known: {', '.join(allowed)})"
        )


def _git(config: dict[str, Any]) -> GitRegistryBackend:
    _check_keys("git", config, _GIT_KEYS)
    if ("data_dir" in config) == ("repo" in config):
        raise BackendConfigError(
            "a git registry backend needs exactly one of 'repo' (a clone: reads and "
            "writes) or 'data_dir' (the sync daemon's data dir: reads what it applied)"
        )
    return GitRegistryBackend(**config)


def _http(config: dict[str, Any]) -> RegistryBackend:
    """An HTTPRegistryBackend from the seed's keys, whatever spelling its constructor takes."""
    from botreg.api.http_backend import HTTPRegistryBackend

    _check_keys("http", config, _HTTP_KEYS)
    base_url = config.get("base_url") or config.get("url")
    if not base_url:
        raise BackendConfigError("an http registry backend needs 'base_url'")
    params = inspect.signature(HTTPRegistryBackend).parameters
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if "base_url" in params:
        kwargs["base_url"] = str(base_url)
    else:
        args.append(str(base_url))
    token = config.get("auth_token") or config.get("token")
    header = config.get("auth_header")
    if token and header:
        raise BackendConfigError("give 'auth_token' or 'auth_header', not both")
    if header and "auth_header" not in params:
        scheme, _, value = str(header).partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise BackendConfigError("'auth_header' must be 'Bearer <token>'")
        token, header = value, None
    if token:
        for name in ("auth_token", "token"):
            if name in params:
                kwargs[name] = str(token)
                break
        else:
            kwargs["auth_header"] = f"Bearer {token}"
    elif header:
        kwargs["auth_header"] = str(header)
    for name in ("timeout", "consistent_with", "transport"):
        if name in config and name in params:
            kwargs[name] = config[name]
    # typed loosely: the class gains the protocol's writes in another change
    make: Callable[..., Any] = HTTPRegistryBackend
    return cast(RegistryBackend, make(*args, **kwargs))


def create_registry_backend(
    backend_type: str, config: dict[str, Any] | None = None
) -> RegistryBackend:
    """A registry backend from a type and a config (the seed's factory).

    Args:
        backend_type: "memory" (InMemoryBackend, no options); "git"
            (GitRegistryBackend: `repo` or `data_dir`, and `revision`, `push`,
            `remote`); "http" (HTTPRegistryBackend: `base_url`, `auth_token` or
            `auth_header`, `timeout`).
        config: The backend's options.

    Returns:
        The backend, not yet initialized (`await backend.initialize()`).

    Raises:
        BackendConfigError: (a ValueError) for an unknown type or option, or one
            of the seed's database types, which git replaces.
    """
    kind = str(backend_type).lower()
    options = dict(config or {})
    if kind == "memory":
        _check_keys("memory", options, ())
        return InMemoryBackend()
    if kind == "git":
        return _git(options)
    if kind == "http":
        return _http(options)
    if kind in _DATABASES:
        raise _replaced_by_git(kind)
    raise BackendConfigError(
        f"unknown registry backend {backend_type!r}: use 'memory', 'git' or 'http'"
    )


class GitRegistryAdapter(GitRegistryBackend):
    """The seed's `DataKnobsRegistryAdapter` role: a configured persistent backend.

    The seed wraps a database (`backend_type="postgres"`, ...); botreg's
    persistent store is the git registry, so this is a GitRegistryBackend built
    from the seed's constructor shape. `DataKnobsRegistryAdapter` is the same
    class, for code written against the seed.

    Args:
        backend_type: "git" (the seed's database types are refused: git replaces them).
        backend_config: GitRegistryBackend's options: `repo` or `data_dir`, and
            `revision`, `push`, `remote`.
        database: The seed's ready database instance: not supported (there is none).

    Raises:
        BackendConfigError: for another type, unknown options, or `database=`.
    """

    def __init__(
        self,
        backend_type: str = "git",
        backend_config: dict[str, Any] | None = None,
        database: Any = None,
    ) -> None:
        if database is not None:
            raise BackendConfigError(
                "botreg has no database to pass: give backend_config={'repo': ...} or "
                f"{{'data_dir': ...}} (see {DOCS})"
            )
        kind = str(backend_type).lower()
        if kind != "git":
            if kind == "memory":
                raise BackendConfigError(
                    "an in-memory registry is InMemoryBackend() (or "
                    "create_registry_backend('memory'))"
                )
            if kind in _DATABASES:
                raise _replaced_by_git(kind)
            raise BackendConfigError(f"unknown adapter backend {backend_type!r}: use 'git'")
        options = dict(backend_config or {})
        _git(options)  # the same checks as the factory's
        super().__init__(**options)
        self.backend_type = kind


DataKnobsRegistryAdapter = GitRegistryAdapter
