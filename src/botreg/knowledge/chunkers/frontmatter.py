"""Markdown front matter: the YAML block at the top, and what chunks carry of it.

A knowledge file may start with `---` YAML `---`; its `title` names the document
in every chunk, and the whole block rides along as chunk metadata (bounded: every
chunk of the file carries it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from botreg.registry.yamlfast import YamlLoadError, load_fast

__all__ = [
    "MAX_FRONT_MATTER_BYTES",
    "MAX_TITLE_CHARS",
    "front_matter_metadata",
    "split_front_matter",
]

MAX_FRONT_MATTER_BYTES = 8 * 1024
MAX_TITLE_CHARS = 512

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.S)


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """YAML front matter (`---` ... `---` at the top) and the rest of the text."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        data = load_fast(match.group(1) or "")
    except YamlLoadError:
        return {}, text  # not front matter after all: keep it as text
    if not isinstance(data, dict):
        return {}, text
    return data, text[match.end() :]


def front_matter_metadata(front: dict[str, Any]) -> dict[str, str]:
    """Front matter as chunk metadata: one JSON field and the `title`.

    Both keys are always present ("" when absent): Chroma merges metadata on
    update, so a fixed key set is what makes an update replace it whole. Every
    chunk of the file carries them, so they are bounded: front matter whose JSON
    is over `MAX_FRONT_MATTER_BYTES` (or too deep to encode) is left out, and
    the title is cut to `MAX_TITLE_CHARS`.
    """
    title = front.get("title")
    try:
        encoded = json.dumps(front, sort_keys=True, default=str) if front else ""
    except (RecursionError, ValueError, TypeError):  # too deep, huge ints, mixed key types
        encoded = ""
    return {
        "front_matter": encoded if len(encoded) <= MAX_FRONT_MATTER_BYTES else "",
        "title": title[:MAX_TITLE_CHARS] if isinstance(title, str) else "",
    }
