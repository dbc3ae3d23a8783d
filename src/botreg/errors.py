"""The small exception tree that the CLI maps to exit codes.

Library code raises these; `botreg.cli` turns them into a message and an exit
code (errors 1, usage 2). Anything else that escapes is a bug: exit 3.
"""

from __future__ import annotations

__all__ = [
    "BotregError",
    "RepositoryError",
    "ResolutionError",
    "UsageError",
]


class BotregError(Exception):
    """An expected failure with a message for the user (exit code 1)."""

    exit_code = 1


class UsageError(BotregError):
    """Wrong arguments or options (exit code 2)."""

    exit_code = 2


class RepositoryError(BotregError):
    """The registry repository cannot be read at all (exit code 2)."""

    exit_code = 2


class ResolutionError(BotregError):
    """A config cannot be resolved for an environment (exit code 1)."""
