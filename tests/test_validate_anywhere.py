"""`botreg validate` from anywhere inside a registry, and staged deletions (`--staged`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from botreg.cli import main
from conftest import git
from helpers import write

BAD = "description: [unclosed\n"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def invalid(registry: Path) -> Path:
    """The template with a YAML syntax error in bots/product-guide.yaml."""
    bot = registry / "bots/product-guide.yaml"
    bot.write_text(bot.read_text().replace("description:", "old_description:", 1) + BAD)
    return registry


def test_from_a_sub_folder_paths_are_relative_to_it(
    invalid: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(invalid / "bots")
    code, out, _ = run(capsys, "validate", "product-guide.yaml")
    assert code == 1
    assert "bots/product-guide.yaml:" in out and "BR101" in out
    assert out.splitlines()[-1].startswith("1 file: 0 valid, 1 invalid")


def test_an_absolute_path_from_a_parent_folder(
    invalid: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(invalid.parent)
    code, out, _ = run(capsys, "validate", str(invalid / "bots/product-guide.yaml"))
    assert code == 1 and "bots/product-guide.yaml:" in out and "BR101" in out


def test_without_paths_from_a_sub_folder_the_whole_registry(
    invalid: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(invalid / "knowledge" / "billing")
    code, out, _ = run(capsys, "validate")
    assert code == 1 and out.splitlines()[-1].startswith("15 files: 14 valid, 1 invalid")


def test_outside_any_registry_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere, "notes/a.yaml", "a: 1\n")
    monkeypatch.chdir(elsewhere)
    code, out, err = run(capsys, "validate")
    assert (code, out) == (2, "")
    assert err == (
        f"botreg: error: not a botreg registry (no registry.yaml in {elsewhere.resolve()} "
        "or its parents)\n"
    )


def test_a_git_repository_that_is_no_registry_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "project"
    write(repo, "src/app.py", "print(1)\n")
    git(repo, "init", "-q")
    monkeypatch.chdir(repo / "src")
    code, _, err = run(capsys, "validate")
    assert code == 2 and "not a botreg registry (no registry.yaml in" in err


def test_the_git_top_level_is_a_registry_without_registry_yaml(
    git_registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (git_registry / "registry.yaml").unlink()
    monkeypatch.chdir(git_registry / "bots")
    code, out, _ = run(capsys, "validate")
    assert code == 1 and "registry.yaml:1:1: BR407" in out


def test_a_repo_without_a_registry_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "plain", "a.txt", "x\n")
    code, _, err = run(capsys, "validate", "--repo", str(tmp_path / "plain"))
    assert code == 2 and "not a botreg registry" in err


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("missing.yaml", "missing.yaml: no such file or directory"),
        ("../../outside.yaml", "outside the registry"),
        ("README.md", "nothing to validate in README.md: no registry files"),
        ("../../..", "outside the registry"),
    ],
)
def test_paths_that_cannot_be_validated_are_exit_2(
    registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    arg: str,
    message: str,
) -> None:
    write(tmp_path, "outside.yaml", "a: 1\n")
    monkeypatch.chdir(registry / "bots" if arg.startswith("..") else registry)
    code, out, err = run(capsys, "validate", arg)
    assert code == 2 and out == "", out
    assert message in err


def test_an_ignored_file_is_no_registry_file(
    git_registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(git_registry, ".gitignore", "knowledge/product/scratch.md\n")
    write(git_registry, "knowledge/product/scratch.md", "# scratch\n")
    monkeypatch.chdir(git_registry)
    code, _, err = run(capsys, "validate", "knowledge/product/scratch.md")
    assert code == 2 and "not a file of the registry" in err


def test_a_subprocess_from_a_sub_folder(invalid: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "botreg", "validate", "product-guide.yaml"],
        cwd=invalid / "bots",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "BR101" in proc.stdout


# --- --staged: what the hook runs ------------------------------------------------------------


def test_staged_deletion_of_a_domain_in_use_is_reported(
    git_registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_registry)
    git(git_registry, "rm", "-r", "-q", "knowledge/billing")
    code, out, _ = run(capsys, "validate", "--staged")
    assert code == 1
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "bots/billing-assistant.yaml",
        "bots/internal-helpdesk.yaml",
        "bots/product-guide.yaml",
    ]
    assert all("BR402 knowledge domain 'billing' does not exist" in x for x in lines[:-1])


def test_staged_rename_of_a_domain_counts_as_its_deletion(
    git_registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_registry)
    git(git_registry, "mv", "knowledge/billing", "knowledge/invoices")
    code, out, _ = run(
        capsys, "validate", "--staged", "knowledge/invoices/plans.json", "knowledge/invoices"
    )
    assert code == 1 and out.count("BR402 knowledge domain 'billing'") == 3


def test_staged_deletions_that_break_nothing_pass(
    git_registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_registry)
    git(git_registry, "rm", "-q", "knowledge/billing/plans.json")  # the domain remains
    code, out, _ = run(capsys, "validate", "--staged")
    assert code == 0 and out.startswith("0 files: 0 valid, 0 invalid, 0 errors")


def test_staged_without_registry_changes_reports_no_old_findings(
    git_registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old problem elsewhere is not this commit's: a README-only commit passes."""
    bot = git_registry / "bots/product-guide.yaml"
    bot.write_text(bot.read_text() + "unknown_key: 1\n")
    git(git_registry, "commit", "-q", "-am", "an old mistake")
    write(git_registry, "README.md", "changed\n")
    git(git_registry, "add", "README.md")
    monkeypatch.chdir(git_registry)
    code, out, _ = run(capsys, "validate", "--staged")
    assert code == 0 and "BR202" not in out
    # ...and a deletion that breaks bots reports what it broke, not the old BR202
    git(git_registry, "rm", "-r", "-q", "knowledge/billing")
    code, out, _ = run(capsys, "validate", "--staged")
    assert code == 1 and "BR402" in out and "BR202" not in out


def test_staged_deletion_of_every_environment_is_reported(
    git_registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_registry)
    git(git_registry, "rm", "-q", "environments/development.yaml", "environments/production.yaml")
    _code, out, _ = run(capsys, "validate", "--staged")
    assert "BR408" in out


def test_staged_reads_the_index_not_untracked_files(
    git_registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untracked file would keep a deleted domain alive on disk, not in the commit."""
    monkeypatch.chdir(git_registry)
    git(git_registry, "rm", "-r", "-q", "knowledge/billing")
    write(git_registry, "knowledge/billing/notes.md", "# not staged\n")
    code, out, _ = run(capsys, "validate", "--staged")
    assert code == 1 and out.count("BR402") == 3
    code, out, _ = run(capsys, "validate")  # the work tree: the domain has a file
    assert code == 0


def test_staged_outside_git_is_a_usage_error(
    registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(registry)
    code, _, err = run(capsys, "validate", "--staged")
    assert code == 2 and "--staged needs a git repository" in err
