"""The chunking rules of issue #13: records, context in every chunk, sizes, stable ids."""

from __future__ import annotations

import itertools
import json

import pytest

from botreg.knowledge.chunkers import Chunk, chunk_file, count_tokens
from botreg.registry.settings import ChunkingSettings, Limits

SETTINGS = ChunkingSettings()
WINDOW = 256  # all-MiniLM-L6-v2's window; chunks are budgeted at max_tokens=200 estimated


def chunks(path: str, content: str, settings: ChunkingSettings = SETTINGS) -> list[Chunk]:
    return chunk_file(path, content.encode(), settings, Limits())


SENTENCE = "This sentence says something about the topic of its section."


@pytest.mark.parametrize(
    ("path", "content", "context"),
    [
        ("knowledge/a/refund-policy.md", "Text.\n\n## Timelines\n\nFive days.\n", "Refund policy"),
        (
            "a.md",
            "---\ntitle: Refunds guide\n---\n## Cards\n\nFive days.\n",
            "Refunds guide > Cards",
        ),
        ("a.md", "# Billing FAQ\n\n## Cards\n\nFive days.\n", "Billing FAQ > Cards"),
        ("price_list.csv", "sku,price\nA1,12\n", "Price list > A1"),
        ("team-plans.json", json.dumps([{"name": "Team", "seats": 5}]), "Team plans > Team"),
        ("team-plans.yaml", "plans:\n  - name: Team\n    seats: 5\n", "Team plans > plans > Team"),
        ("release-notes.txt", "Version 2 adds exports.\n", "Release notes"),
    ],
)
def test_every_chunk_type_starts_with_title_and_path(path: str, content: str, context: str) -> None:
    found = chunks(path, content)
    assert found
    assert all(c.text.startswith(found[0].text.split("\n", 1)[0]) for c in found)
    assert found[-1].text.split("\n", 1)[0].startswith(context.split(" > ", maxsplit=1)[0])
    assert any(c.text.startswith(context + "\n\n") for c in found), [c.text for c in found]


def test_markdown_sections_carry_their_heading_path_after_the_title() -> None:
    body = " ".join([SENTENCE] * 4)
    doc = f"# Guide\n\n## Billing\n\n### Cards\n\n{body}\n\n### Banks\n\n{body}\n"
    assert [c.heading for c in chunks("g.md", doc)] == [
        "Guide > Billing > Cards",
        "Guide > Billing > Banks",
    ]


def test_the_context_line_is_capped_keeping_the_nearest_headings() -> None:
    deep = "".join(f"{'#' * (i + 1)} Heading number {i} of a deep outline\n\n" for i in range(6))
    doc = f"---\ntitle: {'Long title words ' * 30}\n---\n{deep}{SENTENCE}\n"
    [chunk] = chunks("d.md", doc)
    context = chunk.text.split("\n\n", 1)[0]
    assert count_tokens(context) <= 40
    assert context.startswith("Long title words") and context.endswith("deep outline")
    assert "…" in context and chunk.text.endswith(SENTENCE)


def test_csv_record_has_every_value_beside_its_column_and_its_name_first() -> None:
    csv = "price,colour,name,sku\n12,red,Widget Pro,A1\n5,,Gadget,A2\n"
    first, second = chunks("products.csv", csv)
    assert (
        first.text == "Products > Widget Pro\n\nname: Widget Pro\nprice: 12\ncolour: red\nsku: A1"
    )
    assert second.text == "Products > Gadget\n\nname: Gadget\nprice: 5\nsku: A2"  # empty: left out


def test_a_csv_without_a_name_column_is_named_by_its_first_column() -> None:
    [chunk, *_] = chunks("keys.csv", "action,mac,windows\nOpen palette,Cmd+K,Ctrl+K\n")
    assert chunk.text.startswith("Keys > Open palette\n\naction: Open palette\nmac: Cmd+K")


def test_json_and_yaml_list_items_are_one_record_each() -> None:
    items = [{"id": f"P{i}", "title": f"Plan {i}", "detail": "words " * 20} for i in range(3)]
    for path, text in (("p.json", json.dumps({"plans": items})), ("p.yaml", json.dumps(items))):
        found = chunks(path, text)
        assert len(found) == 3
        for i, chunk in enumerate(found):
            body = chunk.text.split("\n\n", 1)[1]
            assert body.startswith(f"title: Plan {i}\nid: P{i}\ndetail: words")


def test_adversarial_inputs_never_exceed_the_window() -> None:
    words = [f"word{i}" for i in range(10_000)]
    shapes = {
        "para.md": "# T\n\n" + " ".join(words)[:50_000] + "\n",
        "para.txt": ". ".join(words)[:50_000],
        "row.csv": "name,text\nbig," + " ".join(words[:6000]) + "\n",
        "table.md": "| a | b |\n|---|---|\n| x | " + " ".join(words[:6000]) + " |\n",
        "code.md": "```python\n" + "\n".join(f"x = {w}()" for w in words[:3000]) + "\n```\n",
        "deep.json": json.dumps(
            {"k": json.loads("[" * 150 + json.dumps({"name": "x", "v": "y " * 900}) + "]" * 150)}
        ),
    }
    for path, text in shapes.items():
        found = chunks(path, text)
        assert len(found) > 1, path
        # the estimate over-counts WordPiece; 200 estimated leaves room in the 256 window
        assert all(count_tokens(c.text) <= SETTINGS.max_tokens < WINDOW for c in found), path


def test_long_sections_split_at_sentences_with_overlap() -> None:
    sentences = [f"Fact number {i} is stated in this sentence." for i in range(60)]
    found = chunks("facts.md", "# Facts\n\n" + " ".join(sentences) + "\n")
    assert len(found) > 1
    for previous, chunk in itertools.pairwise(found):
        lead = " ".join(chunk.text.split("\n\n", 1)[1].split()[:6])
        assert lead in previous.text  # starts with the previous piece's last words
    assert all(c.text.rstrip().endswith(".") for c in found)  # cut at sentence ends


def test_code_blocks_and_lists_stay_whole_when_they_fit() -> None:
    code = "```\n" + "\n".join(f"step_{i}()" for i in range(20)) + "\n```"
    items = "\n".join(f"- item {i}" for i in range(20))
    found = chunks("c.md", f"# C\n\n{SENTENCE * 3}\n\n{code}\n\n{items}\n")
    assert any(code in c.text for c in found) and any(items in c.text for c in found)


def test_ids_are_stable_and_an_edit_keeps_the_other_chunks() -> None:
    body = " ".join([SENTENCE] * 4)
    doc = f"# G\n\n## One\n\n{body}\n\n## Two\n\n{body} Two.\n\n## Three\n\n{body} Three.\n"
    first = [c.content_hash for c in chunks("g.md", doc)]
    assert first == [c.content_hash for c in chunks("g.md", doc)]
    edited = [c.content_hash for c in chunks("g.md", doc.replace("Two.", "Deux."))]
    assert len(edited) == 3 and edited[0] == first[0] and edited[2] == first[2]
    assert edited[1] != first[1]
    rows = "name,price\n" + "".join(f"Item {i} with a name,{i} dollars a month\n" for i in range(9))
    before = [c.content_hash for c in chunks("p.csv", rows)]
    after = [c.content_hash for c in chunks("p.csv", rows.replace("3 dollars", "4 dollars"))]
    assert [a == b for a, b in zip(before, after, strict=True)].count(False) == 1
