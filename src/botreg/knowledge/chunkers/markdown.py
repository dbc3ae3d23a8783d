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

import re
from collections.abc import Callable
from typing import Any, Literal

from markdown_it.rules_block import StateBlock
from markdown_it.token import Token

from botreg.knowledge.chunkers.frontmatter import (
    MAX_FRONT_MATTER_BYTES,
    MAX_TITLE_CHARS,
    front_matter_metadata,
    split_front_matter,
)
from botreg.knowledge.chunkers.outline import (
    MAX_HEADING_CHARS,
    MAX_INLINE_HEADING_CHARS,
    Outline,
)
from botreg.knowledge.chunkers.outline import PARSER as _PARSER
from botreg.knowledge.chunkers.packer import ChunkCeilingError
from botreg.registry.settings import ChunkingSettings

# Front matter and the outline live in their own modules; their names stay
# importable from here, where the Markdown chunker's callers look for them.
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
_BLANK_LINES = re.compile(r"\n\s*\n")
# A line that may start a link reference definition (`[label]: /url`).
_REFERENCE = re.compile(r"^ {0,3}\[", re.M)

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


def _hand_on(body: str, offset: int, outline: Outline) -> BlockSink:
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


def _parse(body: str, outline: Outline) -> None:
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


def _plain(text: str, outline: Outline) -> None:
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
        _parse(text, Outline(settings, title, env, None, dry=True))
    outline = Outline(settings, title, env, max_chunks)
    try:
        _parse(text, outline)
        return outline.finish()
    except ChunkCeilingError:
        return outline.chunks
