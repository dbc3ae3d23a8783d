"""Seed: the docstring examples of BotRegistry, InMemoryBotRegistry and
create_memory_registry (000), ported to botreg and run one after the other.

Changed: the imports (`dataknobs_bots.bot` / `dataknobs_bots.registry` ->
`botreg.api`); DynaBot -> `EchoBot`, built by `bot_factory`; the environment
files the seed reads ("production", "development" under config/environments)
are written first; `message`, `context` and `new_config` are defined; the
non-portable config is shown being refused (PortabilityError).

Run: python examples/seed/bot_registry_docstrings.py   (writes ./config/environments)
"""

import asyncio
from pathlib import Path
from typing import Any

from botreg.api import (
    BotRegistry,
    InMemoryBackend,
    InMemoryBotRegistry,
    PortabilityError,
    create_memory_registry,
)

ENVIRONMENT = """\
name: {name}
resources:
  llm_providers:
    default: {{provider: {provider}, model: {model}}}
"""
built: list[str] = []


class EchoBot:
    """Stands in for the seed's DynaBot."""

    def __init__(self, bot_id: str, config: dict[str, Any]) -> None:
        self.config = config
        built.append(bot_id)

    async def chat(self, message: str, context: dict[str, Any]) -> str:
        return f"{self.config['llm']['provider']}: {message}"


async def class_example() -> None:
    # Create registry
    registry = BotRegistry(
        backend=InMemoryBackend(),
        environment="production",
        cache_ttl=300,
        bot_factory=EchoBot,
    )
    await registry.initialize()

    # Register portable configuration
    await registry.register(
        "client-123", {"bot": {"llm": {"$resource": "default", "type": "llm_providers"}}}
    )

    # Get bot for a client
    bot = await registry.get_bot("client-123")

    # Use the bot
    response = await bot.chat("hi", {})
    print(f"client-123: {response}")

    # register(): with portable config, then update
    reg = await registry.register(
        "support-bot", {"bot": {"llm": {"$resource": "default", "type": "llm_providers"}}}
    )
    print(f"Registered at: {reg.created_at is not None}")
    new_config = {"bot": {"llm": {"$resource": "default", "type": "llm_providers"}, "v": 2}}
    reg = await registry.register("support-bot", new_config)
    print(f"Updated at: {reg.updated_at >= reg.created_at}")

    # A resolved local value is not portable
    try:
        await registry.register("local-bot", {"bot": {"llm": {"base_url": "http://localhost:1"}}})
    except PortabilityError:
        print("local-bot: PortabilityError")

    # get_bot(): cached, then force refresh (e.g., after config change)
    await registry.get_bot("client-123")
    await registry.get_bot("client-123", force_refresh=True)
    print(f"client-123 built {built.count('client-123')} times")
    print(f"Cached: {sorted(registry.get_cached_bots())}; count {await registry.count()}")
    await registry.close()


async def in_memory_examples() -> None:
    # For testing - no environment resolution
    registry = InMemoryBotRegistry(validate_on_register=False, bot_factory=EchoBot)
    await registry.initialize()
    await registry.register("test-bot", {"llm": {"provider": "echo"}})
    bot = await registry.get_bot("test-bot")
    print(f"test-bot: {await bot.chat('ping', {})}")

    # In tests - reset between test cases
    await registry.clear()
    assert await registry.count() == 0
    print(f"after clear: {await registry.count()} bots, cached {registry.get_cached_bots()}")

    # For development with environment
    registry = InMemoryBotRegistry(environment="development")
    await registry.initialize()
    print(f"development registry: {registry!r}")

    # create_memory_registry
    registry = create_memory_registry(validate_on_register=False, bot_factory=EchoBot)
    await registry.initialize()
    await registry.register("test-bot", {"llm": {"provider": "echo"}})
    bot = await registry.get_bot("test-bot")
    print(f"create_memory_registry test-bot: {await bot.chat('pong', {})}")


async def main() -> None:
    environments = Path("config/environments")
    environments.mkdir(parents=True, exist_ok=True)
    (environments / "production.yaml").write_text(
        ENVIRONMENT.format(name="production", provider="anthropic", model="claude-3-sonnet")
    )
    (environments / "development.yaml").write_text(
        ENVIRONMENT.format(name="development", provider="echo", model="echo")
    )
    await class_example()
    await in_memory_examples()


if __name__ == "__main__":
    asyncio.run(main())
