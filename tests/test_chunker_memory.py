"""The Markdown chunker stays small on hostile shapes (issue #9).

On main, Markdown within every ceiling took gigabytes: one heading of 2.5
million emphasis markers (inline-parsed whole), 5 MB of `# a` lines (three
tokens and one section object kept per heading, every heading inline-parsed),
and a 50 MiB `.md.gz` of such runs (the parser's per-line tables for 13 million
lines). Each shape is reproduced here at a small scale and the *structure* is
asserted: how much text is inline-parsed, how many tokens and lines the parser
holds at once, how many chunks come out. Timeouts are only hang guards.
"""

from __future__ import annotations

import gzip
import random
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botreg.knowledge.chunkers import chunk_file, count_tokens
from botreg.knowledge.chunkers import markdown as md
from botreg.knowledge.chunkers import outline as outline_module
from botreg.knowledge.chunkers.base import ChunkBounds
from botreg.knowledge.chunkers.outline import Outline
from botreg.registry.content import ContentError
from botreg.registry.settings import ChunkingSettings, Limits

SETTINGS = ChunkingSettings()
BOUNDS = ChunkBounds.of(SETTINGS.max_tokens)


class Spy:
    """Records what the parser is asked to do while a test runs."""

    def __init__(self) -> None:
        self.inline: list[int] = []  # length of each text given to the inline parser
        self.held: int = 0  # most tokens a block state held at once
        self.lines: int = 0  # most lines a block state covered


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    found = Spy()
    parse_inline = md._PARSER.parseInline

    def recording_inline(src: str, env: Any = None) -> Any:
        found.inline.append(len(src))
        return parse_inline(src, env)

    original_init = md._TopLevelState.__init__
    original_push = md._TopLevelState.push

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        found.lines = max(found.lines, self.lineMax)

    def recording_push(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = original_push(self, *args, **kwargs)
        found.held = max(found.held, len(self.tokens))
        return token

    monkeypatch.setattr(md._PARSER, "parseInline", recording_inline)
    monkeypatch.setattr(md._TopLevelState, "__init__", recording_init)
    monkeypatch.setattr(md._TopLevelState, "push", recording_push)
    yield found


def assert_bounded(chunks: list[Any]) -> None:
    for c in chunks:
        assert count_tokens(c.text) <= BOUNDS.tokens
        assert len(c.text.encode()) <= BOUNDS.bytes


@pytest.mark.timeout(60)
def test_a_huge_emphasis_heading_is_inline_parsed_only_in_part(spy: Spy) -> None:
    raw = ("# " + "*a" * 50_000 + "\n\nThe body under it.\n").encode()
    chunks = chunk_file("h.md", raw, SETTINGS, Limits())
    assert len(chunks) == 1 and chunks[0].text.endswith("The body under it.")
    assert_bounded(chunks)
    assert spy.inline and max(spy.inline) <= md.MAX_HEADING_CHARS  # main: 100,000


@pytest.mark.timeout(60)
def test_a_heading_with_nothing_under_it_is_never_inline_parsed(spy: Spy) -> None:
    raw = ("# " + "*a" * 50_000 + "\n").encode()
    assert chunk_file("h.md", raw, SETTINGS, Limits()) == []
    assert spy.inline == []


@pytest.mark.timeout(60)
def test_many_empty_headings_hold_no_tokens_and_parse_no_inline(spy: Spy) -> None:
    raw = ("# *a*\n" * 40_000 + "## Last\n\nThe only body.\n").encode()
    chunks = chunk_file("h.md", raw, SETTINGS, Limits())
    assert [c.heading for c in chunks] == ["a > Last"]
    assert len(spy.inline) == 1  # only the heading over the body (main: 40,001)
    assert spy.held <= 3  # one block's top-level tokens (main: 3 per heading)


@pytest.mark.timeout(60)
def test_the_parser_covers_a_window_of_lines_not_the_file(spy: Spy) -> None:
    raw = ("# a\n" * (2 * md.WINDOW_LINES) + "body\n").encode()
    chunks = chunk_file("h.md", raw, SETTINGS, Limits())
    assert [c.text for c in chunks] == ["a\n\nbody"]
    assert spy.lines <= md.WINDOW_LINES  # main: one state of all 65,537 lines


@pytest.mark.timeout(60)
def test_headings_each_with_a_body_stop_at_the_chunk_ceiling(spy: Spy) -> None:
    # bodies long enough not to be merged with their neighbours: a chunk each
    body = "a body of several words, long enough to stand as a chunk of its own " * 2
    raw = "".join(f"# *h{i}*\n{body}{i}\n" for i in range(5_000)).encode()
    with pytest.raises(ContentError) as info:
        chunk_file("h.md", raw, SETTINGS, Limits(), max_chunks=10)
    assert info.value.code == "BR504"
    assert len(spy.inline) <= 11  # stops at the 11th chunk (main: all 5,000 headings)


@pytest.mark.timeout(60)
def test_past_the_block_ceiling_the_rest_is_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(md, "MAX_BLOCKS", 100)
    raw = ("# a\n" * 1_000 + "## Under\n\nbody\n").encode()
    chunks = chunk_file("h.md", raw, SETTINGS, Limits())
    assert_bounded(chunks)
    # Under the heading open at the 100th block; later `#` lines are text.
    assert chunks and all(c.heading == "a" for c in chunks)
    assert "## Under" in chunks[-1].text and "body" in chunks[-1].text


@pytest.mark.timeout(60)
def test_one_block_too_large_to_parse_is_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(md, "WINDOW_LINES", 8)
    monkeypatch.setattr(md, "MAX_BLOCK_LINES", 32)
    raw = ("# Top\n\n```\n" + "x = 1\n" * 200 + "```\n").encode()
    chunks = chunk_file("h.md", raw, SETTINGS, Limits())
    assert_bounded(chunks)
    assert chunks and all(c.heading == "Top" for c in chunks)
    assert sum(c.text.count("x = 1") for c in chunks) >= 200


@pytest.mark.timeout(60)
def test_a_gzip_of_heading_runs_stays_small() -> None:
    # The daemon case at 1/25 scale: runs of `# a` with a random heading every 40-120 lines.
    rnd = random.Random(9)
    parts: list[str] = []
    size = 0
    while size < 2_000_000:
        name = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
        part = "# a\n" * rnd.randint(40, 120) + f"# {name}\n"
        parts.append(part)
        size += len(part)
    raw = gzip.compress("".join(parts).encode(), 9)
    tracemalloc.start()
    try:
        try:
            chunks = chunk_file("h.md.gz", raw, SETTINGS, Limits())
        except ContentError as exc:  # over the chunk ceiling is an answer too
            assert exc.code == "BR504"
            chunks = []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_bounded(chunks)
    assert len(chunks) <= 20_000
    # The text itself is ~2 MB and is copied a few times; main peaked near 700 MB.
    assert peak < 80 * 1024 * 1024


# --- the same chunks, whatever the window ------------------------------------------------

LINES = st.sampled_from(
    [
        "# A *b*",
        "## Sub `x`",
        "para text here.",
        "",
        "",
        "- item",
        "  - nested",
        "1. one",
        "```",
        "~~~",
        "> quote",
        "| a | b |",
        "|---|---|",
        "| 1 | 2 |",
        "    code",
        "<div>",
        "</div>",
        '[ref]: /url "t"',
        "### [ref] link",
        "Setext",
        "===",
        "---",
        "# a\0b",
        "text *emph",
        "&amp; x",
    ]
)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lines=st.lists(LINES, max_size=30), window=st.sampled_from([(7, 1), (40, 3), (200, 10)]))
def test_small_windows_give_the_chunks_of_one_window(
    lines: list[str], window: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = "\n".join(lines)
    whole = md.chunk_markdown(doc, ChunkingSettings(max_tokens=40, overlap_tokens=8))
    with monkeypatch.context() as patch:
        patch.setattr(md, "WINDOW_CHARS", window[0])
        patch.setattr(md, "WINDOW_LINES", window[1])
        windowed = md.chunk_markdown(doc, ChunkingSettings(max_tokens=40, overlap_tokens=8))
    assert windowed == whole


def test_a_reference_defined_below_a_heading_is_used_in_its_path() -> None:
    doc = '### [ref] link\n\npara text.\n\n# A\n\n[ref]: /url "t"\n'
    assert md.chunk_markdown(doc, SETTINGS)[0][0] == "ref link"


@settings(max_examples=200, deadline=None, database=None)
@given(source=st.text(max_size=40))
def test_a_heading_without_markup_reads_as_the_inline_parser_reads_it(source: str) -> None:
    outline = Outline(SETTINGS, "", {}, None)
    heading = outline_module._Heading(1, source)
    assert outline._heading_text(heading) == outline_module._inline_text(source, {})
