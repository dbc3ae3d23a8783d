"""`botreg resolve` output: YAML with block strings by default, JSON on request, masked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from botreg.cli import main
from botreg.cli.resolve_cmd import block_strings
from botreg.registry.yamlio import dump_roundtrip

SECRET = "sk-ant-real-secret-value-0123456789"


def resolve(capsys: pytest.CaptureFixture[str], registry: Path, *extra: str) -> str:
    args = ["resolve", "billing-assistant", "--env", "development", "--repo", str(registry)]
    assert main([*args, *extra]) == 0
    return capsys.readouterr().out


def load(text: str) -> Any:
    return YAML(typ="safe").load(text)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)


def test_yaml_is_the_default_and_multi_line_strings_are_blocks(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = resolve(capsys, registry)
    lines = out.splitlines()
    start = lines.index("system_prompt: |")  # a block, not one quoted line with \n escapes
    assert lines[start + 1] == (
        "  You are Acme's billing assistant. Answer questions about invoices, plans"
    )
    assert (
        lines[start + 2]
        == "  and refunds using only the knowledge provided. If a customer asks for a"
    )
    assert "\\n" not in out
    prompt = load(out)["system_prompt"]
    assert prompt.startswith("You are Acme's billing assistant.") and prompt.endswith(
        "Never ask for full card numbers.\n"
    )


def test_yaml_and_json_hold_the_same_config_and_both_mask_secrets(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    as_yaml = resolve(capsys, registry)
    as_json = resolve(capsys, registry, "--format", "json")
    assert load(as_yaml) == json.loads(as_json)
    for out in (as_yaml, as_json):
        assert SECRET not in out
    assert load(as_yaml)["llm"]["endpoint"]["api_key"] == "***"


def test_show_secrets_prints_them_in_yaml(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load(resolve(capsys, registry, "--show-secrets"))["llm"]["endpoint"]["api_key"] == SECRET


def test_a_masked_multi_line_secret_is_masked_whole(
    registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multi-line secret (a PEM key) becomes one *** and never a block of its lines."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "-----BEGIN KEY-----\nc2VjcmV0LWxpbmU=\n")
    out = resolve(capsys, registry)
    assert "c2VjcmV0LWxpbmU" not in out and "BEGIN KEY" not in out
    assert load(out)["llm"]["endpoint"]["api_key"] == "***"


@pytest.mark.parametrize(
    "text",
    [
        "two\nlines\n",
        "no final newline\nhere",
        "  leading spaces\nsecond\n",
        "trailing space \nsecond\n",  # a block would lose or hide it: stays quoted
        "tab\there\nsecond\n",
        "carriage\r\nreturn\n",
        "control \x1f\nchar\n",
        "\n\n\nblank lines first\n\n",
        "key: value\n- item\n# not a comment\n",
    ],
)
def test_every_string_loads_back_exactly(text: str) -> None:
    out = dump_roundtrip(block_strings({"prompt": text, "list": [text]}))
    assert load(out) == {"prompt": text, "list": [text]}


def test_a_plain_multi_line_string_is_a_literal_block() -> None:
    assert dump_roundtrip(block_strings({"a": "one\ntwo\n"})) == "a: |\n  one\n  two\n"
    assert dump_roundtrip(block_strings({"a": ["x\ny"]})) == "a:\n  - |-\n    x\n    y\n"


# Keys are names (validated); NEL and the Unicode line separators are left out:
# ruamel.yaml mis-quotes them even in single-line strings (not a block's doing).
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x85\u2028\u2029"),
    max_size=40,
)
_PIECES = st.lists(
    st.sampled_from(
        ["a", " ", "  ", "\n", "\t", "\r", "#", ": ", "- ", "|", "'", '"', "é", "\x00"]
    ),
    max_size=20,
).map("".join)
_KEYS = st.from_regex(r"\A[a-z_]{1,8}\Z")
_VALUES = st.recursive(
    st.one_of(_TEXT, _PIECES, st.integers(), st.none(), st.booleans()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_block_strings_never_change_what_the_yaml_says(data: dict[str, Any]) -> None:
    assert load(dump_roundtrip(block_strings(data))) == data
