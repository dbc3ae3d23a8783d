"""The README documents the public contracts: every check code, the CI command."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_readme_shows_the_main_job_command() -> None:
    assert (
        "python -m pip install -e '.[daemon]' && botreg validate --repo "
        "registry-repo-template" in README
    )
