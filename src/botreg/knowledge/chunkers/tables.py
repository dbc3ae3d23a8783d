"""CSV knowledge as records: each row a chunk of `column: value` lines.

Every value sits beside its column's name and the row's identifying field
(`name`, `title`, `id`, `sku`, ...) comes first; the chunk's context is the
file's title and the row's name (or `row 7`). Tiny rows (a code and a label)
share a chunk, a few at most (see `Packer`); a row too large for one chunk is
split between fields, each piece led by the identifying line.
"""

from __future__ import annotations

from botreg.knowledge.chunkers.base import count_tokens, split_lines
from botreg.knowledge.chunkers.packer import Packer
from botreg.knowledge.chunkers.records import identifier, record_pieces

__all__ = ["chunk_rows"]


def _fields(header: list[str], row: list[str]) -> list[tuple[str, str]]:
    names = [
        " ".join(header[i].split()) if i < len(header) and header[i].strip() else f"column {i + 1}"
        for i in range(len(row))
    ]
    return list(zip(names, row, strict=True))


def chunk_rows(rows: list[list[str]], packer: Packer) -> None:
    """Hand a parsed CSV (first row: the header) to `packer` as records."""
    if not rows:
        return
    header, data = rows[0], rows[1:]
    emitted = False
    for number, row in enumerate(data, start=1):
        fields = _fields(header, row)
        packer.section((identifier(fields) or f"row {number}",), record=True)
        for piece in record_pieces(fields, packer.budget):
            packer.add(piece)
            emitted = True
    names = [" ".join(c.split()) for c in header if c.strip()]
    if not emitted and names:  # a header alone (or empty rows): say which columns there are
        line = "columns: " + ", ".join(names)
        packer.section(())
        pieces = (
            [line] if count_tokens(line) <= packer.budget else split_lines([line], packer.budget)
        )
        for piece in pieces:
            packer.add(piece)
