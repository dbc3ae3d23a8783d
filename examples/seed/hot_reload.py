"""Seed: "Hot Reload / HotReloadManager" (002), ported to botreg.

Changed: the import; `backend` is a GitRegistryBackend on a clone of the
registry repository (the seed's database -> git: an update is a commit the
poller sees at the next poll); `bot_manager` is a ConfigCachingManager;
`polling_interval` is 0.2 s instead of 60. In production an application
would rather use ReloadMode.EVENT_DRIVEN or HYBRID with the daemon's events
(`create_event_bus({"backend": "redis", ...})` or `{"backend": "eventlog", ...}`).

Environment: BOTREG_EXAMPLE_REPO, a clone of a registry repository; the script
commits one change to bots/product-guide.yaml.

Run: BOTREG_EXAMPLE_REPO=path/to/clone python examples/seed/hot_reload.py
"""

import asyncio
import os

from botreg.api import ConfigCachingManager, GitRegistryBackend, HotReloadManager, ReloadMode

REPO = os.environ.get("BOTREG_EXAMPLE_REPO", "registry")


async def main() -> None:
    backend = GitRegistryBackend(repo=REPO)  # seed: a database-backed registry
    await backend.initialize()
    bot_manager = ConfigCachingManager(backend=backend, cache_ttl=300)
    await bot_manager.initialize()

    hot_reload = HotReloadManager(
        backend=backend,
        caching_manager=bot_manager,
        event_bus=None,  # Optional
        mode=ReloadMode.POLLING,  # or ReloadMode.EVENT_DRIVEN, ReloadMode.HYBRID
        polling_interval=0.2,
    )
    await hot_reload.initialize()

    before = await bot_manager.get("product-guide")
    print(f"product-guide model: {before.config['llm']['model']} at {before.version[:12]}")

    # A commit changes the bot; the poller invalidates the cached config.
    config = await backend.get_config("product-guide")
    assert config is not None
    config["llm"]["model"] = "gpt-4o"
    registration = await backend.update("product-guide", config)
    print(f"committed {registration.version[:12]}")

    for _ in range(100):
        after = await bot_manager.get("product-guide")
        if after.version != before.version:
            break
        await asyncio.sleep(0.1)
    print(f"product-guide model: {after.config['llm']['model']} at {after.version[:12]}")

    await hot_reload.shutdown()
    await bot_manager.close()


if __name__ == "__main__":
    asyncio.run(main())
