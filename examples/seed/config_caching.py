"""Seed: "ConfigCachingManager" (002), ported to botreg.

Changed: the import; `backend` (left undefined in the seed) is an InMemoryBackend
holding "my-bot".

Run: python examples/seed/config_caching.py
"""

import asyncio

from botreg.api import ConfigCachingManager, InMemoryBackend, ResolvedConfig


async def main() -> None:
    backend = InMemoryBackend()
    await backend.initialize()
    await backend.register("my-bot", {"llm": {"provider": "anthropic", "model": "claude-3-sonnet"}})

    manager = ConfigCachingManager(
        backend=backend,
        cache_ttl=300,
    )
    await manager.initialize()

    # Get resolved config
    resolved: ResolvedConfig = await manager.get("my-bot")
    print(f"Config: {resolved.config}")
    print(f"Version: {resolved.version}")

    # A change gives another version once the cache is refreshed.
    await backend.update("my-bot", {"llm": {"provider": "anthropic", "model": "claude-3-opus"}})
    refreshed = await manager.get("my-bot", force_refresh=True)
    print(f"Refreshed model: {refreshed.config['llm']['model']}")
    print(f"Version changed: {refreshed.version != resolved.version}")
    await manager.close()


if __name__ == "__main__":
    asyncio.run(main())
