"""What every chunker shares: the Chunk, token counting and splitting to a budget.

Chunkers are pure functions of a file's bytes and the chunking settings, so the
same file always gives the same chunks (and the same chunk ids).

Tokens are estimated by `count_tokens` (tokens.py), without the model.

Every chunk is bounded in tokens *and* in bytes whatever the input's shape
(`ChunkBounds`): the estimate ignores whitespace, so a token bound alone lets a
chunk of a few words carry megabytes of spaces. Chunkers split by shape first
(sections, rows, lines, words); `enforce_bounds` is the final guard that cuts
whatever still exceeds a bound.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from dataclasses import dataclass, field

from botreg.knowledge.chunkers.tokens import count_tokens
from botreg.registry.settings import ChunkingSettings

__all__ = [
    "MAX_CHUNKS_PER_FILE",
    "MAX_CHUNK_BYTES",
    "MAX_CHUNK_TOKENS",
    "Chunk",
    "ChunkBounds",
    "clamped",
    "count_tokens",
    "cut",
    "enforce_bounds",
    "fit_heading",
    "pack",
    "split_lines",
    "split_prose",
]

_SURROGATE = re.compile("[\ud800-\udfff]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
HEADING_SEPARATOR = " > "

# Hard ceilings, whatever registry.yaml's `chunking.max_tokens` says: embedding
# models take at most a few thousand tokens, and a chunk is stored three times
# (text, metadata, vector) so its size multiplies.
MAX_CHUNK_TOKENS = 8192
MAX_CHUNK_BYTES = 32 * 1024
BYTES_PER_TOKEN = 16  # room for 6-letter words of 2-byte letters and their spaces
MIN_CHUNK_BYTES = 64
# A file that needs more chunks than this fails instead of flooding the store
# (a 5 MiB file of prose makes about 5,000 chunks of the default size).
MAX_CHUNKS_PER_FILE = 20_000


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
        # surrogatepass: a lone surrogate (refused by the loaders, see
        # enforce_bounds) must never turn hashing into a crash
        return hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChunkBounds:
    """The most a chunk's embedded text may hold: `tokens` estimated tokens, `bytes` UTF-8 bytes."""

    tokens: int
    bytes: int

    @classmethod
    def of(cls, max_tokens: int) -> ChunkBounds:
        """Bounds for a configured `max_tokens`, clamped to the hard ceilings."""
        tokens = min(max(max_tokens, 1), MAX_CHUNK_TOKENS)
        return cls(tokens, min(max(tokens * BYTES_PER_TOKEN, MIN_CHUNK_BYTES), MAX_CHUNK_BYTES))

    def fits(self, text: str) -> bool:
        """True if `text` is within both bounds."""
        # Bytes first: cheap, and a text within the byte bound is cheap to count.
        return (
            len(text) <= self.bytes
            and _utf8_len(text) <= self.bytes
            and (count_tokens(text) <= self.tokens)
        )


def clamped(chunking: ChunkingSettings, bounds: ChunkBounds) -> ChunkingSettings:
    """The chunking settings with `max_tokens` within the hard ceiling of `bounds`."""
    return dataclasses.replace(chunking, max_tokens=bounds.tokens)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def cut(text: str, bounds: ChunkBounds) -> list[str]:
    """Cut text with no usable break (a hash, a URL, a line of punctuation) into fitting pieces.

    Deterministic; each piece is within `bounds` (a single character always is:
    at most one token and four bytes).
    """
    out: list[str] = []
    i = 0
    widest = max(min(bounds.bytes, bounds.tokens * 6), 1)  # a token is at most 6 characters
    while i < len(text):
        window = text[i : i + widest]
        encoded = window.encode("utf-8", "surrogatepass")
        if len(encoded) > bounds.bytes:  # multi-byte characters: fewer of them fit
            window = encoded[: bounds.bytes].decode("utf-8", "ignore")
        if (
            count_tokens(window) > bounds.tokens
        ):  # IDs, punctuation, CJK: the longest prefix that fits
            window = window[: _fitting_prefix(window, bounds.tokens)]
        step = max(len(window), 1)
        while step > 1 and not bounds.fits(text[i : i + step]):  # safety net, rarely taken
            step = (step + 1) // 2
        out.append(text[i : i + step])
        i += step
    return out


def _fitting_prefix(text: str, tokens: int) -> int:
    """Length of a long prefix of `text` within `tokens` (at least one character fits)."""
    # Bisection: the result always fits (`low` only moves to a fitting length).
    # Costs are monotone in the prefix but for rare words ("bcdf" costs more than
    # "bcdfa"), where this may stop short of the longest: smaller, still bounded.
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(text[:middle]) <= tokens:
            low = middle
        else:
            high = middle - 1
    return low


def fit_heading(heading: str, bounds: ChunkBounds) -> str:
    """The heading, or its end, within a quarter of the bounds (the body keeps the rest)."""
    room = ChunkBounds(max(bounds.tokens // 4, 1), max(bounds.bytes // 4, 4))
    if room.fits(heading):
        return heading
    tail = heading[-min(room.tokens, room.bytes) :]  # a character is at most one token
    while tail and not room.fits(tail):
        tail = tail[1:]
    return tail.strip()


def enforce_bounds(pairs: list[tuple[str, str]], bounds: ChunkBounds) -> list[tuple[str, str]]:
    """The final guard: every (heading, embedded text) pair within `bounds`.

    A pair that fits is returned unchanged (so its chunk id is too); one that
    does not is split between lines, then words, then characters, and each piece
    carries the (possibly shortened) heading again. A lone surrogate (not a
    character: no UTF-8 store or event can hold it) becomes U+FFFD; the loaders
    refuse such text, this is the backstop.
    """
    out: list[tuple[str, str]] = []
    for raw_heading, raw_text in pairs:
        heading, text = raw_heading, raw_text
        if _SURROGATE.search(text) or _SURROGATE.search(heading):
            heading, text = _SURROGATE.sub("\ufffd", heading), _SURROGATE.sub("\ufffd", text)
        if bounds.fits(text):
            out.append((heading, text))
            continue
        body = text[len(heading) + 2 :] if heading and text.startswith(heading + "\n\n") else text
        short = fit_heading(heading, bounds)
        frame = with_heading(short, "") if short else ""
        room = ChunkBounds(bounds.tokens - count_tokens(frame), bounds.bytes - _utf8_len(frame))
        if room.tokens < 1 or room.bytes < 4:  # budgets too small for a heading: body only
            short, room = "", bounds
        out.extend((short, with_heading(short, piece)) for piece in _hard_split(body, room))
    return out


def _hard_split(text: str, bounds: ChunkBounds) -> list[str]:
    """Pieces of text within bounds: whole lines packed, else words, else characters."""
    units: list[str] = []
    for line in text.split("\n"):
        if bounds.fits(line):
            units.append(line)
            continue
        for word in line.split():
            units.extend([word] if bounds.fits(word) else cut(word, bounds))
    # Joined by a newline, tokens and bytes add up (no token spans whitespace).
    pieces: list[str] = []
    current: list[str] = []
    tokens, size = 0, -1
    for unit in units:
        cost, nbytes = count_tokens(unit), _utf8_len(unit)
        if current and (tokens + cost > bounds.tokens or size + 1 + nbytes > bounds.bytes):
            pieces.append("\n".join(current))
            current, tokens, size = [], 0, -1
        current.append(unit)
        tokens, size = tokens + cost, size + 1 + nbytes
    if current:
        pieces.append("\n".join(current))
    return [p for p in pieces if p.strip()]


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
            if current:
                out.append(" ".join(current))
                current, used = [], 0
            out.extend(cut(word, ChunkBounds(budget, MAX_CHUNK_BYTES)))
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
    budget = max(budget, 1)
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
    and `footer` lines (a fence's closing) end it, so each piece stands alone;
    unless they take more than half the budget: then they are split like any
    other line, once. A line wider than the budget is split between words.
    """
    header, footer = header or [], footer or []
    budget = max(budget, 1)
    frame = count_tokens("\n".join(header + footer))
    if frame > budget // 2:
        # A frame this wide (a table of thousands of columns) repeated in every
        # piece would multiply the file: it becomes a piece of its own instead.
        lines = [*header, *lines, *footer]
        header, footer, frame = [], [], 0
    room = budget - frame
    units: list[str] = []
    for line in lines:
        units.extend(_split_words(line, room) if count_tokens(line) > room else [line])
    return ["\n".join([*header, group, *footer]) for group in pack(units, room, joiner="\n")]
