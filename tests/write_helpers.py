"""Helpers for the HTTP write tests: a daemon with writes on, over a bare source."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import SyncOptions
from botreg.events.log import read_events
from conftest import git
from helpers import wait_for

TOKEN = "write-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ECHO = {"name": "Echo", "llm": {"provider": "echo"}}


def source_repo(git_registry: Path, tmp_path: Path) -> Path:
    """A bare clone of the template registry: the daemon's source (pushable)."""
    bare = tmp_path / "source.git"
    git(tmp_path, "clone", "-q", "--bare", str(git_registry), str(bare))
    return bare


class Served:
    """A daemon in a thread with writes on (or off), and a client for its API."""

    def __init__(self, source: Path, data: Path, token: Path, **options: Any) -> None:
        self.source = source
        self.data = data
        self.daemon = Daemon(
            SyncOptions(source.as_uri(), data_dir=data),
            DaemonOptions(
                **{
                    "listen": "127.0.0.1:0",
                    "interval": 3600,
                    "api_token_file": token,
                    "allow_writes": True,
                    **options,
                }
            ),
        )
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()
        wait_for(self.completed, timeout=60)
        http = wait_for(lambda: self.daemon.http)
        self.url = f"http://{http.address}"
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def completed(self) -> list[str]:
        log = self.data / "events.jsonl"
        if not log.exists():
            return []
        found = read_events(log)
        return [e["data"]["to"] for e in found if e["type"] == "botreg.sync.completed"]

    def head(self) -> str:
        return git(self.source, "rev-parse", "main").strip()

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        headers = {**(AUTH if auth else {}), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def stop(self) -> None:
        self.client.close()
        self.daemon.stop()
        self.thread.join(timeout=30)


def daemons(git_registry: Path, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """The body of a `serve` fixture: start daemons over one bare source, stop them after."""
    source = source_repo(git_registry, tmp_path)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    started: list[Served] = []

    def start(**options: Any) -> Served:
        served = Served(source, tmp_path / f"data{len(started)}", token, **options)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()
