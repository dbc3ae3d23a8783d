"""Packs a document's sections into chunks: context first, short sections merged.

Every chunker hands its content here as sections (a heading path and pieces
that each fit `budget`) or records (one row or item, a chunk of its own). The
packer

- starts every chunk with its context line (`context_line`: title and heading
  path) and keeps the body within what the context leaves of the budget;
- packs a section's pieces greedily, never across sections;
- merges a very short section (under `tiny_tokens`) into the chunk before it
  when that chunk is its ancestor's, or a short sibling's (records: at most
  `MAX_MERGED_RECORDS` tiny ones), so no chunk is a heading and three words. The
  merged section keeps its own heading as the first line of its part.

Chunks are emitted in document order; only the last one stays open (for a
merge), so memory does not grow with the number of sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botreg.knowledge.chunkers.base import HEADING_SEPARATOR, count_tokens, with_heading
from botreg.knowledge.chunkers.context import context_line

__all__ = ["MAX_MERGED_RECORDS", "ChunkCeilingError", "Packer"]

MAX_MERGED_RECORDS = 4


class ChunkCeilingError(Exception):
    """The file already has more chunks than allowed: stop chunking."""


@dataclass(slots=True)
class _Open:
    """The last chunk, still open for a short section to merge into."""

    path: tuple[str, ...]
    # (path relative to `path`, body, is a record): a merged record is named by its
    # first line, a merged section by its heading
    parts: list[tuple[tuple[str, ...], str, bool]]
    tokens: int  # of the body as joined
    record: bool
    merged: int = 1
    short: bool = field(default=False)


class Packer:
    """Receives sections and records in document order; `finish` gives the chunks.

    Args:
        title: The document's title (first in every chunk's context).
        max_tokens: The chunk budget, context included.
        max_chunks: Raise `ChunkCeilingError` once there are more chunks than this.
    """

    def __init__(self, title: str, max_tokens: int, max_chunks: int | None = None) -> None:
        self.title = title
        self.max_tokens = max(max_tokens, 1)
        self.max_chunks = max_chunks
        self.chunks: list[tuple[str, str]] = []
        self.tiny_tokens = max(self.max_tokens // 8, 1)
        self.tiny_record_tokens = max(self.max_tokens // 16, 1)
        self._path: tuple[str, ...] = ()
        self._context = ""
        self.budget = 1
        self._group: list[str] = []
        self._used = 0
        self._record = False
        self._open: _Open | None = None
        self.section(())

    def section(self, path: tuple[str, ...], *, record: bool = False) -> None:
        """Start a section (or, with `record`, one record) at heading path `path`."""
        self._close_group()
        if path and self.title and path[0].casefold() == self.title.casefold():
            path = path[1:]  # the title is first in every context already
        self._path, self._record = path, record
        self._context = context_line(self.title, path, self.max_tokens)
        self.budget = self._budget_of(self._context)

    def add(self, piece: str) -> None:
        """Add a piece of the current section (it fits `budget`: callers split first)."""
        if not piece.strip():
            return
        cost = count_tokens(piece)
        if self._group and (self._used + cost > self.budget or self._record):
            self._close_group()
        self._group.append(piece)
        self._used += cost

    def close_section(self) -> None:
        """End the current section's last chunk (the next `section` would)."""
        self._close_group()

    def finish(self) -> list[tuple[str, str]]:
        """The (context line, embedded text) pairs."""
        self._close_group()
        self._flush()
        return self.chunks

    # --- internals -------------------------------------------------------------------

    def _budget_of(self, context: str) -> int:
        return max(self.max_tokens - count_tokens(context) - (2 if context else 0), 1)

    def _close_group(self) -> None:
        if not self._group:
            return
        body = "\n\n".join(self._group)
        tokens = self._used
        self._group, self._used = [], 0
        if not self._merge(self._path, body, tokens):
            self._flush()
            self._open = _Open(self._path, [((), body, self._record)], tokens, self._record)
            self._open.short = self._is_short(tokens, self._record)
            if self.max_chunks is not None and len(self.chunks) >= self.max_chunks:
                self._flush()  # one more than allowed: stop now, not at the next section

    def _is_short(self, tokens: int, record: bool) -> bool:
        return tokens < (self.tiny_record_tokens if record else self.tiny_tokens)

    def _merge(self, path: tuple[str, ...], body: str, tokens: int) -> bool:
        """Merge a short section into the open chunk, if it may; True if merged."""
        last = self._open
        if last is None or not self._is_short(tokens, self._record):
            return False
        ancestor = len(last.path) < len(path) and path[: len(last.path)] == last.path
        if (last.record != self._record) and not (ancestor and not self._record):
            return False
        if self._record and last.merged >= MAX_MERGED_RECORDS:
            return False
        sibling = bool(path) and len(path) == len(last.path) and path[:-1] == last.path[:-1]
        # a group of short siblings already merged under their parent takes one more
        joins = last.merged > 1 and bool(path) and path[:-1] == last.path
        same = path == last.path or sibling or joins
        if not (ancestor and not self._record) and not (same and last.short):
            return False
        root = last.path if (ancestor or path == last.path) else path[:-1]
        parts = [(last.path[len(root) :] + rel, text, rec) for rel, text, rec in last.parts]
        parts.append((path[len(root) :], body, self._record))
        joined = self._body(parts)
        used = count_tokens(joined)
        limit = self._budget_of(context_line(self.title, root, self.max_tokens))
        if not ancestor:  # short siblings together stay short of a full chunk
            limit = min(limit, max(self.max_tokens // 2, 1))
        if used > limit:
            return False
        last.path, last.parts, last.tokens = root, parts, used
        last.merged += 1
        return True

    @staticmethod
    def _body(parts: list[tuple[tuple[str, ...], str, bool]]) -> str:
        """The parts joined, each merged section led by its own heading (a record by its name).

        A section merged into a record's chunk (a table's rows, then a short
        subsection) keeps its heading too: only records go without one.
        """
        return "\n\n".join(
            f"{HEADING_SEPARATOR.join(rel)}\n{text}" if rel and not record else text
            for rel, text, record in parts
        )

    def _flush(self) -> None:
        last, self._open = self._open, None
        if last is None:
            return
        context = context_line(self.title, last.path, self.max_tokens)
        self.chunks.append((context, with_heading(context, self._body(last.parts))))
        if self.max_chunks is not None and len(self.chunks) > self.max_chunks:
            raise ChunkCeilingError
