"""Seed: "Registry Backends / DataKnobsRegistryAdapter" (002), ported to botreg.

Changed: the import; the seed's database (`backend_type="postgres"`, or an
existing `AsyncMemoryDatabase` passed as `database=`) -> a git clone of the
registry repository (`backend_type="git"`). Every write is a validated commit.
The seed's other backend types are refused with a message saying git replaces
them; this script shows that too.

Environment: BOTREG_EXAMPLE_REPO, a clone of a registry repository (made with
`botreg init DIR`); the script commits one bot to it.

Run: BOTREG_EXAMPLE_REPO=path/to/clone python examples/seed/registry_adapter.py
"""

import asyncio
import os
import subprocess

from botreg.api import BackendConfigError, DataKnobsRegistryAdapter, RegistryValidationError

REPO = os.environ.get("BOTREG_EXAMPLE_REPO", "registry")


async def main() -> None:
    # Seed: backend_type="postgres", backend_config={"host", "database", "table"}.
    # botreg: git replaces the database; the table is the repository's bots/ folder.
    adapter = DataKnobsRegistryAdapter(backend_type="git", backend_config={"repo": REPO})
    await adapter.initialize()

    # The seed's database types are refused with the way to go.
    try:
        DataKnobsRegistryAdapter(backend_type="postgres", backend_config={"host": "localhost"})
    except BackendConfigError as error:
        print(f"postgres refused: {str(error).split(':')[0]}")

    # A registration is a commit (git requires `name` in a bot file).
    registration = await adapter.register(
        "my-bot",
        {"name": "My Bot", "llm": {"provider": "anthropic", "model": "claude-3-sonnet"}},
    )
    print(f"Registered my-bot at commit {registration.version}")
    subject = subprocess.run(
        ["git", "-C", REPO, "log", "-1", "--format=%s"], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"Commit message: {subject}")

    # Validation runs as in the pre-commit hook: nothing invalid is committed.
    try:
        await adapter.register("broken-bot", {"llm": {"provider": "anthropic"}})
    except RegistryValidationError as error:
        print(f"broken-bot refused: {len(error.findings)} finding(s)")

    print(f"Active bots: {await adapter.list_ids()}")
    await adapter.close()


if __name__ == "__main__":
    asyncio.run(main())
