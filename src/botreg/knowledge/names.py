"""Names from the repository that must be checked before they reach the store or a terminal.

A domain is a folder name and a file a path, both chosen by whoever commits:
`knowledge/billing\\n/` looks like `billing` in a listing, breaks Chroma's
collection naming and splits a one-line message in two. Validation reports such
names (BR403); the ingester and the CLI refuse them with these helpers.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from botreg.registry.layout import (
    DOMAIN_FILE,
    KNOWLEDGE_DIR,
    UNSAFE_CHARACTERS,
    escape_unsafe,
    is_identifier,
    knowledge_type,
)

__all__ = ["domain_folder", "escape_controls", "folder_files", "has_control", "valid_domain"]


def has_control(text: str) -> bool:
    """True if text holds an unsafe character (control, separator, bidi, undecodable byte)."""
    return UNSAFE_CHARACTERS.search(text) is not None


def escape_controls(text: str) -> str:
    """Text with its unsafe characters escaped (`billing\\n`), for one-line messages."""
    return escape_unsafe(text)


# a domain is a folder name with the identifier rule (the whole name: no trailing newline)
valid_domain = is_identifier


def domain_folder(path: str) -> str | None:
    """The folder under knowledge/ that holds `path`, whatever its name (None: not knowledge)."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == KNOWLEDGE_DIR else None


def folder_files(paths: Iterable[str], folder: str) -> list[str]:
    """The files of a supported type under knowledge/<folder>/ (no `_domain.yaml`), sorted.

    Unlike the domain's file selection this keeps every name, so the names that
    selection refuses can be reported.
    """
    return sorted(
        p
        for p in paths
        if domain_folder(p) == folder
        and PurePosixPath(p).name != DOMAIN_FILE
        and knowledge_type(p) is not None
    )
