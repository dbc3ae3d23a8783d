"""Markdown chunks that follow the heading structure (parsed with markdown-it-py).

Each top-level block (paragraph, list, table, code fence, quote) stays whole
unless it alone exceeds the budget; blocks are packed into chunks within their
section; every chunk carries its heading path ("Billing > Refunds > Timelines").
A `#` inside a code fence is code, not a heading: the parser knows.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.token import Token

from botreg.knowledge.chunkers.base import (
    HEADING_SEPARATOR,
    ChunkBounds,
    count_tokens,
    fit_heading,
    pack,
    split_lines,
    split_prose,
    with_heading,
)
from botreg.registry.settings import ChunkingSettings
from botreg.registry.yamlfast import YamlLoadError, load_fast

__all__ = [
    "MAX_FRONT_MATTER_BYTES",
    "MAX_TITLE_CHARS",
    "chunk_markdown",
    "front_matter_metadata",
    "split_front_matter",
]

MAX_FRONT_MATTER_BYTES = 8 * 1024
MAX_TITLE_CHARS = 512

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.S)
_PARSER = MarkdownIt("commonmark").enable("table")

Section = tuple[tuple[str, ...], list[str]]


class _TopLevelState(StateBlock):
    """A block parser state that keeps only the tokens chunking reads.

    Chunking needs the top-level blocks' line ranges and the headings' text. A
    full token stream costs a few hundred bytes per table cell, list item and
    paragraph: a 2 MB table of 8,000 columns was 1.5 million tokens and 500 MB.
    Tokens are still built and filled by the rules, then dropped.
    """

    def push(self, ttype: str, tag: str, nesting: Literal[-1, 0, 1]) -> Token:
        """Build the token as StateBlock does; keep it only at the top level."""
        token = Token(ttype, tag, nesting)
        token.block = True
        if nesting < 0:
            self.level -= 1
        token.level = self.level
        if nesting > 0:
            self.level += 1
        after_heading = bool(self.tokens) and self.tokens[-1].type == "heading_open"
        if token.level == 0 or (after_heading and ttype == "inline"):
            self.tokens.append(token)
        return token


def _top_level_tokens(body: str, env: dict[str, Any]) -> list[Token]:
    """The top-level block tokens of a document (and each heading's inline token)."""
    src = body.replace("\0", "\ufffd")  # as markdown-it's normalize rule does
    if not src:
        return []
    state = _TopLevelState(src, _PARSER, env, [])
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


def _inline_text(token: Token, env: dict[str, Any]) -> str:
    # `env` holds the document's link reference definitions, as in a full parse.
    children = [c for t in _PARSER.parseInline(token.content, env) for c in t.children or []]
    text = "".join(c.content for c in children if c.type in ("text", "code_inline", "softbreak"))
    return " ".join(text.split()) or token.content.strip()


def _sections(body: str) -> list[Section]:
    env: dict[str, Any] = {}
    tokens = _top_level_tokens(body, env)
    lines = body.split("\n")
    stack: list[tuple[int, str]] = []
    sections: list[Section] = [((), [])]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open" and token.level == 0:
            level = int(token.tag[1])
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, _inline_text(tokens[i + 1], env)))
            sections.append((tuple(title for _, title in stack), []))
            i += 3  # heading_open, inline, heading_close
            continue
        if token.level == 0 and token.map is not None and token.nesting >= 0:
            start, end = token.map
            block = "\n".join(lines[start:end]).strip("\n")
            if block.strip():
                sections[-1][1].append(block)
            if token.nesting == 1:  # skip to the matching close token
                depth = 1
                while depth and i + 1 < len(tokens):
                    i += 1
                    depth += tokens[i].nesting if tokens[i].level == 0 else 0
        i += 1
    return [s for s in sections if s[1]]


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


def chunk_markdown(
    text: str, settings: ChunkingSettings, *, base: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """(heading path, embedded text) pairs of a Markdown document without front matter.

    Args:
        text: Markdown (newlines already normalised).
        settings: Chunk budget and overlap.
        base: Heading path above the document's own headings.
    """
    chunks: list[tuple[str, str]] = []
    for path, blocks in _sections(text):
        heading = HEADING_SEPARATOR.join((*base, *path))
        if count_tokens(heading) > settings.max_tokens // 2:  # absurdly long: keep the end
            heading = fit_heading(heading, ChunkBounds.of(settings.max_tokens))
        heading_cost = count_tokens(heading)
        budget = max(settings.max_tokens - heading_cost - (2 if heading else 0), 1)
        pieces: list[str] = []
        for block in blocks:
            if count_tokens(block) > budget:
                pieces.extend(_split_block(block, budget, settings.overlap_tokens))
            else:
                pieces.append(block)
        chunks.extend((heading, with_heading(heading, body)) for body in pack(pieces, budget))
    return chunks


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
