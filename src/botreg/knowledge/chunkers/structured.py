"""JSON and YAML knowledge as sections and records.

A mapping's scalar values become `key: value` lines in the section of its key
path (`plans > Team`); a list item that is a mapping is a record: a chunk of
its own named by its identifying field (`name`, `title`, `id`, ...), that field
first; its nested values follow as sections under it. A list of scalars is a
`- value` list. Nothing recurses: an explicit stack walks the document, so a
deeply nested one cannot exhaust the interpreter's stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botreg.knowledge.chunkers.base import count_tokens, split_lines, split_prose
from botreg.knowledge.chunkers.packer import Packer
from botreg.knowledge.chunkers.records import identifier, record_lines, record_pieces

__all__ = ["MAX_PATH", "chunk_data", "data_title"]

# A path deeper than this keeps its first key and its last ones (the context
# line shows only the nearest anyway): work per section stays bounded.
MAX_PATH = 24
_INLINE_CHARS = 120


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 1000:
        return hex(value)  # str() refuses integers of over 4,300 digits
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def _key(key: Any) -> str:
    return hex(key) if isinstance(key, int) and key.bit_length() > 1000 else str(key)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, Mapping | list)


def _is_inline(value: Any) -> bool:
    """A scalar, or a short list of scalars (written on one line: `a, b, c`)."""
    if isinstance(value, list):
        return all(map(_is_scalar, value)) and len(", ".join(map(_scalar, value))) <= _INLINE_CHARS
    return _is_scalar(value)


def _inline(value: Any) -> str:
    return ", ".join(map(_scalar, value)) if isinstance(value, list) else _scalar(value)


def _child(path: tuple[str, ...], name: str) -> tuple[str, ...]:
    path = (*path, name)
    return path if len(path) <= MAX_PATH else (path[0], "…", *path[-(MAX_PATH - 2) :])


def data_title(data: Any) -> str:
    """A document's own `title` (a top-level string), or ""."""
    title = data.get("title") if isinstance(data, Mapping) else None
    return _scalar(title) if isinstance(title, str) else ""


def _lines(packer: Packer, path: tuple[str, ...], lines: list[str]) -> None:
    packer.section(path)
    if count_tokens("\n".join(lines)) <= packer.budget:
        packer.add("\n".join(lines))
        return
    for piece in split_lines(lines, packer.budget):
        packer.add(piece)


def chunk_data(data: Any, packer: Packer) -> None:
    """Hand a loaded JSON/YAML document to `packer`, in document order."""
    # tasks: (value, path, is a record); pushed in reverse so they pop in order
    stack: list[tuple[Any, tuple[str, ...], bool]] = [(data, (), False)]
    while stack:
        value, path, record = stack.pop()
        todo: list[tuple[Any, tuple[str, ...], bool]] = []
        if isinstance(value, Mapping):
            fields = [(_key(k), _inline(v)) for k, v in value.items() if _is_inline(v)]
            if record:
                packer.section(path, record=True)
                for piece in record_pieces(fields, packer.budget):
                    packer.add(piece)
            elif fields:
                _lines(packer, path, record_lines(fields))
            for key, child in value.items():
                if not _is_inline(child):
                    todo.append((child, _child(path, _key(key)), False))
        elif isinstance(value, list):
            scalars = [f"- {_scalar(v)}" for v in value if _is_scalar(v)]
            if scalars:
                _lines(packer, path, scalars)
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    fields = [(_key(k), _inline(v)) for k, v in item.items() if _is_inline(v)]
                    name = identifier(fields) or f"item {index + 1}"
                    todo.append((item, _child(path, name), True))
                elif isinstance(item, list):
                    todo.append((item, _child(path, f"item {index + 1}"), False))
        else:
            packer.section(path)
            text = _scalar(value)
            for piece in split_prose(text, packer.budget, 0):
                packer.add(piece)
        stack.extend(reversed(todo))
