"""`botreg init` pins the new registry's hook to the clone botreg was installed from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.hook_source import (
    HOOK_CONFIG,
    TEMPLATE_REQUIREMENT,
    installed_clone_requirement,
    pin_hook,
)

PROJECT = Path(__file__).resolve().parent.parent


def test_the_editable_install_of_this_checkout_is_pinned_at_its_head() -> None:
    head = subprocess.run(
        ["git", "-C", str(PROJECT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not head:
        pytest.skip("this checkout is not a git repository")
    assert installed_clone_requirement() == f"botreg @ git+{PROJECT.as_uri()}@{head}"


def test_init_pins_the_hook_but_not_ci(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requirement = installed_clone_requirement()
    if requirement is None:
        pytest.skip("botreg is not installed from a git clone here")
    assert main(["init", str(tmp_path / "r")]) == 0
    hook = (tmp_path / "r" / HOOK_CONFIG).read_text()
    [pin] = [line for line in hook.splitlines() if "additional_dependencies:" in line]
    assert f'["{requirement}"]' in pin and TEMPLATE_REQUIREMENT not in pin
    workflow = (tmp_path / "r" / ".github/workflows/registry.yml").read_text()
    assert TEMPLATE_REQUIREMENT in workflow  # a CI runner cannot see a local clone
    assert "Hook installs botreg from this installation's clone" in capsys.readouterr().out


def test_pin_hook_leaves_an_edited_config_alone(tmp_path: Path) -> None:
    (tmp_path / HOOK_CONFIG).write_text("repos: []\n")
    assert pin_hook(tmp_path, "botreg==9") is False
    assert (tmp_path / HOOK_CONFIG).read_text() == "repos: []\n"


def test_init_accepts_an_iso_author_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # git accepts it; GitPython's own commit failed on it (exit 3).
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2026-11-01T12:00:00+00:00")
    assert main(["init", str(tmp_path / "r")]) == 0
    date = subprocess.run(
        ["git", "-C", str(tmp_path / "r"), "log", "-1", "--format=%aI"],
        capture_output=True,
        check=False,
        text=True,
    ).stdout.strip()
    assert date == "2026-11-01T12:00:00+00:00"
