"""Seed: "Complete Example / Bot Manager with Caching and Hot Reload" (002), ported.

Changed: the imports (`dataknobs_bots.registry` and `dataknobs_common.events`
-> `botreg.api`); two prints added at the end (the new bot's model, whether it
is a new instance) so a run can be checked. The seed's `Bot` class is kept.
The published UPDATED event on "registry:bots" invalidates "support-bot" as in
the seed (botreg maps it to the CloudEvent `botreg.bot.updated`).

Run: python examples/seed/complete_bot_manager.py
"""

import asyncio
from typing import Any

from botreg.api import (
    CachingRegistryManager,
    Event,
    EventType,
    HotReloadManager,
    InMemoryBackend,
    ReloadMode,
    create_event_bus,
)


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


async def main() -> None:
    # Setup event bus
    event_bus = create_event_bus({"backend": "memory"})
    await event_bus.connect()

    # Setup registry backend
    backend = InMemoryBackend()
    await backend.initialize()

    # Register a bot config
    await backend.register(
        "support-bot",
        {
            "llm": {"provider": "anthropic", "model": "claude-3-sonnet"},
            "system_prompt": "You are a helpful support agent.",
        },
    )

    # Create bot manager with caching
    manager = BotManager(
        backend=backend,
        event_bus=event_bus,
        cache_ttl=300,
    )
    await manager.initialize()

    # Setup hot reload
    hot_reload = HotReloadManager(
        backend=backend,
        caching_manager=manager,
        event_bus=event_bus,
        mode=ReloadMode.EVENT_DRIVEN,
    )
    await hot_reload.initialize()

    # Get bot (creates and caches)
    bot = await manager.get_or_create("support-bot")
    response = await bot.chat("Hello!")
    print(response)

    # Update config - hot reload will invalidate cache
    await backend.update(
        "support-bot",
        {
            "llm": {"provider": "anthropic", "model": "claude-3-opus"},
            "system_prompt": "You are a helpful support agent.",
        },
    )

    # Publish update event (triggers invalidation)
    await event_bus.publish(
        "registry:bots",
        Event(type=EventType.UPDATED, topic="registry:bots", payload={"bot_id": "support-bot"}),
    )

    # Small delay for event processing
    await asyncio.sleep(0.1)

    # Next get_or_create will create new bot with updated config
    new_bot = await manager.get_or_create("support-bot")
    print(f"Model after update: {new_bot.config['llm']['model']}")
    print(f"New instance: {new_bot is not bot}")

    # Cleanup
    await hot_reload.shutdown()
    await event_bus.close()


if __name__ == "__main__":
    asyncio.run(main())
