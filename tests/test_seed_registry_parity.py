"""The registry's semantics made the seed's (issue #12): each test fails on the old ones."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from botreg.api import (
    BotNotFoundError,
    CachingRegistryManager,
    ConfigCachingManager,
    GitRegistryBackend,
    InMemoryBackend,
    RegistryBackend,
    RegistryPoller,
)
from botreg.errors import BotregError
from conftest import git

ECHO: dict[str, Any] = {"name": "Echo", "llm": {"provider": "echo"}}


def run(coroutine: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, 60)

    return asyncio.run(bounded())


async def seeded(kind: str, root: Path) -> RegistryBackend:
    """A backend holding an active "on" bot and an inactive "off" bot."""
    backend: Any = InMemoryBackend() if kind == "memory" else GitRegistryBackend(repo=root)
    await backend.initialize()
    if kind == "git":
        await backend.clear()  # the template's bots
    await backend.register("on", ECHO)
    await backend.register("off", ECHO, status="inactive")
    assert isinstance(backend, RegistryBackend)
    return backend  # type: ignore[no-any-return]


KINDS = ["memory", "git"]


@pytest.mark.parametrize("kind", KINDS)
def test_exists_list_ids_and_count_see_active_bots_list_all_every_bot(
    kind: str, git_registry: Path
) -> None:
    async def scenario() -> None:
        backend = await seeded(kind, git_registry)
        assert await backend.exists("on") and not await backend.exists("off")
        assert await backend.list_ids() == ["on"]
        assert await backend.count() == 1
        assert [(r.bot_id, r.status) for r in await backend.list_all()] == [
            ("off", "inactive"),
            ("on", "active"),
        ]
        assert [r.bot_id for r in await backend.list_active()] == ["on"]
        off = await backend.get("off")  # still readable by id
        assert off is not None and not off.is_active
        await backend.close()

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_update_replaces_the_config_and_keeps_the_status(kind: str, git_registry: Path) -> None:
    async def scenario() -> None:
        backend = await seeded(kind, git_registry)
        changed = {**ECHO, "name": "Changed"}
        updated = await backend.update("off", changed)
        assert (updated.config["name"], updated.status) == ("Changed", "inactive")
        assert not await backend.exists("off")
        again = await backend.update("on", changed)
        assert (again.config["name"], again.status) == ("Changed", "active")
        with pytest.raises(KeyError, match="not registered"):
            await backend.update("nobody", ECHO)
        if kind == "git":
            log = git(git_registry, "log", "--format=%s", "-2").split("\n")[:2]
            assert log == ["Update bot on", "Update bot off"]
            assert git(git_registry, "status", "--porcelain") == ""
        await backend.close()

    run(scenario())


@pytest.mark.parametrize("kind", KINDS)
def test_clear_removes_every_bot(kind: str, git_registry: Path) -> None:
    async def scenario() -> None:
        backend = await seeded(kind, git_registry)
        before = git(git_registry, "rev-list", "--count", "HEAD")
        await backend.clear()
        assert await backend.list_all() == [] and await backend.count() == 0
        if kind == "git":
            # one validated commit for both bots, exactly like register's
            after = git(git_registry, "rev-list", "--count", "HEAD")
            assert int(after) == int(before) + 1
            assert git(git_registry, "log", "-1", "--format=%s").strip() == (
                "Clear registry (2 bots)"
            )
            assert git(git_registry, "ls-files", "bots").strip() == ""
            assert git(git_registry, "status", "--porcelain") == ""
            await backend.clear()  # nothing left: no empty commit
            assert git(git_registry, "rev-list", "--count", "HEAD") == after
        await backend.close()

    run(scenario())


def test_git_clear_and_update_need_a_clone(git_registry: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = GitRegistryBackend(data_dir=tmp_path / "data")
        with pytest.raises(BotregError, match="writes need a clone"):
            await backend.clear()
        with pytest.raises(BotregError, match="writes need a clone"):
            await backend.update("product-guide", ECHO)

    run(scenario())


def test_in_memory_backend_hands_out_copies() -> None:
    async def scenario() -> None:
        backend = InMemoryBackend()
        returned = await backend.register("a", {"llm": {"provider": "echo"}})
        returned.config["llm"]["provider"] = "changed-by-register-result"
        got = await backend.get("a")
        assert got is not None
        got.config["llm"]["provider"] = "changed-by-get"
        (await backend.list_active())[0].config["llm"]["provider"] = "changed-by-list_active"
        (await backend.list_all())[0].config["llm"]["provider"] = "changed-by-list_all"
        (await backend.get_config("a") or {})["llm"]["provider"] = "changed-by-get_config"
        assert await backend.get_config("a") == {"llm": {"provider": "echo"}}

    run(scenario())


class Bot:
    def __init__(self, bot_id: str, config: dict[str, Any]) -> None:
        self.bot_id, self.config, self.closed = bot_id, config, False


class Manager(CachingRegistryManager[Bot]):
    async def _create_instance(self, bot_id: str, config: dict[str, Any]) -> Bot:
        return Bot(bot_id, config)

    async def _destroy_instance(self, instance: Bot) -> None:
        instance.closed = True


def test_get_or_create_raises_key_error_and_force_refresh_builds_anew() -> None:
    async def scenario() -> None:
        backend = InMemoryBackend()
        await backend.register("a", ECHO)
        await backend.register("off", ECHO, status="inactive")
        manager = Manager(backend, cache_ttl=3600)
        with pytest.raises(KeyError) as info:
            await manager.get_or_create("zzz")
        assert isinstance(info.value, BotregError) and isinstance(info.value, BotNotFoundError)
        assert str(info.value) == "bot 'zzz' is not registered"  # not a quoted repr
        with pytest.raises(KeyError, match="inactive"):
            await manager.get_or_create("off")
        first = await manager.get_or_create("a")
        assert await manager.get_or_create("a") is first
        fresh = await manager.get_or_create("a", force_refresh=True)
        assert fresh is not first and first.closed and not fresh.closed
        assert await manager.get_or_create("a") is fresh  # and it is cached
        await manager.close()

    run(scenario())


def test_cache_ttl_zero_never_caches() -> None:
    async def scenario() -> None:
        backend = InMemoryBackend()
        await backend.register("a", ECHO)
        manager = Manager(backend, cache_ttl=0)
        first = await manager.get_or_create("a")
        second = await manager.get_or_create("a")
        assert second is not first and first.closed  # the previous one is released
        assert manager.created == 2
        await manager.close()
        assert second.closed
        configs = ConfigCachingManager(backend, cache_ttl=0)
        assert await configs.get("a") is not await configs.get("a")
        with pytest.raises(ValueError, match="cache_ttl"):
            Manager(backend, cache_ttl=-1)

    run(scenario())


def test_resolved_config_has_a_version_for_in_memory_registrations() -> None:
    async def scenario() -> None:
        backend = InMemoryBackend()
        await backend.register("a", ECHO)
        await backend.register("b", ECHO)
        manager = ConfigCachingManager(backend, environment={"resources": {}})
        first = await manager.get("a")
        assert first.version.startswith("sha256:") and len(first.version) == 23
        assert (await manager.get("b")).version == first.version  # same config, same version
        await backend.update("a", {**ECHO, "name": "Changed"})
        changed = await manager.get("a", force_refresh=True)
        assert changed.version != first.version
        await backend.deactivate("a")
        inactive = await manager.get("a", force_refresh=True)
        assert inactive.version not in (first.version, changed.version)  # status counts
        registration = await backend.get("a")
        assert registration is not None and registration.version == inactive.version

    run(scenario())


def test_resource_references_without_an_environment_come_back_unresolved() -> None:
    config = {
        "name": "Portable",
        "llm": {"$resource": "default", "type": "llm_providers"},
        "prompt": "${GREETING}",
    }

    async def scenario() -> None:
        backend = InMemoryBackend()
        await backend.register("a", config)
        resolved = await ConfigCachingManager(backend).get("a")
        assert resolved.config == config and resolved.environment == ""
        resolved.config["llm"]["type"] = "edited"  # a copy: the backend keeps its own
        assert (await backend.get_config("a")) == config
        with pytest.raises(BotregError, match="undefined resources"):  # with one: resolved
            await ConfigCachingManager(backend, environment={"resources": {}}).get("a")

    run(scenario())


def test_the_poller_reports_a_deactivation_as_a_change_not_a_removal() -> None:
    seen: list[tuple[str, Any, Any]] = []
    on_change: Callable[[str, Any, Any], None] = lambda b, o, n: seen.append((b, o, n))  # noqa: E731

    async def scenario() -> None:
        backend = InMemoryBackend()
        await backend.register("a", ECHO)
        poller = RegistryPoller(backend, poll_interval=3600, on_change=on_change)
        await poller.poll_once()
        await backend.deactivate("a")
        assert await poller.poll_once() == ["a"]

    run(scenario())
    [(bot_id, old, new)] = seen
    assert bot_id == "a" and old["status"] == "active" and new["status"] == "inactive"


SEED_REGISTRY_EXPORTS = [  # "Module Exports" of the seed's dataknobs_bots.registry
    "Registration",
    "RegistryBackend",
    "InMemoryBackend",
    "DataKnobsRegistryAdapter",
    "HTTPRegistryBackend",
    "CachingRegistryManager",
    "ConfigCachingManager",
    "ResolvedConfig",
    "RegistryPoller",
    "HotReloadManager",
    "ReloadMode",
    "create_registry_backend",
    "PortabilityError",
    "validate_portability",
    "has_resource_references",
    "is_portable",
]
SEED_BOT_EXPORTS = ["BotRegistry", "InMemoryBotRegistry", "create_memory_registry"]
SEED_EVENT_EXPORTS = ["create_event_bus", "Event", "EventType"]


def test_botreg_api_exports_the_seeds_names() -> None:
    import botreg.api

    wanted = [*SEED_REGISTRY_EXPORTS, *SEED_BOT_EXPORTS, *SEED_EVENT_EXPORTS]
    assert [n for n in wanted if n not in botreg.api.__all__] == []
    assert all(getattr(botreg.api, name) is not None for name in botreg.api.__all__)
    assert botreg.api.__all__ == sorted(botreg.api.__all__)
    config = {"llm": {"$resource": "default", "type": "llm_providers"}}
    assert botreg.api.has_resource_references(config) and botreg.api.is_portable(config)
    with pytest.raises(botreg.api.PortabilityError):
        botreg.api.validate_portability({"llm": {"api_key": "sk-abcdefghijklmnopqrstuvwx"}})
