"""Benchmark the sync daemon: latency, incremental cycle cost, memory.

Usage: python bench/sync.py [--files 2000] [--commits 5]

Prints a table:
- commit-to-event latency (commit made -> `botreg.sync.completed` in the event
  log) with `--watch` and with a signed push webhook (target: under 1 s);
- one changed file in a repository of 2,000 knowledge files (bench/corpus.py:
  1 to 40 chunks each): the wall time from the signal to its event and texts
  embedded, next to the wall time of a full ingest of the same repository (daemon
  start to event): wall against wall (target: at least 50 times less work and
  time); the cycle's own phase times are shown apart;
- daemon memory (RSS) while idle and its peak during the full ingest;
- the machine (cores, CPU, load) beside the table.

The event log is read as the daemon writes it: a line it has not finished
writing is left for the next read (`read_events`).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from corpus import build_corpus, doc_path
from machine import machine_line

from botreg.resources import template_dir

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=ENV, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_registry(root: Path, files: int) -> Path:
    shutil.copytree(template_dir(), root)
    build_corpus(root, files)
    git(root, "init", "-q", "-b", "main")
    commit(root, "initial")
    return root


def read_events(events: Path) -> list[dict[str, Any]]:
    """The events of a JSON-lines log the daemon is writing: complete lines only.

    The last line may be half-written (no newline yet): it is left for the next
    read. A complete line that is not a JSON object is skipped.
    """
    try:
        data = events.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n")[:-1]:  # the piece after the last newline is unfinished
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def completed_at(events: Path, commit_id: str, timeout: float = 600) -> float:
    """Wall time at which the log shows `sync.completed` for a commit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in read_events(events):
            data = event.get("data") or {}
            if event.get("type") == "botreg.sync.completed" and data.get("to") == commit_id:
                return time.time()
        time.sleep(0.005)
    raise SystemExit(f"no sync.completed for {commit_id} within {timeout} s")


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def start_daemon(source: Path, data: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "botreg",
            "sync",
            "--source",
            str(source),
            "--data-dir",
            str(data),
            "--interval",
            "3600",
            *extra,
        ],
        env=ENV,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def latency(repo: Path, data: Path, commits: int, trigger: Any) -> list[float]:
    out = []
    for i in range(commits):
        (repo / "knowledge" / "billing" / f"latency-{time.time_ns()}.md").write_text(
            f"# Latency {i}\n\nMeasured.\n"
        )
        sha = commit(repo, f"latency {i}")
        made = time.time()
        trigger()
        out.append(completed_at(data / "events.jsonl", sha) - made)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="botreg-sync-bench-"))
    rows: list[tuple[str, str, str]] = []
    try:
        # --- latency with --watch (a small registry) ---
        small = make_registry(work / "small", 20)
        proc = start_daemon(small, work / "watch-data", "--watch", "--listen", "off")
        completed_at(work / "watch-data" / "events.jsonl", git(small, "rev-parse", "HEAD"))
        time.sleep(0.5)
        watch = latency(small, work / "watch-data", args.commits, lambda: None)
        stop(proc)
        rows.append(
            (
                "commit -> event, --watch (median / max)",
                f"{statistics.median(watch):.3f} / {max(watch):.3f} s",
                "< 1 s",
            )
        )

        # --- latency with the push webhook ---
        secret = work / "secret"
        secret.write_text("bench-secret")
        port = 18470 + os.getpid() % 1000
        proc = start_daemon(
            small,
            work / "hook-data",
            "--listen",
            f"127.0.0.1:{port}",
            "--webhook-secret-file",
            str(secret),
        )
        completed_at(work / "hook-data" / "events.jsonl", git(small, "rev-parse", "HEAD"))
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        signature = "sha256=" + hmac.new(b"bench-secret", body, hashlib.sha256).hexdigest()

        def push() -> None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/hooks/git",
                data=body,
                headers={"X-Hub-Signature-256": signature, "X-GitHub-Event": "push"},
            )
            urllib.request.urlopen(request, timeout=10).close()

        hook = latency(small, work / "hook-data", args.commits, push)
        stop(proc)
        rows.append(
            (
                "commit -> event, push webhook (median / max)",
                f"{statistics.median(hook):.3f} / {max(hook):.3f} s",
                "< 1 s",
            )
        )

        # --- one changed file in a large repository, and memory ---
        big = make_registry(work / "big", args.files)
        data = work / "big-data"
        proc = start_daemon(big, data, "--listen", "off")
        peak = 0
        sampling = True

        def sample() -> None:
            nonlocal peak
            while sampling:
                try:
                    peak = max(peak, rss_kib(proc.pid)[1])
                except (OSError, ValueError, KeyError):
                    return
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        head = git(big, "rev-parse", "HEAD")
        started = time.time()
        completed_at(data / "events.jsonl", head, timeout=1800)
        full_time = time.time() - started
        sampling = False
        sampler.join()
        time.sleep(3)
        idle_rss = rss_kib(proc.pid)[0]
        full_events = read_events(data / "events.jsonl")
        full_embedded = next(e for e in full_events if e["type"] == "botreg.sync.completed")[
            "data"
        ]["counts"]["chunks_embedded"]
        path = big / doc_path(7)
        head = "## Section 0 of document 7\n\n"
        path.write_text(path.read_text().replace(head, f"{head}Edited. ", 1))
        sha = commit(big, "one file")
        os.kill(proc.pid, signal.SIGHUP)
        made = time.time()
        completed_at(data / "events.jsonl", sha)
        one_time = time.time() - made
        events = read_events(data / "events.jsonl")
        done = [e for e in events if e["type"] == "botreg.sync.completed"][-1]
        one_embedded = done["data"]["counts"]["chunks_embedded"]
        phases = done["data"]["durations"]  # the cycle's own account, shown apart
        stop(proc)
        rows += [
            (
                f"full ingest, {args.files + 7} knowledge files (daemon start -> event)",
                f"{full_time:.2f} s wall, {full_embedded} texts embedded",
                "",
            ),
            (
                "one file changed (SIGHUP -> event)",
                f"{one_time:.3f} s wall, {one_embedded} text{'s' * (one_embedded != 1)} embedded",
                ">= 50x less",
            ),
            (
                "  ratio full / one-file (wall / wall)",
                f"{full_time / max(one_time, 1e-9):.0f}x time, "
                f"{full_embedded / max(one_embedded, 1):.0f}x work",
                ">= 50x",
            ),
            (
                "  the one-file cycle's phases",
                ", ".join(f"{k} {v:.3f}" for k, v in phases.items()) + " s",
                "",
            ),
            (
                "daemon RSS idle / peak during full ingest",
                f"{idle_rss / 1024:.0f} MiB / {peak / 1024:.0f} MiB",
                "",
            ),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"\n{machine_line()}")
        print(f"\n| {'measure':<{width}} | {'result':<52} | target")
        print(f"|{'-' * (width + 2)}|{'-' * 54}|--------")
        for name, value, target in rows:
            print(f"| {name:<{width}} | {value:<52} | {target}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
