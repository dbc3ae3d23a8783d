"""Seed: "Registry Backends / InMemoryBackend" (002), ported to botreg.

Changed: the import (`dataknobs_bots.registry` -> `botreg.api`). Nothing else:
InMemoryBackend is the same dict-based test backend. Prints one line per step.

Run: python examples/seed/registry_in_memory.py
"""

import asyncio

from botreg.api import InMemoryBackend, Registration


async def main() -> None:
    backend = InMemoryBackend()
    await backend.initialize()

    # Register a bot
    registration = await backend.register(
        "my-bot",
        {
            "llm": {"provider": "anthropic", "model": "claude-3-sonnet"},
            "memory": {"type": "buffer", "max_messages": 10},
        },
    )
    assert isinstance(registration, Registration)
    print(f"Registered at: {registration.created_at}")
    print(f"Version: {registration.version}")  # botreg: a digest of config and status

    # Get config
    config = await backend.get_config("my-bot")
    print(f"Config model: {config['llm']['model'] if config else None}")

    # List all active
    active = await backend.list_active()
    print(f"Active: {[r.bot_id for r in active]}")

    # Deactivate (soft delete)
    await backend.deactivate("my-bot")
    print(f"After deactivate: active={await backend.count()} all={len(await backend.list_all())}")

    # Unregister (hard delete)
    removed = await backend.unregister("my-bot")
    print(f"Unregistered: {removed}; all={len(await backend.list_all())}")


if __name__ == "__main__":
    asyncio.run(main())
