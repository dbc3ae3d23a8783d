"""BotRegistry, InMemoryBotRegistry, create_memory_registry: the seed's (000) examples run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from botreg.api import (
    BotNotFoundError,
    BotRegistry,
    GitRegistryBackend,
    HotReloadManager,
    InMemoryBackend,
    InMemoryBotRegistry,
    PortabilityError,
    ReloadMode,
    create_memory_registry,
)
from botreg.errors import ResolutionError, UsageError
from botreg.events import CloudEvent, EventBus

PRODUCTION = """\
name: production
resources:
  llm_providers:
    default:
      provider: anthropic
      model: claude-3-sonnet
  databases:
    db:
      backend: postgres
      host: ${DB_HOST:db.internal}
"""


class DynaBot:
    """What the application's factory builds (botreg does not own DynaBot)."""

    built = 0

    def __init__(self, bot_id: str, config: dict[str, Any]) -> None:
        DynaBot.built += 1
        self.bot_id, self.config = bot_id, config

    async def chat(self, message: str, context: dict[str, Any]) -> str:
        return f"{self.bot_id} ({self.config['llm'].get('model', '?')}): {message}"


async def build(bot_id: str, config: dict[str, Any]) -> DynaBot:
    return DynaBot(bot_id, config)


def run(coroutine: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, 60)

    return asyncio.run(bounded())


@pytest.fixture
def in_app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The application's folder, with the seed's default env_dir (config/environments)."""
    environments = tmp_path / "config" / "environments"
    environments.mkdir(parents=True)
    (environments / "production.yaml").write_text(PRODUCTION)
    (environments / "development.yaml").write_text("name: development\nresources: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DB_HOST", raising=False)
    return tmp_path


def test_the_module_example(in_app_dir: Path) -> None:
    async def example() -> str:
        registry = BotRegistry(
            backend=InMemoryBackend(), environment="production", bot_factory=build
        )
        await registry.initialize()
        await registry.register(
            "my-bot",
            {
                "bot": {
                    "llm": {"$resource": "default", "type": "llm_providers"},
                    "conversation_storage": {"$resource": "db", "type": "databases"},
                }
            },
        )
        bot = await registry.get_bot("my-bot")
        message, context = "hello", {}
        response: str = await bot.chat(message, context)
        assert bot.config["conversation_storage"] == {"backend": "postgres", "host": "db.internal"}
        await registry.close()
        return response

    assert run(example()) == "my-bot (claude-3-sonnet): hello"


def test_the_class_example_and_the_method_examples(in_app_dir: Path) -> None:
    async def example() -> None:
        registry = BotRegistry(
            backend=InMemoryBackend(), environment="production", cache_ttl=300, bot_factory=build
        )
        await registry.initialize()
        assert (registry.environment_name, registry.cache_ttl) == ("production", 300)
        assert registry.max_cache_size == 1000 and isinstance(registry.backend, InMemoryBackend)
        await registry.register(
            "client-123", {"bot": {"llm": {"$resource": "default", "type": "llm_providers"}}}
        )
        bot = await registry.get_bot("client-123")
        assert await bot.chat("hi", {}) == "client-123 (claude-3-sonnet): hi"

        # register(): created, then updated
        reg = await registry.register(
            "support-bot", {"bot": {"llm": {"$resource": "default", "type": "llm_providers"}}}
        )
        assert reg.created_at is not None
        new_config = {"bot": {"llm": {"provider": "echo"}}}
        updated = await registry.register("support-bot", new_config)
        assert updated.updated_at >= reg.updated_at and updated.created_at == reg.created_at

        # get_bot(): cached, then forced
        cached = await registry.get_bot("client-123")
        assert cached is bot
        fresh = await registry.get_bot("client-123", force_refresh=True)
        assert fresh is not bot
        assert await registry.get_config("client-123") == {
            "bot": {"llm": {"$resource": "default", "type": "llm_providers"}}
        }  # stored portable, unresolved
        registration = await registry.get_registration("client-123")
        assert registration is not None and registration.is_active
        assert await registry.list_bots() == ["client-123", "support-bot"]
        assert await registry.count() == 2 and await registry.exists("client-123")
        assert repr(registry).startswith("BotRegistry(backend=InMemoryBackend(count=2)")
        await registry.close()
        assert registry.get_cached_bots() == []

    run(example())


def test_the_in_memory_registry_examples(in_app_dir: Path) -> None:
    async def example() -> None:
        registry = InMemoryBotRegistry(validate_on_register=False, bot_factory=build)
        await registry.initialize()
        await registry.register("test-bot", {"llm": {"provider": "echo"}})
        bot = await registry.get_bot("test-bot")
        assert bot.config == {"llm": {"provider": "echo"}}  # no "bot" key: passed whole

        development = InMemoryBotRegistry(environment="development", bot_factory=build)
        await development.initialize()
        assert development.environment_name == "development"

        await registry.clear()  # "in tests - reset between test cases"
        assert await registry.count() == 0 and registry.get_cached_bots() == []

        factory_made = create_memory_registry(validate_on_register=False, bot_factory=build)
        await factory_made.initialize()
        await factory_made.register("test-bot", {"llm": {"provider": "echo"}})
        assert isinstance(await factory_made.get_bot("test-bot"), DynaBot)
        assert isinstance(factory_made, InMemoryBotRegistry)
        assert (
            repr(factory_made) == "InMemoryBotRegistry(backend=InMemoryBackend(count=1), cached=1)"
        )

    run(example())


def test_register_validates_portability_unless_told_not_to() -> None:
    secret = {"llm": {"provider": "openai", "api_key": "sk-abcdefghijklmnopqrstuvwx"}}

    async def scenario() -> None:
        registry = create_memory_registry(bot_factory=build)
        with pytest.raises(PortabilityError):
            await registry.register("leaky", secret)
        assert await registry.count() == 0
        await registry.register("leaky", secret, skip_validation=True)
        assert await registry.count() == 1

    run(scenario())


def test_get_bot_errors_name_the_fix(in_app_dir: Path) -> None:
    async def scenario() -> None:
        registry = create_memory_registry(bot_factory=build)
        with pytest.raises(KeyError, match="no bot configuration found for 'nope'"):
            await registry.get_bot("nope")
        await registry.register("off", {"llm": {"provider": "echo"}}, status="inactive")
        with pytest.raises(BotNotFoundError, match="inactive"):
            await registry.get_bot("off")
        await registry.register("on", {"llm": {"provider": "echo"}})
        with pytest.raises(UsageError, match="bot_factory=build"):
            await create_memory_registry().get_bot("on")
        missing = create_memory_registry(environment="staging", bot_factory=build)
        await missing.register("on", {"llm": {"provider": "echo"}})
        with pytest.raises(UsageError, match="environment 'staging' not found"):
            await missing.get_bot("on")
        unresolved = create_memory_registry(environment="development", bot_factory=build)
        await unresolved.register("x", {"llm": {"$resource": "default", "type": "llm_providers"}})
        with pytest.raises(ResolutionError, match="undefined resources"):
            await unresolved.get_bot("x")

    run(scenario())


def test_cache_ttl_lru_sync_factories_and_uncaching_writes() -> None:
    def sync_build(bot_id: str, config: dict[str, Any]) -> DynaBot:
        return DynaBot(bot_id, config)

    async def scenario() -> None:
        registry = create_memory_registry(max_cache_size=2, bot_factory=sync_build)
        for name in ("a", "b", "c"):
            await registry.register(name, {"llm": {"provider": "echo"}})
        a = await registry.get_bot("a")
        await registry.get_bot("b")
        assert await registry.get_bot("a") is a  # a is now the most recently used
        await registry.get_bot("c")  # evicts b
        assert registry.get_cached_bots() == ["a", "c"]
        assert registry.get_cached_clients() == ["a", "c"]
        await registry.deactivate("a")
        await registry.unregister("c")
        assert registry.get_cached_bots() == []
        await registry.register_client("d", {"llm": {"provider": "echo"}})
        await registry.get_bot("d")
        await registry.remove_client("d")
        assert registry.get_cached_bots() == [] and not await registry.exists("d")

        never = create_memory_registry(cache_ttl=0, bot_factory=sync_build)
        await never.register("a", {"llm": {"provider": "echo"}})
        assert await never.get_bot("a") is not await never.get_bot("a")

        short = create_memory_registry(cache_ttl=0.1, bot_factory=sync_build)
        await short.register("a", {"llm": {"provider": "echo"}})
        first = await short.get_bot("a")
        await asyncio.sleep(0.15)
        assert await short.get_bot("a") is not first

    run(scenario())


def test_a_git_registry_with_its_own_environments_and_hot_reload(
    git_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where git replaces the seed's database: environments come from the repository."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "key-from-the-environment")

    async def scenario() -> None:
        registry = BotRegistry(
            GitRegistryBackend(repo=git_registry), environment="development", bot_factory=build
        )
        await registry.initialize()
        bot = await registry.get_bot("billing-assistant")
        assert bot.config["conversation_storage"]["backend"] == "sqlite"  # resolved
        bus = EventBus()
        reload = HotReloadManager(
            registry.backend, registry, event_bus=bus, mode=ReloadMode.EVENT_DRIVEN
        )
        await reload.initialize()
        bus.publish(
            CloudEvent("botreg.bot.updated", "s", "1", data={"bot_id": "billing-assistant"})
        )
        for _ in range(100):
            if not registry.get_cached_bots():
                break
            await asyncio.sleep(0.01)
        assert registry.get_cached_bots() == []  # the event dropped it
        await reload.shutdown()
        await registry.close()

    run(scenario())
