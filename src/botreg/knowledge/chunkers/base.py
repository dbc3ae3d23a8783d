"""What every chunker shares: the Chunk, token counting and splitting to a budget.

Chunkers are pure functions of a file's bytes and the chunking settings, so the
same file always gives the same chunks (and the same chunk ids).

Tokens are estimated without the model's tokenizer (which may not be on the
machine): a word counts one token per six characters, each punctuation mark and
each CJK character one token. That over-counts WordPiece slightly, so a chunk of
`max_tokens` (200 by default) stays within all-MiniLM-L6-v2's 256-token window.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field

__all__ = ["Chunk", "count_tokens", "pack", "split_lines", "split_prose"]

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|\w{1,6}|[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
HEADING_SEPARATOR = " > "


def count_tokens(text: str) -> int:
    """Estimated model tokens of a text (see the module docstring)."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a knowledge file, as embedded and stored.

    `text` is what is embedded and returned by queries: the heading path (when
    there is one) on the first line, then the body.
    """

    text: str
    heading: str = ""
    index: int = 0
    metadata: dict[str, str | int | float | bool] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """sha256 of the text: equal texts share stored vectors."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def with_heading(heading: str, body: str) -> str:
    """The embedded text of a chunk: heading path first, so retrieval sees the context."""
    return f"{heading}\n\n{body}" if heading else body


def pack(pieces: list[str], budget: int, joiner: str = "\n\n") -> list[str]:
    """Greedily join pieces into groups of at most `budget` tokens (pieces fit already)."""
    groups: list[str] = []
    current: list[str] = []
    used = 0
    for piece in pieces:
        cost = count_tokens(piece)
        if current and used + cost > budget:
            groups.append(joiner.join(current))
            current, used = [], 0
        current.append(piece)
        used += cost
    if current:
        groups.append(joiner.join(current))
    return groups


def _split_words(text: str, budget: int) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    used = 0
    for word in text.split():
        cost = max(count_tokens(word), 1)
        if cost > budget:  # one enormous "word" (a hash, a URL): cut it
            step = budget * 6
            out.extend(word[i : i + step] for i in range(0, len(word), step))
            continue
        if current and used + cost > budget:
            out.append(" ".join(current))
            current, used = [], 0
        current.append(word)
        used += cost
    if current:
        out.append(" ".join(current))
    return out


def _tail(text: str, tokens: int) -> str:
    """The last words of a text, at most `tokens` tokens."""
    if tokens <= 0:
        return ""
    words = text.split()
    taken: list[str] = []
    used = 0
    for word in reversed(words):
        used += max(count_tokens(word), 1)
        if used > tokens:
            break
        taken.append(word)
    return " ".join(reversed(taken))


def split_prose(text: str, budget: int, overlap: int) -> list[str]:
    """Split prose larger than the budget at sentence ends (then words).

    Each piece after the first starts with the last `overlap` tokens of the
    previous one, so a fact that straddles a cut is found from both sides.
    """
    if count_tokens(text) <= budget:
        return [text]
    overlap = min(overlap, budget // 2)
    sentences: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        sentences.extend(_split_words(sentence, budget - overlap))
    pieces = pack(sentences, budget - overlap, joiner=" ")
    result = [pieces[0]]
    for previous, piece in itertools.pairwise(pieces):
        lead = _tail(previous, overlap)
        result.append(f"{lead} {piece}" if lead else piece)
    return result


def split_lines(
    lines: list[str],
    budget: int,
    *,
    header: list[str] | None = None,
    footer: list[str] | None = None,
) -> list[str]:
    """Split a line-structured block (a table, a list, a code fence) between lines.

    `header` lines (a table's header row, a fence's opening) start every piece
    and `footer` lines (a fence's closing) end it, so each piece stands alone.
    """
    header, footer = header or [], footer or []
    frame = count_tokens("\n".join(header + footer))
    room = max(budget - frame, 8)
    units: list[str] = []
    for line in lines:
        units.extend(_split_words(line, room) if count_tokens(line) > room else [line])
    return ["\n".join([*header, group, *footer]) for group in pack(units, room, joiner="\n")]
