"""`create_knowledge_backend`: a knowledge storage backend from a config (the seed's factory).

- `git`: `GitKnowledgeBackend`; `data_dir`, or `repo` with `revision`, `push`,
  `remote`; optional `status_dir`.
- `memory`: `InMemoryKnowledgeBackend`; no settings.
- `file`: `FileKnowledgeBackend`; `path`.

The seed's `s3` is refused with a pointer to git: in botreg the registry
repository is where knowledge files live (every upload a reviewed commit).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botreg.errors import UsageError
from botreg.knowledge.storage.files import FileKnowledgeBackend
from botreg.knowledge.storage.git import GitKnowledgeBackend
from botreg.knowledge.storage.memory import InMemoryKnowledgeBackend
from botreg.knowledge.storage.protocol import KnowledgeResourceBackend

__all__ = ["KNOWLEDGE_BACKEND_TYPES", "create_knowledge_backend"]

KNOWLEDGE_BACKEND_TYPES = ("git", "memory", "file")
_GIT_KEYS = frozenset({"data_dir", "repo", "revision", "push", "remote", "status_dir"})


def create_knowledge_backend(
    backend_type: str, config: Mapping[str, Any] | None = None
) -> KnowledgeResourceBackend:
    """A knowledge storage backend (call `await backend.initialize()` next).

    Args:
        backend_type: `git`, `memory` or `file`.
        config: The backend's settings (see the module docstring).

    Returns:
        The backend, not yet initialized.

    Raises:
        UsageError: for an unknown type, a missing `path` (file), or unknown keys (git).
    """
    settings = dict(config or {})
    kind = str(backend_type).lower()
    if kind == "memory":
        return InMemoryKnowledgeBackend()
    if kind == "file":
        path = settings.get("path")
        if not path:
            raise UsageError('the file knowledge backend needs {"path": "<folder>"}')
        return FileKnowledgeBackend(str(path))
    if kind == "git":
        unknown = sorted(set(settings) - _GIT_KEYS)
        if unknown:
            raise UsageError(
                f"unknown git knowledge backend setting(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_GIT_KEYS))})"
            )
        return GitKnowledgeBackend(**settings)
    hint = (
        "; in botreg knowledge files live in the registry repository: use 'git' "
        "(see docs/knowledge-storage.md)"
        if kind == "s3"
        else ""
    )
    raise UsageError(
        f"unknown knowledge backend type {backend_type!r}: use one of "
        f"{', '.join(KNOWLEDGE_BACKEND_TYPES)}{hint}"
    )
