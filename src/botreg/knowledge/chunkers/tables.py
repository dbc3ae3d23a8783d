"""CSV knowledge as Markdown table chunks, the header row repeated in every chunk.

The header is repeated only while it takes at most half the budget: a header of
thousands of columns repeated in every chunk would multiply the file, so it
becomes chunks of its own (`header`) and the rows follow without it. A row wider
than the room left is split between words into several chunks (`row 7`).
"""

from __future__ import annotations

from botreg.knowledge.chunkers.base import count_tokens, split_lines, with_heading
from botreg.registry.settings import ChunkingSettings

__all__ = ["chunk_rows"]


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>").strip()


def chunk_rows(rows: list[list[str]], settings: ChunkingSettings) -> list[tuple[str, str]]:
    """(heading, embedded text) pairs: `rows 1-25` and a table with the header."""
    if not rows:
        return []
    header, data = rows[0], rows[1:]
    head = ["| " + " | ".join(_cell(c) for c in header) + " |", "|" + "---|" * len(header)]
    lines = ["| " + " | ".join(_cell(c) for c in row) + " |" for row in data]
    budget = max(settings.max_tokens, 1)
    # The heading ("rows 100-125", its numbers as wide as the last row's) is paid
    # in every chunk.
    widest = count_tokens(f"rows {len(lines)}-{len(lines)}")
    head_cost = count_tokens("\n".join(head))
    chunks: list[tuple[str, str]] = []
    if head_cost > (budget - widest) // 2:  # too wide to repeat: on its own, once
        for piece in split_lines(head, budget - count_tokens("header")):
            chunks.append(("header", with_heading("header", piece)))
        head = []
        head_cost = 0
    if not lines:
        if head:
            return [("rows 0-0", with_heading("rows 0-0", "\n".join(head)))]
        return chunks
    room = max(budget - head_cost - widest - 2, 1)
    start = 0
    while start < len(lines):
        if count_tokens(lines[start]) > room:  # one row wider than a chunk: split it
            heading = f"row {start + 1}"
            pieces = split_lines([lines[start]], budget - count_tokens(heading))
            chunks.extend((heading, with_heading(heading, piece)) for piece in pieces)
            start += 1
            continue
        end, used = start, 0
        while end < len(lines) and end - start < settings.csv_rows_per_chunk:
            cost = count_tokens(lines[end])
            if end > start and used + cost > room:
                break
            used += cost
            end += 1
        heading = f"rows {start + 1}-{end}"
        chunks.append((heading, with_heading(heading, "\n".join(head + lines[start:end]))))
        start = end
    return chunks
