"""Encoding edges: lone surrogates, file names that are not UTF-8, non-string keys,
submodules, and YAML keys that Python finds equal (issue #9).

Each case passed the hook and then crashed review, ingest or the daemon (or the
hook and the daemon disagreed); every test here failed on main before the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.events import CloudEvent
from botreg.knowledge.chunkers.base import Chunk, ChunkBounds, enforce_bounds
from botreg.knowledge.ledger import Ledger, StoredChunk
from botreg.registry.content import ContentError, load_json_bounded
from botreg.registry.layout import FileKind, classify
from botreg.registry.source import WorkingTreeSource
from botreg.registry.yamlfast import YamlLoadError, load_fast
from botreg.secrets import dumps_strict
from conftest import git
from helpers import codes, validate, write
from sync_helpers import SyncHarness, commit

LONE_SURROGATE_JSON = '{"title": "ok",\n "body": "\\ud800 x"}\n'


@pytest.fixture(autouse=True)
def _state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # crash logs (if any) stay in the test's folder
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def h(git_registry: Path, tmp_path: Path) -> Iterator[SyncHarness]:
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    assert harness.sync().result == "synced"  # the template, as the daemon's starting point
    yield harness
    harness.close()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- 1. lone surrogates --------------------------------------------------------------


def test_json_lone_surrogate_is_br105_at_its_position() -> None:
    with pytest.raises(ContentError) as caught:
        load_json_bounded(LONE_SURROGATE_JSON)
    assert (caught.value.code, caught.value.line, caught.value.column) == ("BR105", 2, 11)
    assert "surrogate" in caught.value.message
    # a key too; a lone low half after a pair too
    with pytest.raises(ContentError, match="udc00"):
        load_json_bounded('{"\\udc00": 1}')
    with pytest.raises(ContentError, match="udc00"):
        load_json_bounded('["\\ud83d\\ude00 \\uDC00"]')


def test_json_surrogate_pairs_and_escaped_backslashes_still_load() -> None:
    assert load_json_bounded('["\\ud83d\\ude00"]') == ["\U0001f600"]
    assert load_json_bounded('["\\\\ud800"]') == ["\\ud800"]  # the text `\ud800`, no escape


def test_yaml_surrogate_escape_is_br101_with_position() -> None:
    with pytest.raises(YamlLoadError) as caught:
        load_fast('a: 1\nb: "\\ud800 x"\n')
    problem = caught.value.problems[0]
    assert (problem.code, problem.line) == ("BR101", 2)


def test_lone_surrogate_commit_is_refused_by_validate_review_ingest_and_daemon(
    h: SyncHarness,
    git_registry: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(git_registry, "knowledge/product/sur.json", LONE_SURROGATE_JSON)
    commit(git_registry, "a lone surrogate")
    assert codes(validate(git_registry), "knowledge/product/sur.json") == ["BR105"]
    code, out, _ = _run(capsys, "validate", "--repo", str(git_registry))
    assert code == 1
    assert "knowledge/product/sur.json:2:11: BR105" in out
    code, _, err = _run(capsys, "review", "--repo", str(git_registry), "--base", "HEAD~1")
    assert code == 1, err
    monkeypatch.chdir(git_registry)
    code, _, err = _run(capsys, "ingest", "--repo", str(git_registry))
    assert code in (0, 1), err
    assert "Traceback" not in err and "unexpected error" not in err
    # the daemon gets the hook's verdict: rejected, not a failed cycle in phase apply
    assert h.sync().result == "rejected"


def test_surrogate_backstops_in_chunks_and_ledger(tmp_path: Path) -> None:
    # the loaders refuse such text; should one get through, nothing may crash
    assert len(Chunk(text="a \ud800 b").content_hash) == 64
    [(heading, text)] = enforce_bounds([("h\udce9", "h\udce9\n\nx \ud800")], ChunkBounds.of(200))
    assert "\ufffd" in heading and "\ufffd" in text
    text.encode("utf-8")  # strict: no surrogate left
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        chunk = StoredChunk("id1", "knowledge/p/caf\udce9.md", "h", "m")
        ledger.record_pending("c", [chunk], [])
        ledger.record_applied(
            "c", written=[chunk], deleted=[], files={chunk.path: ("b", 1)}, removed_files=[]
        )
        assert ledger.files("c") == {"knowledge/p/caf\\xe9.md": "b"}
    finally:
        ledger.close()


# --- 2. non-string mapping keys -------------------------------------------------------


def test_dumps_strict_writes_any_yaml_keys() -> None:
    data = {"b": 1, 2: "two", True: "yes", None: "none", 1.5: "x", "1": "s", "n": {3: [{4: 5}]}}
    doc = json.loads(dumps_strict(data, sort_keys=True))
    assert doc == {
        "b": 1,
        "2": "two",
        "true": "yes",
        "null": "none",
        "1.5": "x",
        "1": "s",
        "n": {"3": [{"4": 5}]},
    }
    # a key whose string form is taken keeps its value under a numbered name
    assert json.loads(dumps_strict({"1": "s", 1: "i"}, sort_keys=True)) == {"1": "s", "1#2": "i"}


def test_events_with_mixed_keys_are_written_and_masked() -> None:
    event = CloudEvent(
        "botreg.bot.updated", "src", "id", data={"m": {1: "one", "a": "b", "password": "hunter22"}}
    )
    doc = json.loads(event.to_json())
    assert doc["data"]["m"]["1"] == "one"
    assert "hunter22" not in event.to_json()


def test_daemon_syncs_bots_and_environments_with_non_string_keys(
    git_registry: Path, tmp_path: Path
) -> None:
    bot = git_registry / "bots/product-guide.yaml"
    bot.write_text(bot.read_text().replace("metadata:\n", "metadata:\n  1: one\n", 1))
    env = git_registry / "environments/development.yaml"
    env.write_text(
        env.read_text().replace("backend: memory\n", "backend: memory\n      3: three\n")
    )
    commit(git_registry, "non-string keys")
    assert codes(validate(git_registry)) == []
    h = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        result = h.sync()  # a first sync: bot.created carries the whole bot
        assert (result.result, result.phase, result.error) == ("synced", "", "")
        created = h.of("botreg.bot.created")
        guide = next(e for e in created if e.subject == "bots/product-guide.yaml")
        assert '"1":"one"' in guide.to_json()
        bot.write_text(bot.read_text().replace("  1: one\n", "  1: uno\n  2: two\n", 1))
        commit(git_registry, "non-string keys changed")
        result = h.sync()
        assert (result.result, result.phase, result.error) == ("synced", "", "")
    finally:
        h.close()
    logged = (h.data / "events.jsonl").read_text()
    assert '"1":"one"' in logged and '"metadata.2"' in logged


# --- 3. file names that are not UTF-8 -------------------------------------------------


def test_undecodable_byte_in_a_path_is_br403() -> None:
    info = classify("knowledge/product/caf\udce9.md")
    assert (info.kind, info.code) == (FileKind.MISPLACED, "BR403")
    assert "0xE9" in info.reason
    assert classify("knowledge/\udcffdom/a.md").code == "BR403"


@pytest.mark.parametrize("fmt", ["text", "json", "github", "sarif"])
def test_undecodable_file_names_are_findings_printed_escaped(
    git_registry: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    root = os.fsencode(git_registry)
    os.makedirs(root + b"/knowledge/\xffdom")
    Path(os.fsdecode(root + b"/knowledge/product/caf\xe9.md")).write_bytes(b"# x\n")
    Path(os.fsdecode(root + b"/knowledge/\xffdom/a.md")).write_bytes(b"# a\n")
    commit(git_registry, "names that are not UTF-8")
    code, out, err = _run(capsys, "validate", "--repo", str(git_registry), "--format", fmt)
    assert code == 1, err
    out.encode("utf-8")  # printable: no lone surrogate reaches the output
    if fmt == "text":
        assert "knowledge/product/caf\\xe9.md:1:1: BR403" in out
        assert "knowledge/\\xffdom/a.md:1:1: BR403" in out
    elif fmt == "github":
        assert out.count("::error file=knowledge/") == 2
    else:
        doc = json.loads(out)
        found = doc["findings"] if fmt == "json" else doc["runs"][0]["results"]
        assert {f.get("code") or f["ruleId"] for f in found} == {"BR403"}
        assert len(found) == 2


def test_undecodable_file_names_never_reach_review_ingest_or_daemon(
    h: SyncHarness,
    git_registry: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Path(os.fsdecode(os.fsencode(git_registry) + b"/knowledge/product/caf\xe9.md")).write_bytes(
        b"# x\n"
    )
    commit(git_registry, "a name that is not UTF-8")
    code, out, err = _run(capsys, "review", "--repo", str(git_registry), "--base", "HEAD~1")
    assert code == 1, err
    assert "caf\\xe9.md" in out and "\udce9" not in out
    monkeypatch.chdir(git_registry)
    code, out, err = _run(capsys, "ingest", "--repo", str(git_registry))
    # like a control character: a failed file, named escaped, nothing of it stored
    assert code == 1 and "caf\\xe9.md" in out + err and "\udce9" not in out + err
    result = h.sync()
    assert result.result == "rejected", (result.phase, result.error)
    assert all("caf" not in path for path, _ in h.stored("product"))


# --- 4. submodules ---------------------------------------------------------------------


def _add_submodule(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},knowledge/product/sub")


def test_the_hook_reports_a_submodule_as_the_daemon_does(
    h: SyncHarness, git_registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_submodule(git_registry)
    # what pre-commit runs: the gitlink is no file, so no name is passed
    code, out, _ = _run(capsys, "validate", "--repo", str(git_registry), "--staged")
    assert code == 1
    assert "knowledge/product/sub:1:1: BR505 submodule" in out
    (git_registry / "knowledge/product/sub").mkdir()  # as a checkout without the submodule
    code, out, _ = _run(
        capsys, "validate", "--repo", str(git_registry), "--staged", "knowledge/product/sub"
    )
    assert code == 1
    assert "BR505 submodule" in out
    git(git_registry, "commit", "-q", "-m", "submodule")
    code, out, _ = _run(capsys, "validate", "--repo", str(git_registry))
    assert code == 1
    assert "knowledge/product/sub:1:1: BR505 submodule" in out
    code, out, _ = _run(
        capsys, "review", "--repo", str(git_registry), "--base", "HEAD~1", "--format", "json"
    )
    assert code == 1
    messages = {f["message"] for f in json.loads(out)["findings"]}
    assert any(m.startswith("submodule: ") for m in messages), messages
    assert h.sync().result == "rejected"


def test_working_tree_source_knows_links_and_submodules(git_registry: Path) -> None:
    _add_submodule(git_registry)
    (git_registry / "knowledge/product/link.md").symlink_to("/etc/hostname")
    git(git_registry, "add", "knowledge/product/link.md")
    for staged in (True, False):
        entries = {e.path: e for e in WorkingTreeSource(git_registry, staged=staged).entries()}
        sub, link = entries["knowledge/product/sub"], entries["knowledge/product/link.md"]
        assert (sub.is_symlink, sub.is_submodule) == (True, True)
        assert (link.is_symlink, link.is_submodule) == (True, False)
    report = validate(git_registry)
    by_path = {f.path: f.message for f in report.findings}
    assert by_path["knowledge/product/link.md"].startswith("symbolic link")
    assert by_path["knowledge/product/sub"].startswith("submodule")


# --- 10. keys YAML finds different and Python finds equal --------------------------


def test_yaml_keys_compare_with_their_type() -> None:
    assert load_fast("1: a\ntrue: b\n1.0: c\n") == {1: "a", "true": "b", "1.0": "c"}
    assert load_fast("true: a\n'true': b\n") == {True: "a", "true": "b"}
    with pytest.raises(YamlLoadError) as caught:
        load_fast("1: a\n1: b\n")
    assert [(p.code, p.line) for p in caught.value.problems] == [("BR102", 2)]
    with pytest.raises(YamlLoadError, match="once written as JSON"):
        load_fast("1: a\ntrue: b\n'true': c\n")


def test_bot_metadata_with_keys_one_and_true_is_valid(git_registry: Path) -> None:
    bot = git_registry / "bots/product-guide.yaml"
    bot.write_text(bot.read_text().replace("metadata:\n", "metadata:\n  1: one\n  true: yes\n", 1))
    assert codes(validate(git_registry), "bots/product-guide.yaml") == []


def test_an_int_key_and_its_string_twin_both_survive_serialisation() -> None:
    """`{1: a, '1': b}` is valid YAML 1.2 (two keys); JSON output keeps both values."""
    from botreg.secrets import dumps_strict

    doc = json.loads(dumps_strict({"ext2": {1: "a", "1": "b"}}))
    assert doc == {"ext2": {"1": "b", "1#2": "a"}}
