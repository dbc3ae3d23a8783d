"""The fast YAML loader: YAML 1.2 core schema, tags, merges, aliases, errors."""

from __future__ import annotations

import pytest

from botreg.registry import yamlfast
from botreg.registry.yamlfast import YamlLoadError, load_fast
from botreg.registry.yamlio import load_roundtrip, position_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1", {"a": 1}),
        ("a: -12", {"a": -12}),
        ("a: +3", {"a": 3}),
        ("a: 0o17", {"a": 15}),
        ("a: 0x1F", {"a": 31}),
        ("a: 017", {"a": 17}),  # YAML 1.2: not octal
        ("a: 1.5e3", {"a": 1500.0}),
        ("a: .5", {"a": 0.5}),
        ("a: ~", {"a": None}),
        ("a:", {"a": None}),
        ("a: null", {"a": None}),
        ("a: true", {"a": True}),
        ("a: False", {"a": False}),
        ("a: no", {"a": "no"}),  # YAML 1.1 would say False
        ("a: on", {"a": "on"}),
        ("a: 2024-01-31", {"a": "2024-01-31"}),  # timestamps stay strings
        ("a: '1'", {"a": "1"}),
        ('a: "true"', {"a": "true"}),
        ("a: 1_000", {"a": "1_000"}),
        ("a: 12:30", {"a": "12:30"}),
        ("a: 0xZZ", {"a": "0xZZ"}),
        ("a: !!str 5", {"a": "5"}),
        ("a: !!int '5'", {"a": 5}),
        ("a: !!float 2", {"a": 2.0}),
        ("a: |\n  x\n  y\n", {"a": "x\ny\n"}),
        ("[1, [2, {b: c}]]", [1, [2, {"b": "c"}]]),
        ("1: one\nnull: x", {1: "one", None: "x"}),
        ("", None),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, expected: object) -> None:
    assert load_fast(text) == expected


@pytest.mark.parametrize("text", ["a: .nan", "a: -.inf", "a: !!float .inf"])
def test_nan_and_infinity_are_refused(text: str) -> None:  # registry data is JSON-shaped
    with pytest.raises(YamlLoadError) as info:
        load_fast(text)
    assert [(p.code, p.line, p.column) for p in info.value.problems] == [("BR107", 1, 4)]


def test_merge_keys_and_aliases() -> None:
    data = load_fast(
        "base: &base {a: 1, b: 2}\n"
        "extra: &extra {c: 3}\n"
        "one:\n  <<: *base\n  b: 20\n"
        "two:\n  <<: [*base, *extra]\n"
    )
    assert data["one"] == {"a": 1, "b": 20}
    assert data["two"] == {"a": 1, "b": 2, "c": 3}
    assert data["base"] == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("text", "code", "line", "column", "words"),
    [
        ("a: !!binary aGk=\n", "BR101", 1, 4, "unsupported tag"),
        ("a: !custom 1\n", "BR101", 1, 4, "unsupported tag !custom"),
        ("a: !!int x\n", "BR101", 1, 4, "not a valid int"),
        ("a: !!float true\n", "BR101", 1, 4, "not a valid float"),
        ("a: !!set {x}\n", "BR101", 1, 4, "unsupported tag"),
        ("? [a]\n: 1\n", "BR101", 1, 3, "must be a scalar"),
        ("a: <<\n<<: 1\n", "BR101", 2, 5, "merges a mapping"),
        ("a: [1\n", "BR101", 2, 1, "invalid YAML"),
        ("a: 1\n---\nb: 2\n", "BR101", 2, 1, "expected a single document"),
        ("a: &x [*x]\n", "BR104", 1, 8, "recursive"),
    ],
)
def test_load_errors(text: str, code: str, line: int, column: int, words: str) -> None:
    with pytest.raises(YamlLoadError) as info:
        load_fast(text)
    [problem] = info.value.problems
    assert (problem.code, problem.line, problem.column) == (code, line, column)
    assert words in problem.message


def test_every_duplicate_with_both_positions() -> None:
    with pytest.raises(YamlLoadError) as info:
        load_fast("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n")
    found = [(p.code, p.line, p.column, p.message.split(":")[0]) for p in info.value.problems]
    assert found == [
        ("BR102", 4, 3, "duplicate key 'c', first defined at line 3, column 3"),
        ("BR102", 5, 1, "duplicate key 'a', first defined at line 1, column 1"),
    ]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(YamlLoadError) as info:
        load_fast("a: " + "[" * 50_000 + "]" * 50_000)
    assert info.value.problems[0].code == "BR101"


def test_pure_fallback_gives_the_same_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "a: 1\nb: no\nc: 2024-01-31\nd: [x, {e: 1.5}]\n"
    fast = load_fast(text)
    monkeypatch.setattr(yamlfast, "CParser", None)
    assert load_fast(text) == fast == {"a": 1, "b": "no", "c": "2024-01-31", "d": ["x", {"e": 1.5}]}


def test_positions_of_nodes() -> None:
    doc = load_roundtrip(
        "# comment\nllm:\n  provider: x\n  model: y\nlist:\n  - name: t\n    type: z\n"
        "flow: {x: 1}\n"
    )
    assert position_of(doc, []) == (2, 1)
    assert position_of(doc, ["llm", "model"]) == (4, 10)
    assert position_of(doc, ["llm", "model"], at_key=True) == (4, 3)
    assert position_of(doc, ["llm"]) == (2, 1)  # a block mapping: at its key
    assert position_of(doc, ["list", 0, "type"]) == (7, 11)
    assert position_of(doc, ["list", 0]) == (6, 5)
    assert position_of(doc, ["flow"]) == (8, 7)  # a flow mapping: at its value
    assert position_of(doc, ["llm", "missing", "deeper"]) == (3, 3)  # deepest existing node
