"""`botreg schemas` and the schema copies a registry carries (`.schemas/`).

The copies keep their published `$id`s and embed what they reference, so
check-jsonschema validates a registry with them and no network: the tests run
it with every proxy variable pointing at a closed port, so a download attempt
would fail the run rather than pass silently.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import subprocess
import sys
from pathlib import Path

import pytest
import referencing
from jsonschema import Draft202012Validator
from referencing.exceptions import NoSuchResource

from botreg.cli import main
from botreg.registry.layout import FileKind, classify
from botreg.registry.yamlio import load_fast
from botreg.resources import schema_dir
from botreg.schema_copies import SCHEMAS_DIR, CopyState, compare_copies, schema_copies
from botreg.validation.schema import SCHEMA_FILES
from helpers import validate

MODELINE = re.compile(r"# yaml-language-server: \$schema=(\S+)")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def made(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A registry made by `botreg init`."""
    target = tmp_path / "made"
    assert main(["init", str(target)]) == 0
    capsys.readouterr()
    return target


def _offline_env() -> dict[str, str]:
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, a download fails
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy",)}
    env.update(HTTP_PROXY=closed, HTTPS_PROXY=closed, http_proxy=closed, https_proxy=closed)
    return env


def _check_jsonschema(
    root: Path, schema: str, files: list[str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--no-cache",
            "--schemafile",
            f"{SCHEMAS_DIR}/{schema}",
            *files,
        ],
        cwd=root,
        env=_offline_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _files_by_schema(root: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        kind = classify(rel).kind
        if kind in SCHEMA_FILES:
            groups.setdefault(SCHEMA_FILES[kind], []).append(rel)
    return groups


def test_init_writes_the_copies_every_modeline_names(made: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", SCHEMAS_DIR], cwd=made, capture_output=True, text=True, check=True
    ).stdout.split()
    names = sorted(item.name for item in schema_copies())
    assert tracked == [f"{SCHEMAS_DIR}/{name}" for name in names]  # committed, not ignored
    assert [state for _, state in compare_copies(made / SCHEMAS_DIR)] == [CopyState.CURRENT] * 5
    groups = _files_by_schema(made)
    assert sum(len(files) for files in groups.values()) >= 8
    for schema, files in groups.items():
        for rel in files:
            match = MODELINE.fullmatch((made / rel).read_text().splitlines()[0])
            assert match, rel
            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), match.group(1)))
            assert target == f"{SCHEMAS_DIR}/{schema}", rel
            assert (made / target).is_file()
    assert validate(made).findings == []  # a hidden folder: the layout stays valid
    assert classify(f"{SCHEMAS_DIR}/bot.schema.json").kind is FileKind.OTHER


def test_check_jsonschema_validates_the_template_offline(made: Path) -> None:
    for schema, files in _files_by_schema(made).items():
        result = _check_jsonschema(made, schema, files)
        assert result.returncode == 0, (schema, result.stdout + result.stderr)
        assert "ok -- validation done" in result.stdout


def test_check_jsonschema_stops_a_broken_file(made: Path) -> None:
    bot = made / "bots/billing-assistant.yaml"
    # `type` belongs to a resource reference: the schema embedded from resource-ref.schema.json
    bot.write_text(bot.read_text().replace("  type: databases", "  typo: databases"))
    domain = made / "knowledge/billing/_domain.yaml"
    domain.write_text(domain.read_text().replace("owner: billing-team", "owner: ''"))

    result = _check_jsonschema(made, "bot.schema.json", ["bots/billing-assistant.yaml"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "$.conversation_storage: 'type' is a required property" in result.stdout
    assert "'typo' was unexpected" in result.stdout

    result = _check_jsonschema(made, "domain.schema.json", ["knowledge/billing/_domain.yaml"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "knowledge/billing/_domain.yaml::$.owner" in result.stdout


def test_copies_keep_their_ids_and_resolve_with_no_retrieval() -> None:
    """jsonschema with a registry that cannot fetch anything: every $ref is in the file."""

    def refuse(uri: str) -> referencing.Resource[object]:
        raise NoSuchResource(ref=uri)

    template = Path(__file__).resolve().parent.parent / "registry-repo-template"
    groups = _files_by_schema(template)
    published = {
        path.name: json.loads(path.read_text())["$id"] for path in schema_dir().glob("*.json")
    }
    for item in schema_copies():
        document = json.loads(item.content)
        assert document["$id"] == item.schema_id == published[item.name]
        Draft202012Validator.check_schema(document)
        for name, embedded in document.get("$defs", {}).items():
            if "$id" in embedded:  # the YAML language server reads '#/...' in the outer file
                refs = re.findall(r'"\$ref": "([^"]*)"', json.dumps(embedded))
                assert refs and all(ref.startswith(name) for ref in refs), (item.name, refs)
        validator = Draft202012Validator(
            document,
            registry=referencing.Registry(retrieve=refuse),  # type: ignore[call-arg]
        )
        for rel in groups.get(item.name, []):
            data = load_fast((template / rel).read_text())
            assert list(validator.iter_errors(data)) == [], rel
        broken = {"$resource": "x"}  # the embedded resource-ref schema rejects it
        if item.name == "bot.schema.json":
            data = load_fast((template / "bots/billing-assistant.yaml").read_text())
            errors = list(validator.iter_errors({**data, "conversation_storage": broken}))
            assert [e.message for e in errors] == ["'type' is a required property"]


def test_published_schemas_reference_each_other_relatively() -> None:
    """An absolute $ref between botreg's schemas would never resolve from a copy."""
    for path in schema_dir().glob("*.schema.json"):
        for ref in re.findall(r'"\$ref":\s*"([^"]*)"', path.read_text()):
            assert "://" not in ref and not ref.startswith("/"), (path.name, ref)


def test_write_is_idempotent_and_says_what_it_changed(
    registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(registry)
    code, out, _ = run(capsys, "schemas", "--write")
    assert code == 0
    assert out.splitlines()[0] == f"created {SCHEMAS_DIR}/bot.schema.json"
    assert out.splitlines()[-1] == f"Wrote 5 of 5 schema files to {SCHEMAS_DIR}/."
    stamps = {p.name: p.stat().st_mtime_ns for p in (registry / SCHEMAS_DIR).iterdir()}

    code, out, _ = run(capsys, "schemas", "--write")
    assert code == 0
    assert out == f"Schemas in {SCHEMAS_DIR}/ are up to date (5 files); nothing written.\n"
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (registry / SCHEMAS_DIR).iterdir()}

    (registry / SCHEMAS_DIR / "bot.schema.json").write_text("{}\n")
    (registry / SCHEMAS_DIR / "notes.txt").write_text("mine\n")
    code, out, _ = run(capsys, "schemas", "--write")
    assert code == 0
    assert out == (
        f"updated {SCHEMAS_DIR}/bot.schema.json\n"
        f"Wrote 1 of 5 schema files to {SCHEMAS_DIR}/ (4 already up to date).\n"
    )
    assert (registry / SCHEMAS_DIR / "notes.txt").read_text() == "mine\n"  # not botreg's
    assert [s for _, s in compare_copies(registry / SCHEMAS_DIR)] == [CopyState.CURRENT] * 5


def test_write_refuses_outside_a_registry_unless_given_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "schemas", "--write")
    assert code == 2
    assert "not a registry (no registry.yaml)" in err and "--write DIR" in err
    assert list(tmp_path.iterdir()) == []

    code, out, _ = run(capsys, "schemas", "--write", "editor/schemas")
    assert code == 0 and "Wrote 5 of 5 schema files to editor/schemas/." in out
    assert sorted(p.name for p in (tmp_path / "editor/schemas").iterdir()) == sorted(
        item.name for item in schema_copies()
    )


def test_write_never_follows_a_symlinked_folder_out_of_the_registry(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (registry / SCHEMAS_DIR).symlink_to(outside)
    code, _, err = run(capsys, "schemas", "--repo", str(registry), "--write")
    assert code == 2 and "is a symbolic link" in err
    assert list(outside.iterdir()) == []


def test_check_exits_1_on_a_missing_or_outdated_copy(
    made: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "schemas", "--repo", str(made), "--check")
    assert code == 0 and "up to date (5 files)" in out
    (made / SCHEMAS_DIR / "domain.schema.json").unlink()
    (made / SCHEMAS_DIR / "bot.schema.json").write_text("{}\n")
    code, out, _ = run(capsys, "schemas", "--repo", str(made), "--check")
    assert code == 1
    assert "bot.schema.json: out of date" in out and "domain.schema.json: missing" in out
    assert f"run `botreg schemas --repo {made} --write`" in out


def test_without_options_it_shows_what_and_where(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(made)
    (made / SCHEMAS_DIR / "registry.schema.json").unlink()
    code, out, _ = run(capsys, "schemas")
    assert code == 0
    assert str(schema_dir()) in out
    bot_id = "https://botreg.dev/schemas/v1/bot.schema.json"
    assert re.search(rf"bot\.schema\.json +{re.escape(bot_id)} +up to date", out)
    assert re.search(r"registry\.schema\.json +\S+ +missing", out)
    assert "Run `botreg schemas --write` to write them to .schemas/." in out

    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "schemas")
    assert code == 0 and "is not a registry" in out and "botreg schemas --write DIR" in out


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schemas", "--help")
    assert code == 0
    assert "Examples:" in out and "botreg schemas --write" in out and "--check" in out
    assert "$schema=../.schemas/bot.schema.json" in out  # the raw epilog, not re-wrapped
