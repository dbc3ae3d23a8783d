"""Benchmark the read model: GET /bots, GET /bots/{id}, GitRegistryBackend and its poll.

Usage: python bench/api.py [--bots 1000] [--large] [--repeat 50]

For each registry size (1,000 bots; 10,000 more with `--large`, a few minutes
for the first sync) a synthetic registry is generated in a temporary folder,
a daemon runs in this process (`Daemon.run` in a thread, listening on
loopback), and the table shows median times of:

- `GET /bots/{id}` and `GET /bots` over the daemon's socket (whatever HTTP
  layer it runs), the daemon's `_bot` / `_bots` behind them, and the read
  model's pre-rendered bodies (`bots_json` / `bot_json`: the masked JSON the
  HTTP layer would otherwise make at every request);
- `GitRegistryBackend(data_dir=...)`: `get`, `list_active`, and a
  `RegistryPoller.poll_once` with no new commit;
- after one bot file changes and the daemon applies it: the poll that reports
  it (with the bot files it parsed), the first `GET /bots/{id}` once the daemon
  has warmed its read model, and the bot files the daemon parsed from the
  commit to that GET (the target: 1, whichever of the warm and the GET moved
  the index).

The daemon warms its read model after each cycle, so its first `GET` after a
start is served from the warm index; `GitRegistryBackend`'s first read (a full
load of its own index: every bot file parsed once per process) is shown apart.
Targets (issue #10): at 1,000 bots, `GET /bots/{id}` under 10 ms median,
`GET /bots` under 200 ms, a poll with no change under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from corpus import build_registry
from machine import machine_line
from sync import commit, git

from botreg.api.git_backend import GitRegistryBackend, applied_commit
from botreg.api.reload import RegistryPoller
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import SyncOptions

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
TARGETS = {
    "GET /bots/{id}": "< 10 ms",
    "GET /bots": "< 200 ms",
    "poll, no change": "< 50 ms",
}


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def median(call: Callable[[], Any], repeat: int) -> float:
    return statistics.median(timed(call) for _ in range(repeat))


def fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=600) as response:
        return json.loads(response.read())


def wait_applied(data: Path, sha: str, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while applied_commit(data) != sha:
        if time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not apply {sha[:12]} within {timeout} s")
        time.sleep(0.05)


def wait_warm(daemon: Daemon, sha: str, timeout: float = 600) -> None:
    """Wait until the daemon's read model is at `sha` (it warms it after each cycle)."""
    deadline = time.monotonic() + timeout
    while daemon.read_model._state[0] != sha:
        if time.monotonic() > deadline:
            raise SystemExit(f"the read model did not reach {sha[:12]} within {timeout} s")
        time.sleep(0.01)


def run(bots: int, repeat: int, workdir: Path) -> dict[str, str]:
    """Measure one registry size; returns measure -> formatted value."""
    repo = build_registry(workdir / f"registry-{bots}", bots=bots, knowledge=5)
    git(repo, "init", "-q", "-b", "main")
    head = commit(repo, "initial")
    data = workdir / f"data-{bots}"
    daemon = Daemon(
        SyncOptions(repo.as_uri(), data_dir=data, allow_env=("OPENAI_*", "ANTHROPIC_*")),
        DaemonOptions(listen="127.0.0.1:0", interval=3600),
    )
    thread = threading.Thread(target=daemon.run, daemon=True)
    out: dict[str, str] = {}
    started = time.perf_counter()
    thread.start()
    try:
        wait_applied(data, head)
        out["first sync (s)"] = f"{time.perf_counter() - started:.1f}"
        while daemon.http is None:
            time.sleep(0.01)
        url = f"http://{daemon.http.address}"
        ids = [f"bot-{i:04d}" for i in range(0, bots, max(1, bots // repeat))][:repeat]

        wait_warm(daemon, head)
        out["GET /bots/{id}, first (the daemon warmed the read model)"] = (
            f"{timed(lambda: fetch(f'{url}/bots/{ids[0]}')):.1f} ms"
        )
        samples = [timed(lambda b=b: fetch(f"{url}/bots/{b}")) for b in ids]  # type: ignore[misc]
        out["GET /bots/{id}"] = f"{statistics.median(samples):.1f} ms"
        listed = fetch(f"{url}/bots")
        assert len(listed) == bots + 3, len(listed)
        out["GET /bots"] = f"{median(lambda: fetch(f'{url}/bots'), 5):.0f} ms"
        out["Daemon._bot"] = f"{median(lambda: daemon._bot(ids[1]), repeat):.2f} ms"
        out["Daemon._bots"] = f"{median(daemon._bots, 5):.1f} ms"
        model = daemon.read_model
        model.bots_json()  # renders each bot once
        out["read model bot_json (a /bots/{id} body)"] = (
            f"{median(lambda: model.bot_json(ids[1]), repeat):.2f} ms"
        )
        out["read model bots_json (the /bots body)"] = f"{median(model.bots_json, 5):.1f} ms"

        backend = GitRegistryBackend(data_dir=data)
        poller = RegistryPoller(backend, poll_interval=3600)

        async def backend_reads() -> None:
            cold = time.perf_counter()
            await backend.list_active()
            out["backend list_active, first (full load)"] = (
                f"{(time.perf_counter() - cold) * 1000:.0f} ms"
            )
            loop_samples = []
            for b in ids:
                t = time.perf_counter()
                await backend.get(b)
                loop_samples.append((time.perf_counter() - t) * 1000)
            out["backend get"] = f"{statistics.median(loop_samples):.2f} ms"
            lists = []
            for _ in range(5):
                t = time.perf_counter()
                await backend.list_active()
                lists.append((time.perf_counter() - t) * 1000)
            out["backend list_active"] = f"{statistics.median(lists):.0f} ms"
            await poller.poll_once()  # the first snapshot
            polls = []
            for _ in range(repeat):
                t = time.perf_counter()
                assert await poller.poll_once() == []
                polls.append((time.perf_counter() - t) * 1000)
            out["poll, no change"] = f"{statistics.median(polls):.2f} ms"

        asyncio.run(backend_reads())

        # one bot changes; the daemon applies it, then warms its read model. The
        # parses are counted from before the commit to after the first GET, so the
        # count does not depend on which of the warm and the GET came first
        changed = ids[2]
        assert daemon.read_model._index is not None
        daemon_index = daemon.read_model._index
        before = daemon_index.parses
        path = repo / "bots" / f"{changed}.yaml"
        path.write_text(path.read_text().replace("top_k: 5", "top_k: 6"))
        sha = commit(repo, "one bot")
        daemon.wake()
        wait_applied(data, sha)
        wait_warm(daemon, sha)
        first = timed(lambda: fetch(f"{url}/bots/{changed}"))
        out["GET /bots/{id}, first after one change (read model warmed)"] = f"{first:.1f} ms"
        out["one change: bot files the daemon parsed (apply to first GET)"] = (
            f"{daemon_index.parses - before}"
        )

        async def poll_change() -> None:
            index = backend._bot_index
            assert index is not None
            before = index.parses
            t = time.perf_counter()
            assert await poller.poll_once() == [changed]
            took = (time.perf_counter() - t) * 1000
            out["poll, one change"] = f"{took:.0f} ms, {index.parses - before} parsed"
            await backend.close()

        asyncio.run(poll_change())
    finally:
        daemon.stop()
        thread.join(timeout=120)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bots", type=int, default=1000)
    parser.add_argument("--large", action="store_true", help="also 10,000 bots (minutes)")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    os.environ.update(GIT_ENV)
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key-0123456789")
    os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-bench-not-a-real-key-0123456789")
    sizes = [args.bots, 10_000] if args.large else [args.bots]
    results: dict[int, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="botreg-bench-api-") as tmp:
        for size in sizes:
            results[size] = run(size, args.repeat, Path(tmp))
    rows = list(results[sizes[0]])
    print(machine_line())
    header = "| measure | " + " | ".join(f"{s:,} bots" for s in sizes) + " | target |"
    print(header)
    print("|" + "---|" * (len(sizes) + 2))
    for row in rows:
        cells = " | ".join(results[s].get(row, "") for s in sizes)
        print(f"| {row} | {cells} | {TARGETS.get(row, '')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
