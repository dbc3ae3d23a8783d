"""Seed: "Hot Reload / RegistryPoller" (002), ported to botreg.

Changed: the import; `backend` and `invalidate_bot` (left undefined in the seed)
are defined here; `poll_interval` is 0.1 s instead of 60 so the script ends quickly.

Run: python examples/seed/registry_poller.py
"""

import asyncio
from typing import Any

from botreg.api import InMemoryBackend, RegistryPoller

invalidated: list[str] = []


async def invalidate_bot(bot_id: str) -> None:
    invalidated.append(bot_id)


async def on_change(bot_id: str, old_config: Any, new_config: Any) -> None:
    print(f"Config changed for {bot_id}")
    await invalidate_bot(bot_id)


async def main() -> None:
    backend = InMemoryBackend()
    await backend.initialize()
    await backend.register("my-bot", {"llm": {"provider": "echo"}})

    poller = RegistryPoller(
        backend=backend,
        poll_interval=0.1,  # seconds (the seed: 60)
        on_change=on_change,
    )
    await poller.start()

    await backend.update("my-bot", {"llm": {"provider": "anthropic"}})
    await backend.register("new-bot", {"llm": {"provider": "echo"}})
    for _ in range(50):
        if len(invalidated) >= 2:
            break
        await asyncio.sleep(0.1)
    # A deactivation is a change too (status becomes inactive), not a removal.
    await backend.deactivate("my-bot")
    for _ in range(50):
        if len(invalidated) >= 3:
            break
        await asyncio.sleep(0.1)

    # Later
    await poller.stop()
    print(f"Invalidated: {invalidated}")


if __name__ == "__main__":
    asyncio.run(main())
