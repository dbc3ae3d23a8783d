"""Shared fixtures: real registry repositories in tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from botreg.registry.limits import set_ceilings
from botreg.resources import template_dir

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _git_identity(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout."""
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A copy of the registry template (a plain folder, not a git repository)."""
    root = tmp_path / "registry"
    shutil.copytree(template_dir(), root)
    return root


@pytest.fixture
def git_registry(registry: Path) -> Path:
    """The template as a git repository with one commit on main."""
    git(registry, "init", "-q", "-b", "main")
    git(registry, "add", "-A")
    git(registry, "commit", "-q", "-m", "initial")
    return registry


@pytest.fixture(autouse=True)
def _no_ceilings_from_outside(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Operator ceilings from the developer's shell never change a test's verdict."""
    for name in list(os.environ):
        if name.startswith("BOTREG_MAX_"):
            monkeypatch.delenv(name)
    yield
    set_ceilings(None)  # `--max-...` flags put their ceilings in force for the process


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A fresh redis-server on 127.0.0.1 for this test; its URL (db 0)."""
    from tests.redis_server import redis_server

    with redis_server(tmp_path / "redis") as port:
        yield f"redis://127.0.0.1:{port}/0"
