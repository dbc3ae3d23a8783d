"""Each chunker on tricky inputs; all are pure functions of bytes and settings."""

from __future__ import annotations

import gzip
import json

import pytest

from botreg.knowledge.chunkers import chunk_file, count_tokens
from botreg.registry.content import ContentError
from botreg.registry.settings import ChunkingSettings, Limits

SETTINGS = ChunkingSettings()
LIMITS = Limits()


def chunks(path: str, content: str | bytes, settings: ChunkingSettings = SETTINGS) -> list:  # type: ignore[type-arg]
    raw = content.encode() if isinstance(content, str) else content
    return chunk_file(path, raw, settings, LIMITS)


def test_markdown_follows_nested_headings() -> None:
    doc = (
        "# Billing\n\nIntro.\n\n## Refunds\n\nPolicy.\n\n"
        "### Timelines\n\n5 days.\n\n## Plans\n\nThree.\n"
    )
    found = [(c.heading, c.text) for c in chunks("a.md", doc)]
    assert found == [
        ("Billing", "Billing\n\nIntro."),
        ("Billing > Refunds", "Billing > Refunds\n\nPolicy."),
        ("Billing > Refunds > Timelines", "Billing > Refunds > Timelines\n\n5 days."),
        ("Billing > Plans", "Billing > Plans\n\nThree."),
    ]
    assert [c.index for c in chunks("a.md", doc)] == [0, 1, 2, 3]


def test_hash_in_a_code_fence_is_not_a_heading() -> None:
    doc = "# Setup\n\n```bash\n# install it\npip install acme\n```\n\n## Next\n\nDone.\n"
    found = chunks("a.md", doc)
    assert [c.heading for c in found] == ["Setup", "Setup > Next"]
    assert "# install it" in found[0].text and "```bash" in found[0].text


def test_tables_lists_and_fences_stay_whole_when_they_fit() -> None:
    table = "| a | b |\n|---|---|\n" + "".join(f"| {i} | x |\n" for i in range(5))
    doc = f"# T\n\n{table}\n- one\n- two\n\n```\ncode\n```\n"
    [chunk] = chunks("a.md", doc)
    assert table.strip() in chunk.text and "- one\n- two" in chunk.text


def test_oversized_table_repeats_its_header() -> None:
    rows = "".join(f"| row {i} | some words in the cell number {i} |\n" for i in range(60))
    doc = f"# Big\n\n| name | text |\n|---|---|\n{rows}"
    found = chunks("a.md", doc, ChunkingSettings(max_tokens=64, overlap_tokens=8))
    assert len(found) > 3
    for chunk in found:
        lines = chunk.text.split("\n")
        assert lines[:4] == ["Big", "", "| name | text |", "|---|---|"]
        assert count_tokens(chunk.text) <= 64


def test_oversized_code_fence_is_reopened_in_every_piece() -> None:
    code = "".join(f"x{i} = compute({i}) + other_value\n" for i in range(80))
    doc = f"# Code\n\n```python\n{code}```\n"
    found = chunks("a.md", doc, ChunkingSettings(max_tokens=64, overlap_tokens=8))
    assert len(found) > 3
    for chunk in found:
        body = chunk.text.split("\n\n", 1)[1]
        assert body.startswith("```python\n") and body.endswith("\n```")


def test_long_prose_is_split_with_overlap_within_budget() -> None:
    sentences = " ".join(f"Sentence number {i} talks about refunds." for i in range(80))
    found = chunks("a.txt", sentences, ChunkingSettings(max_tokens=50, overlap_tokens=10))
    assert len(found) > 5
    assert all(count_tokens(c.text) <= 50 for c in found)
    first_tail = found[0].text.split()[-3:]
    assert " ".join(first_tail) in found[1].text  # the overlap


def test_front_matter_becomes_metadata() -> None:
    doc = "---\ntitle: Refunds\ntags: [billing]\n---\n# Refunds\n\nText.\n"
    [chunk] = chunks("a.md", doc)
    assert chunk.metadata["title"] == "Refunds"
    assert json.loads(str(chunk.metadata["front_matter"])) == {
        "title": "Refunds",
        "tags": ["billing"],
    }
    assert "title:" not in chunk.text


def test_crlf_and_non_ascii() -> None:
    doc = "# Café\r\n\r\nUnicode: 日本語のテキスト, naïve façade.\r\n"
    [chunk] = chunks("a.md", doc)
    assert chunk.text == "Café\n\nUnicode: 日本語のテキスト, naïve façade."
    assert "\r" not in chunk.text
    assert count_tokens("日本語") == 3  # one token per CJK character


def test_setext_headings_and_text_before_the_first_heading() -> None:
    doc = "Preface.\n\nTitle\n=====\n\nBody.\n"
    assert [(c.heading, c.text) for c in chunks("a.md", doc)] == [
        ("", "Preface."),
        ("Title", "Title\n\nBody."),
    ]


def test_chunking_is_deterministic() -> None:
    doc = "# A\n\n" + "word " * 500
    first = [c.text for c in chunks("a.md", doc)]
    assert first == [c.text for c in chunks("a.md", doc)]


def test_json_renders_keys_as_headings_and_tables() -> None:
    data = {
        "plans": [{"name": "Team", "price": 12}, {"name": "Business", "price": 29}],
        "policy": {"refunds": {"window_days": 30, "methods": ["card", "bank"]}},
        "currency": "USD",
    }
    found = chunks("p.json", json.dumps(data))
    by_heading = {c.heading: c.text for c in found}
    assert by_heading[""] == "- **currency**: USD"
    assert "| name | price |\n|---|---|\n| Team | 12 |\n| Business | 29 |" in by_heading["plans"]
    assert by_heading["policy > refunds"] == (
        "policy > refunds\n\n- **window_days**: 30\n- **methods**: card, bank"
    )


def test_nested_json_arrays_of_objects_use_item_names() -> None:
    data = {"features": [{"name": "Guests", "detail": {"plans": ["Business"], "since": "4.1"}}]}
    headings = [c.heading for c in chunks("f.json", json.dumps(data))]
    assert "features > Guests" in headings and "features > Guests > detail" in headings


def test_yaml_knowledge_is_rendered_like_json() -> None:
    assert [c.text for c in chunks("a.yaml", "a:\n  b: 1\n")] == [
        c.text for c in chunks("a.json", '{"a": {"b": 1}}')
    ]


def test_csv_chunks_repeat_the_header_and_handle_quoting() -> None:
    rows = "".join(f'{i},"Smith, J.","line one\nline two",{i * 2}\n' for i in range(30))
    found = chunks(
        "people.csv",
        "id,name,notes,score\n" + rows,
        ChunkingSettings(max_tokens=400, csv_rows_per_chunk=10),
    )
    assert [c.heading for c in found] == ["rows 1-10", "rows 11-20", "rows 21-30"]
    for chunk in found:
        lines = chunk.text.split("\n")
        assert lines[2:4] == ["| id | name | notes | score |", "|---|---|---|---|"]
    assert "| 0 | Smith, J. | line one<br>line two | 0 |" in found[0].text
    # the token budget cuts before the row bound when rows are long
    tight = chunks(
        "people.csv",
        "id,name,notes,score\n" + rows,
        ChunkingSettings(max_tokens=100, csv_rows_per_chunk=10),
    )
    assert len(tight) > 3 and all(count_tokens(c.text) <= 100 for c in tight)


def test_csv_pipes_are_escaped() -> None:
    [chunk] = chunks("a.csv", "k,v\na|b,c\n")
    assert "| a\\|b | c |" in chunk.text


def test_text_paragraphs_are_packed() -> None:
    found = chunks("a.txt", "First paragraph.\n\n\nSecond one.\n")
    assert [c.text for c in found] == ["First paragraph.\n\nSecond one."]


def test_gzip_is_handled_by_the_inner_extension() -> None:
    [chunk] = chunks("faq.md.gz", gzip.compress(b"# FAQ\n\nAnswer.\n"))
    assert chunk.heading == "FAQ"


@pytest.mark.parametrize(
    ("path", "content", "code"),
    [
        ("a.json", "{oops", "BR105"),
        ("a.yaml", "a: [1\n", "BR101"),
        ("a.csv", "a,b\n1\n", "BR106"),
        ("a.md", b"\xff\xfe", "BR103"),
        ("a.md.gz", b"not gzip", "BR502"),
        ("a.pdf", b"%PDF", "BR506"),
    ],
)
def test_unparsable_files_raise_content_errors(path: str, content: str | bytes, code: str) -> None:
    with pytest.raises(ContentError) as info:
        chunks(path, content)
    assert info.value.code == code
