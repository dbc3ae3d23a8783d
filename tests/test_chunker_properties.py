"""Every chunker, attacked: any input gives bounded chunks, the same ones every time.

Property tests (hypothesis, bounded example counts) plus the shapes that broke
main (issue #9): a Markdown table thousands of columns wide, a CSV as wide, text
without whitespace, one long line, a code fence with a huge opening line, JSON
with long keys and values and huge arrays. For each, every chunk is within the
byte and token bounds and the chunks add up to a small multiple of the input.
"""

from __future__ import annotations

import gzip
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botreg.errors import BotregError
from botreg.knowledge.chunkers import Chunk, chunk_file, count_tokens
from botreg.knowledge.chunkers.base import MAX_CHUNK_BYTES, MAX_CHUNK_TOKENS, ChunkBounds
from botreg.knowledge.chunkers.packer import Packer
from botreg.knowledge.chunkers.structured import chunk_data
from botreg.registry.content import ContentError
from botreg.registry.settings import ChunkingSettings, Limits

EXTENSIONS = ("md", "json", "yaml", "csv", "txt")
LIMITS = Limits()
PROPERTY = settings(
    max_examples=30,
    deadline=None,
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def chunk(
    path: str, raw: bytes, max_tokens: int = 200, overlap: int = 32, limits: Limits = LIMITS
) -> list[Chunk] | None:
    """The chunks, or None if the file is refused with a documented error."""
    chunking = ChunkingSettings(max_tokens=max_tokens, overlap_tokens=overlap)
    try:
        return chunk_file(path, raw, chunking, limits)
    except (ContentError, BotregError):
        return None


def assert_bounded(
    path: str, raw: bytes, max_tokens: int = 200, overlap: int = 32, limits: Limits = LIMITS
) -> list[Chunk]:
    """Chunk twice: each chunk within bounds, and the same chunks both times."""
    found = chunk(path, raw, max_tokens, overlap, limits)
    if found is None:
        return []
    bounds = ChunkBounds.of(max_tokens)
    for c in found:
        assert count_tokens(c.text) <= bounds.tokens, (path, c.text[:200])
        assert len(c.text.encode("utf-8")) <= bounds.bytes, (path, c.text[:200])
        assert c.text.strip()
    again = chunk(path, raw, max_tokens, overlap, limits)
    assert again is not None
    assert [(c.text, c.heading, c.index, c.metadata) for c in found] == [
        (c.text, c.heading, c.index, c.metadata) for c in again
    ]
    return found


def test_bounds_are_clamped_to_hard_ceilings() -> None:
    assert ChunkBounds.of(200) == ChunkBounds(200, 3200)
    assert ChunkBounds.of(0) == ChunkBounds(1, 64)
    assert ChunkBounds.of(10**9) == ChunkBounds(MAX_CHUNK_TOKENS, MAX_CHUNK_BYTES)


# --- any bytes, any text ---------------------------------------------------------------

budgets = st.sampled_from([1, 2, 5, 16, 64, 200])
overlaps = st.sampled_from([0, 3, 32])
extensions = st.sampled_from(EXTENSIONS)


@PROPERTY
@given(ext=extensions, raw=st.binary(max_size=600), max_tokens=budgets, overlap=overlaps)
def test_any_bytes(ext: str, raw: bytes, max_tokens: int, overlap: int) -> None:
    assert_bounded(f"f.{ext}", raw, max_tokens, overlap)


@PROPERTY
@given(ext=extensions, text=st.text(max_size=600), max_tokens=budgets, overlap=overlaps)
def test_any_text(ext: str, text: str, max_tokens: int, overlap: int) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    assert_bounded(f"f.{ext}", raw, max_tokens, overlap)


@PROPERTY
@given(ext=extensions, text=st.text(max_size=400), max_tokens=budgets)
def test_any_text_gzipped(ext: str, text: str, max_tokens: int) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    plain = chunk(f"f.{ext}", raw, max_tokens)
    zipped = assert_bounded(f"f.{ext}.gz", gzip.compress(raw, mtime=0), max_tokens)
    if plain is not None:  # the same chunks whether compressed or not
        assert [c.text for c in zipped] == [c.text for c in plain]


# --- Markdown-shaped text --------------------------------------------------------------

word = st.text(alphabet=string.ascii_letters + "é日!|`#*-", min_size=1, max_size=40)
fragments = st.one_of(
    word,
    st.builds(lambda w: "#" * 3 + " " + w, word),
    st.builds(
        lambda n, w: "| " + " | ".join([w] * n) + " |\n|" + "---|" * n, st.integers(1, 60), word
    ),
    st.builds(lambda w: "```" + w + "\n" + w + "\n```", word),
    st.builds(lambda n: " " * n, st.integers(0, 300)),
    st.builds(lambda n: "x" * n, st.integers(0, 3000)),
    st.builds(lambda n: "!" * n, st.integers(0, 3000)),
    st.sampled_from(["\n", "\n\n", "- ", "1. ", "> ", "---\n", "\t", "<br>"]),
)
markdownish = st.lists(fragments, max_size=30).map("".join)


@PROPERTY
@given(ext=extensions, text=markdownish, max_tokens=budgets, overlap=overlaps)
def test_markdown_shaped_text(ext: str, text: str, max_tokens: int, overlap: int) -> None:
    assert_bounded(f"f.{ext}", text.encode(), max_tokens, overlap)


# --- structured data -------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),  # the loaders refuse wider integers (BR107)
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    st.builds(lambda n: "y" * n, st.integers(0, 5000)),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=8),
        st.dictionaries(st.text(max_size=30), children, max_size=8),
    ),
    max_leaves=40,
)


@PROPERTY
@given(data=documents, ext=st.sampled_from(["json", "yaml"]), max_tokens=budgets)
def test_any_json_or_yaml_document(data: object, ext: str, max_tokens: int) -> None:
    raw = json.dumps(data).encode()
    assert_bounded(f"f.{ext}", raw, max_tokens)
    if ext == "json":  # valid JSON is never refused, whatever its shape
        assert chunk("f.json", raw, max_tokens) is not None


csv_cells = st.text(alphabet=string.ascii_letters + ' ,"\n|é', max_size=30)


@PROPERTY
@given(
    width=st.integers(1, 80),
    rows=st.integers(0, 12),
    cell=csv_cells,
    max_tokens=budgets,
)
def test_any_csv_shape(width: int, rows: int, cell: str, max_tokens: int) -> None:
    quoted = '"' + cell.replace('"', '""') + '"'
    lines = [",".join(f"h{i}" for i in range(width))] + [",".join([quoted] * width)] * rows
    found = assert_bounded("f.csv", ("\n".join(lines) + "\n").encode(), max_tokens)
    assert found  # a header at least


# --- the shapes of issue #9, at a scale that shows the bound ---------------------------


def wide_table(columns: int, rows: int) -> str:
    head = "| " + " | ".join(f"column{i}" for i in range(columns)) + " |\n|" + "---|" * columns
    body = "".join(
        "\n| " + " | ".join(f"r{r}c{i}" for i in range(columns)) + " |" for r in range(rows)
    )
    return "# Prices\n\n" + head + body + "\n"


SHAPES = {
    "markdown table, 1,000 columns": ("t.md", wide_table(1000, 5)),
    "csv, 1,000 columns": (
        "t.csv",
        ",".join(f"column{i}" for i in range(1000))
        + "\n"
        + "".join(",".join(f"r{r}c{i}" for i in range(1000)) + "\n" for r in range(5)),
    ),
    "text without whitespace": ("t.txt", "a.b-c/" * 8_000),
    "punctuation without whitespace": ("t.md", "!?" * 30_000),
    "one long line of words": ("t.md", "refund policy " * 10_000),
    "whitespace between two words": ("t.txt", "start" + " " * 100_000 + "end"),
    "code fence with a huge opening line": (
        "t.md",
        "```" + "python" * 5000 + "\n" + "    x = 1  # comment\n" * 2000 + "```\n",
    ),
    "deeply indented code": ("t.md", "```\n" + (" " * 3000 + "y\n") * 50 + "```\n"),
    "json long keys and values": (
        "t.json",
        json.dumps({"k" * 20_000: {"key": "v " * 20_000, "list": ["z" * 20_000] * 3}}),
    ),
    "json huge array": ("t.json", json.dumps(list(range(5_000)))),
    "json table rows with long cells": (
        "t.json",
        json.dumps([{"name": f"n{i}", "text": "w " * 500} for i in range(40)]),
    ),
    "yaml long list items": ("t.yaml", "a:\n" + "".join(f"  - {'x' * 3000}\n" for _ in range(30))),
    "heading of 50,000 characters": ("t.md", "# " + "title " * 10_000 + "\n\nBody.\n"),
}


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_hostile_shapes_give_bounded_chunks(shape: str) -> None:
    path, text = SHAPES[shape]
    raw = text.encode()
    found = assert_bounded(path, raw)
    assert found, shape
    total = sum(len(c.text.encode()) for c in found)
    # Headings and overlap repeat, the header row no more than once per chunk
    # within half the budget: never the multiplication seen on main (x30 and more).
    assert total <= 3 * len(raw) + 1000, (shape, total, len(raw))
    zipped_raw = gzip.compress(raw, mtime=0)
    if len(raw) <= len(zipped_raw) * LIMITS.max_compression_ratio:
        zipped = assert_bounded(path + ".gz", zipped_raw)
        assert [c.text for c in zipped] == [c.text for c in found]
    else:  # repetitive: beyond the ratio ceiling, refused as a bomb before any chunking
        with pytest.raises(ContentError) as info:
            chunk_file(path + ".gz", zipped_raw, ChunkingSettings(), LIMITS)
        assert info.value.code == "BR503"


def test_a_wide_table_is_records_each_value_once_beside_its_column() -> None:
    raw = wide_table(500, 20).encode()
    found = assert_bounded("t.md", raw)
    text = "\n".join(c.text for c in found)
    assert text.count("column7: r3c7") == 1
    # a row too large for a chunk is split between fields, each piece led by its first one
    assert all(c.text.split("\n")[2].startswith("column0: r") for c in found)
    assert sum(len(c.text.encode()) for c in found) <= 3 * len(raw)


def test_the_chunk_ceiling_fails_the_file() -> None:
    raw = ("A sentence about refunds. " * 40 + "\n\n").encode() * 30
    assert len(chunk_file("t.txt", raw, ChunkingSettings(), LIMITS)) > 10
    with pytest.raises(ContentError) as info:
        chunk_file("t.txt", raw, ChunkingSettings(), LIMITS, max_chunks=10)
    assert info.value.code == "BR504" and "over the ceiling of 10 per file" in info.value.message


def test_a_file_over_max_file_bytes_is_refused_by_the_chunker() -> None:
    with pytest.raises(ContentError) as info:
        chunk_file("t.md", b"x" * 2000, ChunkingSettings(), Limits(max_file_bytes=1000))
    assert info.value.code == "BR504" and "limits.max_file_bytes" in info.value.message


def test_yaml_nested_beyond_the_stack_does_not_raise_recursion_error() -> None:
    # An alias chain expands far deeper than the text is nested.
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 1500)]
    found = chunk("t.yaml", "\n".join(lines).encode())
    assert found is None or all(count_tokens(c.text) <= 200 for c in found)


def test_huge_integers_render_without_raising() -> None:
    packer = Packer("t", 200)
    chunk_data({"n": 10**5000}, packer)
    assert "\n\n0x" in "".join(text for _, text in packer.finish())
    with pytest.raises(ContentError) as info:  # refused, not a ValueError from int()
        chunk_file("t.yaml", b"n: " + b"9" * 5000 + b"\n", ChunkingSettings(), LIMITS)
    assert info.value.code in ("BR101", "BR107")  # BR107 where the loader bounds integers


def test_the_markdown_parser_keeps_only_top_level_tokens() -> None:
    # The token stream, not the text, was what exhausted memory: 3 tokens a cell.
    from botreg.knowledge.chunkers.markdown import _top_level_tokens

    tokens = _top_level_tokens(wide_table(1000, 50), {})
    assert [t.type for t in tokens] == [
        "heading_open",
        "inline",
        "heading_close",
        "table_open",
        "table_close",
    ]


@PROPERTY
@given(doc=markdownish)
def test_top_level_blocks_are_those_of_a_full_parse(doc: str) -> None:
    from markdown_it import MarkdownIt

    from botreg.knowledge.chunkers.markdown import _top_level_tokens

    full = MarkdownIt("commonmark").enable("table").parse(doc)
    expected = [(t.type, t.map) for t in full if t.level == 0]
    assert [(t.type, t.map) for t in _top_level_tokens(doc, {}) if t.level == 0] == expected
