"""Review output counts in words: `1 file`, `2 files changed (1 added, 1 modified)`."""

from __future__ import annotations

from pathlib import Path

import pytest

from botreg.cli import main
from conftest import git
from review_sample import sample_pull_request
from sync_helpers import commit


def review(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> tuple[int, str]:
    code = main(["review", "--repo", str(repo), *args])
    return code, capsys.readouterr().out


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return sample_pull_request(tmp_path)


def test_text_says_what_changed_in_words(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It said `+1 ~1 -0 >0 files; chunks +2 -1 =6` and `+0 ~0 -0 >1 files`."""
    code, out = review(capsys, sample, "--base", "main", "--head", "change", "--format", "text")
    assert code == 0
    lines = out.splitlines()
    assert "validation of head: pass (0 errors, 0 warnings, 0 new)" in lines
    assert (
        "knowledge billing: 2 files changed (1 added, 1 modified); "
        "chunks: 2 added, 1 removed, 6 kept"
    ) in lines
    assert (
        "knowledge product: 1 file changed (1 renamed); chunks: 1 added, 1 removed, 0 kept"
    ) in lines
    assert not any(" files;" in line or "~" in line for line in lines)


def test_markdown_counts_one_in_the_singular(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = review(capsys, sample, "--base", "main", "--head", "change")
    assert code == 0
    assert "<b>product</b>: 1 file, +1 / -1 / =0 chunks</summary>" in out
    assert "<b>billing</b>: 2 files, +2 / -1 / =6 chunks</summary>" in out
    assert "<b>production</b>: modified, 1 change, 1 unchanged bot affected</summary>" in out
    assert "1 files" not in out and "1 changes" not in out


def test_one_error_is_one_error_in_every_summary(
    git_registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    git(git_registry, "checkout", "-q", "-b", "change")
    bot = git_registry / "bots/product-guide.yaml"
    bot.write_text(bot.read_text().replace("status: active", "status: on"))
    commit(git_registry)
    code, text = review(capsys, git_registry, "--base", "main", "--format", "text")
    assert code == 1
    assert "validation of head: FAIL (1 error, 0 warnings, 1 new)" in text.splitlines()
    code, markdown = review(capsys, git_registry, "--base", "main")
    assert code == 1 and "**Validation of head: ❌ fail** (1 error, 0 warnings, 1 new)" in markdown


def test_a_re_embed_is_explained(git_registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    git(git_registry, "checkout", "-q", "-b", "change")
    env = git_registry / "environments/development.yaml"
    env.write_text(env.read_text().replace("dimensions: 384", "dimensions: 256"))
    (git_registry / "knowledge/billing/more.md").write_text("# More\n\nAnother answer here.\n")
    commit(git_registry)
    code, out = review(capsys, git_registry, "--base", "main", "--format", "text")
    assert code == 0
    [line] = [x for x in out.splitlines() if x.startswith("knowledge billing:")]
    assert line.startswith("knowledge billing: 1 file changed (1 added); chunks: ")
    assert line.endswith(" kept (re-embed: the embedding settings changed)")
