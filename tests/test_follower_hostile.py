"""The application side against a hostile stream or server (issue 11, attacker findings).

Whoever can XADD to the stream writes the entries a follower reads, and a
"Redis" answering slowly is as possible as one that is down: each test here is
an attack that, on the code before its fix, stalled a follower, broke reads, or
leaked a password. Real redis-server processes; fake servers are plain sockets.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from tests.helpers import wait_for
from tests.redis_server import redis_server
from tests.test_redis_follower import STREAM, Collector, append, bot_event

from botreg.api import HTTPRegistryBackend, RedisEventFollower, create_event_bus
from botreg.api.events import Event, EventType
from botreg.events.model import CloudEvent

PROJECT = Path(__file__).resolve().parent.parent
DEEP = "[" * 200_000 + "]" * 200_000  # 400 KB: json.loads raises RecursionError
COMMIT = "0123456789abcdef" * 2 + "01234567"  # a full 40-hex commit id


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def warnings_of(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level and r.name == "botreg.api"]


def debug_lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == logging.DEBUG and text in r.getMessage())


# -- 1. malformed entries, failing subscribers, persistent failures -------------------


def test_a_deeply_nested_entry_is_skipped_and_later_events_arrive(
    redis_url: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="botreg.api")
    append(client, bot_event(1))
    client.xadd(STREAM, {"id": "deep", "type": "t", "event": DEEP})
    client.xadd(STREAM, {"topic": "registry:bots", "id": "app", "data": DEEP})  # seed-style
    append(client, bot_event(2))
    follower = RedisEventFollower(redis_url, start="0", block_ms=100)
    got = Collector()
    follower.subscribe(got)
    follower.start()
    try:
        wait_for(lambda: got.ids() == ["event-0001", "event-0002"])
        assert follower.skipped == 1
        assert follower.outages == 0
    finally:
        follower.stop()
    assert warnings_of(caplog) == []  # no outage, no traceback: a debug line each


def test_a_deeply_nested_entry_is_acknowledged_in_a_consumer_group(
    redis_url: str, client: redis.Redis
) -> None:
    append(client, bot_event(1))
    client.xadd(STREAM, {"id": "deep", "type": "t", "event": DEEP})
    events = [bot_event(n) for n in range(2, 8)]
    for event in events:
        append(client, event)
    follower = RedisEventFollower(
        redis_url, group="workers", consumer="c1", start="0", block_ms=100
    )
    got = Collector()
    follower.subscribe(got)
    follower.start()
    try:
        wait_for(lambda: len(got.ids()) == 7)
        assert got.ids() == ["event-0001"] + [e.id for e in events]
        wait_for(lambda: client.xpending(STREAM, "workers")["pending"] == 0)  # XACKed too
        assert follower.outages == 0
    finally:
        follower.stop()


def test_a_failing_subscriber_is_logged_and_the_follower_moves_on(
    redis_url: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    follower = RedisEventFollower(redis_url, block_ms=100)
    got = Collector()

    def explode(event: CloudEvent) -> None:
        if event.id == "event-0001":
            raise RecursionError("a subscriber's own bug")

    follower.subscribe(explode)
    follower.subscribe(got)
    follower.start()
    try:
        append(client, bot_event(1))
        append(client, bot_event(2))
        wait_for(lambda: got.ids() == ["event-0001", "event-0002"])
        assert follower.outages == 0
    finally:
        follower.stop()
    assert any("subscriber failed" in r.getMessage() for r in caplog.records)


def test_a_read_that_keeps_failing_backs_off_with_one_warning(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each reconnect succeeds and the same read fails again: the backoff must not
    reset on the reconnect (it did: ~10 warning + 'back' pairs a second)."""
    caplog.set_level(logging.DEBUG, logger="botreg.api")
    follower = RedisEventFollower(redis_url, start="not-an-id", block_ms=100)
    follower.start()
    try:
        wait_for(lambda: debug_lines(caplog, "still unreachable") >= 3)  # 3 retries (0.7 s)
    finally:
        follower.stop()
    warnings = [m for m in warnings_of(caplog) if "unreachable" in m]
    assert len(warnings) == 1, warnings
    assert follower.outages == 1
    assert not [r for r in caplog.records if "is back" in r.getMessage()]


@pytest.mark.parametrize("group", [None, "g"])
def test_a_key_that_is_not_a_stream_is_one_error_not_an_outage_loop(
    redis_url: str, client: redis.Redis, caplog: pytest.LogCaptureFixture, group: str | None
) -> None:
    caplog.set_level(logging.DEBUG, logger="botreg.api")
    if group is None:
        client.set("wt", "x")
    else:
        client.lpush("wt", "x")
    follower = RedisEventFollower(redis_url, "wt", group=group, start="0", block_ms=100)
    follower.start()
    try:
        wait_for(lambda: debug_lines(caplog, "still not a stream") >= 2)
    finally:
        follower.stop()
    errors = warnings_of(caplog)
    assert len(errors) == 1, errors
    assert "redis key wt" in errors[0] and "not a stream" in errors[0]
    assert follower.outages == 0


# -- 2. forged botreg.sync.completed ----------------------------------------------------


def completed(to: Any, n: int) -> CloudEvent:
    return CloudEvent("botreg.sync.completed", "forged", f"done-{n}", data={"to": to})


def test_applied_commit_takes_only_a_full_commit_id(redis_url: str, client: redis.Redis) -> None:
    follower = RedisEventFollower(redis_url, block_ms=100)
    got = Collector()
    follower.subscribe(got)
    follower.start()
    try:
        append(client, completed(COMMIT, 0))
        bad = ["--upload-pack=x", "HEAD", "abc123", COMMIT.upper(), COMMIT + "0", 42, None]
        for n, to in enumerate(bad, 1):
            append(client, completed(to, n))
        append(client, completed("e" * 64, 99))  # a SHA-256 repository's commit id
        wait_for(lambda: len(got.ids()) == len(bad) + 2)
        assert follower.applied_commit == "e" * 64
        seen: list[str] = []
        follower.subscribe(lambda e: seen.append(follower.applied_commit))
        append(client, completed("--upload-pack=x", 100))
        wait_for(lambda: seen)
        assert seen == ["e" * 64]  # the forged one left it alone
    finally:
        follower.stop()


class Applied:
    def __init__(self, commit: str) -> None:
        self.applied_commit = commit


def test_a_commit_the_daemon_never_applies_delays_reads_but_never_breaks_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A forged `to` of 40 f's made every read wait and fail with 409; a non-hex one
    made every read fail with 400. Now: one warning per commit, the served commit."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        at = request.url.params.get("at")
        if at is not None and not all(c in "0123456789abcdef" for c in at):
            return httpx.Response(400, json={"error": "at must be a commit id"})
        if at is not None and at != COMMIT:
            return httpx.Response(409, json={"error": f"commit {at} is not applied here"})
        item = {"bot_id": "a", "config": {"x": 1}, "status": "active"}
        body = [item] if request.url.path == "/bots" else item
        return httpx.Response(200, json=body, headers={"X-Botreg-Commit": COMMIT})

    follower = Applied("f" * 40)
    backend = HTTPRegistryBackend(
        "http://daemon:8080", consistent_with=follower, transport=httpx.MockTransport(answer)
    )

    async def scenario() -> None:
        for _ in range(3):
            registration = await backend.get("a")
            assert registration is not None and registration.config == {"x": 1}
            assert registration.commit == COMMIT  # what the daemon served
        # refused once after the daemon's wait, it is not asked for again: one wait,
        # not one per read (every read waited 5 s until the next real commit)
        assert [r.url.params.get("at") for r in seen] == ["f" * 40, None, None, None]
        follower.applied_commit = "--upload-pack=x"
        seen.clear()
        assert await backend.get_config("a") == {"x": 1}
        assert "at" not in seen[0].url.params  # not a commit id: never sent
        follower.applied_commit = COMMIT
        seen.clear()
        assert await backend.list_ids() == ["a"]
        assert [r.url.params.get("at") for r in seen] == [COMMIT]  # applied: no fallback
        await backend.close()

    asyncio.run(scenario())
    warnings = warnings_of(caplog)
    assert len(warnings) == 1 and "f" * 40 in warnings[0], warnings  # once per commit


# -- 3. a password full of reserved characters ------------------------------------------


def test_the_seed_bus_connects_with_a_password_full_of_reserved_characters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "s3cr%t/p@ss:#?x"
    with redis_server(tmp_path / "redis", password=password) as port:
        config = {
            "backend": "redis",
            "host": "127.0.0.1",
            "port": port,
            "password": password,
            "stream": "pw",
            "block_ms": 100,
        }

        async def scenario() -> list[str]:
            publisher, listener = create_event_bus(config), create_event_bus(config)
            heard: list[str] = []
            await listener.subscribe("registry:bots", lambda e: heard.append(e.payload["n"]))
            await publisher.connect()
            await listener.connect()
            try:
                event = Event(EventType.UPDATED, "registry:bots", {"n": "one"})
                await publisher.publish("registry:bots", event)
                while not heard:  # another "process" got it: both authenticated
                    await asyncio.sleep(0.02)
                return heard
            finally:
                await publisher.close()
                await listener.close()

        assert asyncio.run(asyncio.wait_for(scenario(), 20)) == ["one"]
        assert redis.Redis(port=port, password=password).xlen("pw") == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "s3cr" not in logged


# -- 4. a server that trickles its reply ------------------------------------------------


class Trickle:
    """A fake Redis answering any command with a never-ending array, one item per 50 ms."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.trickling = threading.Event()
        self.done = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                if not conn.recv(65536):
                    return
                conn.sendall(b"*1000000\r\n")
                while not self.done.wait(0.05):
                    conn.sendall(b":1\r\n")
                    self.trickling.set()
            except OSError:
                return

    def close(self) -> None:
        self.done.set()
        self.server.close()


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    server = Trickle()
    yield server
    server.close()


def test_stop_ends_a_read_a_trickling_server_holds(
    trickle: Trickle, caplog: pytest.LogCaptureFixture
) -> None:
    follower = RedisEventFollower(f"redis://127.0.0.1:{trickle.port}/0", start="0", block_ms=200)
    follower.start()
    thread = follower._thread
    assert thread is not None
    assert trickle.trickling.wait(10)
    follower.stop()  # joins for block_ms + 1 s at most
    assert not thread.is_alive()
    assert follower.outages == 0
    assert warnings_of(caplog) == []  # a stop is not an outage


def test_a_reply_that_outlives_its_deadline_is_an_outage(
    trickle: Trickle, caplog: pytest.LogCaptureFixture
) -> None:
    follower = RedisEventFollower(
        f"redis://127.0.0.1:{trickle.port}/0", start="0", block_ms=100, reply_deadline=0.5
    )
    follower.start()
    try:
        wait_for(lambda: follower.outages == 1)
    finally:
        follower.stop()
    warnings = warnings_of(caplog)
    assert len(warnings) == 1 and "no complete answer within 0.5 s" in warnings[0], warnings


# -- 5. memory: large entries ----------------------------------------------------------

# A follower process reading the whole stream; prints its peak RSS (MB) before and
# after, once the small event behind the large entries arrived.
MEMORY_SCRIPT = r"""
import sys, threading
from botreg.api import RedisEventFollower
def peak():
    # this process's own peak: ru_maxrss is inherited across fork and exec, so in a
    # child of pytest it starts at pytest's peak and hides what the follower adds
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise SystemExit("no VmHWM")
follower = RedisEventFollower(sys.argv[1], start="0", block_ms=100)
done = threading.Event()
follower.subscribe(lambda e: done.set())
before = peak()
follower.start()
assert done.wait(60), "the small event never arrived"
print(before, peak(), follower.skipped, flush=True)
follower.stop()
"""

ENTRIES, ENTRY_MB = 6, 8


def test_large_entries_are_read_one_at_a_time(redis_url: str, client: redis.Redis) -> None:
    """Six 8 MB entries (over max_entry_bytes) then a small event: the follower
    reads them one at a time, so its peak is that of one entry (about 6x its size,
    parsed), not of six (it read all six in one reply before)."""
    big = b"x" * (ENTRY_MB * 1024 * 1024)
    for _ in range(ENTRIES):
        client.xadd(STREAM, {"event": big})
    del big
    append(client, bot_event(1))
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, redis_url],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=60,
        check=True,
    ).stdout
    before, after, skipped = map(int, out.split())
    assert skipped == ENTRIES
    print("peak growth MB", after - before)
    # one 8 MB entry costs ~50 MB at its peak; all six in one reply cost ~6 times that
    assert after - before < 2 * 7 * ENTRY_MB, (before, after)


def test_a_restarted_follower_still_has_its_reply_deadline(trickle: Trickle) -> None:
    follower = RedisEventFollower(
        f"redis://127.0.0.1:{trickle.port}/0", start="0", block_ms=100, reply_deadline=0.5
    )
    follower.start()
    follower.stop()
    follower.start()  # again, after stop() closed the first watchdog
    try:
        wait_for(lambda: follower.outages == 1)
    finally:
        follower.stop()
