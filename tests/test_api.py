"""The registry API: backends, caching managers, hot reload, against real repositories."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from botreg import (
    CachingRegistryManager,
    ConfigCachingManager,
    EventLogFollower,
    GitRegistryBackend,
    HotReloadManager,
    InMemoryBackend,
    Registration,
    RegistryBackend,
    RegistryPoller,
    RegistryValidationError,
    ReloadMode,
    ResolvedConfig,
)
from botreg.events import EventBus
from conftest import git
from sync_helpers import SyncHarness, commit, start_watching_daemon

ECHO = {"name": "Echo", "llm": {"provider": "echo"}}


class Bot:
    def __init__(self, bot_id: str, config: dict[str, Any]) -> None:
        self.bot_id, self.config, self.closed = bot_id, config, False


class Manager(CachingRegistryManager[Bot]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.destroyed_ids: list[str] = []

    async def _create_instance(self, bot_id: str, config: dict[str, Any]) -> Bot:
        return Bot(bot_id, config)

    async def _destroy_instance(self, instance: Bot) -> None:
        instance.closed = True
        self.destroyed_ids.append(instance.bot_id)


def test_in_memory_backend_follows_the_protocol() -> None:
    async def scenario() -> None:
        backend = InMemoryBackend()
        assert isinstance(backend, RegistryBackend)
        await backend.initialize()
        registration = await backend.register("a", {**ECHO, "status": "active"})
        assert isinstance(registration, Registration) and registration.is_active
        await backend.register("b", ECHO, status="inactive")
        assert await backend.get_config("a") == {**ECHO, "status": "active"}
        assert [r.bot_id for r in await backend.list_active()] == ["a"]
        # the seed's semantics: ids and count of ACTIVE bots; list_all for every one
        assert await backend.list_ids() == ["a"] and await backend.count() == 1
        assert [r.bot_id for r in await backend.list_all()] == ["a", "b"]
        assert not await backend.exists("b") and await backend.get("b") is not None
        assert await backend.deactivate("a") and not (await backend.get("a")).is_active  # type: ignore[union-attr]
        assert await backend.unregister("b") and not await backend.exists("b")
        assert not await backend.deactivate("nope") and not await backend.unregister("nope")
        await backend.close()

    asyncio.run(scenario())


def test_git_backend_reads_a_revision(git_registry: Path) -> None:
    async def scenario() -> None:
        backend = GitRegistryBackend(repo=git_registry)
        await backend.initialize()
        assert isinstance(backend, RegistryBackend)
        assert await backend.list_ids() == ["billing-assistant", "product-guide"]  # active
        assert [r.bot_id for r in await backend.list_all()] == [
            "billing-assistant",
            "internal-helpdesk",
            "product-guide",
        ]
        assert not await backend.exists("internal-helpdesk")
        assert [r.bot_id for r in await backend.list_active()] == [
            "billing-assistant",
            "product-guide",
        ]
        guide = await backend.get("product-guide")
        assert guide is not None and guide.commit == git(git_registry, "rev-parse", "HEAD").strip()
        assert guide.config["llm"]["model"] == "gpt-4o-mini"
        assert guide.created_at == guide.updated_at
        assert await backend.get("nope") is None and await backend.count() == 2
        await backend.close()

    asyncio.run(scenario())


def test_git_backend_writes_through_gitops(git_registry: Path) -> None:
    async def scenario() -> None:
        backend = GitRegistryBackend(repo=git_registry)
        await backend.initialize()
        path = git_registry / "bots/product-guide.yaml"
        path.write_text(path.read_text().replace("memory:\n", "# keep me\nmemory:\n"))
        commit(git_registry, "a comment")
        config = dict((await backend.get_config("product-guide")) or {})
        config["llm"] = {**config["llm"], "temperature": 0.9}
        before = git(git_registry, "rev-parse", "HEAD").strip()
        updated = await backend.register("product-guide", config)
        assert updated.commit != before and updated.config["llm"]["temperature"] == 0.9
        text = path.read_text()
        assert "# keep me\nmemory:" in text and text.startswith("# yaml-language-server")
        assert git(git_registry, "log", "-1", "--format=%s").strip() == "Update bot product-guide"
        assert git(git_registry, "status", "--porcelain") == ""

        new = await backend.register("new-bot", ECHO)
        assert new.status == "active" and (git_registry / "bots/new-bot.yaml").is_file()

        with pytest.raises(RegistryValidationError) as info:
            await backend.register("bad-bot", {"name": "x", "llm": {"provider": "nope"}})
        assert {f.code for f in info.value.findings} >= {"BR201"}
        assert not (git_registry / "bots/bad-bot.yaml").exists()
        with pytest.raises(RegistryValidationError):
            await backend.register(
                "new-bot",
                {
                    **ECHO,
                    "llm": {
                        "provider": "openai",
                        "model": "m",
                        "api_key": "sk-abcdefghijklmnopqrstuvwx",
                    },
                },
            )
        assert (await backend.get("new-bot")).config == {**ECHO, "status": "active"}  # type: ignore[union-attr]

        assert await backend.deactivate("new-bot")
        assert not (await backend.get("new-bot")).is_active  # type: ignore[union-attr]
        assert await backend.unregister("new-bot") and not await backend.exists("new-bot")
        assert not await backend.unregister("new-bot")
        log = git(git_registry, "log", "--format=%s", "-4").strip().split("\n")
        assert log == [
            "Unregister bot new-bot",
            "Deactivate bot new-bot",
            "Register bot new-bot",
            "Update bot product-guide",
        ]
        await backend.close()

    asyncio.run(scenario())


def test_writes_are_applied_by_the_daemon(git_registry: Path, tmp_path: Path) -> None:
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        harness.sync()

        async def write() -> str:
            backend = GitRegistryBackend(repo=git_registry)
            registration = await backend.register("from-api", ECHO)
            await backend.close()
            return registration.commit

        sha = asyncio.run(write())
        result = harness.sync()
        assert result.result == "synced" and result.to_commit == sha
        assert [e.data["bot_id"] for e in harness.of("botreg.bot.created")] == ["from-api"]

        async def read() -> list[str]:
            backend = GitRegistryBackend(data_dir=tmp_path / "data")
            ids = await backend.list_ids()
            await backend.close()
            return ids

        assert "from-api" in asyncio.run(read())  # the daemon's applied commit
    finally:
        harness.close()


def test_cache_ttl_lru_and_invalidation() -> None:
    async def scenario() -> None:
        backend = InMemoryBackend()
        for name in ("a", "b", "c"):
            await backend.register(name, ECHO)
        await backend.register("off", ECHO, status="inactive")
        manager = Manager(backend, cache_ttl=0.2, max_cache_size=2)
        await manager.initialize()
        a = await manager.get_or_create("a")
        assert await manager.get_or_create("a") is a and manager.created == 1
        await asyncio.sleep(0.3)  # past the TTL
        a2 = await manager.get_or_create("a")
        assert a2 is not a and a.closed and manager.created == 2
        await manager.get_or_create("b")
        await manager.get_or_create("a")  # a is now the most recently used
        await manager.get_or_create("c")  # evicts b, the least recently used
        assert manager.cached_ids() == ["a", "c"] and manager.destroyed_ids == ["a", "b"]
        assert await manager.invalidate("c") and not await manager.invalidate("c")
        assert await manager.invalidate_all() == 1
        with pytest.raises(Exception, match="inactive"):
            await manager.get_or_create("off")
        with pytest.raises(Exception, match="not registered"):
            await manager.get_or_create("zzz")
        await manager.close()

    asyncio.run(scenario())


def test_in_process_events_invalidate_exactly_the_changed_bot(
    git_registry: Path, tmp_path: Path
) -> None:
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")

    async def scenario() -> None:
        harness.sync()
        backend = GitRegistryBackend(data_dir=tmp_path / "data")
        manager = Manager(backend, event_bus=harness.bus, cache_ttl=3600)
        await manager.initialize()
        await manager.get_or_create("product-guide")
        await manager.get_or_create("billing-assistant")
        guide = git_registry / "bots/product-guide.yaml"
        guide.write_text(guide.read_text().replace("temperature: 0.5", "temperature: 0.6"))
        commit(git_registry)
        harness.sync()  # the daemon's cycle publishes on this thread
        for _ in range(100):
            if manager.cached_ids() == ["billing-assistant"]:
                break
            await asyncio.sleep(0.01)
        assert manager.cached_ids() == ["billing-assistant"]
        assert manager.destroyed_ids == ["product-guide"]
        fresh = await manager.get_or_create("product-guide")
        assert fresh.config["llm"]["temperature"] == 0.6
        await manager.close()
        await backend.close()

    try:
        asyncio.run(scenario())
    finally:
        harness.close()


def test_a_daemon_in_another_process_invalidates_through_its_event_log(
    git_registry: Path, tmp_path: Path
) -> None:
    """`botreg sync --watch` runs as its own process; the app follows its event log."""
    data = tmp_path / "data"
    proc = start_watching_daemon(git_registry, data)

    async def scenario() -> float:
        follower = EventLogFollower(data / "events.jsonl", poll=0.05)
        follower.start()
        backend = GitRegistryBackend(data_dir=data)
        manager = Manager(backend, event_bus=follower, cache_ttl=3600)
        await manager.initialize()
        await manager.get_or_create("product-guide")
        await manager.get_or_create("billing-assistant")
        await asyncio.sleep(0.3)
        guide = git_registry / "bots/product-guide.yaml"
        guide.write_text(guide.read_text().replace("temperature: 0.5", "temperature: 0.6"))
        started = time.monotonic()
        commit(git_registry)
        while manager.cached_ids() != ["billing-assistant"]:
            assert time.monotonic() - started < 20, manager.cached_ids()
            await asyncio.sleep(0.01)
        latency = time.monotonic() - started
        assert (await manager.get_or_create("product-guide")).config["llm"]["temperature"] == 0.6
        await manager.close()
        follower.stop()
        await backend.close()
        return latency

    try:
        latency = asyncio.run(scenario())
        print(f"commit -> invalidation: {latency:.3f} s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_config_caching_manager_resolves_for_an_environment(
    git_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "key-from-the-environment")

    async def scenario() -> None:
        backend = GitRegistryBackend(repo=git_registry)
        bus = EventBus()
        manager = ConfigCachingManager(backend, environment="development", event_bus=bus)
        await manager.initialize()
        resolved = await manager.get("billing-assistant")
        assert isinstance(resolved, ResolvedConfig)
        assert resolved.version == git(git_registry, "rev-parse", "HEAD").strip()
        assert resolved.environment == "development"
        assert resolved.config["llm"]["endpoint"]["api_key"] == "key-from-the-environment"
        assert resolved.config["conversation_storage"]["backend"] == "sqlite"
        assert await manager.get("billing-assistant") is resolved
        from botreg.events import CloudEvent

        bus.publish(CloudEvent("botreg.environment.changed", "s", "id-1", data={}))
        await asyncio.sleep(0.05)
        assert await manager.get("billing-assistant") is not resolved  # everything dropped
        await manager.close()
        memory = ConfigCachingManager(InMemoryBackend(), environment={"resources": {}})
        with pytest.raises(Exception, match="not registered"):
            await memory.get("x")

    asyncio.run(scenario())


def test_poller_and_hot_reload_modes() -> None:
    async def scenario() -> None:
        backend = InMemoryBackend()
        await backend.register("a", ECHO)
        seen: list[tuple[str, Any, Any]] = []
        poller = RegistryPoller(
            backend, poll_interval=3600, on_change=lambda b, o, n: seen.append((b, o, n))
        )
        await poller.poll_once()
        await backend.update("a", {**ECHO, "name": "Changed"})
        await backend.register("b", ECHO)
        assert await poller.poll_once() == ["a", "b"]
        assert seen[0][0] == "a" and seen[0][2]["name"] == "Changed" and seen[1][1] is None

        manager = Manager(backend, cache_ttl=3600)
        await manager.initialize()
        polling = HotReloadManager(backend, manager, mode=ReloadMode.POLLING, polling_interval=0.05)
        await polling.initialize()
        await manager.get_or_create("a")
        await backend.update("a", {**ECHO, "name": "Again"})
        for _ in range(100):
            if not manager.cached_ids():
                break
            await asyncio.sleep(0.02)
        assert manager.cached_ids() == []
        await polling.shutdown()

        bus = EventBus()
        events = HotReloadManager(
            backend, manager, event_bus=bus, mode=ReloadMode.HYBRID, polling_interval=3600
        )
        await events.initialize()
        await manager.get_or_create("a")
        await manager.get_or_create("b")
        from botreg.events import CloudEvent

        await asyncio.to_thread(
            bus.publish, CloudEvent("botreg.bot.updated", "s", "id-2", data={"bot_id": "b"})
        )
        for _ in range(100):
            if manager.cached_ids() == ["a"]:
                break
            await asyncio.sleep(0.01)
        assert manager.cached_ids() == ["a"]
        await events.shutdown()
        with pytest.raises(ValueError, match="needs an event_bus"):
            HotReloadManager(backend, manager, mode=ReloadMode.EVENT_DRIVEN)
        await manager.close()

    asyncio.run(scenario())


def test_git_backend_can_push(git_registry: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(git_registry), str(remote))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(remote), str(clone))

    async def scenario() -> str:
        backend = GitRegistryBackend(repo=clone, push=True)
        registration = await backend.register("pushed-bot", ECHO)
        await backend.close()
        return registration.commit

    sha = asyncio.run(scenario())
    assert git(remote, "rev-parse", "main").strip() == sha


def test_bot_events_wait_for_their_commit_to_complete() -> None:
    """The daemon emits change events before it applies the commit: invalidating at
    once would let a rebuilt instance read the old config."""
    from botreg.events import CloudEvent

    async def scenario() -> None:
        backend = InMemoryBackend()
        for name in ("a", "b"):
            await backend.register(name, ECHO)
        bus = EventBus()
        manager = Manager(backend, event_bus=bus, cache_ttl=3600)
        await manager.initialize()
        await manager.get_or_create("a")
        await manager.get_or_create("b")
        bus.publish(
            CloudEvent("botreg.bot.updated", "s", "1", data={"bot_id": "a", "commit": "c1"})
        )
        await asyncio.sleep(0.02)
        assert manager.cached_ids() == ["a", "b"]  # held: c1 is not applied yet
        bus.publish(CloudEvent("botreg.sync.rejected", "s", "2", data={"to": "c1"}))
        bus.publish(CloudEvent("botreg.sync.completed", "s", "3", data={"to": "c1"}))
        await asyncio.sleep(0.02)
        assert manager.cached_ids() == ["a", "b"]  # the rejection dropped what was held
        bus.publish(
            CloudEvent("botreg.bot.updated", "s", "4", data={"bot_id": "b", "commit": "c2"})
        )
        bus.publish(CloudEvent("botreg.sync.completed", "s", "5", data={"to": "c2"}))
        await asyncio.sleep(0.02)
        assert manager.cached_ids() == ["a"]
        await manager.close()

    asyncio.run(scenario())
