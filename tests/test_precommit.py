"""The real pre-commit framework runs botreg's hook in a registry repository.

pre-commit installs botreg from a git copy of this checkout into its own
virtualenv (from PyPI, as on a contributor's machine), so this test is slow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import git

PROJECT = Path(__file__).resolve().parent.parent
SHIPPED = [
    "src",
    "schemas",
    "registry-repo-template",
    "pyproject.toml",
    "README.md",
    ".pre-commit-hooks.yaml",
]


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A git repository holding the current botreg sources (as a release would)."""
    repo = tmp_path_factory.mktemp("botreg-hook")
    for name in SHIPPED:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(
                source, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(source, repo / name)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "release"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    rev = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, text=True, capture_output=True, env=env
    ).stdout.strip()
    return repo, rev


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hook_blocks_a_bad_commit_and_passes_a_good_one(
    git_registry: Path,
    hook_repo: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo, rev = hook_repo
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    (git_registry / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {repo}\n    rev: {rev}\n    hooks:\n      - id: botreg-validate\n"
    )
    git(git_registry, "add", ".pre-commit-config.yaml")
    git(git_registry, "commit", "-q", "-m", "point the hook at this checkout")
    subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"],
        cwd=git_registry,
        check=True,
        capture_output=True,
    )

    bot = git_registry / "bots/billing-assistant.yaml"
    bot.write_text(bot.read_text().replace("status: active", "status: enabled"))
    git(git_registry, "add", "-A")
    bad = subprocess.run(
        ["git", "commit", "-m", "enable"],
        cwd=git_registry,
        capture_output=True,
        text=True,
        check=False,
    )
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0, output
    assert "bots/billing-assistant.yaml:4:9: BR201 status: 'enabled' is not allowed" in output
    assert (
        git(git_registry, "log", "--format=%s", "-1").strip() == "point the hook at this checkout"
    )

    bot.write_text(bot.read_text().replace("status: enabled", "status: inactive"))
    git(git_registry, "add", "-A")
    good = subprocess.run(
        ["git", "commit", "-m", "pause the billing bot"],
        cwd=git_registry,
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert "botreg validate" in good.stdout + good.stderr
    assert git(git_registry, "log", "--format=%s", "-1").strip() == "pause the billing bot"

    # A commit that only deletes files: pre-commit passes no file names, the hook
    # still runs (always_run) and sees that three bots use the deleted domain.
    git(git_registry, "rm", "-r", "-q", "knowledge/billing")
    deleting = subprocess.run(
        ["git", "commit", "-m", "drop billing knowledge"],
        cwd=git_registry,
        capture_output=True,
        text=True,
        check=False,
    )
    output = deleting.stdout + deleting.stderr
    assert deleting.returncode != 0, output
    assert output.count("BR402 knowledge domain 'billing' does not exist") == 3, output
    assert git(git_registry, "log", "--format=%s", "-1").strip() == "pause the billing bot"

    # A commit that touches nothing registry-related passes, old findings unreported.
    git(git_registry, "reset", "-q", "--hard")
    (git_registry / "README.md").write_text("notes\n")
    git(git_registry, "add", "README.md")
    readme = subprocess.run(
        ["git", "commit", "-m", "notes"],
        cwd=git_registry,
        capture_output=True,
        text=True,
        check=False,
    )
    assert readme.returncode == 0, readme.stdout + readme.stderr
    assert "botreg validate" in readme.stdout + readme.stderr
