"""CSV knowledge as Markdown table chunks, the header row repeated in every chunk."""

from __future__ import annotations

from botreg.knowledge.chunkers.base import count_tokens, with_heading
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
    if not lines:
        return [("rows 0-0", with_heading("rows 0-0", "\n".join(head)))]
    # The heading ("rows 100-125") and header are paid in every chunk.
    room = settings.max_tokens - count_tokens("\n".join(head)) - count_tokens("rows 0000-0000") - 2
    chunks: list[tuple[str, str]] = []
    start = 0
    while start < len(lines):
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
