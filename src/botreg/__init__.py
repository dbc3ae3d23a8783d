"""botreg: a GitOps registry for chatbot configurations and their knowledge bases.

The public API is pinned by `__all__`; everything else is internal. Names are
imported on first use, so `botreg validate` (the pre-commit hook) starts fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from botreg.api import (
        CachingRegistryManager,
        ConfigCachingManager,
        EventLogFollower,
        GitRegistryBackend,
        HotReloadManager,
        InMemoryBackend,
        Registration,
        RegistryBackend,
        RegistryPoller,
        RegistryValidationError,
        ReloadMode,
        ResolvedConfig,
    )
    from botreg.errors import BotregError, RepositoryError, ResolutionError, UsageError
    from botreg.knowledge import (
        FileKnowledgeBackend,
        GitKnowledgeBackend,
        IngestionResult,
        IngestionStatus,
        InMemoryKnowledgeBackend,
        KnowledgeBaseInfo,
        KnowledgeFile,
        KnowledgeIngestionManager,
        KnowledgeResourceBackend,
        KnowledgeStore,
        create_knowledge_backend,
    )
    from botreg.resolve import resolve_config
    from botreg.validation.portability import (
        PortabilityError,
        has_resource_references,
        is_portable,
        validate_portability,
    )

_EXPORTS = {
    "CachingRegistryManager": "botreg.api",
    "ConfigCachingManager": "botreg.api",
    "EventLogFollower": "botreg.api",
    "GitRegistryBackend": "botreg.api",
    "HotReloadManager": "botreg.api",
    "InMemoryBackend": "botreg.api",
    "Registration": "botreg.api",
    "RegistryBackend": "botreg.api",
    "RegistryPoller": "botreg.api",
    "RegistryValidationError": "botreg.api",
    "ReloadMode": "botreg.api",
    "ResolvedConfig": "botreg.api",
    "BotregError": "botreg.errors",
    "RepositoryError": "botreg.errors",
    "ResolutionError": "botreg.errors",
    "UsageError": "botreg.errors",
    "resolve_config": "botreg.resolve",
    "FileKnowledgeBackend": "botreg.knowledge",
    "GitKnowledgeBackend": "botreg.knowledge",
    "IngestionResult": "botreg.knowledge",
    "IngestionStatus": "botreg.knowledge",
    "InMemoryKnowledgeBackend": "botreg.knowledge",
    "KnowledgeBaseInfo": "botreg.knowledge",
    "KnowledgeFile": "botreg.knowledge",
    "KnowledgeIngestionManager": "botreg.knowledge",
    "KnowledgeResourceBackend": "botreg.knowledge",
    "KnowledgeStore": "botreg.knowledge",
    "create_knowledge_backend": "botreg.knowledge",
    "PortabilityError": "botreg.validation.portability",
    "has_resource_references": "botreg.validation.portability",
    "is_portable": "botreg.validation.portability",
    "validate_portability": "botreg.validation.portability",
}

__all__ = [
    "BotregError",
    "CachingRegistryManager",
    "ConfigCachingManager",
    "EventLogFollower",
    "FileKnowledgeBackend",
    "GitKnowledgeBackend",
    "GitRegistryBackend",
    "HotReloadManager",
    "InMemoryBackend",
    "InMemoryKnowledgeBackend",
    "IngestionResult",
    "IngestionStatus",
    "KnowledgeBaseInfo",
    "KnowledgeFile",
    "KnowledgeIngestionManager",
    "KnowledgeResourceBackend",
    "KnowledgeStore",
    "PortabilityError",
    "Registration",
    "RegistryBackend",
    "RegistryPoller",
    "RegistryValidationError",
    "ReloadMode",
    "RepositoryError",
    "ResolutionError",
    "ResolvedConfig",
    "UsageError",
    "__version__",
    "create_knowledge_backend",
    "has_resource_references",
    "is_portable",
    "resolve_config",
    "validate_portability",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'botreg' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value
