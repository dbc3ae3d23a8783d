"""The real pre-commit framework runs botreg's hook in a registry repository.

pre-commit installs botreg from a git copy of this checkout into its own
virtualenv (from PyPI, as on a contributor's machine), so this test is slow.
"""

from __future__ import annotations

import os
import re
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


TEMPLATE_REQUIREMENT = "botreg @ git+https://github.com/botreg/botreg@v0.1.0"


def _template_hook() -> tuple[dict[str, object], str]:
    """The template's botreg hook and the requirement CI installs."""
    from botreg.registry.yamlio import load_fast

    template = PROJECT / "registry-repo-template"
    config = load_fast((template / ".pre-commit-config.yaml").read_text())
    [repo] = config["repos"]
    [hook] = repo["hooks"]
    assert repo["repo"] == "local"
    workflow = load_fast((template / ".github/workflows/registry.yml").read_text())
    return hook, workflow["env"]["BOTREG_REQUIREMENT"]


def test_template_pins_one_source_for_the_hook_and_ci() -> None:
    """The hook and CI install botreg from the same pinned requirement, set once in each."""
    from botreg.registry.yamlio import load_fast

    hook, ci_requirement = _template_hook()
    assert hook["additional_dependencies"] == [TEMPLATE_REQUIREMENT] == [ci_requirement]
    workflow = (PROJECT / "registry-repo-template/.github/workflows/registry.yml").read_text()
    assert 'pip install "$BOTREG_REQUIREMENT"' in workflow
    assert workflow.count(f'"{TEMPLATE_REQUIREMENT}"') == 1  # the value is written once
    # the local hook behaves as botreg's published hook does
    [published] = load_fast((PROJECT / ".pre-commit-hooks.yaml").read_text())
    for key in ("id", "name", "entry", "language", "files", "always_run", "require_serial"):
        assert hook[key] == published[key], key


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_template_hook_from_a_local_clone(
    hook_repo: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The template's own config, its one source pointed at a clone at a commit (offline)."""
    from botreg.cli import main

    repo, rev = hook_repo
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    registry = tmp_path / "registry"
    assert main(["init", str(registry)]) == 0
    config = registry / ".pre-commit-config.yaml"
    text = config.read_text()
    # the value, not the comment's examples: the template's pin, or the clone
    # botreg is installed from (botreg.hook_source), where init found one
    [pinned] = re.findall(r'additional_dependencies: \["([^"]+)"\]', text)
    assert pinned == TEMPLATE_REQUIREMENT or pinned.startswith("botreg @ git+file://")
    config.write_text(text.replace(f'"{pinned}"', f'"botreg @ git+file://{repo}@{rev}"'))
    git(registry, "commit", "-qam", "install botreg from our clone")
    subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"],
        cwd=registry,
        check=True,
        capture_output=True,
    )

    def commit(message: str) -> subprocess.CompletedProcess[str]:
        git(registry, "add", "-A")
        return subprocess.run(
            ["git", "commit", "-m", message],
            cwd=registry,
            capture_output=True,
            text=True,
            check=False,
        )

    policy = registry / "knowledge/billing/policies/refunds.md"
    policy.write_text(policy.read_text() + "\nRefunds above 500 USD need a manager.\n")
    good = commit("refunds: manager approval")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "botreg validate" in good.stdout + good.stderr
    assert git(registry, "log", "--format=%s", "-1").strip() == "refunds: manager approval"

    domain = registry / "knowledge/billing/_domain.yaml"
    domain.write_text(domain.read_text() + "ownr: billing-team\n")
    bad = commit("billing: a typo")
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0, output
    assert "knowledge/billing/_domain.yaml:8:1: BR202 top level: unknown key 'ownr'" in output
    assert git(registry, "log", "--format=%s", "-1").strip() == "refunds: manager approval"
