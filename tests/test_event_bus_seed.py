"""The seed's event bus (`create_event_bus`, `Event`, `EventType`) on memory and on Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from botreg.api import (
    CachingRegistryManager,
    Event,
    EventType,
    HotReloadManager,
    InMemoryBackend,
    ReloadMode,
    create_event_bus,
)
from botreg.api.eventlog_bus import EventLogEventBus
from botreg.api.events import EventBusBase, RedisEventBus
from botreg.events.log import EventLog
from botreg.events.model import CloudEvent
from conftest import git
from sync_helpers import start_watching_daemon


class Bot:
    def __init__(self, bot_id: str, config: dict[str, Any]) -> None:
        self.bot_id = bot_id
        self.config = config

    async def chat(self, message: str) -> str:
        return f"Bot {self.bot_id} received: {message}"

    async def close(self) -> None:
        pass


class BotManager(CachingRegistryManager[Bot]):
    async def _create_instance(self, bot_id: str, config: dict[str, Any]) -> Bot:
        return Bot(bot_id, config)

    async def _destroy_instance(self, instance: Bot) -> None:
        await instance.close()


async def complete_example(config: dict[str, Any]) -> tuple[Bot, Bot]:
    """The seed's "Complete Example", as written there (only the bus config varies)."""
    event_bus = create_event_bus(config)
    await event_bus.connect()
    backend = InMemoryBackend()
    await backend.initialize()
    await backend.register(
        "support-bot",
        {
            "llm": {"provider": "anthropic", "model": "claude-3-sonnet"},
            "system_prompt": "You are a helpful support agent.",
        },
    )
    manager = BotManager(backend=backend, event_bus=event_bus, cache_ttl=300)
    await manager.initialize()
    hot_reload = HotReloadManager(
        backend=backend, caching_manager=manager, event_bus=event_bus, mode=ReloadMode.EVENT_DRIVEN
    )
    await hot_reload.initialize()
    before = await manager.get_or_create("support-bot")
    assert await before.chat("Hello!") == "Bot support-bot received: Hello!"
    await backend.update(
        "support-bot",
        {
            "llm": {"provider": "anthropic", "model": "claude-3-opus"},
            "system_prompt": "You are a helpful support agent.",
        },
    )
    await event_bus.publish(
        "registry:bots",
        Event(type=EventType.UPDATED, topic="registry:bots", payload={"bot_id": "support-bot"}),
    )
    await asyncio.sleep(0.1)
    after = await manager.get_or_create("support-bot")
    await hot_reload.shutdown()
    await manager.close()
    await event_bus.close()
    return before, after


@pytest.mark.parametrize("backend", ["memory", "redis", "eventlog"])
def test_the_seeds_complete_example_runs(backend: str, request: pytest.FixtureRequest) -> None:
    config: dict[str, Any] = {"backend": backend}
    if backend == "redis":
        config["url"] = request.getfixturevalue("redis_url")
    if backend == "eventlog":
        config["data_dir"] = str(request.getfixturevalue("tmp_path") / "data")
    before, after = asyncio.run(asyncio.wait_for(complete_example(config), 30))
    assert before.config["llm"]["model"] == "claude-3-sonnet"
    assert after is not before  # the cached instance was invalidated by the event
    assert after.config["llm"]["model"] == "claude-3-opus"


def test_events_an_app_publishes_reach_other_processes_once(redis_url: str) -> None:
    async def scenario() -> None:
        first = create_event_bus({"backend": "redis", "url": redis_url, "block_ms": 100})
        second = create_event_bus({"backend": "redis", "url": redis_url, "block_ms": 100})
        await first.connect()
        await second.connect()
        got: dict[str, list[Event]] = {"first": [], "second": []}

        async def on_first(event: Event) -> None:  # the seed's users write async handlers
            got["first"].append(event)

        def on_second(event: Event) -> None:
            got["second"].append(event)

        await first.subscribe("orders:custom", on_first)
        await second.subscribe("orders:custom", on_second)
        event = Event(EventType.CREATED, "orders:custom", {"order": 7})
        await first.publish("orders:custom", event)
        assert [e.id for e in got["first"]] == [event.id]  # ran before publish returned
        while not got["second"]:
            await asyncio.sleep(0.01)
        [received] = got["second"]
        assert (received.id, received.type, received.payload) == (
            event.id,
            EventType.CREATED,
            {"order": 7},
        )
        await first.publish("orders:custom", Event(EventType.DELETED, "orders:custom"))
        while len(got["second"]) < 2:
            await asyncio.sleep(0.01)
        assert len(got["first"]) == 2  # its own entry, read back from the stream, is skipped
        await first.close()
        await second.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_daemons_cloudevents_arrive_on_the_seeds_topics(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)

    def append(event: CloudEvent) -> None:
        client.xadd("botreg:events", {"id": event.id, "type": event.type, "event": event.to_json()})

    async def scenario() -> None:
        bus = create_event_bus({"backend": "redis", "url": redis_url, "block_ms": 100})
        assert isinstance(bus, RedisEventBus)
        await bus.connect()
        bots: list[Event] = []
        knowledge: list[Event] = []

        async def on_bots(event: Event) -> None:
            bots.append(event)

        async def on_knowledge(event: Event) -> None:
            knowledge.append(event)

        await bus.subscribe("registry:bots", on_bots)
        subscription = await bus.subscribe("knowledge:ingestion", on_knowledge)
        c = "c" * 40  # applied_commit takes only a full commit id
        append(CloudEvent("botreg.bot.created", "d", "e1", data={"bot_id": "a", "commit": c}))
        append(CloudEvent("botreg.sync.completed", "d", "e2", data={"to": c}))
        append(CloudEvent("botreg.knowledge.ingested", "d", "e3", data={"domain": "billing"}))
        append(CloudEvent("botreg.bot.deactivated", "d", "e4", data={"bot_id": "a"}))
        append(CloudEvent("botreg.bot.deactivated", "d", "e4", data={"bot_id": "a"}))  # again
        append(CloudEvent("botreg.knowledge.ingest_failed", "d", "e5", data={"domain": "x"}))
        while len(bots) < 2 or len(knowledge) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # nothing else is coming: a duplicate would land here
        assert [(e.type, e.payload["bot_id"]) for e in bots] == [
            (EventType.CREATED, "a"),
            (EventType.DEACTIVATED, "a"),
        ]
        assert [(e.type, e.topic) for e in knowledge] == [
            (EventType.UPDATED, "knowledge:ingestion"),
            (EventType.FAILED, "knowledge:ingestion"),
        ]
        assert bus.follower.applied_commit == c
        await bus.unsubscribe(subscription)
        append(CloudEvent("botreg.knowledge.ingested", "d", "e6", data={"domain": "b"}))
        append(CloudEvent("botreg.bot.updated", "d", "e7", data={"bot_id": "z"}))
        while len(bots) < 3:
            await asyncio.sleep(0.01)
        assert len(knowledge) == 2  # unsubscribed before e6
        await bus.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        client.close()


def test_bus_configs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'memory', 'redis' or 'eventlog'"):
        create_event_bus({"backend": "kafka"})
    with pytest.raises(ValueError, match="needs 'url' or 'host'"):
        create_event_bus({"backend": "redis"})
    bus = create_event_bus(
        {"backend": "redis", "host": "cache.internal", "port": 6380, "ssl": True, "stream": "s"}
    )
    assert isinstance(bus, RedisEventBus)
    assert (bus.url, bus.stream) == ("rediss://cache.internal:6380/0", "s")
    with pytest.raises(TypeError, match="subscribe"):
        create_event_bus({"backend": "memory"}).subscribe("topic-without-handler")


def test_importing_the_api_loads_neither_redis_nor_httpx() -> None:
    import subprocess
    import sys

    code = (
        "import sys, botreg.api\n"
        "print(sorted({'redis', 'httpx'} & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class Handlers:
    """A sync and an async handler that record, and one of each that raise."""

    def __init__(self) -> None:
        self.sync: list[str] = []
        self.async_: list[str] = []

    def ok(self, event: Event) -> None:
        self.sync.append(event.id)

    async def ok_async(self, event: Event) -> None:
        await asyncio.sleep(0.01)  # really awaited: a coroutine never run would not record
        self.async_.append(event.id)

    def broken(self, event: Event) -> None:
        raise RuntimeError("sync handler bug")

    async def broken_async(self, event: Event) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async handler bug")

    async def subscribe(self, bus: EventBusBase, topic: str) -> None:
        for handler in (self.broken, self.ok, self.broken_async, self.ok_async):
            await bus.subscribe(topic, handler)


def test_memory_bus_runs_sync_and_async_handlers_and_counts_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        bus = create_event_bus({"backend": "memory"})
        await bus.connect()
        handlers = Handlers()
        await handlers.subscribe(bus, "registry:bots")
        event = Event(EventType.CREATED, "registry:bots", {"bot_id": "a"})
        with caplog.at_level(logging.ERROR, logger="botreg.api"):
            await bus.publish("registry:bots", event)
        assert handlers.sync == handlers.async_ == [event.id]  # all ran before publish returned
        assert bus.handler_errors == 2
        assert sum("event handler failed" in r.getMessage() for r in caplog.records) == 2

        def bad_source(_event: CloudEvent) -> None:
            raise ValueError("subscriber bug")

        unsubscribe = bus.subscribe(bad_source)
        await bus.publish("registry:bots", Event(EventType.UPDATED, "registry:bots"))
        assert bus.handler_errors == 5  # the CloudEvent subscriber's failure counts too
        unsubscribe()

        async def not_a_cloudevent_callback(_event: CloudEvent) -> None:
            return None

        with pytest.raises(TypeError, match=r"subscribe\(topic, handler\)"):
            bus.subscribe(not_a_cloudevent_callback)
        subscription = await bus.subscribe("other", handlers.ok)
        await subscription.cancel()  # the seed's spelling
        await bus.publish("other", Event(EventType.CREATED, "other"))
        assert len(handlers.sync) == 2
        await bus.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


async def wait_until(condition: Any, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("backend", ["redis", "eventlog"])
def test_followed_events_run_sync_and_async_handlers_and_count_failures(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Events from another process arrive on the follower's thread: handlers run on the loop."""
    event = CloudEvent("botreg.bot.updated", "d", "e1", data={"bot_id": "a"})
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        config: dict[str, Any] = {"backend": "redis", "url": url, "block_ms": 100}
        client = redis.Redis.from_url(url)

        def append() -> None:
            client.xadd("botreg:events", {"id": "e1", "type": event.type, "event": event.to_json()})
    else:
        config = {"backend": "eventlog", "data_dir": str(tmp_path), "poll": 0.02}
        log = EventLog(tmp_path / "events.jsonl")

        def append() -> None:
            log.append(event)

    async def scenario() -> None:
        bus = create_event_bus(config)
        await bus.connect()
        handlers = Handlers()
        await handlers.subscribe(bus, "registry:bots")
        append()
        await wait_until(lambda: handlers.sync and handlers.async_, "handlers did not run")
        await wait_until(lambda: bus.handler_errors == 2, "failures were not counted")
        assert handlers.sync == handlers.async_ == ["e1"]
        await bus.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_eventlog_bus_follows_a_daemon_in_another_process(
    git_registry: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    proc = start_watching_daemon(git_registry, data)

    async def scenario() -> None:
        bus = create_event_bus({"backend": "eventlog", "data_dir": str(data), "poll": 0.05})
        assert isinstance(bus, EventLogEventBus) and bus.path == data / "events.jsonl"
        await bus.connect()
        bots: list[Event] = []

        async def on_bots(event: Event) -> None:
            bots.append(event)

        await bus.subscribe("registry:bots", on_bots)
        guide = git_registry / "bots/product-guide.yaml"
        guide.write_text(guide.read_text().replace("temperature: 0.5", "temperature: 0.6"))
        git(git_registry, "commit", "-qam", "warmer")
        await wait_until(lambda: bots, "no registry:bots event from the daemon", 30)
        [event] = bots
        assert (event.type, event.payload["bot_id"]) == (EventType.UPDATED, "product-guide")
        assert event.topic == "registry:bots" and bus.handler_errors == 0
        await bus.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_eventlog_bus_configs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs 'data_dir'"):
        create_event_bus({"backend": "eventlog"})
    with pytest.raises(ValueError, match="not both"):
        create_event_bus({"backend": "eventlog", "data_dir": "a", "path": "b"})
    bus = create_event_bus({"backend": "eventlog", "path": str(tmp_path / "x.jsonl")})
    assert isinstance(bus, EventLogEventBus) and bus.path == tmp_path / "x.jsonl"
