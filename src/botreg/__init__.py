"""botreg: a GitOps registry for chatbot configurations and their knowledge bases.

The public API is pinned by `__all__`; everything else is internal.
"""

from __future__ import annotations

__version__ = "0.1.0"

from botreg.errors import BotregError, RepositoryError, ResolutionError, UsageError
from botreg.resolve import resolve_config
from botreg.validation.portability import (
    PortabilityError,
    has_resource_references,
    is_portable,
    validate_portability,
)

__all__ = [
    "BotregError",
    "PortabilityError",
    "RepositoryError",
    "ResolutionError",
    "UsageError",
    "__version__",
    "has_resource_references",
    "is_portable",
    "resolve_config",
    "validate_portability",
]
