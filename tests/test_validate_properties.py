"""Property: whatever a commit holds, `botreg validate` exits 0, 1 or 2, never 3.

Hypothesis writes hostile contents (random bytes, YAML-ish token soup, deep
nesting, huge numbers, odd tags, anchors and aliases) into a bot, an
environment, registry.yaml or a knowledge file of the template registry and
runs `botreg.cli.main(["validate", ...])`. The example counts are bounded so the
whole module stays well under 20 s.

The observed crashes of issue #9 are pinned below as regression cases, and the
random strategies include their shapes (integers past Python's digit limit,
`0o` with non-ASCII digits, infinite and 64-bit-overflowing limits).
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botreg.cli import main
from botreg.resources import template_dir

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Past Python's int-from-string limit (4,300 digits): must be a finding, not a crash.
_INT_DIGITS = 6000

_TOKENS = [
    "0o17", "0o", "0x1F", "0x", "0b101", "1_000", "1e400", "-1e400", ".inf", "-.Inf", ".NaN",
    "~", "null", "yes", "no", "on", "=", "<<", "<<: *a", "&a", "*a", "*missing", "? ", ": ",
    "- ", "[", "]", "{", "}", ",", "#", "|", ">", "|-", ">+", "!!binary aGk=", "!!str",
    "!!int", "!!float", "!!map", "!!seq", "!!set", "!!omap", "!!timestamp 2001-12-14",
    "!!python/object:os.system", "!custom", "!<tag:yaml.org,2002:str>", "%YAML 1.1", "%TAG ! x",
    "---", "...", "\t", "\n", "\n  ", "\r", "\x00", "\ufeff", "\u2028", '"', "'", "\\", "@", "`",
    "${VAR}", "${VAR:default}", "$resource", "${", "\u00b2", "\U0001f600",
]  # fmt: skip

_KEYS = [
    "name", "description", "status", "llm", "provider", "model", "temperature", "max_tokens",
    "api_key", "system_prompt", "memory", "type", "knowledge", "domains", "retrieval", "top_k",
    "tools", "endpoint", "$resource", "resources", "store", "path", "embedding", "metadata",
    "format_version", "chunking", "limits", "max_file_bytes", "max_decompressed_bytes",
    "max_compression_ratio", "layout", "extra_folders", "include", "exclude", "<<",
]  # fmt: skip


class _Raw:
    """A token written as is (so tags, aliases and indicators reach the parser)."""

    def __init__(self, text: str) -> None:
        self.text = text


# Written as digit strings: str() of such an int would hit the same limit in the test.
huge_ints = st.builds(
    lambda sign, digits: _Raw(sign + digits),
    st.sampled_from(["", "-", "+", "0x", "0o", "0b"]),
    st.text("0123456789", min_size=19, max_size=_INT_DIGITS),
)
scalars = st.one_of(
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
    st.sampled_from(_TOKENS),
)


def _emit(value: Any, tags: Iterator[str]) -> str:
    """YAML flow text for a generated value; `_Raw` tokens go in unquoted."""
    if isinstance(value, _Raw):
        return value.text
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(str(k))}: {_emit(v, tags)}" for k, v in value.items())
        return next(tags) + "{" + items + "}"
    if isinstance(value, list):
        return next(tags) + "[" + ", ".join(_emit(v, tags) for v in value) + "]"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


values = st.recursive(
    scalars | st.sampled_from(_TOKENS).map(_Raw),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)


@st.composite
def yaml_documents(draw: st.DrawFn) -> str:
    """A document in flow style, possibly tagged, anchored, aliased or very deep."""
    doc: dict[str, Any] = draw(st.dictionaries(st.sampled_from(_KEYS), values, max_size=8))
    tag_pool = ["", "", "", "!!map ", "!!seq ", "!!str ", "&a ", "!x ", "!!python/tuple "]
    picks = draw(st.lists(st.sampled_from(tag_pool), min_size=64, max_size=64))
    text = _emit(doc, iter(picks * 1000))
    style = draw(
        st.sampled_from(["flow", "block-ish", "glued", "deep-list", "deep-map", "aliases"])
    )
    if style == "block-ish":
        text = "\n".join(f"{json.dumps(k)}: {_emit(v, iter(picks * 1000))}" for k, v in doc.items())
    elif style == "glued":  # plain scalars glued from tokens: `0x1F.inf`, `0o17\u00b2`...
        glued = st.lists(st.sampled_from(_TOKENS) | st.text(max_size=3), min_size=1, max_size=3)
        text = "\n".join(
            f"{key}: {''.join(draw(glued))}"
            for key in draw(st.lists(st.sampled_from(_KEYS), min_size=1, max_size=6))
        )
    elif style == "deep-list":
        depth = draw(st.integers(min_value=1, max_value=3000))
        text = "description: " + "[" * depth + "]" * depth
    elif style == "deep-map":
        depth = draw(st.integers(min_value=1, max_value=3000))
        text = "description: " + "{a: " * depth + "1" + "}" * depth
    elif style == "aliases":
        n = draw(st.integers(min_value=1, max_value=60))
        lines = ["a0: &a0 [x, x, x]"] + [
            f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, n)
        ]
        text = "\n".join(lines)
    return text


token_soup = st.lists(st.sampled_from(_TOKENS) | st.text(max_size=6), max_size=60).map("".join)
file_bytes = st.one_of(
    st.binary(max_size=3000),
    token_soup.map(lambda s: s.encode("utf-8", "surrogatepass")),
    yaml_documents().map(lambda s: s.encode("utf-8", "surrogatepass")),
)

# Limits in registry.yaml: any integer (past 64 bits too), infinities and NaN,
# strings, null and booleans.
_LIMIT_VALUES = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.none(),
    st.booleans(),
)


@pytest.fixture(autouse=True)
def _crash_logs_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@st.composite
def registry_yaml(draw: st.DrawFn) -> bytes:
    """registry.yaml with odd limits and chunking values, or any bytes."""
    if draw(st.booleans()):
        return draw(file_bytes)
    limits = draw(
        st.dictionaries(
            st.sampled_from(["max_file_bytes", "max_decompressed_bytes", "max_compression_ratio"]),
            _LIMIT_VALUES,
        )
    )
    chunking = draw(
        st.dictionaries(
            st.sampled_from(["max_tokens", "overlap_tokens", "csv_rows_per_chunk"]), _LIMIT_VALUES
        )
    )
    doc = {"format_version": draw(_LIMIT_VALUES | st.just(1)), "limits": limits}
    doc["chunking"] = chunking
    return _emit(doc, iter([""] * 1000)).encode()


@pytest.fixture
def registry_copy(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    shutil.copytree(template_dir(), root)
    return root


def _validate_with(root: Path, rel: str, data: bytes) -> int:
    """Write `data` to `rel`, validate, restore the file; the exit code."""
    target = root / rel
    original = target.read_bytes() if target.exists() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    try:
        return main(["validate", "--repo", str(root), "--format", "json"])
    finally:
        if original is None:
            target.unlink()
        else:
            target.write_bytes(original)


def _assert_no_bug(code: int, capsys: pytest.CaptureFixture[str]) -> None:
    err = capsys.readouterr().err
    assert code in (0, 1, 2), err


@pytest.mark.parametrize("rel", ["bots/product-guide.yaml", "environments/development.yaml"])
@SETTINGS
@given(data=file_bytes)
def test_validate_never_exits_3_on_a_hostile_bot_or_environment(
    registry_copy: Path, capsys: pytest.CaptureFixture[str], rel: str, data: bytes
) -> None:
    _assert_no_bug(_validate_with(registry_copy, rel, data), capsys)


@SETTINGS
@given(data=registry_yaml())
def test_validate_never_exits_3_on_a_hostile_registry_yaml(
    registry_copy: Path, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    _assert_no_bug(_validate_with(registry_copy, "registry.yaml", data), capsys)


@SETTINGS
@given(
    name=st.sampled_from(
        ["x.md", "x.json", "x.yaml", "x.csv", "x.txt", "x.md.gz", "x.json.gz", "_domain.yaml"]
    ),
    data=file_bytes,
    compress=st.booleans(),
)
def test_validate_never_exits_3_on_a_hostile_knowledge_file(
    registry_copy: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    data: bytes,
    compress: bool,
) -> None:
    if name.endswith(".gz") and compress:
        data = gzip.compress(data, mtime=0)
    code = _validate_with(registry_copy, f"knowledge/product/{name}", data)
    _assert_no_bug(code, capsys)


# --- the observed crashes of issue #9, as regression cases -----------------------------------

REGRESSIONS = [
    pytest.param(
        "bots/product-guide.yaml",
        "name: Product Guide\ndescription: 0o\u00b2\nstatus: active\n",
        id="octal-with-superscript-digit",
    ),
    pytest.param(
        "bots/product-guide.yaml",
        "name: Product Guide\nllm:\n  max_tokens: " + "9" * 5000 + "\n",
        id="5000-digit-integer",
    ),
    pytest.param(
        "registry.yaml",
        "format_version: 1\nlimits:\n  max_compression_ratio: .inf\n",
        id="infinite-compression-ratio",
    ),
    pytest.param(
        "registry.yaml",
        "format_version: 1\nlimits:\n  max_decompressed_bytes: 9223372036854775807\n"
        "  max_compression_ratio: 0100000000000000000\n",
        id="limits-past-64-bits",
    ),
    pytest.param(
        "knowledge/product/deep.json",
        "[" * 10_000 + "]" * 10_000,
        id="json-10000-deep",
    ),
    pytest.param(
        "knowledge/product/deep.json",
        "[" * 980 + "]" * 980,
        id="json-980-deep",
    ),
    pytest.param(
        "knowledge/product/alias.yaml",
        "\n".join(["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 1200)]),
        id="alias-chain-1200-deep",
    ),
    pytest.param(
        "bots/billing-assistant.yaml",
        "name: Billing\nllm:\n  temperature: .nan\n",
        id="nan-temperature",
    ),
]


@pytest.mark.parametrize(("rel", "text"), REGRESSIONS)
def test_observed_crashes_exit_0_1_or_2(
    registry_copy: Path, capsys: pytest.CaptureFixture[str], rel: str, text: str
) -> None:
    _assert_no_bug(_validate_with(registry_copy, rel, text.encode()), capsys)
