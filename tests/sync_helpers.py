"""Helpers for daemon tests: a remote registry repository and a syncer over it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from botreg.daemon.metrics import Metrics
from botreg.daemon.status import DaemonStatus
from botreg.daemon.sync import Syncer, SyncOptions
from botreg.events import CloudEvent, EventBus
from botreg.events.log import EventLog
from conftest import git


def commit(repo: Path, message: str = "change") -> str:
    """Stage everything and commit; returns the commit id."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


class SyncHarness:
    """A Syncer over `source` with its data dir, collecting published events."""

    def __init__(self, source: str, data: Path, **options: Any) -> None:
        self.data = data
        self.events: list[CloudEvent] = []
        self.bus = EventBus(EventLog(data / "events.jsonl"))
        self.bus.subscribe(self.events.append)
        self.status = DaemonStatus(
            data / "status.json",
            source=source,
            branch="main",
            environment=options.get("environment", "development"),
        )
        self.syncer = Syncer(
            SyncOptions(source, data_dir=data, **options), self.bus, self.status, Metrics()
        )

    def sync(self) -> Any:
        self.events.clear()
        return self.syncer.sync_once()

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, type_: str) -> list[CloudEvent]:
        return [e for e in self.events if e.type == type_]

    def logged(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.data / "events.jsonl").read_text().splitlines()]

    def stored(self, domain: str) -> set[tuple[str, str]]:
        ledger = self.syncer.ledger
        state = ledger.domain(domain)
        assert state is not None
        store = self.syncer._store
        assert store is not None
        got = store.collection(state.collection).get(include=["documents", "metadatas"])
        return {(m["path"], d) for d, m in zip(got["documents"], got["metadatas"], strict=True)}

    def close(self) -> None:
        self.syncer.close()


def start_watching_daemon(source: Path, data: Path) -> subprocess.Popen[bytes]:
    """`botreg sync --watch` in its own process; returns once the first cycle completed."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "botreg",
            "sync",
            "--source",
            str(source),
            "--data-dir",
            str(data),
            "--watch",
            "--listen",
            "off",
            "--interval",
            "3600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = data / "events.jsonl"
    deadline = time.monotonic() + 60
    while "botreg.sync.completed" not in (log.read_text() if log.exists() else ""):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the daemon did not complete its first cycle")
        time.sleep(0.05)
    return proc
