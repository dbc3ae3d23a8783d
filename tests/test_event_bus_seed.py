"""The seed's event bus (`create_event_bus`, `Event`, `EventType`) on memory and on Redis."""

from __future__ import annotations

import asyncio
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
from botreg.api.events import RedisEventBus
from botreg.events.model import CloudEvent


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


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_the_seeds_complete_example_runs(backend: str, redis_url: str) -> None:
    config = {"backend": backend, "url": redis_url} if backend == "redis" else {"backend": backend}
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
    with pytest.raises(ValueError, match="unknown event bus backend 'kafka'"):
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
