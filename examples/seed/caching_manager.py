"""Seed: "Caching Registry Manager" (002), ported to botreg.

Changed: the import; `MyBot` (the seed's application class) is defined here;
`event_bus` is a memory bus from `create_event_bus` (the seed leaves it undefined).

Run: python examples/seed/caching_manager.py
"""

import asyncio
from typing import Any

from botreg.api import CachingRegistryManager, InMemoryBackend, create_event_bus


class MyBot:
    """A stand-in for the application's bot."""

    built = 0

    def __init__(self, bot_id: str, config: dict[str, Any]) -> None:
        self.bot_id = bot_id
        self.config = config
        MyBot.built += 1

    @classmethod
    async def from_config(cls, bot_id: str, config: dict[str, Any]) -> "MyBot":
        return cls(bot_id, config)

    async def close(self) -> None:
        print(f"closed {self.bot_id}")


class MyBotManager(CachingRegistryManager[MyBot]):
    """Custom manager with caching."""

    async def _create_instance(self, bot_id: str, config: dict[str, Any]) -> MyBot:
        """Create bot instance from config."""
        return await MyBot.from_config(bot_id, config)

    async def _destroy_instance(self, instance: MyBot) -> None:
        """Cleanup bot instance."""
        await instance.close()


async def main() -> None:
    event_bus = create_event_bus({"backend": "memory"})
    await event_bus.connect()

    # Usage
    backend = InMemoryBackend()
    await backend.initialize()
    await backend.register("my-bot", {"llm": {"provider": "echo"}})

    manager = MyBotManager(
        backend=backend,
        event_bus=event_bus,  # Optional, for event-driven invalidation
        cache_ttl=300,  # 5 minutes
        max_cache_size=1000,
    )
    await manager.initialize()

    # Get or create (uses cache)
    bot = await manager.get_or_create("my-bot")
    again = await manager.get_or_create("my-bot")
    print(f"get_or_create twice: same instance={bot is again}, built={MyBot.built}")

    # Invalidate specific bot
    await manager.invalidate("my-bot")
    bot = await manager.get_or_create("my-bot")
    print(f"after invalidate: built={MyBot.built}")

    # Invalidate all cached instances
    await manager.invalidate_all()
    print(f"after invalidate_all: cached={manager.cached_ids()}")

    # An unknown bot raises KeyError, as in the seed
    try:
        await manager.get_or_create("no-such-bot")
    except KeyError:
        print("no-such-bot: KeyError")

    await manager.close()
    await event_bus.close()


if __name__ == "__main__":
    asyncio.run(main())
