"""The BotRegistry module example (000) on git: the botreg way to run it in production.

Not a seed example as such: the seed's BotRegistry reads a database-backed
registry and `config/environments/<name>.yaml`; here the registry is a clone of
the registry repository (GitRegistryBackend) and the environment is the
repository's own `environments/development.yaml` at the commit read. A
`register` is a validated commit. `${VAR}` values are taken from `env=`
(default: the process environment).

Environment: BOTREG_EXAMPLE_REPO, a clone of a registry repository made with
`botreg init`; the script commits one bot to it.

Run: BOTREG_EXAMPLE_REPO=path/to/clone python examples/seed/bot_registry_git.py
"""

import asyncio
import os
from typing import Any

from botreg.api import BotRegistry, GitRegistryBackend

REPO = os.environ.get("BOTREG_EXAMPLE_REPO", "registry")


def build(bot_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """The application's bot factory (here the resolved config is the "bot")."""
    return config


async def main() -> None:
    registry = BotRegistry(
        backend=GitRegistryBackend(repo=REPO),
        environment="development",  # environments/development.yaml in the repository
        bot_factory=build,
        env={"ANTHROPIC_API_KEY": "sk-example", "OPENAI_API_KEY": "sk-example"},
    )
    await registry.initialize()
    print(f"Active bots: {await registry.list_bots()}")

    bot = await registry.get_bot("billing-assistant")
    print(f"billing-assistant conversations: {bot['conversation_storage']['backend']}")

    # A portable registration is a commit in the repository.
    registration = await registry.register(
        "faq-bot",
        {
            "name": "FAQ Bot",
            "llm": {
                "provider": "ollama",
                "model": "llama3.1:8b",
                "endpoint": {"$resource": "local-llm", "type": "llm_providers"},
            },
        },
    )
    print(f"faq-bot committed as {registration.version[:12]}")
    faq = await registry.get_bot("faq-bot")
    print(f"faq-bot endpoint: {faq['llm']['endpoint']['base_url']}")
    await registry.close()


if __name__ == "__main__":
    asyncio.run(main())
