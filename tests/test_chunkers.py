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
    body = ("Words enough to make this section stand as a chunk of its own. " * 3).strip()
    doc = (
        f"# Billing\n\n{body}\n\n## Refunds\n\n{body}\n\n"
        f"### Timelines\n\n{body}\n\n## Plans\n\n{body}\n"
    )
    found = [(c.heading, c.text) for c in chunks("a.md", doc)]
    # the first H1 is the title: first in every chunk, never repeated
    assert found == [
        ("Billing", f"Billing\n\n{body}"),
        ("Billing > Refunds", f"Billing > Refunds\n\n{body}"),
        ("Billing > Refunds > Timelines", f"Billing > Refunds > Timelines\n\n{body}"),
        ("Billing > Plans", f"Billing > Plans\n\n{body}"),
    ]
    assert [c.index for c in chunks("a.md", doc)] == [0, 1, 2, 3]


def test_short_sections_merge_into_their_parent() -> None:
    doc = "# Billing\n\nIntro.\n\n## Refunds\n\nPolicy.\n\n### Timelines\n\n5 days.\n"
    [chunk] = chunks("a.md", doc)
    assert chunk.heading == "Billing"
    assert chunk.text == "Billing\n\nIntro.\n\nRefunds\nPolicy.\n\nRefunds > Timelines\n5 days."


def test_hash_in_a_code_fence_is_not_a_heading() -> None:
    doc = "# Setup\n\n```bash\n# install it\npip install acme\n```\n\n## Next\n\nDone.\n"
    [found] = chunks("a.md", doc)  # "Next" is short: merged into its parent
    assert found.heading == "Setup"
    assert "# install it" in found.text and "```bash" in found.text
    assert found.text.endswith("\n\nNext\nDone.")


def test_lists_and_fences_stay_whole_when_they_fit() -> None:
    items = "".join(f"- item number {i} of the list\n" for i in range(12))
    code = "".join(f"x{i} = compute({i})\n" for i in range(12))
    doc = f"# T\n\n{items}\n```\n{code}```\n"
    found = chunks("a.md", doc)
    assert any(items.strip() in c.text for c in found)
    assert any(f"```\n{code}```" in c.text for c in found)


def test_markdown_table_rows_are_records_with_header_names() -> None:
    table = "| plan | price | seats |\n|---|---|---|\n" + "".join(
        f"| Plan{i} with a long descriptive name | {i}0 dollars a month | {i} |\n" for i in range(6)
    )
    found = chunks("pricing.md", f"# Pricing\n\n## Plans\n\n{table}")
    assert len(found) == 6
    for i, chunk in enumerate(found):
        assert chunk.text == (
            f"Pricing > Plans\n\nplan: Plan{i} with a long descriptive name\n"
            f"price: {i}0 dollars a month\nseats: {i}"
        )


def test_oversized_table_row_is_split_and_led_by_its_first_field() -> None:
    cells = " | ".join(f"word{i} " * 6 for i in range(12))
    header = " | ".join(f"col{i}" for i in range(12))
    doc = f"# Big\n\n| name | {header} |\n|---|{'---|' * 12}\n| Gizmo | {cells} |\n"
    found = chunks("a.md", doc, ChunkingSettings(max_tokens=64, overlap_tokens=8))
    assert len(found) >= 2
    for chunk in found:
        lines = chunk.text.split("\n")
        assert lines[:3] == ["Big", "", "name: Gizmo"]
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
    # the setext H1 is the title: the preface carries it too; both are short: one chunk
    assert [(c.heading, c.text) for c in chunks("a.md", doc)] == [
        ("Title", "Title\n\nPreface.\n\nBody."),
    ]


def test_chunking_is_deterministic() -> None:
    doc = "# A\n\n" + "word " * 500
    first = [c.text for c in chunks("a.md", doc)]
    assert first == [c.text for c in chunks("a.md", doc)]


def test_json_keys_are_paths_and_list_items_are_records() -> None:
    data = {
        "plans": [
            {"price": 12, "name": "Team", "note": "for small teams of up to twenty people"},
            {"price": 29, "name": "Business", "note": "for companies with many departments"},
        ],
        "policy": {"refunds": {"window_days": 30, "methods": ["card", "bank"]}},
        "currency": "USD",
    }
    found = chunks("pricing-plans.json", json.dumps(data))
    by_heading = {c.heading: c.text for c in found}
    assert by_heading["Pricing plans"].startswith("Pricing plans\n\ncurrency: USD")
    # each item its own chunk, its name first, every value beside its key
    assert by_heading["Pricing plans > plans > Team"] == (
        "Pricing plans > plans > Team\n\nname: Team\nprice: 12\n"
        "note: for small teams of up to twenty people"
    )
    assert "name: Business\nprice: 29" in by_heading["Pricing plans > plans > Business"]
    assert by_heading["Pricing plans > policy > refunds"].endswith(
        "\n\nwindow_days: 30\nmethods: card, bank"
    )


def test_nested_json_arrays_of_objects_use_item_names() -> None:
    detail = {"plans": ["Business"], "since": "4.1", "text": "a long description " * 5}
    data = {"title": "Features", "features": [{"name": "Guests", "detail": detail}]}
    headings = [c.heading for c in chunks("f.json", json.dumps(data))]
    # the document's own title is the title (a first key equal to it is not repeated)
    assert "Features > Guests > detail" in headings


def test_yaml_knowledge_is_rendered_like_json() -> None:
    assert [c.text for c in chunks("a.yaml", "a:\n  b: 1\n")] == [
        c.text for c in chunks("a.json", '{"a": {"b": 1}}')
    ]


def test_csv_rows_are_records_with_column_names_and_the_name_first() -> None:
    rows = "".join(f'{i},"Smith, J.{i}","line one\nline two",{i * 2}\n' for i in range(30))
    found = chunks("people.csv", "id,name,notes,score\n" + rows)
    assert len(found) == 30
    assert found[3].heading == "People > Smith, J.3"
    assert found[3].text == (
        "People > Smith, J.3\n\nname: Smith, J.3\nid: 3\nnotes: line one line two\nscore: 6"
    )
    tight = chunks("people.csv", "id,name,notes,score\n" + rows, ChunkingSettings(max_tokens=20))
    assert all(count_tokens(c.text) <= 20 for c in tight)


def test_tiny_csv_rows_share_a_chunk_a_few_at_most() -> None:
    found = chunks("codes.csv", "code,label\n" + "".join(f"C{i},L{i}\n" for i in range(8)))
    assert [c.text.count("code: ") for c in found] == [4, 4]
    assert found[0].text.startswith("Codes\n\nlabel: L0\ncode: C0\n\nlabel: L1\ncode: C1")


def test_csv_cells_are_kept_as_written() -> None:
    [chunk] = chunks("a.csv", "k,v\na|b,c\n")
    assert chunk.text == "A > a|b\n\nk: a|b\nv: c"


def test_text_paragraphs_are_packed_under_the_file_title() -> None:
    found = chunks("release_notes.txt", "First paragraph.\n\n\nSecond one.\n")
    assert [c.text for c in found] == ["Release notes\n\nFirst paragraph.\n\nSecond one."]


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
