"""The context line that starts every chunk: the document's title, then its heading path.

A chunk is retrieved on its own, so it carries where it comes from: "Refund
policy > Timelines > EU". The line is kept short (`context_cap`: at most a
quarter of the budget, and never more than `MAX_CONTEXT_TOKENS`) so it does not
crowd out the body: the title keeps at most half of it, the path keeps its last
headings (the nearest ones say most) and marks what it dropped with "…".
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from botreg.knowledge.chunkers.base import HEADING_SEPARATOR, count_tokens

__all__ = [
    "ELLIPSIS",
    "MAX_CONTEXT_TOKENS",
    "context_cap",
    "context_line",
    "first_h1",
    "title_from_path",
]

MAX_CONTEXT_TOKENS = 40
ELLIPSIS = "…"
_H1 = re.compile(r" {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*\Z")
_SETEXT_H1 = re.compile(r" {0,3}=+[ \t]*\Z")
_FENCE = re.compile(r" {0,3}(```|~~~)")
# how far into a document the first H1 is looked for (a title is near the top)
_TITLE_SCAN_LINES = 2000


def context_cap(max_tokens: int) -> int:
    """The most tokens a context line may take with a budget of `max_tokens`."""
    return max(min(max_tokens // 4, MAX_CONTEXT_TOKENS), 1)


def title_from_path(path: str) -> str:
    """A file name in words: `knowledge/faq/refund-policy.md.gz` -> "Refund policy"."""
    name = PurePosixPath(path).name
    stem = name.split(".", 1)[0] if not name.startswith(".") else name.lstrip(".")
    words = " ".join(re.sub(r"[-_.]+", " ", stem).split())
    return words[:1].upper() + words[1:] if words else name


def first_h1(markdown: str) -> str:
    """The text of the document's first level-1 heading (ATX or setext), or "".

    A cheap line scan (outside code fences, in the first lines only): the title
    is only used as context, so an unusual document at worst repeats it.
    """
    fence = ""
    previous = ""
    for number, line in enumerate(markdown.split("\n", _TITLE_SCAN_LINES)):
        if number >= _TITLE_SCAN_LINES:
            break
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1) == fence:
                fence = ""
            continue
        if opened:
            fence = opened.group(1)
            continue
        if match := _H1.match(line):
            return _plain(match.group(1))
        if previous.strip() and _SETEXT_H1.match(line) and not previous.startswith(" " * 4):
            return _plain(previous)
        previous = line
    return ""


def _plain(heading: str) -> str:
    """A heading without the commonest inline markup (context only, not rendering)."""
    return " ".join(re.sub(r"[*_`]+", "", heading).split())


def _words_within(text: str, tokens: int) -> str:
    """The first words of `text` within `tokens` (cut mid-word only if one word is wider)."""
    if count_tokens(text) <= tokens:
        return text
    kept: list[str] = []
    used = 0
    for word in text.split():
        cost = count_tokens(word)
        if used + cost > tokens:
            break
        kept.append(word)
        used += cost
    if not kept:  # one enormous word: its first characters (a character is at most a token)
        return text.split(maxsplit=1)[0][:tokens] if text.split() else ""
    return " ".join(kept)


def context_line(title: str, path: tuple[str, ...], max_tokens: int) -> str:
    """The context of a chunk: title and heading path, within `context_cap(max_tokens)` tokens.

    Args:
        title: The document's title ("" for none).
        path: The headings above the chunk, outermost first (a heading equal to
            the title is not repeated).
        max_tokens: The chunk budget (the line takes at most a quarter of it).
    """
    cap = context_cap(max_tokens)
    parts = [" ".join(p.split()) for p in path]
    parts = [p for p in parts if p]
    title = " ".join(title.split())
    if parts and title and parts[0].casefold() == title.casefold():
        parts = parts[1:]
    separator = count_tokens(HEADING_SEPARATOR)
    head = _words_within(title, max(cap // 2, 1) if parts else cap) if title else ""
    used = count_tokens(head)
    kept: list[str] = []
    for part in reversed(parts):
        cost = count_tokens(part) + (separator if head or kept else 0)
        if used + cost > cap:
            if not kept:  # the nearest heading alone is too long: its first words
                room = cap - used - (separator if head else 0) - 1
                if room > 0:
                    kept.append(_words_within(part, room) + ELLIPSIS)
            break
        kept.append(part)
        used += cost
    if len(kept) < len(parts) and kept and not kept[-1].endswith(ELLIPSIS):
        ellipsis = count_tokens(ELLIPSIS) + separator
        if used + ellipsis > cap:
            used -= count_tokens(kept.pop()) + separator
        kept.append(ELLIPSIS)
    return HEADING_SEPARATOR.join([p for p in [head, *reversed(kept)] if p])
