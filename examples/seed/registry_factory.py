"""Seed: "Registry Backends / Factory Function" (002), ported to botreg.

Changed: the import; `create_registry_backend("postgres", ...)` -> `"git"` on a
clone of the registry repository (git replaces the seed's databases; the
"postgres" call is shown being refused). The HTTP backend is built as in the
seed but not initialized: it needs a running daemon (see registry_http.py).

Environment: BOTREG_EXAMPLE_REPO, a clone of a registry repository (read only here).

Run: BOTREG_EXAMPLE_REPO=path/to/clone python examples/seed/registry_factory.py
"""

import asyncio
import os

from botreg.api import BackendConfigError, create_registry_backend

REPO = os.environ.get("BOTREG_EXAMPLE_REPO", "registry")


async def main() -> None:
    # Memory backend
    backend = create_registry_backend("memory", {})
    await backend.initialize()
    print(f"memory: {type(backend).__name__}, {await backend.count()} bots")

    # PostgreSQL backend: refused, git replaces it
    try:
        create_registry_backend(
            "postgres", {"host": "localhost", "database": "myapp", "table": "bot_configs"}
        )
    except BackendConfigError as error:
        print(f"postgres: refused ({str(error).split(':')[0]})")

    # botreg: the git backend on a clone of the registry repository
    backend = create_registry_backend("git", {"repo": REPO})
    await backend.initialize()
    print(f"git: {type(backend).__name__}, active bots {await backend.list_ids()}")

    # HTTP backend (a botreg sync daemon's API); initialize() would contact it
    backend = create_registry_backend(
        "http", {"base_url": "https://config-service/api/v1", "auth_token": "secret"}
    )
    print(f"http: {type(backend).__name__}")


if __name__ == "__main__":
    asyncio.run(main())
