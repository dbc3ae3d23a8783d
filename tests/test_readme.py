"""The README documents the public contracts: every check code, the CI command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.validation.findings import RULES

PROJECT = Path(__file__).resolve().parent.parent
README = (PROJECT / "README.md").read_text()


def test_every_check_code_is_documented() -> None:
    for code, rule in RULES.items():
        row = re.search(rf"^\| `{code}` \| {rule.name} \| {rule.severity} \|", README, re.M)
        assert row, f"README lacks the row of {code}"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (PROJECT / ".ci" / "run").read_text().splitlines()
    [command] = [line for line in ci if "pytest" in line and not line.startswith("#")]
    assert f"\n{command}\n" in README


def test_readme_main_job_command_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's main job, minus the install, runs on a fresh folder."""
    line = next(
        x for x in README.splitlines() if x.startswith("python -m pip install -e '.[daemon]'")
    )
    commands = [c.strip() for c in line.split("&&")[1:]]
    assert commands == ["botreg init demo-registry", "botreg sync --source demo-registry --once"]
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert main(command.split()[1:]) == 0, command
    assert (tmp_path / ".botreg" / "ledger.sqlite").is_file()


def test_every_event_type_is_documented() -> None:
    from botreg.events.model import EVENT_TYPES

    table = README[README.index("### Events") : README.index("### Sinks")]
    for event_type in EVENT_TYPES:
        family, _, leaf = event_type.rpartition(".")
        assert f"`{event_type}`" in table or (f"`.{leaf}`" in table and family in table), event_type
