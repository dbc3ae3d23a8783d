"""No chunk exceeds the model's window: the token estimate checked against WordPiece.

The chunkers budget with `count_tokens`, an estimate made without the model.
Where the assembled all-MiniLM-L6-v2 is present (BOTREG_TEST_MODEL_DIR, see
bench/model.py) its real tokenizer counts every chunk of our corpus, our docs and
of generated hostile files (hex IDs, UUIDs, camelCase, SKUs, numbers, Cyrillic,
Greek, CJK, emoji): each must fit the model's 256 tokens with [CLS] and [SEP].
The estimator's per-kind rules are tested without the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botreg.knowledge.chunkers import chunk_file, count_tokens
from botreg.registry.settings import RegistrySettings

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 256  # all-MiniLM-L6-v2's max_seq_length, [CLS] and [SEP] included
SETTINGS = RegistrySettings()  # the defaults: max_tokens 200


def _tokenizer() -> object | None:
    folder = os.environ.get("BOTREG_TEST_MODEL_DIR", "")
    path = Path(folder) / "onnx" / "tokenizer.json"
    if not folder or not path.is_file():
        return None
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer.from_file(str(path))
    tokenizer.no_truncation()  # count what the model would cut off
    tokenizer.no_padding()
    return tokenizer


TOKENIZER = _tokenizer()
needs_model = pytest.mark.skipif(
    TOKENIZER is None,
    reason="the assembled all-MiniLM-L6-v2 is not here (set BOTREG_TEST_MODEL_DIR)",
)


def real_tokens(text: str) -> int:
    assert TOKENIZER is not None
    return len(TOKENIZER.encode(text).ids)  # type: ignore[attr-defined]


def assert_within_window(path: str, raw: bytes) -> None:
    for chunk in chunk_file(path, raw, SETTINGS.chunking, SETTINGS.limits):
        assert real_tokens(chunk.text) <= WINDOW, (path, chunk.text[:200])


@needs_model
def test_every_chunk_of_our_corpus_and_docs_fits_the_window() -> None:
    files = [
        p
        for folder in ("bench/quality", "docs", "registry-repo-template/knowledge")
        for p in sorted((ROOT / folder).rglob("*"))
        if p.is_file() and p.suffix in {".md", ".json", ".yaml", ".yml", ".csv", ".txt"}
    ] + [ROOT / "README.md"]
    assert len(files) > 20
    for file in files:
        assert_within_window(file.relative_to(ROOT).as_posix(), file.read_bytes())


_HEX = st.text("0123456789abcdef", min_size=4, max_size=40)
_WORDS = st.sampled_from(
    "refund invoice customer subscription cancellation reconciliation webhook oncall "
    "globs config botreg Zapier OAuth GitHub naïve Rückerstattungsbedingungen "
    "pengembalian kurejeshewa czternastu amakhasimende sähköpostitse visszatérítés "
    "поддержка клиентов Επιστροφή χρημάτων مرحبا 退款政策 😀 ﬁnance".split()
)
_IDS = st.one_of(
    _HEX,
    st.uuids().map(str),
    st.from_regex(r"[a-z]{2,8}([A-Z][a-z]{1,8}){1,4}", fullmatch=True),  # camelCase
    st.from_regex(r"SKU-[0-9A-F]{4,8}-(XS|S|M|L|XL)", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9+/]{12,40}={0,2}", fullmatch=True),  # base64
    st.integers(0, 10**12).map(str),
    st.from_regex(r"https://[a-z]{3,10}\.com/[a-z0-9/?=&]{5,40}", fullmatch=True),
)
_TOKENS = st.lists(st.one_of(_WORDS, _IDS, st.sampled_from([",", ".", "-", ":", "(", ")"])))


@needs_model
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(paragraphs=st.lists(_TOKENS.filter(bool), min_size=1, max_size=12), kind=st.integers(0, 3))
def test_hostile_files_never_exceed_the_window(paragraphs: list[list[str]], kind: int) -> None:
    lines = [" ".join(words) for words in paragraphs]
    if kind == 0:
        path, raw = "a.md", "# Lookup\n\n" + "\n\n".join(lines)
    elif kind == 1:
        path, raw = "a.txt", "\n\n".join(lines)
    elif kind == 2:
        rows = [f'"{n}","{line}"' for n, line in enumerate(lines)]
        path, raw = "a.csv", "id,value\n" + "\n".join(rows)
    else:
        path, raw = "a.json", json.dumps([{"id": n, "note": line} for n, line in enumerate(lines)])
    assert_within_window(path, raw.encode())


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("refund", 2),  # a plain word: one token per three letters
        ("kurejeshewa", 4),  # Swahili: WordPiece cuts it into 4 pieces
        ("the", 1),
        ("a3f9c2e81b7d", 12),  # hex: one per character
        ("3f2b8c1e-9a4d", 13),  # the dash is a token of its own
        ("getUserName", 11),  # camelCase: an identifier
        ("bcdfg", 5),  # no vowel: not a word
        ("поддержка", 9),  # outside Latin: one per character
        ("naïve", 2),  # accents stripped, as WordPiece does
        ("region988", 5),  # the word, then one per digit
        ("退款", 2),  # CJK: one per character
        ("snake_case", 5),  # "_" splits like punctuation
    ],
)
def test_estimate_per_kind(text: str, tokens: int) -> None:
    assert count_tokens(text) == tokens


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None, database=None)
def test_a_character_is_at_most_one_token(text: str) -> None:
    # The splitters rely on it: a piece of n characters costs at most n tokens.
    assert count_tokens(text) <= sum(not c.isspace() for c in text)


# Support prose in languages written in Latin letters (tests/data/languages), and
# its real token count ([CLS] and [SEP] included). WordPiece's vocabulary is
# English: these words are cut into pieces of two or three letters, so an
# estimate of one token per five letters put a 200-token chunk of Zulu at 350.
LANGUAGES = ROOT / "tests" / "data" / "languages"
REAL_TOKENS = {
    "cy": 220,
    "de": 225,
    "es": 206,
    "eu": 191,
    "fi": 190,
    "fr": 187,
    "hu": 224,
    "id": 225,
    "it": 211,
    "nl": 220,
    "pl": 252,
    "sw": 216,
    "tl": 183,
    "tr": 205,
    "vi": 222,
    "zu": 232,
}


def _body(language: str) -> str:
    return (LANGUAGES / f"{language}.md").read_text(encoding="utf-8").split("\n\n", 1)[1].strip()


@pytest.mark.parametrize("language", sorted(REAL_TOKENS))
def test_the_estimate_bounds_prose_of_any_latin_language(language: str) -> None:
    # A chunk of max_tokens estimated tokens must be within the window's 254
    # (256 less [CLS] and [SEP]): the estimate may be under by 254/200 at most.
    real = REAL_TOKENS[language] - 2
    assert real * SETTINGS.chunking.max_tokens <= count_tokens(_body(language)) * (WINDOW - 2)


@needs_model
@pytest.mark.parametrize("language", sorted(REAL_TOKENS))
def test_long_prose_of_any_latin_language_fits_the_window(language: str) -> None:
    body = _body(language)
    assert real_tokens(body) == REAL_TOKENS[language]  # the table above is the model's count
    # one long paragraph: split at sentences into chunks filled to the budget
    text = f"# {language}\n\n" + " ".join([body] * 3)
    assert len(chunk_file("a.md", text.encode(), SETTINGS.chunking, SETTINGS.limits)) > 2
    assert_within_window(f"{language}.md", text.encode())
