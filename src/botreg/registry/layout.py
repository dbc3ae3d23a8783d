"""Where things live in a registry repository, and what each path is.

The layout is a public contract (see README "Repository format"):

    registry.yaml                    registry settings
    bots/<bot-id>.yaml               one bot per file, the id is the file stem
    knowledge/<domain>/**            the files of one knowledge base
    knowledge/<domain>/_domain.yaml  optional domain settings
    environments/<name>.yaml         resources and knowledge store per environment
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

__all__ = [
    "BOTS_DIR",
    "DOMAIN_FILE",
    "ENVIRONMENTS_DIR",
    "IDENTIFIER_RE",
    "KNOWLEDGE_DIR",
    "KNOWLEDGE_TYPES",
    "REGISTRY_FILE",
    "UNSAFE_CHARACTERS",
    "FileKind",
    "KnowledgeType",
    "PathInfo",
    "classify",
    "escape_unsafe",
    "is_identifier",
    "knowledge_type",
    "unsafe_character",
]

REGISTRY_FILE = "registry.yaml"
BOTS_DIR = "bots"
KNOWLEDGE_DIR = "knowledge"
ENVIRONMENTS_DIR = "environments"
DOMAIN_FILE = "_domain.yaml"
STANDARD_FOLDERS = frozenset({BOTS_DIR, KNOWLEDGE_DIR, ENVIRONMENTS_DIR})

# Bot ids, domain names and environment names share one rule. `\Z`, not `$`:
# `$` also matches before a final newline, so "product-guide\n" passed.
IDENTIFIER_RE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,62}\Z")

# Characters no registry path may contain: C0 and C1 controls, DEL, the Unicode
# line and paragraph separators, and the bidi marks that make a name display
# differently from what it is. Such a name can forge output lines or look like
# another file, so the path is a finding and never reaches a consumer.
# Invisible characters too (zero-width spaces and joiners, the BOM, interlinear
# annotations, tag characters): they make two different names look the same.
# Surrogates too: git hands paths over as bytes, decoded with surrogateescape,
# so a byte that is not UTF-8 becomes U+DC80..U+DCFF; such a name cannot be
# encoded as text (a store, a JSON event, a terminal) and is refused like a control.
UNSAFE_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069"
    "\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f]"
)

# Knowledge file types by extension; any of them may also be gzip-compressed.
KNOWLEDGE_TYPES: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".csv": "csv",
    ".txt": "text",
}


class FileKind(StrEnum):
    """What a path in a registry repository is."""

    REGISTRY = "registry"
    BOT = "bot"
    ENVIRONMENT = "environment"
    DOMAIN = "domain"
    KNOWLEDGE = "knowledge"
    OTHER = "other"  # README.md, .pre-commit-config.yaml, hidden files: not checked
    MISPLACED = "misplaced"  # inside a standard folder but not where the format allows


@dataclass(frozen=True, slots=True)
class KnowledgeType:
    """The parse type of a knowledge file and whether it is gzip-compressed."""

    kind: str  # markdown | json | yaml | csv | text
    compressed: bool


@dataclass(frozen=True, slots=True)
class PathInfo:
    """A classified registry path."""

    kind: FileKind
    ident: str | None = None  # bot id, environment name or knowledge domain
    reason: str = ""  # for MISPLACED: what is wrong and where it should go
    code: str = "BR406"  # for MISPLACED: the check code of the finding (BR403: unsafe name)


def is_identifier(name: str) -> bool:
    """True if `name` is a valid bot id, domain name or environment name (whole string)."""
    return IDENTIFIER_RE.fullmatch(name) is not None


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape): the byte
        return f"\\x{code - 0xDC00:02x}"
    if code > 0xFFFF:  # tag characters: \U, so the escape cannot run into what follows
        return f"\\U{code:08x}"
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_unsafe(value: str) -> str:
    """`value` on one printable line: control, separator and bidi characters as escapes.

    The one escaper for text from the repository on a terminal or in a text
    report: a newline becomes the two characters `\\n`, a NUL `\\x00`, U+202E
    `\\u202e`, a byte that is not UTF-8 in a file name (surrogateescape) `\\xe9`.
    """
    return UNSAFE_CHARACTERS.sub(_escape_char, value)


def unsafe_character(path: str) -> str | None:
    """The first unsafe character of `path`, described, or None.

    A control, line-separator or bidi character is `U+XXXX`; a byte that is not
    UTF-8 (decoded by surrogateescape) is `the byte 0xE9 (not UTF-8)`.
    """
    match = UNSAFE_CHARACTERS.search(path)
    if match is None:
        return None
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself
        return f"the byte 0x{code - 0xDC00:02X} (not UTF-8)"
    return f"U+{code:04X}"


def knowledge_type(path: str) -> KnowledgeType | None:
    """The type of a knowledge file by its extension, or None if unsupported.

    `faq.md.gz` is compressed Markdown; `data.gz` alone is unsupported.
    """
    name = PurePosixPath(path).name.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    kind = KNOWLEDGE_TYPES.get(PurePosixPath(name).suffix)
    return KnowledgeType(kind, compressed) if kind else None


# Pure in the path, and called for every path of a tree each time a tree is read
# (the daemon reads one to three per commit): the cache keeps a 5,000-bot tree's
# classification off the per-commit path. Bounded: paths come from repositories.
@functools.lru_cache(maxsize=1 << 16)
def classify(path: str) -> PathInfo:
    """Classify a repository-relative POSIX path.

    A path with a control character is MISPLACED (code BR403) whatever its
    folder, so no consumer (validator, diff engine, ingester) treats it as a
    bot, domain or knowledge file.
    """
    bad = unsafe_character(path)
    if bad is not None:
        return PathInfo(
            FileKind.MISPLACED,
            reason=f"the path contains {_describe(bad)}; rename the file or folder "
            "using printable UTF-8 characters only",
            code="BR403",
        )
    parts = PurePosixPath(path).parts
    if any(part.startswith(".") for part in parts):
        # Tool files (.github/, .gitkeep, .DS_Store): never registry content.
        return PathInfo(FileKind.OTHER)
    if len(parts) == 1:
        return PathInfo(FileKind.REGISTRY if parts[0] == REGISTRY_FILE else FileKind.OTHER)
    top = parts[0]
    if top == BOTS_DIR:
        return _in_flat_folder(parts, FileKind.BOT, "bots/<bot-id>.yaml")
    if top == ENVIRONMENTS_DIR:
        return _in_flat_folder(parts, FileKind.ENVIRONMENT, "environments/<name>.yaml")
    if top == KNOWLEDGE_DIR:
        if len(parts) == 2:
            return PathInfo(
                FileKind.MISPLACED,
                reason="knowledge files belong in a domain folder: knowledge/<domain>/...",
            )
        domain = parts[1]
        if len(parts) == 3 and parts[2] == DOMAIN_FILE:
            return PathInfo(FileKind.DOMAIN, domain)
        return PathInfo(FileKind.KNOWLEDGE, domain)
    return PathInfo(FileKind.OTHER)


def _describe(bad: str) -> str:
    return bad if bad.startswith("the byte") else f"the control or invisible character {bad}"


def _in_flat_folder(parts: tuple[str, ...], kind: FileKind, pattern: str) -> PathInfo:
    if len(parts) != 2:
        return PathInfo(FileKind.MISPLACED, reason=f"sub-folders are not read here; use {pattern}")
    name = parts[1]
    if name.endswith(".yml"):
        return PathInfo(FileKind.MISPLACED, reason=f"use the .yaml extension: {pattern}")
    if not name.endswith(".yaml"):
        return PathInfo(FileKind.MISPLACED, reason=f"only YAML files are read here: {pattern}")
    return PathInfo(kind, name[: -len(".yaml")])
