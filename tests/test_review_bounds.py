"""`botreg review` output is bounded in every format and never echoes a file's content."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from conftest import git
from helpers import write
from sync_helpers import commit

LIMIT = 200_000  # registry.yaml max_file_bytes in these tests (lowering is allowed)
BIG = 70_000  # characters of a value: twice that is under LIMIT, far over any excerpt


def review(capsys: pytest.CaptureFixture[str], repo: Path, fmt: str, *extra: str) -> str:
    main(["review", "--repo", str(repo), "--base", "main", "--format", fmt, *extra])
    return capsys.readouterr().out


@pytest.fixture
def repo(git_registry: Path) -> Path:
    reg = git_registry / "registry.yaml"
    reg.write_text(reg.read_text().replace("max_file_bytes: 5242880", f"max_file_bytes: {LIMIT}"))
    commit(git_registry, "lower the file size limit")
    git(git_registry, "checkout", "-q", "-b", "change")
    return git_registry


@pytest.fixture
def big_bot(repo: Path) -> Path:
    """A bot whose description and system prompt grow by about 70 KB each, and a new
    bot with a 70 KB description."""
    guide = repo / "bots/product-guide.yaml"
    prompt = "".join(f"  line {i} of a very long prompt\n" for i in range(BIG // 30))
    guide.write_text(
        guide.read_text()
        .replace(
            "description: Helps new users get started and find features.",
            f"description: {'word ' * (BIG // 5)}",
        )
        .replace("  and keyboard shortcuts,", prompt + "  and keyboard shortcuts,")
    )
    # a new bot: its values are shown whole, not diffed
    write(
        repo, "bots/big-new.yaml", f"name: N\nstatus: active\ndescription: {'word ' * (BIG // 5)}\n"
    )
    commit(repo)
    return repo


@pytest.mark.parametrize("fmt", ["markdown", "text", "json"])
def test_a_big_value_is_shown_as_a_short_excerpt(
    big_bot: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    out = review(capsys, big_bot, fmt)
    # the file's ~150 KB never come back: one file shows a few KB at most
    assert len(out) < 20_000
    assert "word " * 120 not in out
    assert "line 200 of a very long prompt" not in out
    if fmt == "json":
        bots = {b["bot_id"]: b for b in json.loads(out)["bots"]}
        changes = {c["path"]: c for c in bots["big-new"]["changes"]}
        assert f"[truncated: {BIG - 1} characters in all]" in changes["description"]["new"]
        diffs = bots["product-guide"]["text_diffs"]
        assert "[diff truncated after" in diffs["system_prompt"]
        # one 70 KB line: the line itself is cut
        assert "characters in all]" in diffs["description"]
        assert len(diffs["description"]) < 1000
    else:
        assert "[diff truncated after" in out


def test_an_oversize_bot_file_is_reported_not_loaded(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, "bots/huge.yaml", f"name: Huge\nstatus: active\ndescription: {'x' * LIMIT}\n")
    commit(repo)
    doc: dict[str, Any] = json.loads(review(capsys, repo, "json"))
    assert doc["valid"] is False
    assert [f["code"] for f in doc["findings"] if f["path"] == "bots/huge.yaml"] == ["BR504"]
    assert doc["bots"] == []  # never parsed, so no diff of it
    assert any(
        n.startswith("bots/huge.yaml: ") and f"over the limit of {LIMIT} bytes; not loaded" in n
        for n in doc["notes"]
    )
    assert "x" * 1000 not in json.dumps(doc)


def test_oversize_and_gzip_bomb_knowledge_files_are_reported_not_loaded(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, "knowledge/billing/huge.md", "# Huge\n\n" + "word " * (LIMIT // 5 + 10))
    # 10 MB of one letter: ~10 KB of gzip, far beyond the ratio of 100
    write(repo, "knowledge/billing/bomb.md.gz", gzip.compress(b"a" * 10_000_000))
    commit(repo)
    doc = json.loads(review(capsys, repo, "json"))
    [billing] = doc["domains"]
    errors = {e["path"]: e["message"] for e in billing["errors"]}
    assert "over the limit of" in errors["knowledge/billing/huge.md"]
    assert "decompresses beyond" in errors["knowledge/billing/bomb.md.gz"]
    assert billing["chunks_added"] == 0
    markdown = review(capsys, repo, "markdown")
    assert "`knowledge/billing/bomb.md.gz`: decompresses beyond" in markdown


@pytest.fixture
def many_bots(repo: Path) -> Path:
    for i in range(60):
        write(
            repo,
            f"bots/bot-{i:02d}.yaml",
            f"name: Bot {i}\nstatus: active\nllm: {{provider: echo}}\n"
            f"system_prompt: |\n  {'Long prompt text. ' * 20}\n",
        )
    commit(repo)
    return repo


def test_json_has_a_total_bound_and_says_what_it_left_out(
    many_bots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = json.loads(review(capsys, many_bots, "json"))
    assert "truncated" not in full and len(full["bots"]) == 60
    out = review(capsys, many_bots, "json", "--max-chars", "6000")
    assert len(out) <= 6000
    doc = json.loads(out)
    assert doc["summary"] == full["summary"]  # never cut
    assert doc["truncated"]["bots"] == 60 - len(doc["bots"]) > 0
    assert doc["bots"] == full["bots"][: len(doc["bots"])]


def test_text_has_a_total_bound(many_bots: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = review(capsys, many_bots, "text")
    out = review(capsys, many_bots, "text", "--max-chars", "3000")
    assert len(full) > 3000 >= len(out)
    assert out.splitlines()[0] == full.splitlines()[0]
    assert "[output truncated: " in out.splitlines()[-1]


def test_markdown_bound_holds_even_for_a_huge_summary(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(120):  # 120 domains: more summary rows than the bound allows
        write(repo, f"knowledge/d{i:03d}/a.txt", "text\n")
    commit(repo)
    out = review(capsys, repo, "markdown", "--max-chars", "2000")
    assert len(out) <= 2000
    full = review(capsys, repo, "markdown")
    assert "| ... 70 more domains not shown | | | | | |" in full
