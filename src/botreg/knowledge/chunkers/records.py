"""Records (a CSV row, a JSON/YAML list item, a Markdown table row) as text a model finds.

A record is rendered as `key: value` lines, one field a line, every value
beside its column or key name, and its identifying field (`name`, `title`,
`id`, `sku`, ...) first: the line a question about the record most likely
names. Empty values are left out (they say nothing and cost tokens).
"""

from __future__ import annotations

import re

from botreg.knowledge.chunkers.base import count_tokens, split_lines

__all__ = [
    "IDENTIFYING_KEYS",
    "identifier",
    "ordered",
    "record_lines",
    "record_pieces",
    "table_rows",
]

# Most telling first: a field named so is what a record is called.
IDENTIFYING_KEYS = (
    "name",
    "title",
    "product",
    "product_name",
    "question",
    "term",
    "label",
    "sku",
    "id",
    "code",
    "key",
)
_SHORT_NAME_CHARS = 60
_KEY_RANK = {key: rank for rank, key in enumerate(IDENTIFYING_KEYS)}
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_DELIMITER_CELL = re.compile(r"\s*:?-+:?\s*\Z")


def _normal_key(key: str) -> str:
    return re.sub(r"[\s-]+", "_", key.strip().casefold())


def ordered(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The fields with values, the identifying one first (otherwise in their order)."""
    present = [(k, v) for k, v in fields if v.strip()]
    best = min(
        (i for i, (k, _) in enumerate(present) if _normal_key(k) in _KEY_RANK),
        key=lambda i: _KEY_RANK[_normal_key(present[i][0])],
        default=None,
    )
    if best is None:
        return present
    return [present[best], *present[:best], *present[best + 1 :]]


def identifier(fields: list[tuple[str, str]]) -> str:
    """The value of the record's identifying field, or "" if it has none."""
    for key, value in ordered(fields)[:1]:
        name = " ".join(value.split())
        # no field named so: a short first value names it (a table's first column is its key)
        if _normal_key(key) in _KEY_RANK or len(name) <= _SHORT_NAME_CHARS:
            return name
    return ""


def record_lines(fields: list[tuple[str, str]]) -> list[str]:
    """`key: value` lines of a record (identifying field first, empty values left out)."""
    return [f"{' '.join(k.split()) or '-'}: {' '.join(v.split())}" for k, v in ordered(fields)]


def record_pieces(fields: list[tuple[str, str]], budget: int) -> list[str]:
    """A record as one piece within `budget` tokens, or several, each led by its first line."""
    lines = record_lines(fields)
    if not lines:
        return []
    whole = "\n".join(lines)
    if count_tokens(whole) <= budget:
        return [whole]
    if len(lines) > 1:
        return split_lines(lines[1:], budget, header=lines[:1])
    return split_lines(lines, budget)


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(inner)]


def table_rows(block: str) -> list[list[tuple[str, str]]] | None:
    """The rows of a Markdown (GFM) table block as records, or None if it is not one."""
    lines = [line for line in block.split("\n") if line.strip()]
    if len(lines) < 2 or "|" not in lines[0]:
        return None
    delimiter = _cells(lines[1])
    if not delimiter or not all(_DELIMITER_CELL.match(c) for c in delimiter):
        return None
    header = _cells(lines[0])
    rows = []
    for line in lines[2:]:
        cells = _cells(line)
        names = [
            header[i] if i < len(header) and header[i] else f"column {i + 1}"
            for i in range(len(cells))
        ]
        rows.append(list(zip(names, cells, strict=True)))
    return rows
