"""`botreg review` over real repositories with base and head commits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from botreg.review import build_review, render_markdown
from conftest import git
from helpers import write
from review_sample import sample_pull_request
from sync_helpers import commit

PROJECT = Path(__file__).resolve().parent.parent


def review_json(capsys: pytest.CaptureFixture[str], repo: Path, *extra: str) -> tuple[int, Any]:
    code = main(["review", "--repo", str(repo), "--base", "main", "--format", "json", *extra])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def repo(git_registry: Path) -> Path:
    git(git_registry, "checkout", "-q", "-b", "change")
    return git_registry


def test_every_bot_change_kind(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(repo, "bots/new-bot.yaml", "name: New\nstatus: active\nllm: {provider: echo}\n")
    (repo / "bots/internal-helpdesk.yaml").unlink()
    guide = repo / "bots/product-guide.yaml"
    guide.write_text(guide.read_text().replace("status: active", "status: inactive"))
    billing = repo / "bots/billing-assistant.yaml"
    billing.write_text(
        billing.read_text()
        .replace("temperature: 0.2", "temperature: 0.3")
        .replace("domains: [billing]", "domains: [billing, product]")
        .replace("      $resource: billing-api", "      $resource: billing-api2")
    )
    env = repo / "environments/development.yaml"
    env.write_text(env.read_text().replace("    billing-api:\n", "    billing-api2:\n"))
    prod = repo / "environments/production.yaml"
    prod.write_text(prod.read_text().replace("    billing-api:\n", "    billing-api2:\n"))
    commit(repo)
    code, doc = review_json(capsys, repo)
    assert code == 0 and doc["valid"] is True
    assert doc["summary"]["bots"] == {
        "created": 1,
        "updated": 1,
        "deleted": 1,
        "activated": 0,
        "deactivated": 1,
    }
    by_id = {b["bot_id"]: b for b in doc["bots"]}
    assert by_id["billing-assistant"]["flags"] == [
        "knowledge domains changed",
        "$resource reference changed",
    ]
    changes = {c["path"]: c for c in by_id["billing-assistant"]["changes"]}
    assert changes["llm.temperature"] == {
        "path": "llm.temperature",
        "kind": "changed",
        "old": 0.2,
        "new": 0.3,
    }
    assert changes["tools[lookup_invoice].endpoint.$resource"]["new"] == "billing-api2"
    assert by_id["product-guide"]["flags"] == ["status changed"]
    assert by_id["new-bot"]["kind"] == "created" and by_id["internal-helpdesk"]["kind"] == "deleted"


def test_knowledge_impact_uses_the_chunker(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refunds = repo / "knowledge/billing/policies/refunds.md"
    refunds.write_text(refunds.read_text().replace("5 to 10\nbusiness", "five to ten\nbusiness"))
    git(repo, "mv", "knowledge/product/shortcuts.csv", "knowledge/product/keys.csv")
    (repo / "knowledge/billing/plans.json").unlink()
    write(repo, "knowledge/billing/new.md", "# New\n\nOne.\n\n## Two\n\nTwo.\n")
    commit(repo)
    _, doc = review_json(capsys, repo)
    billing, product = doc["summary"]["domains"]["billing"], doc["summary"]["domains"]["product"]
    assert (billing["added"], billing["modified"], billing["deleted"]) == (1, 1, 1)
    # new.md's two short sections are one chunk; refunds.md's table rows are records
    assert (billing["chunks_added"], billing["chunks_removed"], billing["chunks_kept"]) == (2, 6, 6)
    # a CSV is titled by its name: renamed, its records are new text
    assert (product["renamed"], product["chunks_added"], product["chunks_removed"]) == (1, 4, 4)
    assert product["chunks_kept"] == 0


def test_embedding_and_chunking_changes_warn(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = repo / "environments/development.yaml"
    env.write_text(env.read_text().replace("dimensions: 384", "dimensions: 256"))
    reg = repo / "registry.yaml"
    reg.write_text(reg.read_text().replace("max_tokens: 200", "max_tokens: 180"))
    commit(repo)
    _, doc = review_json(capsys, repo)
    assert doc["summary"]["domains"]["billing"]["reembed"] is True
    assert "whole domain will be re-embedded" in doc["domains"][0]["warnings"][0]
    assert doc["notes"] == [
        "registry.yaml chunking settings changed: every knowledge file is "
        "re-chunked (only texts that change are embedded)."
    ]
    assert doc["registry"][0]["changes"] == [
        {"path": "chunking.max_tokens", "kind": "changed", "old": 200, "new": 180}
    ]
    _, prod = review_json(capsys, repo, "--env", "production")
    assert prod["summary"]["domains"] == {}  # production's embedding did not change


def test_environment_changes_name_the_affected_unchanged_bots(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = repo / "environments/production.yaml"
    prod.write_text(prod.read_text().replace("database: bots\n", "database: bots_v2\n"))
    commit(repo)
    _, doc = review_json(capsys, repo)
    [env] = doc["environments"]
    assert env["resources"] == [
        {
            "type": "databases",
            "name": "conversations",
            "value": {
                "backend": "postgres",
                "host": "${PG_HOST}",
                "port": "${PG_PORT:5432}",
                "database": "bots_v2",
                "user": "${PG_USER}",
                "password": "${PG_PASSWORD}",
            },
        }
    ]
    assert env["affected_bots"] == [
        {"bot_id": "billing-assistant", "resources": ["databases/conversations"]},
        {"bot_id": "product-guide", "resources": ["databases/conversations"]},
    ]


def test_invalid_head_exits_1_marks_new_findings_and_masks_secrets(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    git(repo, "checkout", "-q", "main")
    write(repo, "knowledge/product/old.pdf", b"%PDF")  # a warning already on main
    commit(repo)
    git(repo, "checkout", "-q", "change")
    git(repo, "reset", "-q", "--hard", "main")
    prod = repo / "environments/production.yaml"
    prod.write_text(
        prod.read_text().replace("password: ${PG_PASSWORD}", "password: Hunter2-Literal-Secret9x")
    )
    write(repo, "knowledge/product/new.pdf", b"%PDF")
    commit(repo)
    code, doc = review_json(capsys, repo)
    assert code == 1 and doc["valid"] is False
    flagged = {(f["path"], f["code"]): f["new"] for f in doc["findings"]}
    assert flagged == {
        ("environments/production.yaml", "BR304"): True,
        ("knowledge/product/new.pdf", "BR506"): True,
        ("knowledge/product/old.pdf", "BR506"): False,
    }
    assert main(["review", "--repo", str(repo), "--base", "main"]) == 1
    markdown = capsys.readouterr().out
    assert "Hunter2" not in markdown and "Hunter2" not in json.dumps(doc)
    assert "❌ fail" in markdown and "**(new)**" in markdown


def test_truncation_keeps_the_summary(repo: Path) -> None:
    for i in range(60):
        write(
            repo,
            f"bots/bot-{i:02d}.yaml",
            f"name: Bot {i}\nstatus: active\nllm: {{provider: echo}}\n"
            f"system_prompt: |\n  {'Long prompt text. ' * 20}\n",
        )
    commit(repo)
    review = build_review(str(repo), "main", "change")
    full = render_markdown(review, 10**9)
    short = render_markdown(review, 4000)
    assert len(full) > 4000 >= len(short)
    summary = full.split("\n### ")[0]
    assert short.startswith(summary)
    assert "| | 60 | 0 | 0 | 0 | 0 |" in short
    assert re.search(r"Truncated: \d+ detail section\(s\) left out", short)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base", "no-such-branch"], "unknown revision 'no-such-branch'"),
        (["--base", "main", "--head", "nope"], "unknown revision 'nope'"),
        (["--base", "main", "--max-chars", "10"], "--max-chars must be at least 2000"),
    ],
)
def test_usage_errors_exit_2(
    repo: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["review", "--repo", str(repo), *args]) == 2
    assert message in capsys.readouterr().err


def test_not_a_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review", "--repo", str(tmp_path), "--base", "main"]) == 2
    assert "not a git repository" in capsys.readouterr().err


def test_text_format(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    guide = repo / "bots/product-guide.yaml"
    guide.write_text(guide.read_text().replace("model: gpt-4o-mini", "model: gpt-4o"))
    commit(repo)
    assert main(["review", "--repo", str(repo), "--base", "main", "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert "validation of head: pass" in out
    assert "bot product-guide: updated [model or provider changed]" in out
    assert "  llm.model: changed gpt-4o-mini -> gpt-4o" in out


def test_review_matches_what_the_daemon_emits(repo: Path, tmp_path: Path) -> None:
    """One diff engine: the review's bot changes are the daemon's event data."""
    from sync_helpers import SyncHarness

    harness = SyncHarness(repo.as_uri(), tmp_path / "data")
    try:
        git(repo, "checkout", "-q", "main")
        harness.sync()
        guide = repo / "bots/product-guide.yaml"
        guide.write_text(guide.read_text().replace("temperature: 0.5", "temperature: 0.7"))
        commit(repo)
        harness.sync()
        [event] = harness.of("botreg.bot.updated")
        review = build_review(str(repo), "HEAD~1", "HEAD")
        assert review.bots[0].changes == event.data["changes"]
    finally:
        harness.close()


def test_readme_sample_is_the_commands_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = sample_pull_request(tmp_path)
    assert main(["review", "--repo", str(repo), "--base", "main", "--head", "change"]) == 0
    output = capsys.readouterr().out
    readme = (PROJECT / "docs" / "review.md").read_text()
    match = re.search(
        r"<!-- sample-review:start -->\n````markdown\n(.*?)````\n"
        r"<!-- sample-review:end -->",
        readme,
        re.S,
    )
    assert match, "docs/review.md lacks the sample review block"
    assert match.group(1) == output
