"""README.md and the manual (docs/) document the public contracts: every check code,
event type and sync flag, the CI command, the set-up, and the tour's real output."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from botreg.validation.findings import RULES

PROJECT = Path(__file__).resolve().parent.parent
README = (PROJECT / "README.md").read_text()


def _page(name: str) -> str:
    return (PROJECT / "docs" / name).read_text()


VALIDATION = _page("validation.md")
DAEMON = _page("daemon.md")
EVENTS = _page("events.md")


def test_every_check_code_is_documented() -> None:
    for code, rule in RULES.items():
        row = re.search(rf"^\| `{code}` \| {rule.name} \| {rule.severity} \|", VALIDATION, re.M)
        assert row, f"docs/validation.md lacks the row of {code}"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (PROJECT / ".ci" / "run").read_text().splitlines()
    [command] = [line for line in ci if "pytest" in line and not line.startswith("#")]
    assert f"\n{command}\n" in README


def test_readme_set_up_command_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's set-up command, minus the install, runs on a fresh folder, and twice."""
    line = next(
        x for x in README.splitlines() if x.startswith("python -m pip install -e '.[daemon]'")
    )
    commands = [c.strip() for c in line.split("&&")[1:]]
    assert commands == ["botreg init demo-registry", "botreg sync --source demo-registry --once"]
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # issue #14: a second run reuses demo-registry/
        for command in commands:
            assert main(command.split()[1:]) == 0, command
    assert (tmp_path / ".botreg" / "ledger.sqlite").is_file()


def test_every_event_type_is_documented() -> None:
    from botreg.events.model import EVENT_TYPES

    table = _section(EVENTS, "## Event types")
    for event_type in EVENT_TYPES:
        family, _, leaf = event_type.rpartition(".")
        assert f"`{event_type}`" in table or (f"`.{leaf}`" in table and family in table), event_type


def _subparser(name: str) -> argparse.ArgumentParser:
    from botreg.cli import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found: argparse.ArgumentParser = sub.choices[name]
    return found


def _section(text: str, title: str) -> str:
    """From the heading `title` to the next heading (of any level)."""
    start = text.index(f"\n{title}\n")
    end = text.find("\n#", start + len(title) + 2)
    return text[start:end] if end != -1 else text[start:]


def test_every_sync_flag_is_in_the_flags_table() -> None:
    """--events-max-bytes, --events-keep, --gc-interval, --compact-interval were missing."""
    table = _section(DAEMON, "## `botreg sync`")
    rows = [line for line in table.splitlines() if line.startswith("| `--")]
    for action in _subparser("sync")._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert any(f"`{flag}" in row for row in rows), f"docs/daemon.md lacks {flag}"


def test_every_sync_flag_with_a_default_shows_it_in_help() -> None:
    """`--help` showed no default for --branch and --data-dir."""
    for name in ("sync", "status", "events"):
        for action in _subparser(name)._actions:
            if action.default in (None, False, [], argparse.SUPPRESS) or action.required:
                continue
            assert action.help and "default" in action.help, (name, action.option_strings)


def test_once_help_and_the_manual_agree_on_what_exit_1_means() -> None:
    """`--once` help said "commit rejected or a domain failed"; README and code say more."""
    from botreg.daemon.sync import CycleResult

    meaning = (
        "commit rejected, the cycle failed, or the commit applied without some knowledge files"
    )
    [once] = [a for a in _subparser("sync")._actions if "--once" in a.option_strings]
    assert once.help is not None and f"1 {meaning}" in " ".join(once.help.split())
    assert f"1 ({meaning})" in " ".join((_subparser("sync").description or "").split())
    [row] = [x for x in DAEMON.splitlines() if x.startswith("| `--once` |")]
    assert f"1 ({meaning})" in row
    # ... which is what the code does: a commit applied without a file exits 1
    applied_without = CycleResult("synced", "a", "b", counts={"files_failed": 1})
    assert applied_without.exit_code == 1


def test_the_api_token_file_is_described_as_re_read_on_change() -> None:
    """The Python API section said the token file "is read at each request"."""
    api = " ".join(_section(_page("python-api.md"), "## The daemon's read API").split())
    assert "read at each request" not in api
    assert "the file is re-read when it changes" in api


def _documented_examples() -> list[dict[str, Any]]:
    events = _section(EVENTS, "## Examples")
    block = events[events.index("```json\n") + 8 : events.index("\n```", events.index("```json"))]
    return [json.loads(line) for line in block.splitlines()]


def test_event_examples_have_the_fields_a_real_daemon_emits(
    git_registry: Path, tmp_path: Path
) -> None:
    """The bot.* and knowledge.file.* examples lacked `commit`; an ingest_failed example
    named a Chroma store error that gives sync.failed instead (issue #10 testers)."""
    from sync_helpers import SyncHarness, commit

    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        harness.sync()
        real = list(harness.events)
        bot = git_registry / "bots/product-guide.yaml"
        bot.write_text(bot.read_text().replace("name: Product Guide", "name: Product Guide 2"))
        (git_registry / "knowledge/product/new.md").write_text("# New\n\nA page.\n")
        commit(git_registry)
        harness.sync()
        real += harness.events
    finally:
        harness.close()
    examples = _documented_examples()
    documented = {e["type"] for e in examples}
    seen = set()
    for event in real:
        doc = event.to_dict()
        if doc["type"] not in documented:
            continue
        seen.add(doc["type"])
        for example in (e for e in examples if e["type"] == doc["type"]):
            assert set(example) == set(doc), doc["type"]
            assert set(example["data"]) == set(doc["data"]), doc["type"]
    assert {
        "botreg.bot.created",
        "botreg.bot.updated",
        "botreg.knowledge.file.added",
        "botreg.knowledge.ingested",
        "botreg.sync.completed",
    } <= seen
    for example in examples:  # every change event names the commit being applied
        if example["type"].startswith(("botreg.bot.", "botreg.knowledge.file.")):
            assert len(example["data"]["commit"]) == 40, example["type"]
    # a store that cannot be opened fails the cycle (sync.failed, phase apply): a domain's
    # ingest_failed with an `error` is one the store opened for and the domain could not use
    for example in examples:
        assert "Chroma store" not in json.dumps(example), example["type"]
    failed = [e for e in examples if e["type"] == "botreg.sync.failed"]
    assert failed and all(e["data"]["phase"] in _PHASES for e in failed)


_PHASES = {"fetch", "validate", "diff", "emit", "apply", "advance"}


def test_the_cycles_metric_row_lists_every_result() -> None:
    """The `botreg_sync_cycles_total` row lacked `interrupted`."""
    import inspect

    from botreg.daemon import sync

    metrics = _page("operations.md")
    [row] = [x for x in metrics.splitlines() if x.startswith("| `botreg_sync_cycles_total` |")]
    for result in ("synced", "noop", "rejected", "failed", "interrupted"):
        assert result in row
        assert f'"{result}"' in inspect.getsource(sync)  # a result the code does give


def test_the_read_model_table_is_the_bench_output_and_the_bench_measures_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table's rows were not the bench's labels, and "first GET after a change ...
    parsed" raced the daemon's warm of the read model (0 or 1 by luck)."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(PROJECT / "bench"))
    bench = importlib.import_module("api")
    monkeypatch.delitem(sys.modules, "api")
    out = bench.run(20, 3, tmp_path)  # a small registry: every row, a few seconds
    section = _section(_page("benchmarks.md"), "## Read model performance")
    rows = [line.split(" | ")[0][2:] for line in section.splitlines() if line.startswith("| ")]
    assert rows[1:] == list(out)  # the header aside, the bench's rows, in its order
    assert out["one change: bot files the daemon parsed (apply to first GET)"] == "1"
    assert out["poll, one change"].endswith(", 1 parsed")
    assert "http.server" not in section.split("Before,")[0]  # the HTTP layer of today


def test_the_readme_is_a_front_door() -> None:
    """README.md was 2,162 lines; the reference lives in docs/ (the headline figures of
    the benchmarks stay, issue #15)."""
    assert len(README.splitlines()) < 275
    assert "```mermaid\n" in README  # the loop, drawn


@pytest.mark.timeout(300)
def test_the_tour_is_the_real_output_of_its_commands(tmp_path: Path) -> None:
    """Every tour block is what its commands print today (shas, times, paths aside)."""
    from tour import STEPS, blocks_in, normalise, run_tour

    shown = blocks_in(README)
    assert list(shown) == [step.name for step in STEPS], "README's tour blocks and STEPS differ"
    runs = run_tour(tmp_path)
    for run in runs:
        assert normalise(shown[run.step.name]) == normalise(run.text), (
            f"README's tour step {run.step.name!r} is not the commands' output: "
            "run `python tests/tour.py --update` and review the diff"
        )
    wrong = {run.step.name: run for run in runs if run.exit_code != run.step.expect}
    assert not wrong, {name: run.exit_code for name, run in wrong.items()}


def test_the_tour_comparison_sees_a_changed_output() -> None:
    """What normalise() forgives (shas, times, durations) and what it does not."""
    from tour import normalise

    a = "review 48246d84682f..1ec9b81d22fa at 2026-11-23T22:09:59.661+00:00 (0.28 s)\n"
    b = "review 0123456789ab..fedcba987654 at 2027-01-02T03:04:05+00:00 (12 s)\n"
    assert normalise(a) == normalise(b)
    assert normalise("2 files: 2 valid\n") != normalise("3 files: 3 valid\n")
    assert normalise("a defaced file\n") == "a defaced file\n"  # words of hex letters stay


def test_the_tour_is_not_updated_from_uncommitted_code(tmp_path: Path) -> None:
    """The hook step builds botreg from HEAD: `--update` with uncommitted code wrote the
    last commit's hook output into the README (`1 files` after validate said `1 file`)."""
    from conftest import git
    from tour import uncommitted_code

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("readme\n")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "initial")
    assert uncommitted_code(tmp_path) == []
    (tmp_path / "README.md").write_text("the tour's own output\n")
    assert uncommitted_code(tmp_path) == []  # what --update writes is not code
    (tmp_path / "src" / "x.py").write_text("x = 2\n")
    assert uncommitted_code(tmp_path) == [" M src/x.py"]


def test_the_set_up_says_where_python_and_a_git_identity_come_from() -> None:
    """`python -m pip` fails where only python3 exists or pip is externally managed
    (Debian, Ubuntu); `botreg init` fails without a git identity: the set-up says both."""
    set_up = _section(README, "## Set-up")
    assert "python3 -m venv .venv && . .venv/bin/activate" in set_up
    assert "`user.name` and `user.email`" in set_up
