"""Markdown chunks that follow the heading structure (parsed with markdown-it-py).

Each top-level block (paragraph, list, table, code fence, quote) stays whole
unless it alone exceeds the budget; blocks are packed into chunks within their
section; every chunk carries its heading path ("Billing > Refunds > Timelines").
A `#` inside a code fence is code, not a heading: the parser knows.

Memory and time stay linear and small whatever the shape (issue #9: 5 MB of
headings, or one heading of 2.5 million emphasis markers, took 1.8 GB and 30 s):

- the text is parsed one window (`WINDOW_CHARS`) at a time and each top-level
  block is handed on as soon as the next one starts, so neither the parser's
  per-line tables nor its tokens grow with the file;
- a heading's text is worked out (inline-parsed) only when a block under it
  makes a chunk, from at most `MAX_HEADING_CHARS` of it, and within a per-file
  budget of `MAX_INLINE_HEADING_CHARS` (beyond it a heading is taken as written);
- chunks are packed as blocks arrive and the parse stops once the file has
  more chunks than the caller allows;
- one block larger than `MAX_BLOCK_CHARS` ends Markdown parsing: the rest of
  the file is chunked as plain text under the current heading path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.token import Token

from botreg.knowledge.chunkers.base import count_tokens, split_lines, split_prose
from botreg.knowledge.chunkers.packer import ChunkCeilingError, Packer
from botreg.knowledge.chunkers.records import record_pieces, table_rows
from botreg.registry.settings import ChunkingSettings
from botreg.registry.yamlfast import YamlLoadError, load_fast

__all__ = [
    "MAX_BLOCKS",
    "MAX_BLOCK_CHARS",
    "MAX_BLOCK_LINES",
    "MAX_FRONT_MATTER_BYTES",
    "MAX_HEADING_CHARS",
    "MAX_INLINE_HEADING_CHARS",
    "MAX_TITLE_CHARS",
    "WINDOW_CHARS",
    "WINDOW_LINES",
    "chunk_markdown",
    "front_matter_metadata",
    "split_front_matter",
]

MAX_FRONT_MATTER_BYTES = 8 * 1024
MAX_TITLE_CHARS = 512
# Text parsed at once: the parser keeps five lists of per-line numbers (about
# 100 bytes a line), so a window bounds them (a 50 MiB file of `# a` lines
# would otherwise need 1.3 GB for them alone).
WINDOW_CHARS = 1 << 20
# A window (at most WINDOW_CHARS and WINDOW_LINES) grows, doubling, until it
# holds one whole block; a block larger than these is not parsed as Markdown.
MAX_BLOCK_CHARS = 4 << 20
WINDOW_LINES = 1 << 15
MAX_BLOCK_LINES = 1 << 18
# Each top-level block (a heading, a paragraph, a `# a` line) costs the parser
# about 12 us: beyond this many (1.25 million headings in 5 MB took 14 s) the
# rest of the file is chunked as plain text.
MAX_BLOCKS = 100_000
# A heading path keeps at most a quarter of a chunk (`fit_heading`): no real
# heading is longer than this, and inline parsing costs ~100 objects a marker.
MAX_HEADING_CHARS = 1024
# Inline parsing costs up to ~15 us a character (`*a*a*a...`); this bounds it
# per file to a few seconds.
MAX_INLINE_HEADING_CHARS = 256 * 1024

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.S)
_BLANK_LINES = re.compile(r"\n\s*\n")
# A line that may start a link reference definition (`[label]: /url`).
_REFERENCE = re.compile(r"^ {0,3}\[", re.M)
_PARSER = MarkdownIt("commonmark").enable("table")
# What markdown-it's normalize rule rewrites before inline parsing.
_NORMALIZED = re.compile("[\r\0]")

BlockSink = Callable[["_TopLevelState", list[Token]], None]


class _TopLevelState(StateBlock):
    """A block parser state that keeps only the tokens chunking reads.

    Chunking needs the top-level blocks' line ranges and the headings' text. A
    full token stream costs a few hundred bytes per table cell, list item and
    paragraph: a 2 MB table of 8,000 columns was 1.5 million tokens and 500 MB.
    Tokens are still built and filled by the rules, then dropped.

    With a `sink`, each top-level block's tokens are handed to it (and
    dropped) when the next top-level block starts: its rule has returned, so
    they are complete. The last block stays in `tokens`: at the end of a window
    it may be cut short.
    """

    def __init__(self, src: str, env: dict[str, Any], sink: BlockSink | None = None) -> None:
        super().__init__(src, _PARSER, env, [])
        self.sink = sink

    def push(self, ttype: str, tag: str, nesting: Literal[-1, 0, 1]) -> Token:
        """Build the token as StateBlock does; keep it only at the top level."""
        token = Token(ttype, tag, nesting)
        token.block = True
        if nesting < 0:
            self.level -= 1
        token.level = self.level
        if nesting > 0:
            self.level += 1
        if self.sink is not None and token.level == 0 and nesting >= 0 and self.tokens:
            done = self.tokens[:]
            self.tokens.clear()
            self.sink(self, done)
        after_heading = bool(self.tokens) and self.tokens[-1].type == "heading_open"
        if token.level == 0 or (after_heading and ttype == "inline"):
            self.tokens.append(token)
        return token


def _top_level_tokens(body: str, env: dict[str, Any]) -> list[Token]:
    """The top-level block tokens of a document (and each heading's inline token)."""
    src = body.replace("\0", "\ufffd")  # as markdown-it's normalize rule does
    if not src:
        return []
    state = _TopLevelState(src, env)
    _PARSER.block.tokenize(state, state.line, state.lineMax)
    return state.tokens


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


def _inline_text(content: str, env: dict[str, Any]) -> str:
    # `env` holds the document's link reference definitions, as in a full parse.
    children = [c for t in _PARSER.parseInline(content, env) for c in t.children or []]
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


class _Outline:
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
            markup = _PARSER.inline.terminator_re.search(source) or _NORMALIZED.search(source)
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


def _hand_on(body: str, offset: int, outline: _Outline) -> BlockSink:
    """A sink that gives a window's complete blocks to `outline` (`offset`: the window's start)."""

    def sink(state: _TopLevelState, tokens: list[Token]) -> None:
        first = tokens[0]
        outline.blocks += 1
        if outline.blocks > MAX_BLOCKS and first.map is not None:
            raise _TooManyBlocksError(offset + state.bMarks[first.map[0]])
        if first.type == "heading_open" and len(tokens) > 1:
            outline.add_heading(int(first.tag[1]), tokens[1].content)
        elif first.map is not None and first.map[1] > first.map[0]:
            start, end = first.map
            text = body[offset + state.bMarks[start] : offset + state.eMarks[end - 1]]
            outline.add_block(text.strip("\n"))

    return sink


class _TooManyBlocksError(Exception):
    """Over MAX_BLOCKS top-level blocks: the rest, from `args[0]`, is plain text."""


def _window_end(src: str, start: int, chars: int, lines: int) -> int:
    """The end of a window from `start`: after at most `lines` lines or the line at `chars`."""
    end = start
    for _ in range(lines):
        end = src.find("\n", end) + 1
        if end <= 0 or end - start >= chars:
            break
    return end if end > 0 else len(src)


def _parse(body: str, outline: _Outline) -> None:
    """Hand every top-level block of `body` to `outline`, one window at a time.

    A block that ends before the next one starts was decided by lines inside
    the window, so it is the same as in a parse of the whole text; the window's
    last block may be cut short, so the next window starts with it. Reference
    definitions (no tokens) go to the shared `env`; parsing one twice is
    harmless (the first definition of a label wins).
    """
    src = body.replace("\0", "\ufffd")  # as markdown-it's normalize rule does
    start, scale = 0, 1
    try:
        while start < len(src):
            end = _window_end(src, start, WINDOW_CHARS * scale, WINDOW_LINES * scale)
            state = _TopLevelState(src[start:end], outline.env, _hand_on(body, start, outline))
            _PARSER.block.tokenize(state, state.line, state.lineMax)
            pending = state.tokens
            if end >= len(src):
                if pending:
                    _hand_on(body, start, outline)(state, pending)
                return
            restart = pending[0].map[0] if pending and pending[0].map is not None else 0
            if restart > 0:
                start += state.bMarks[restart]
                scale = 1
            elif end - start < MAX_BLOCK_CHARS and state.lineMax < MAX_BLOCK_LINES:
                scale *= 2  # one block fills the window: widen it
            else:  # one block too large to parse: the rest is plain text
                _plain(body[start:], outline)
                return
    except _TooManyBlocksError as too_many:
        _plain(body[too_many.args[0] :], outline)


def _plain(text: str, outline: _Outline) -> None:
    """Chunk text as paragraphs, a window at a time (the fallback for pathological input)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + WINDOW_CHARS) + 1 or len(text)
        for paragraph in _BLANK_LINES.split(text[start:end]):
            outline.add_block(paragraph.strip(), prose=True)
        start = end


def chunk_markdown(
    text: str,
    settings: ChunkingSettings,
    *,
    title: str = "",
    max_chunks: int | None = None,
) -> list[tuple[str, str]]:
    """(context line, embedded text) pairs of a Markdown document without front matter.

    Args:
        text: Markdown (newlines already normalised).
        settings: Chunk budget and overlap.
        title: The document's title, first in every chunk's context (a first
            heading equal to it is not repeated).
        max_chunks: Stop once there are more pairs than this: the result then
            has `max_chunks + 1` pairs (the caller refuses the file).
    """
    env: dict[str, Any] = {}
    if _REFERENCE.search(text):
        # A heading can use a reference defined below it; headings' text is
        # worked out as the parse goes, so the definitions are collected first.
        _parse(text, _Outline(settings, title, env, None, dry=True))
    outline = _Outline(settings, title, env, max_chunks)
    try:
        _parse(text, outline)
        return outline.finish()
    except ChunkCeilingError:
        return outline.chunks


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
