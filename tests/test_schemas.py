"""Positive and negative example files per schema, auto-parametrised.

Every file under tests/data/schemas/<kind>/valid must produce no schema finding;
every file under .../invalid declares its expected findings in its first line:
`# expect: CODE@line:col ...`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from botreg.registry.layout import FileKind
from botreg.registry.yamlio import load_fast, load_roundtrip, position_of
from botreg.resources import schema_dir
from botreg.validation.schema import SCHEMA_FILES, check_schema

DATA = Path(__file__).parent / "data" / "schemas"
KINDS = {
    "bot": FileKind.BOT,
    "environment": FileKind.ENVIRONMENT,
    "registry": FileKind.REGISTRY,
    "domain": FileKind.DOMAIN,
}
EXAMPLES = sorted(DATA.glob("*/*/*.yaml"))


def _found(path: Path) -> list[str]:
    text = path.read_text()
    kind = KINDS[path.parent.parent.name]
    tree = load_roundtrip(text)
    out = []
    for code, _message, pointer, at_key in check_schema(kind, load_fast(text)):
        line, col = position_of(tree, pointer, at_key=at_key)
        out.append(f"{code}@{line}:{col}")
    return sorted(out)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: "/".join(p.parts[-3:]))
def test_example(example: Path) -> None:
    found = _found(example)
    if example.parent.name == "valid":
        assert found == []
    else:
        header = example.read_text().splitlines()[0]
        match = re.fullmatch(r"# expect: (.*)", header)
        assert match, f"{example} needs an '# expect: CODE@line:col' first line"
        assert found == sorted(match.group(1).split())


def test_every_schema_has_valid_and_invalid_examples() -> None:
    for kind in KINDS:
        assert list((DATA / kind / "valid").glob("*.yaml")), kind
        assert list((DATA / kind / "invalid").glob("*.yaml")), kind


@pytest.mark.parametrize(
    "schema_file", sorted(schema_dir().glob("*.schema.json")), ids=lambda p: p.name
)
def test_schemas_are_valid_draft_2020_12(schema_file: Path) -> None:
    schema = json.loads(schema_file.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/" + schema_file.name)
    assert schema["title"] and schema["description"]


def test_template_files_reference_their_schema() -> None:
    """By relative path, to the copies `botreg init` writes in .schemas/ (offline)."""
    from botreg.registry.layout import classify
    from botreg.resources import template_dir

    root = template_dir()
    checked = 0
    for path in root.rglob("*.yaml"):
        rel = path.relative_to(root).as_posix()
        kind = classify(rel).kind
        if kind in SCHEMA_FILES:
            first = path.read_text().splitlines()[0]
            target = "../" * rel.count("/") + ".schemas/" + SCHEMA_FILES[kind]
            assert first == f"# yaml-language-server: $schema={target}", rel
            checked += 1
    assert checked >= 8


def test_secret_values_are_never_echoed() -> None:
    data = load_fast(
        "name: x\nstatus: active\nllm: {provider: openai, model: m, "
        "api_key: sk-abcdefghijklmnopqrstuvwxyz0123}\n"
    )
    messages = " ".join(m for _c, m, _p, _k in check_schema(FileKind.BOT, data))
    assert "llm.api_key" in messages
    assert "sk-abc" not in messages


def _mutations(data: object) -> list[object]:
    """Variants of a document: each key dropped, each scalar replaced by odd values."""
    out: list[object] = []
    if isinstance(data, dict):
        for key in data:
            out.append({k: v for k, v in data.items() if k != key})
            for odd in (None, 0, -1, "x", [], {}, True, 3.5):
                out.append({**data, key: odd})
            for variant in _mutations(data[key])[:20]:
                out.append({**data, key: variant})
        out.append({**data, "unexpected": 1})
    elif isinstance(data, list):
        for index, item in enumerate(data):
            for variant in _mutations(item)[:10]:
                out.append([*data[:index], variant, *data[index + 1 :]])
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fast_and_explaining_validators_agree(kind: str) -> None:
    """fastjsonschema (draft-07) and jsonschema (2020-12) accept the same documents."""
    from botreg.registry.layout import classify
    from botreg.resources import template_dir
    from botreg.validation.schema import _validator, is_valid

    documents = [load_fast(p.read_text()) for p in (DATA / kind).glob("*/*.yaml")]
    for path in template_dir().rglob("*.yaml"):
        if classify(path.relative_to(template_dir()).as_posix()).kind is KINDS[kind]:
            documents.append(load_fast(path.read_text()))
    cases = [variant for doc in documents for variant in [doc, *_mutations(doc)]]
    assert len(cases) > 150
    for case in cases:
        slow = not any(True for _ in _validator(KINDS[kind]).iter_errors(case))
        assert is_valid(KINDS[kind], case) == slow, case


def test_fast_validator_bytecode_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from botreg.validation import schema as schema_module

    monkeypatch.setenv("BOTREG_CACHE_DIR", str(tmp_path / "cache"))
    schema_module._fast.cache_clear()
    try:
        assert schema_module.is_valid(FileKind.DOMAIN, {"owner": "x"})
        [cached] = (tmp_path / "cache").glob("validator-domain-*.bin")
        cached.write_bytes(b"corrupt")  # a damaged cache is rebuilt, never trusted
        schema_module._fast.cache_clear()
        assert not schema_module.is_valid(FileKind.DOMAIN, {"owner": ""})
        assert cached.read_bytes() != b"corrupt"
    finally:
        schema_module._fast.cache_clear()


def test_unwritable_cache_still_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from botreg.validation import schema as schema_module

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("BOTREG_CACHE_DIR", str(blocker / "cache"))
    schema_module._fast.cache_clear()
    try:
        assert schema_module.is_valid(FileKind.REGISTRY, {"format_version": 1})
    finally:
        schema_module._fast.cache_clear()
