"""Property tests of the fast YAML loader against ruamel.yaml (issue #9).

`load_fast` builds data from the C parser's events itself; these tests check
that it means what ruamel means on the YAML 1.2 core schema, and that no text
makes it raise anything but YamlLoadError. Example counts are bounded so the
file runs in a few seconds.
"""

from __future__ import annotations

import io
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from botreg.registry.yamlfast import YamlLoadError, load_fast

_FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff\u2028\u2029\x85"
    ),
    max_size=20,
)
_SCALARS = st.none() | st.booleans() | _INT64 | _FLOATS | _TEXT
_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789 .", min_size=1, max_size=10)
_DATA = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=4),
    max_leaves=20,
)

# Plain scalars (written unquoted) whose meaning the core schema fixes.
_PLAIN = st.one_of(
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,17})\Z"),
    st.from_regex(r"\A-?[0-9]{1,6}\.[0-9]{1,6}([eE][-+]?[0-9]{1,2})?\Z"),
    st.from_regex(r"\A0o[0-7]{1,8}\Z"),
    st.from_regex(r"\A0x[0-9a-fA-F]{1,8}\Z"),
    st.sampled_from(["true", "false", "True", "FALSE", "null", "Null", "~", "no", "on", "yes"]),
    st.from_regex(r"\A[a-z][a-z0-9 ]{0,10}[a-z0-9]\Z"),
)


def plain(value: Any) -> Any:
    """ruamel's round-trip nodes as plain dicts, lists and scalars."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def same(a: Any, b: Any, *, ordered: bool = True) -> bool:
    """Equal, with the type of every scalar (1 is not 1.0 nor True) and key order."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys_match = list(a) == list(b) if ordered else set(a) == set(b)
        return keys_match and all(same(a[k], b[k], ordered=ordered) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            same(x, y, ordered=ordered) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def ruamel_load(text: str) -> Any:
    yaml = YAML(typ="rt")
    return plain(yaml.load(text))


def dump(data: Any) -> str:
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(data, out)
    return out.getvalue()


@_FAST
@given(_DATA)
def test_dumped_data_loads_as_ruamel_loads_it(data: Any) -> None:
    text = dump(data)
    expected = ruamel_load(text)
    assert same(load_fast(text), expected)
    assert same(expected, data, ordered=False)  # the round trip is exact (keys sorted)


@_FAST
@given(st.dictionaries(_KEYS.filter(lambda k: k.strip() == k), _PLAIN, min_size=1, max_size=6))
def test_plain_scalars_resolve_as_ruamel_resolves_them(mapping: dict[str, str]) -> None:
    text = "".join(f"{key!r}: {value}\n" for key, value in mapping.items())
    assert same(load_fast(text), ruamel_load(text))


@_FAST
@given(st.lists(_PLAIN, min_size=1, max_size=6), st.integers(min_value=0, max_value=2))
def test_anchors_aliases_and_merges_agree(values: list[str], style: int) -> None:
    body = ", ".join(f"k{i}: {v}" for i, v in enumerate(values))
    text = f"base: &b {{{body}}}\ncopy: *b\n"
    if style == 1:
        text += "merged:\n  <<: *b\n  k0: over\n"
    elif style == 2:
        text += f"other: &o {{z: 1}}\nmerged: {{<<: [*b, *o], k{len(values)}: extra}}\n"
    assert same(load_fast(text), ruamel_load(text))


# Characters that steer the parser into its many states, plus ones that broke it.
_YAMLISH = st.lists(
    st.sampled_from(
        [
            *"[]{}:,-&*!<>|'\"#?%@`~^.+ \t\n0123456789abexo",
            *("<<", "0o", "0x", ".inf", ".nan", "²", "\x00", "\ud800", "\ufeff", "\u2028", "é"),
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_YAMLISH, st.text(max_size=60)))
def test_any_text_loads_or_raises_yaml_load_error(text: str) -> None:
    try:
        load_fast(text)
    except YamlLoadError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.code.startswith("BR1") and problem.line >= 1 and problem.column >= 1
