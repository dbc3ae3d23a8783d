"""The sample pull request shown in README.md, built from the template.

`python tests/review_sample.py` prints the review the README shows; a test
checks that the README still holds exactly this output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Registry Editor",
    "GIT_AUTHOR_EMAIL": "editor@example.com",
    "GIT_COMMITTER_NAME": "Registry Editor",
    "GIT_COMMITTER_EMAIL": "editor@example.com",
    "GIT_AUTHOR_DATE": "2026-11-01T12:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-11-01T12:00:00+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": tempfile.gettempdir(),
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=ENV, check=True, capture_output=True)


def sample_pull_request(root: Path) -> Path:
    """A repository whose `main` is the template and whose `change` branch is a PR."""
    from botreg.resources import template_dir

    repo = root / "registry"
    shutil.copytree(template_dir(), repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "registry from the template")
    git(repo, "checkout", "-q", "-b", "change")
    guide = repo / "bots/product-guide.yaml"
    guide.write_text(
        guide.read_text()
        .replace("model: gpt-4o-mini", "model: gpt-4o")
        .replace("Help users get started", "Help new users get started")
    )
    helpdesk = repo / "bots/internal-helpdesk.yaml"
    helpdesk.write_text(helpdesk.read_text().replace("status: inactive", "status: active"))
    env = repo / "environments/production.yaml"
    env.write_text(env.read_text().replace("      database: bots\n", "      database: bots_v2\n"))
    refunds = repo / "knowledge/billing/policies/refunds.md"
    refunds.write_text(
        refunds.read_text().replace("5 to 10\nbusiness days", "5 to 7\nbusiness days")
    )
    git(repo, "mv", "knowledge/product/release-notes.txt", "knowledge/product/whats-new.txt")
    (repo / "knowledge/billing/invoices.md").write_text(
        "# Invoices\n\nInvoices are issued on the first day of each billing cycle.\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a sample pull request")
    return repo


def main() -> int:
    from botreg.cli import main as botreg

    with tempfile.TemporaryDirectory() as tmp:
        repo = sample_pull_request(Path(tmp))
        return botreg(["review", "--repo", str(repo), "--base", "main", "--head", "change"])


if __name__ == "__main__":
    sys.exit(main())
