"""How many model tokens a text is, estimated without the model.

Tokens are estimated without the model's tokenizer (which may not be on the
machine), as an upper bound on WordPiece (all-MiniLM-L6-v2's tokenizer) for
everything but plain words: each punctuation mark, symbol and CJK character is
one token; a run of letters and digits costs one token per character when it
holds a digit, an inner capital (camelCase) or a letter outside ASCII once
accents are stripped (IDs, hashes, SKUs, Cyrillic: WordPiece cuts these into
pieces of one or two characters), and a plain word one token per three letters.

A word's cost cannot depend on whether it is English: the vocabulary is the
model's, not ours. WordPiece's vocabulary is English, so an English word is
mostly one token, but a word of any other language written in Latin letters
(Polish, Indonesian, Swahili, Zulu, Finnish, Dutch, ...) is cut into pieces of
two or three letters: one token per five letters made a 200-token chunk of
Zulu prose 350 real tokens, the last quarter silently truncated by the model.
One per three letters bounds those within 1.2x of the real count (measured on
support prose in sixteen languages) and over-counts English (the estimate is
1.3x to 1.5x the real count on our docs), so a chunk of `max_tokens` (200 by
default) stays within the model's 256-token window; a property test checks
that with the real tokenizer where the model is present.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["count_tokens"]

_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"
# What WordPiece splits on before it looks up pieces: a CJK character, a run of
# letters and digits, or one other non-space character ("_" is punctuation to it).
_UNIT = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+|[^\s]")
_DIGITS = re.compile(r"(\d+)")
_NOT_A_WORD = re.compile(r"^[^aeiouyAEIOUY]+$|[b-df-hj-np-tv-xzB-DF-HJ-NP-TV-XZ]{5}")


def count_tokens(text: str) -> int:
    """Estimated model tokens of `text`: an upper bound but for plain words (see the module)."""
    return sum(_unit_cost(unit) for unit in _UNIT.findall(text))


def _unit_cost(unit: str) -> int:
    size = len(unit)
    if size == 1:
        return 1
    if not unit.isascii():
        # Accented Latin loses its accents in WordPiece ("naïve" is "naive");
        # any other script is costed per character.
        stripped = "".join(
            c for c in unicodedata.normalize("NFD", unit) if not unicodedata.combining(c)
        )
        if not stripped.isascii():
            return size
        unit, size = stripped, len(stripped)
    if unit.isalpha():
        return _word_cost(unit)
    # Letters and digits: digits one token each; the leading letters as a word,
    # later ones (continuation pieces, a smaller vocabulary) one per two letters.
    cost = 0
    for index, part in enumerate(_DIGITS.split(unit)):
        if not part:
            continue
        if part.isdigit():
            cost += len(part)
        else:
            cost += _word_cost(part) if index == 0 else -(-len(part) // 2)
    return cost


def _word_cost(word: str) -> int:
    if not (word.islower() or word.isupper() or word.istitle()) or (
        len(word) > 3 and _NOT_A_WORD.search(word)
    ):
        return len(word)  # camelCase, no vowel, five consonants in a row: an identifier
    # WordPiece's pieces of a word outside its (English) vocabulary: 2-3 letters
    return -(-len(word) // 3)
