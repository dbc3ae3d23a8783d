"""Soak the sync daemon: many commits, then what it holds on disk and in the process.

Usage: python bench/soak.py [--commits 1000] [--no-housekeeping] [--events-max-bytes 1M]

Drives a `Syncer` directly (one cycle per commit, as the daemon's loop does)
over a registry whose knowledge churns: every commit rewrites a few sections of
one file and a bot; every 250 commits a 500-section file is added and removed
again (the deletions that made the store grow), and one commit in 100 is a
force-push that rewrites the last commits (unreachable objects in the mirror).
With housekeeping (the default) the daemon's `Housekeeper` runs after each
cycle with short intervals, as it would over months.

Prints a table: disk use of the mirror, the store and the event log (with its
rotated files), RSS, threads and open file descriptors, at the start (after
the first sync) and at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_line
from sync import commit, git

from botreg.daemon.housekeeping import Housekeeper, HousekeepingOptions
from botreg.daemon.metrics import Metrics
from botreg.daemon.status import DaemonStatus
from botreg.daemon.sync import Syncer, SyncOptions
from botreg.datadir import disk_bytes
from botreg.events import EventBus
from botreg.events.log import EventLog, rotated_logs
from botreg.resources import template_dir


def du(*paths: Path) -> int:
    return sum(disk_bytes(path) for path in paths)


def process() -> dict[str, int]:
    status = Path("/proc/self/status").read_text().splitlines()
    fields = {
        key: value.split()[0]
        for key, _, value in (ln.partition(":") for ln in status)
        if value.split()
    }
    return {
        "rss_kib": int(fields["VmRSS"]),
        "threads": int(fields["Threads"]),
        "python_threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")),
    }


def deleted_but_open(below: Path) -> int:
    """Bytes of files below `below` that were deleted but are still held open by this
    process (Chroma keeps a dropped collection's index files open): disk in use that
    `du` does not see."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(below)) and target.endswith(" (deleted)"):
                total += os.stat(f"/proc/self/fd/{fd}").st_blocks * 512
        except OSError:
            continue
    return total


def sample(data: Path) -> dict[str, int]:
    events = data / "events.jsonl"
    return {
        "mirror_bytes": du(data / "mirror.git"),
        "store_bytes": du(data / "chroma"),
        "store_deleted_open_bytes": deleted_but_open(data / "chroma"),
        "events_bytes": du(*[p for p in [events, *rotated_logs(events)] if p.exists()]),
        "event_files": len(rotated_logs(events)) + events.exists(),
        **process(),
    }


def section(n: int, version: int) -> str:
    words = " ".join(f"t{n}v{version}w{k}" for k in range(30))
    return f"## Topic {n}\n\nRevision {version}: {words}\n"


def churn(repo: Path, step: int) -> None:
    body = "\n".join(section(n, step if n % 4 == step % 4 else 0) for n in range(20))
    (repo / "knowledge/product/churn.md").write_text(body)
    bot = repo / "bots/product-guide.yaml"
    text = bot.read_text()
    marker = "# soak step"
    text = text.split(marker)[0].rstrip("\n") + f"\n{marker} {step}\n"
    bot.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--no-housekeeping", action="store_true")
    parser.add_argument("--events-max-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="botreg-soak-"))
    try:
        repo = root / "registry"
        shutil.copytree(template_dir(), repo)
        git(repo, "init", "-q", "-b", "main")
        churn(repo, 0)
        commit(repo, "initial")
        data = root / "data"
        metrics = Metrics()
        log = EventLog(data / "events.jsonl", max_bytes=args.events_max_bytes, keep=3)
        bus = EventBus(log)
        status = DaemonStatus(
            data / "status.json", source=str(repo), branch="main", environment="development"
        )
        syncer = Syncer(SyncOptions(repo.as_uri(), data_dir=data), bus, status, metrics)
        keeper = None
        if not args.no_housekeeping:
            keeper = Housekeeper.for_syncer(
                syncer,
                HousekeepingOptions(
                    mirror_gc_interval=20,
                    compaction_interval=5,
                    compaction_min_dead=200,
                    compaction_grace=2,
                    disk_interval=30,
                ),
            )
        results: dict[str, int] = {}

        def cycle() -> None:
            result = syncer.sync_once()
            results[result.result] = results.get(result.result, 0) + 1
            if keeper is not None:
                for task, outcome in keeper.run_due().items():
                    results[f"{task}:{outcome}"] = results.get(f"{task}:{outcome}", 0) + 1

        cycle()
        start = sample(data)
        started = time.monotonic()
        for step in range(1, args.commits):
            bulk = repo / "knowledge/product/bulk.md"
            if step % 250 == 1:
                bulk.write_text("\n".join(section(n, step) for n in range(500)))
            elif bulk.exists():
                bulk.unlink()
            churn(repo, step)
            if step % 100 == 0:  # a force-push: the last two commits are rewritten
                git(repo, "reset", "-q", "--soft", "HEAD~2")
            commit(repo, f"step {step}")
            cycle()
            if step % 100 == 0:
                print(f"  {step} commits, {time.monotonic() - started:.0f} s", file=sys.stderr)
        if keeper is not None:  # what a daemon left running would have done by now
            time.sleep(3)
            keeper.run_all()
            cycle()
        end = sample(data)
        elapsed = time.monotonic() - started
        syncer.close()

        print(
            f"\n{args.commits} commits in {elapsed:.0f} s, housekeeping "
            f"{'off' if keeper is None else 'on'}; cycles and tasks: {results}\n"
        )
        print(machine_line())
        print(f"| {'measure':<22} | {'start':>12} | {'end':>12} |")
        print(f"|{'-' * 24}|{'-' * 14}|{'-' * 14}|")
        for key in start:
            print(f"| {key:<22} | {start[key]:>12,} | {end[key]:>12,} |")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
