"""Benchmark botreg scaled out: two daemons (leader and standby), Redis Streams, a
Chroma server and application processes following the stream.

Usage: python bench/scale.py [--bots 5000] [--chunks 100000] [--rate 200]
                             [--minutes 5] [--apps 8] [--lease 5]

What runs, all on 127.0.0.1: redis-server (Debian's package), `chroma run`, two
`botreg sync --watch --events-redis --ha-redis` daemons on one registry of
`--bots` bots and a knowledge domain of about `--chunks` chunks (the offline
hash embedding), and `--apps` application processes, each a
`RedisEventFollower` feeding a `CachingRegistryManager` through a
`HotReloadManager` (event-driven) over `HTTPRegistryBackend`. The driver then
commits `--rate` bot changes per minute (one bot per commit) for `--minutes`.

Prints a table: the machine; the initial full ingest; sync cycle time p50/p95
(the leader's `botreg.sync.completed` events); commit-to-application
invalidation latency p50/p95 (a commit made -> an app invalidated that bot,
over every app and commit; target p95 under 1 s); daemon and app RSS; the
stream's length; and a failover: the leader SIGKILLed, one more commit made,
the time until the standby holds the lease and until every app has it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from corpus import build_registry  # noqa: E402
from machine import machine_line  # noqa: E402
from sync import ENV, commit, git, rss_kib  # noqa: E402
from tests.chroma_server import chroma_server, free_port  # noqa: E402
from tests.redis_server import redis_server  # noqa: E402

STREAM = "botreg:events"
WATCHED: list[subprocess.Popen[bytes]] = []  # processes that must stay up
KILLED: list[subprocess.Popen[bytes]] = []  # ... unless the bench killed them
LOGS: dict[int, Path] = {}  # pid -> its log

# One application process: follows the stream, keeps bots cached, and prints one
# JSON line per invalidation (bot id, time) so the driver can measure latency.
APP = r"""
import asyncio, json, signal, sys, time
from botreg.api import (CachingRegistryManager, HotReloadManager, HTTPRegistryBackend,
                        RedisEventFollower, ReloadMode)

redis_url, daemons = sys.argv[1], sys.argv[2].split(",")


class Manager(CachingRegistryManager):
    async def _create_instance(self, bot_id, config):
        return config

    async def _destroy_instance(self, instance):
        pass

    async def invalidate(self, bot_id):
        print(json.dumps({"bot": bot_id, "t": time.time()}), flush=True)
        return await super().invalidate(bot_id)


async def main():
    follower = RedisEventFollower(redis_url, "botreg:events")
    backend = HTTPRegistryBackend(daemons[0], consistent_with=follower)
    manager = Manager(backend=backend, cache_ttl=3600)
    await manager.initialize()
    reload = HotReloadManager(backend, manager, event_bus=follower, mode=ReloadMode.EVENT_DRIVEN)
    await reload.initialize()
    follower.start()
    print(json.dumps({"ready": time.time()}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await reload.shutdown()
    follower.stop()


asyncio.run(main())
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def build(root: Path, bots: int, chunks: int, chroma_port: int) -> int:
    """The registry: `bots` bots, and a domain `big` of about `chunks` chunks."""
    build_registry(root, bots=bots, knowledge=50)
    sections = 50  # one chunk each (a short section is one chunk)
    files = max(1, chunks // sections)
    words = "refund invoice plan seat workspace project automation export billing".split()
    for i in range(files):
        rnd = random.Random(i)
        body = [f"# Big document {i}\n"]
        for s in range(sections):
            text = " ".join(rnd.choice(words) for _ in range(rnd.randint(20, 40)))
            body.append(f"## Part {s} of document {i}\n\n{text.capitalize()}.\n")
        folder = root / "knowledge" / "big" / f"part-{i % 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"doc-{i:05d}.md").write_text("\n".join(body))
    # the development environment's resources, with the store on the Chroma server
    development = (root / "environments" / "development.yaml").read_text()
    resources = development[development.index("resources:") : development.index("knowledge:")]
    (root / "environments" / "scale.yaml").write_text(
        "name: scale\ndescription: the scale benchmark\n" + resources + "knowledge:\n"
        f'  store: {{type: http, host: "${{STORE_HOST:127.0.0.1}}", port: {chroma_port}}}\n'
        "  embedding: {provider: hash, dimensions: 384}\n"
    )
    git(root, "init", "-q", "-b", "main")
    commit(root, "initial")
    return files * sections


def start_daemon(
    repo: Path,
    data: Path,
    port: int,
    redis_url: str,
    lease: float,
    log: Path,
    chroma_port: int,
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "botreg",
            "sync",
            "--source",
            str(repo),
            "--env",
            "scale",
            "--store-host",
            f"127.0.0.1:{chroma_port}",
            "--data-dir",
            str(data),
            "--watch",
            "--interval",
            "30",
            "--listen",
            f"127.0.0.1:{port}",
            "--events-redis",
            redis_url,
            "--ha-redis",
            redis_url,
            "--lease-seconds",
            str(lease),
        ],
        env={**ENV, "ANONYMIZED_TELEMETRY": "False"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    LOGS[proc.pid] = log
    return proc


def readyz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return dict(json.load(answer))
    except urllib.error.HTTPError as exc:
        return dict(json.load(exc))
    except OSError:
        return {}


def applied(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
            return str(json.load(answer).get("applied_commit", ""))
    except OSError:
        return ""


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait(condition: Any, timeout: float, what: str, step: float = 0.05) -> float:
    say(f"waiting for {what}")
    started = time.monotonic()
    while not condition():
        for proc in WATCHED:  # a daemon that exited: say so now, not at the timeout
            if proc.poll() is not None and proc not in KILLED:
                log = LOGS.get(proc.pid)
                tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
                raise SystemExit(f"a daemon exited {proc.returncode}:\n{tail}")
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - started


def completed_cycles(data: Path) -> list[dict[str, Any]]:
    out = []
    log = data / "events.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:  # a line being written
                continue
            if event.get("type") == "botreg.sync.completed":
                out.append(event["data"])
    return out


class App:
    def __init__(self, redis_url: str, daemons: str, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-c", APP, redis_url, daemons],
            env=ENV,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def invalidated(self, bot: str, after: float) -> float | None:
        for line in self.lines():
            if line.get("bot") == bot and line["t"] >= after:
                return float(line["t"])
        return None


def change_bot(repo: Path, bot: int, version: int) -> None:
    path = repo / "bots" / f"bot-{bot:04d}.yaml"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = f"description: Synthetic bot {bot}, revision {version}.\n"
    path.write_text("".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=5000)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=200, help="bot changes per minute")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--apps", type=int, default=8)
    parser.add_argument("--lease", type=float, default=5, help="--lease-seconds")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="botreg-scale-"))
    rows: list[tuple[str, str]] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with redis_server(work / "redis") as redis_port, chroma_server(work / "chroma") as cport:
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            repo = work / "registry"
            chunks = build(repo, args.bots, args.chunks, cport)
            ports = [free_port(), free_port()]
            data = [work / "daemon-a", work / "daemon-b"]
            head = git(repo, "rev-parse", "HEAD")

            started = time.monotonic()
            a = start_daemon(repo, data[0], ports[0], redis_url, args.lease, work / "a.log", cport)
            procs.append(a)
            WATCHED.append(a)
            wait(lambda: applied(ports[0]) == head, 3600, "the initial full ingest", 0.5)
            rows.append(
                (
                    f"initial full ingest ({args.bots} bots, ~{chunks} chunks)",
                    f"{time.monotonic() - started:.1f} s",
                )
            )
            b = start_daemon(repo, data[1], ports[1], redis_url, args.lease, work / "b.log", cport)
            procs.append(b)
            WATCHED.append(b)
            wait(lambda: readyz(ports[1]).get("role") == "standby", 600, "the standby")
            wait(lambda: applied(ports[1]) == head, 600, "the standby to follow")

            daemons = ",".join(f"http://127.0.0.1:{p}" for p in ports)
            apps = [App(redis_url, daemons, work / f"app-{i}.log") for i in range(args.apps)]
            procs.extend(app.proc for app in apps)
            wait(lambda: all(any("ready" in x for x in app.lines()) for app in apps), 120, "apps")

            # the load: one bot per commit, `rate` commits per minute
            made: list[tuple[str, int, float]] = []
            spacing = 60.0 / args.rate
            count = int(args.rate * args.minutes)
            rnd = random.Random(7)
            next_at = time.monotonic()
            for version in range(1, count + 1):
                bot = rnd.randrange(args.bots)
                change_bot(repo, bot, version)
                t = time.time()
                made.append((commit(repo, f"bot {bot} revision {version}"), bot, t))
                next_at += spacing
                time.sleep(max(0.0, next_at - time.monotonic()))
            last = made[-1][0]
            wait(lambda: applied(ports[0]) == last, 300, "the leader to apply the last commit")
            time.sleep(2)  # the stream's tail reaches the apps

            latencies: list[float] = []
            missed = 0
            for _sha, bot, t in made:
                for app in apps:
                    seen = app.invalidated(f"bot-{bot:04d}", t)
                    if seen is None:
                        missed += 1
                    else:
                        latencies.append(seen - t)
            # a cycle's phases (fetch, validate, diff, emit, ingest), as its completed event says
            cycles = [sum(c["durations"].values()) for c in completed_cycles(data[0])[1:]]
            rows += [
                (f"load: bot changes, {args.rate}/min for {args.minutes:g} min", f"{count}"),
                ("sync cycles (leader)", f"{len(cycles)}"),
                (
                    "cycle time p50 / p95",
                    f"{percentile(cycles, 0.5):.3f} s / {percentile(cycles, 0.95):.3f} s",
                ),
                (
                    f"commit -> app invalidation p50 / p95 ({args.apps} apps)",
                    f"{percentile(latencies, 0.5):.3f} s / {percentile(latencies, 0.95):.3f} s",
                ),
                ("invalidations missed", f"{missed} of {count * args.apps}"),
                (
                    "daemon RSS now / peak (leader)",
                    "{} / {} MiB".format(*(v // 1024 for v in rss_kib(a.pid))),
                ),
                (
                    "daemon RSS now / peak (standby)",
                    "{} / {} MiB".format(*(v // 1024 for v in rss_kib(b.pid))),
                ),
                ("app RSS max", f"{max(rss_kib(x.proc.pid)[0] for x in apps) // 1024} MiB"),
            ]
            import redis

            client = redis.Redis.from_url(redis_url)
            rows.append(("Redis stream length (entries)", f"{client.xlen(STREAM)}"))

            # failover: the leader dies; the standby takes over and applies the next commit
            leader = 0 if readyz(ports[0]).get("role") == "leader" else 1
            standby = 1 - leader
            killed = time.monotonic()
            KILLED.append(procs[leader])
            procs[leader].send_signal(signal.SIGKILL)
            procs[leader].wait()
            bot = 1
            change_bot(repo, bot, count + 1)
            t = time.time()
            sha = commit(repo, "after the failover")
            took = wait(
                lambda: readyz(ports[standby]).get("role") == "leader", 4 * args.lease, "takeover"
            )
            wait(lambda: applied(ports[standby]) == sha, 600, "the new leader to apply")
            applied_after = time.monotonic() - killed
            wait(
                lambda: all(app.invalidated(f"bot-{bot:04d}", t) for app in apps),
                120,
                "the apps to see the commit after the failover",
            )
            seen_after = max(app.invalidated(f"bot-{bot:04d}", t) or 0 for app in apps) - t
            rows += [
                (f"failover: lease taken over (lease {args.lease:g} s)", f"{took:.2f} s"),
                ("failover: next commit applied by the new leader", f"{applied_after:.2f} s"),
                ("failover: every app invalidated", f"{seen_after:.2f} s"),
            ]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)

    print(machine_line())
    width = max(len(k) for k, _ in rows)
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for key, value in rows:
        print(f"| {key:<{width}} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
