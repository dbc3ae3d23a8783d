"""The Markdown outline: headings and blocks in document order, packed into chunks.

The parser (`markdown.py`) hands each top-level block and heading to an
`Outline`, which keeps only the open headings (never a list of sections),
works out a heading's text only when a chunk needs it, turns tables into
records and splits a block too large for one chunk by its shape (a code fence
re-opened around each piece, a table's header repeated, a list between items,
prose at sentences).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt

from botreg.knowledge.chunkers.base import count_tokens, split_lines, split_prose
from botreg.knowledge.chunkers.packer import Packer
from botreg.knowledge.chunkers.records import record_pieces, table_rows
from botreg.registry.settings import ChunkingSettings

__all__ = ["MAX_HEADING_CHARS", "MAX_INLINE_HEADING_CHARS", "PARSER", "Outline"]

# A heading path keeps at most a quarter of a chunk (`fit_heading`): no real
# heading is longer than this, and inline parsing costs ~100 objects a marker.
MAX_HEADING_CHARS = 1024
# Inline parsing costs up to ~15 us a character (`*a*a*a...`); this bounds it
# per file to a few seconds.
MAX_INLINE_HEADING_CHARS = 256 * 1024

PARSER = MarkdownIt("commonmark").enable("table")
# What markdown-it's normalize rule rewrites before inline parsing.
_NORMALIZED = re.compile("[\r\0]")


def _inline_text(content: str, env: dict[str, Any]) -> str:
    # `env` holds the document's link reference definitions, as in a full parse.
    children = [c for t in PARSER.parseInline(content, env) for c in t.children or []]
    text = "".join(c.content for c in children if c.type in ("text", "code_inline", "softbreak"))
    return " ".join(text.split()) or content.strip()


def _split_block(block: str, budget: int, overlap: int) -> list[str]:
    lines = block.split("\n")
    first = lines[0].lstrip()
    if first.startswith(("```", "~~~")):  # code fence: re-open and close around each piece
        fence = first[:3]
        closing = lines[-1] if len(lines) > 1 and lines[-1].strip().startswith(fence) else fence
        inner = lines[1:-1] if closing is lines[-1] else lines[1:]
        return split_lines(inner, budget, header=[lines[0]], footer=[closing])
    if first.startswith("|") and len(lines) > 2:  # table: repeat the header row
        return split_lines(lines[2:], budget, header=lines[:2])
    if re.match(r"([-*+]|\d+[.)])\s", first):  # list: between items' lines
        return split_lines(lines, budget)
    return split_prose(block, budget, overlap)


@dataclass(slots=True)
class _Heading:
    level: int
    source: str  # the heading's inline source, at most MAX_HEADING_CHARS
    text: str | None = None  # worked out when a chunk first needs it
    literal: bool = False  # a key of a JSON/YAML document: taken as written


class Outline:
    """Receives headings and blocks in document order and hands them to a `Packer`.

    Holds the open headings, never a list of sections: a heading with nothing
    under it costs nothing beyond its entry on the stack (at most one a level).
    A table becomes records (each row with its header names); other blocks
    are packed within their section, split first if one alone is too large.
    """

    def __init__(
        self,
        settings: ChunkingSettings,
        title: str,
        env: dict[str, Any],
        max_chunks: int | None,
        *,
        dry: bool = False,
    ) -> None:
        self.dry = dry  # only collect link reference definitions into `env`
        self.settings = settings
        self.env = env
        self.packer = Packer(title, settings.max_tokens, max_chunks)
        self.stack: list[_Heading] = []
        self.opened = False  # the current section was handed to the packer
        self.inline_left = MAX_INLINE_HEADING_CHARS
        self.blocks = 0  # top-level blocks seen, headings included

    @property
    def chunks(self) -> list[tuple[str, str]]:
        """The (context line, embedded text) pairs emitted so far."""
        return self.packer.chunks

    def add_heading(self, level: int, source: str, *, literal: bool = False) -> None:
        """A heading of `level` starts a section (`literal`: its text is not Markdown)."""
        if self.dry:
            return
        while self.stack and self.stack[-1].level >= level:
            self.stack.pop()
        heading = _Heading(level, source[:MAX_HEADING_CHARS], literal=literal)
        if literal:
            heading.text = " ".join(heading.source.split())
        self.stack.append(heading)
        self.opened = False

    def add_block(self, block: str, *, prose: bool = False) -> None:
        """A top-level block (or, with `prose`, a paragraph of plain text) of the section."""
        if self.dry or not block.strip():
            return
        rows = None if prose or not block.lstrip().startswith("|") else table_rows(block)
        if rows is not None:
            self.add_records(rows)
            return
        self._open_section()
        budget = self.packer.budget
        if count_tokens(block) <= budget:
            self.packer.add(block)
            return
        overlap = self.settings.overlap_tokens
        pieces = (
            split_prose(block, budget, overlap) if prose else _split_block(block, budget, overlap)
        )
        for piece in pieces:
            self.packer.add(piece)

    def add_records(self, rows: list[list[tuple[str, str]]]) -> None:
        """Records under the current section, each a chunk (tiny ones may share one)."""
        if self.dry:
            return
        path = self._path()
        for fields in rows:
            self.packer.section(path, record=True)
            for piece in record_pieces(fields, self.packer.budget):
                self.packer.add(piece)
        self.opened = False  # what follows the records is the section's again

    def finish(self) -> list[tuple[str, str]]:
        """The (context line, embedded text) pairs."""
        return self.packer.finish()

    def _heading_text(self, heading: _Heading) -> str:
        if heading.text is None:
            source = heading.source
            markup = PARSER.inline.terminator_re.search(source) or _NORMALIZED.search(source)
            if markup is None:
                heading.text = " ".join(source.split())  # no markup: what inline parsing gives
            elif len(source) <= self.inline_left:
                self.inline_left -= len(source)
                heading.text = _inline_text(source, self.env)
            else:  # the file's inline budget is spent: the heading as written
                heading.text = " ".join(source.split())
        return heading.text

    def _path(self) -> tuple[str, ...]:
        return tuple(self._heading_text(h) for h in self.stack)

    def _open_section(self) -> None:
        if not self.opened:
            self.packer.close_section()  # a file at its chunk ceiling stops before more parsing
            self.packer.section(self._path())
            self.opened = True
