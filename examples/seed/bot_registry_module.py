"""Seed: the BotRegistry module example (000, `dataknobs_bots.bot.registry`), ported.

Changed: the imports (`dataknobs_bots.bot` and `dataknobs_bots.registry` ->
`botreg.api`); DynaBot -> the tiny `Bot` below, built by `bot_factory` (botreg
does not own a bot class); the "production" environment file the seed reads
from `config/environments/production.yaml` is written by this script first;
`message` and `context` are defined.

Run: python examples/seed/bot_registry_module.py   (writes ./config/environments)
"""

import asyncio
from pathlib import Path
from typing import Any

from botreg.api import BotRegistry, InMemoryBackend

PRODUCTION = """\
name: production
resources:
  llm_providers:
    default: {provider: anthropic, model: claude-3-sonnet}
  databases:
    db: {backend: postgres, host: db.internal, database: bots}
"""


class Bot:
    """Stands in for the seed's DynaBot."""

    def __init__(self, bot_id: str, config: dict[str, Any]) -> None:
        self.bot_id = bot_id
        self.config = config

    async def chat(self, message: str, context: dict[str, Any]) -> str:
        llm = self.config["llm"]
        return f"{self.bot_id} ({llm['provider']}/{llm['model']}) got {message!r}"


async def main() -> None:
    Path("config/environments").mkdir(parents=True, exist_ok=True)
    Path("config/environments/production.yaml").write_text(PRODUCTION)
    message, context = "Hello", {"user": "u-1"}

    # Create registry with in-memory storage
    registry = BotRegistry(
        backend=InMemoryBackend(),
        environment="production",
        bot_factory=Bot,  # botreg: builds what get_bot returns (seed: DynaBot)
    )
    await registry.initialize()
    print(f"Environment: {registry.environment_name}")

    # Register a portable bot configuration
    await registry.register(
        "my-bot",
        {
            "bot": {
                "llm": {"$resource": "default", "type": "llm_providers"},
                "conversation_storage": {"$resource": "db", "type": "databases"},
            }
        },
    )

    # Get bot instance (resolves $resource references)
    bot = await registry.get_bot("my-bot")
    response = await bot.chat(message, context)
    print(response)
    print(f"Storage: {bot.config['conversation_storage']['host']}")

    # Cleanup
    await registry.close()


if __name__ == "__main__":
    asyncio.run(main())
