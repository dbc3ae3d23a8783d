"""RedisEventFollower against a real redis-server: the application side of issue 11.

Entries are written with redis-py in the format of CONTRACT11 section 1
(`XADD <stream> * id <event id> type <type> event <CloudEvent JSON>`), the
format the daemon's sink appends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from tests.helpers import wait_for
from tests.redis_server import redis_server

from botreg.api import (
    HotReloadManager,
    HTTPRegistryBackend,
    InMemoryBackend,
    RedisEventFollower,
    ReloadMode,
)
from botreg.api.caching import CachingRegistryManager, bots_to_invalidate
from botreg.errors import BotregError
from botreg.events.model import CloudEvent

STREAM = "botreg:events"
APPLIED, AHEAD = "c1" * 20, "c2" * 20  # commit ids a daemon serves / has not applied
PROJECT = Path(__file__).resolve().parent.parent


def bot_event(n: int, bot_id: str = "bot", commit: str = "") -> CloudEvent:
    data: dict[str, Any] = {"bot_id": f"{bot_id}-{n}"}
    if commit:
        data["commit"] = commit
    return CloudEvent("botreg.bot.updated", "test", f"event-{n:04d}", data=data)


def append(client: redis.Redis, event: CloudEvent, stream: str = STREAM) -> str:
    """Append one CloudEvent as the daemon's sink does; returns the entry id."""
    entry = client.xadd(stream, {"id": event.id, "type": event.type, "event": event.to_json()})
    return entry.decode() if isinstance(entry, bytes) else str(entry)


class Collector:
    """A subscriber that records what it got, thread-safely."""

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []
        self.lock = threading.Lock()

    def __call__(self, event: CloudEvent) -> None:
        with self.lock:
            self.events.append(event)

    def ids(self) -> list[str]:
        with self.lock:
            return [e.id for e in self.events]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def following(url: str, **kwargs: Any) -> tuple[RedisEventFollower, Collector]:
    follower = RedisEventFollower(url, block_ms=100, **kwargs)
    got = Collector()
    follower.subscribe(got)
    follower.start()
    return follower, got


# A follower process: prints each event id as delivered, exits at "test.end".
FOLLOW_SCRIPT = r"""
import sys, threading
from botreg.api import RedisEventFollower
url, cursor, start = sys.argv[1], sys.argv[2] or None, sys.argv[3]
done, lock = threading.Event(), threading.Lock()
def say(line):
    with lock:  # one line at a time from the follower's thread and this one
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
def on_event(event):
    say(event.id)
    if event.type == "test.end":
        done.set()
follower = RedisEventFollower(url, cursor_file=cursor, start=start, block_ms=100)
follower.subscribe(on_event)
follower.start()
say("ready")
done.wait(60)
follower.stop()
"""


def follow_process(url: str, cursor: Path | None = None, start: str = "$") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", FOLLOW_SCRIPT, url, str(cursor or ""), start],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_four_follower_processes_each_get_every_event_once_in_order(
    redis_url: str, client: redis.Redis
) -> None:
    """Broadcast: every process has its own cursor; entries appended twice (a retried
    batch, same ids) are delivered once."""
    procs = [follow_process(redis_url) for _ in range(4)]  # "$": ready, so later appends count
    try:
        events = [bot_event(n) for n in range(30)]
        for n, event in enumerate(events):
            append(client, event)
            if n % 10 == 9:  # the sink retries a batch: the same ten again
                for again in events[n - 9 : n + 1]:
                    append(client, again)
        append(client, CloudEvent("test.end", "test", "end"))
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            assert out.split() == [e.id for e in events] + ["end"]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_consumer_group_splits_events_and_claims_a_dead_consumers_entries(
    redis_url: str, client: redis.Redis
) -> None:
    # Each consumer holds its first event until the other has one: a split, not a race.
    both = threading.Barrier(2, timeout=20)
    got: dict[str, list[str]] = {"a": [], "b": []}

    def consumer(name: str) -> Any:
        def on_event(event: CloudEvent) -> None:
            got[name].append(event.id)
            if len(got[name]) == 1:
                both.wait()

        return on_event

    followers = []
    for name in ("a", "b"):
        follower = RedisEventFollower(
            redis_url, group="apps", consumer=name, start="0", block_ms=100, count=1
        )
        follower.subscribe(consumer(name))
        followers.append(follower)
    events = [bot_event(n) for n in range(10)]
    for event in events:
        append(client, event)
    for follower in followers:
        follower.start()
    try:
        wait_for(lambda: len(got["a"]) + len(got["b"]) == 10)
        assert got["a"] and got["b"]
        assert sorted(got["a"] + got["b"]) == [e.id for e in events]  # each once, none lost
    finally:
        for follower in followers:
            follower.stop()
    # a consumer that read entries and died before XACK: its entries are claimed
    dead = [bot_event(n) for n in range(10, 15)]
    for event in dead:
        append(client, event)
    client.xreadgroup("apps", "dead", {STREAM: ">"}, count=5)
    assert client.xpending(STREAM, "apps")["pending"] == 5
    claimer = RedisEventFollower(
        redis_url, group="apps", consumer="a", block_ms=100, claim_idle_ms=50
    )
    again = Collector()
    claimer.subscribe(again)
    claimer.start()
    try:
        wait_for(lambda: len(again.ids()) == 5)
        assert again.ids() == [e.id for e in dead]
        wait_for(lambda: client.xpending(STREAM, "apps")["pending"] == 0)  # acked
    finally:
        claimer.stop()


def test_a_redis_restart_mid_stream_skips_and_repeats_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="botreg.api")
    folder = tmp_path / "redis"
    with redis_server(folder) as port:
        url = f"redis://127.0.0.1:{port}/0"
        follower, got = following(url)
        first = redis.Redis(port=port)
        events = [bot_event(n) for n in range(20)]
        for event in events[:10]:
            append(first, event)
        wait_for(lambda: len(got.ids()) == 10)
        first.close()
    try:
        # Redis is down (and, persisting nothing, comes back empty): the follower waits
        wait_for(lambda: follower.outages == 1)
        with redis_server(folder, port=port):
            second = redis.Redis(port=port)
            for event in events[9:]:  # the sink appends its last unconfirmed event again
                append(second, event)
            wait_for(lambda: len(got.ids()) >= 20)
            second.close()
            assert got.ids() == [e.id for e in events]
            assert follower.duplicates == 1
            follower.stop()  # before this server goes: that would be a second outage
    finally:
        follower.stop()
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1, warnings  # one warning per outage, not one per retry


def test_a_password_in_the_url_never_reaches_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.chroma_server import free_port

    caplog.set_level(logging.DEBUG, logger="botreg.api")
    url = f"redis://app:Sup3rSecretPassw0rd@127.0.0.1:{free_port()}/0"  # nothing listens
    follower = RedisEventFollower(url, block_ms=100)
    follower.start()
    try:
        wait_for(lambda: follower.outages == 1)
    finally:
        follower.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "unreachable" in text
    assert "Sup3rSecretPassw0rd" not in text


def test_a_restarted_process_resumes_after_its_last_event(
    redis_url: str, client: redis.Redis, tmp_path: Path
) -> None:
    cursor = tmp_path / "cursor.json"
    events = [bot_event(n) for n in range(10)]
    proc = follow_process(redis_url, cursor)
    try:
        entries = [append(client, e) for e in events[:5]]
        assert proc.stdout is not None
        assert [proc.stdout.readline().strip() for _ in range(5)] == [e.id for e in events[:5]]
        wait_for(
            lambda: cursor.exists() and json.loads(cursor.read_text())["last_id"] == entries[4]
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no goodbye: the cursor file is all it leaves
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    for event in events[5:]:
        append(client, event)  # written while no follower runs
    append(client, CloudEvent("test.end", "test", "end"))
    restarted = follow_process(redis_url, cursor)  # start="$" is overridden by the file
    out, _ = restarted.communicate(timeout=60)
    assert out.split() == [e.id for e in events[5:]] + ["end"]


class Manager(CachingRegistryManager[dict[str, Any]]):
    async def _create_instance(self, bot_id: str, config: dict[str, Any]) -> dict[str, Any]:
        return dict(config)

    async def _destroy_instance(self, instance: dict[str, Any]) -> None:
        return None


def test_a_stream_trimmed_past_the_cursor_yields_a_gap_and_invalidates_everything(
    redis_url: str, client: redis.Redis, tmp_path: Path
) -> None:
    cursor = tmp_path / "cursor.json"
    follower, got = following(redis_url, cursor_file=cursor)
    entry = append(client, bot_event(0))
    wait_for(lambda: got.ids() == ["event-0000"])
    follower.stop()
    for n in range(1, 51):  # while it is away the stream is trimmed to 10 entries
        event = bot_event(n)
        client.xadd(
            STREAM,
            {"id": event.id, "type": event.type, "event": event.to_json()},
            maxlen=10,
            approximate=False,
        )

    async def scenario() -> None:
        backend = InMemoryBackend()
        for bot_id in ("a", "b"):
            await backend.register(bot_id, {"name": bot_id})
        manager = Manager(backend, cache_ttl=3600)
        await manager.initialize()
        restarted = RedisEventFollower(redis_url, cursor_file=cursor, block_ms=100)
        seen = Collector()
        restarted.subscribe(seen)
        reload = HotReloadManager(
            backend, manager, event_bus=restarted, mode=ReloadMode.EVENT_DRIVEN
        )
        await reload.initialize()
        await manager.get_or_create("a")
        await manager.get_or_create("b")
        restarted.start()
        try:
            while len(seen.ids()) < 11 or manager.cached_ids():
                await asyncio.sleep(0.02)
        finally:
            restarted.stop()
            await reload.shutdown()
        gap, *rest = seen.events
        assert gap.type == "botreg.events.gap"
        assert gap.data["after"] == entry  # where it had stopped
        assert [e.id for e in rest] == [f"event-{n:04d}" for n in range(41, 51)]
        assert bots_to_invalidate(gap) == {"*"}
        assert manager.cached_ids() == []  # everything dropped (neither bot was named)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_bot_event_reaches_the_cache_only_after_its_commit_completes(
    redis_url: str, client: redis.Redis
) -> None:
    commit = "c0ffee" * 6 + "abcd"

    async def scenario() -> None:
        backend = InMemoryBackend()
        for bot_id in ("bot-1", "other"):
            await backend.register(bot_id, {"name": bot_id})
        manager = Manager(backend, cache_ttl=3600)
        await manager.initialize()
        follower = RedisEventFollower(redis_url, block_ms=100)
        applied_when_delivered: list[str] = []

        def watch(event: CloudEvent) -> None:
            if event.type == "botreg.sync.completed":
                applied_when_delivered.append(follower.applied_commit)

        follower.subscribe(watch)
        reload = HotReloadManager(
            backend, manager, event_bus=follower, mode=ReloadMode.EVENT_DRIVEN
        )
        await reload.initialize()
        follower.start()
        try:
            await manager.get_or_create("bot-1")
            await manager.get_or_create("other")
            append(client, bot_event(1, commit=commit))
            while follower.delivered < 1:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # the loop runs anything scheduled: nothing was
            assert manager.cached_ids() == ["bot-1", "other"]  # held until applied
            done = CloudEvent(
                "botreg.sync.completed", "test", "done-1", data={"from": "", "to": commit}
            )
            append(client, done)
            while manager.cached_ids() != ["other"]:
                await asyncio.sleep(0.01)
            assert applied_when_delivered == [commit]
            assert follower.applied_commit == commit
        finally:
            follower.stop()
            await reload.shutdown()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_malformed_entries_are_skipped_and_the_follower_keeps_going(
    redis_url: str, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="botreg.api")
    follower, got = following(redis_url, max_entry_bytes=4096)
    try:
        client.xadd(STREAM, {"id": "x", "type": "t", "event": "{not json"})
        client.xadd(STREAM, {"id": "x", "type": "t", "event": json.dumps({"id": "x"})})
        client.xadd(STREAM, {"id": "x", "type": "t", "event": json.dumps([1, 2])})
        client.xadd(STREAM, {"id": "x", "type": "t", "event": b"\xff\xfe"})
        bad_data = {"id": "y", "type": "t", "source": "s", "data": "a string"}
        client.xadd(STREAM, {"id": "y", "type": "t", "event": json.dumps(bad_data)})
        huge = bot_event(7)
        client.xadd(STREAM, {"id": huge.id, "event": huge.to_json() + " " * 50_000})
        client.xadd(STREAM, {"topic": "registry:bots", "data": "{}"})  # an app's own event
        append(client, bot_event(8))
        wait_for(lambda: got.ids() == ["event-0008"])
        assert follower.skipped == 6
    finally:
        follower.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_http_backend_reads_a_daemons_bots(git_registry: Path, tmp_path: Path) -> None:
    from tests.test_daemon import Running

    daemon = Running(str(git_registry), tmp_path / "data")
    try:
        served = wait_for(lambda: daemon.get("/bots")[1])  # once its first cycle applied

        async def scenario() -> None:
            backend = HTTPRegistryBackend(daemon.url)
            await backend.initialize()
            active = sorted(b["bot_id"] for b in served if b["status"] == "active")
            assert await backend.list_ids() == active  # the seed's: active bots only
            assert await backend.count() == len(active)
            assert len(await backend.list_all()) == len(served)
            guide = await backend.get("product-guide")
            assert guide is not None and guide.config["llm"]["model"] == "gpt-4o-mini"
            assert await backend.get("no-such-bot") is None
            assert not await backend.exists("no-such-bot")
            with pytest.raises(BotregError, match="writes are off"):  # no --allow-writes
                await backend.register("x", {})
            await backend.close()

        asyncio.run(scenario())
    finally:
        daemon.stop()


def test_the_http_backend_asks_for_the_followers_applied_commit() -> None:
    import httpx

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.params.get("at") == AHEAD:
            return httpx.Response(409, json={"error": "commit c2 is not applied here"})
        item = {"bot_id": "a", "config": {"x": 1}, "status": "active"}
        return httpx.Response(200, json=item, headers={"X-Botreg-Commit": APPLIED})

    follower = RedisEventFollower("redis://app:T0psecretT0ken@127.0.0.1:1/0")
    backend = HTTPRegistryBackend(
        "http://daemon:8080",
        token="Bearer-s3cret-t0ken",
        consistent_with=follower,
        transport=httpx.MockTransport(answer),
    )

    async def scenario() -> None:
        assert (await backend.get("a")) is not None  # nothing applied yet: no `at`
        assert "at" not in seen[-1].url.params
        assert seen[-1].headers["Authorization"] == "Bearer Bearer-s3cret-t0ken"
        follower.applied_commit = APPLIED
        registration = await backend.get("a/b")
        assert registration is not None and registration.commit == APPLIED
        assert seen[-1].url.params["at"] == APPLIED
        assert seen[-1].url.raw_path.startswith(b"/bots/a%2Fb")
        follower.applied_commit = AHEAD
        # not applied there: the daemon's served commit answers (one warning)
        registration = await backend.get("a")
        assert registration is not None and registration.commit == APPLIED
        assert [r.url.params.get("at") for r in seen[-2:]] == [AHEAD, None]
        await backend.close()

    asyncio.run(scenario())
