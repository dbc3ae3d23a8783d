"""Domain ids and file paths from callers: checked before any backend touches them.

A knowledge path comes from an application (an upload's name): `../../etc`, an
absolute path, a control character or a hidden name must never reach a file
system, a git tree or a store. The rules are the registry's own: a domain is an
identifier, and a path is what `botreg.registry.layout.classify` reads as a
knowledge file under `knowledge/<domain>/`.
"""

from __future__ import annotations

from botreg.knowledge.storage.errors import KnowledgePathError
from botreg.registry.layout import (
    DOMAIN_FILE,
    KNOWLEDGE_DIR,
    FileKind,
    classify,
    escape_unsafe,
    is_identifier,
    unsafe_character,
)

__all__ = [
    "MAX_PATH_CHARS",
    "RESERVED_FILES",
    "check_domain",
    "check_path",
    "is_domain",
    "registry_path",
]

MAX_PATH_CHARS = 1024
# Names a backend keeps for itself: the git domain settings, the file backend's metadata.
RESERVED_FILES = frozenset({DOMAIN_FILE, "_metadata.json"})


def check_domain(domain_id: str) -> str:
    """`domain_id` if it is a valid knowledge base name.

    Args:
        domain_id: The knowledge base (a folder under `knowledge/`).

    Raises:
        KnowledgePathError: if it is not lowercase letters, digits, `_` and `-`
            (at most 63 characters, starting with a letter or digit).
    """
    if not isinstance(domain_id, str) or not is_identifier(domain_id):
        shown = escape_unsafe(str(domain_id))
        raise KnowledgePathError(
            f"invalid knowledge base name '{shown}': use lowercase letters, digits, '_' and "
            "'-' (at most 63 characters, starting with a letter or digit)"
        )
    return domain_id


def is_domain(name: str) -> bool:
    """True if `name` is a valid knowledge base name (see `check_domain`)."""
    return is_identifier(name)


def check_path(path: str) -> str:
    """`path` if it is a safe relative file path inside a knowledge base.

    Refused: empty, absolute (`/x`, `C:/x`), a backslash, `.` or `..` or empty
    segments, a hidden segment (`.git/x`), a control, invisible or bidi character,
    a reserved name at the top (`_domain.yaml`, `_metadata.json`) and longer than
    `MAX_PATH_CHARS`.

    Args:
        path: The path relative to the knowledge base, POSIX separators.

    Raises:
        KnowledgePathError: naming the rule the path breaks.
    """
    if not isinstance(path, str) or not path:
        raise KnowledgePathError("empty file path: name the file, e.g. 'content/intro.md'")
    shown = escape_unsafe(path)
    bad = unsafe_character(path)
    if bad is not None:
        raise KnowledgePathError(
            f"file path '{shown}' contains {bad}: use printable UTF-8 characters only"
        )
    if len(path) > MAX_PATH_CHARS:
        raise KnowledgePathError(f"file path is over {MAX_PATH_CHARS} characters: shorten it")
    if "\\" in path:
        raise KnowledgePathError(f"file path '{shown}' has a backslash: use '/' between folders")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise KnowledgePathError(
            f"file path '{shown}' is absolute: give it relative to the knowledge base"
        )
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise KnowledgePathError(
            f"file path '{shown}' has an empty, '.' or '..' segment: paths stay inside "
            "the knowledge base"
        )
    if any(part.startswith(".") for part in parts):
        raise KnowledgePathError(
            f"file path '{shown}' has a hidden name (starting with '.'): rename it"
        )
    if parts[0] in RESERVED_FILES:
        raise KnowledgePathError(
            f"'{shown}' is reserved for the knowledge base's own settings: choose another name"
        )
    return path


def registry_path(domain_id: str, path: str) -> str:
    """The repository path of a knowledge file, both parts checked.

    Args:
        domain_id: The knowledge base.
        path: The file's path within it.

    Raises:
        KnowledgePathError: if either is refused, or the registry layout would not
            read the result as a knowledge file.
    """
    rel = f"{KNOWLEDGE_DIR}/{check_domain(domain_id)}/{check_path(path)}"
    if classify(rel).kind is not FileKind.KNOWLEDGE:
        raise KnowledgePathError(f"'{escape_unsafe(rel)}' is not a knowledge file path")
    return rel
