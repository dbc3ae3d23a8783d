"""JSON and YAML knowledge rendered as Markdown, then chunked like Markdown.

Keys holding mappings or lists become headings, so a chunk's heading path is
its key path (`plans > Team`); scalar keys become a definition list
(`- **seats**: 25`); a list of flat objects becomes a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_markdown"]

_MAX_TABLE_COLUMNS = 12
_NAME_KEYS = ("name", "title", "id", "key")


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


def _cell(value: Any) -> str:
    return _scalar(value).replace("|", "\\|")


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, Mapping | list)


def _is_inline(value: Any) -> bool:
    """A scalar, or a short list of scalars (written on one line: `a, b, c`)."""
    if isinstance(value, list):
        return all(_is_scalar(v) for v in value) and len(", ".join(map(_scalar, value))) <= 120
    return _is_scalar(value)


def _inline(value: Any) -> str:
    return ", ".join(map(_scalar, value)) if isinstance(value, list) else _scalar(value)


def _table(rows: list[Mapping[str, Any]]) -> str | None:
    columns: list[str] = []
    for row in rows:
        if not all(_is_scalar(v) for v in row.values()):
            return None
        columns.extend(_key(k) for k in row if _key(k) not in columns)
        if len(columns) > _MAX_TABLE_COLUMNS:  # stop early: rows may be thousands
            return None
    if not columns:
        return None
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        values = {_key(k): v for k, v in row.items()}
        lines.append("| " + " | ".join(_cell(values.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _item_title(item: Any, index: int) -> str:
    if isinstance(item, Mapping):
        for key in _NAME_KEYS:
            if _is_scalar(item.get(key)) and item.get(key) not in (None, ""):
                return _scalar(item[key])
    return f"item {index + 1}"


def _render(root: Any, out: list[str]) -> None:
    # An explicit stack, not recursion: the verdict on a deeply nested document
    # must not depend on the interpreter's stack (items are pushed in reverse so
    # they pop in document order).
    stack: list[tuple[Any, int] | str] = [(root, 1)]
    while stack:
        task = stack.pop()
        if isinstance(task, str):
            out.append(task)
            continue
        value, depth = task
        hashes = "#" * min(depth, 6)
        todo: list[tuple[Any, int] | str] = []
        if isinstance(value, Mapping):
            scalars = [(k, v) for k, v in value.items() if _is_inline(v)]
            if scalars:
                todo.append("\n".join(f"- **{_key(k)}**: {_inline(v)}" for k, v in scalars))
            for key, child in value.items():
                if not _is_inline(child):
                    todo += [f"{hashes} {_key(key)}", (child, depth + 1)]
        elif isinstance(value, list):
            table = None
            if value and all(_is_scalar(v) for v in value):
                todo.append("\n".join(f"- {_scalar(v)}" for v in value))
            else:
                if value and all(isinstance(v, Mapping) for v in value):
                    table = _table(value)
                if table is not None:
                    todo.append(table)
                else:
                    for index, item in enumerate(value):
                        if _is_scalar(item):
                            todo.append(f"- {_scalar(item)}")
                        else:
                            todo += [f"{hashes} {_item_title(item, index)}", (item, depth + 1)]
        else:
            todo.append(_scalar(value))
        stack.extend(reversed(todo))


def render_markdown(data: Any) -> str:
    """Markdown for a loaded JSON/YAML document (deterministic)."""
    out: list[str] = []
    _render(data, out)
    return "\n\n".join(part for part in out if part.strip()) + "\n"
