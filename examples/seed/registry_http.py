"""Seed: "Registry Backends / HTTPRegistryBackend" (002), ported to botreg.

Changed: the import; the seed's "config-service" is a botreg sync daemon's HTTP
API (`botreg sync --listen HOST:PORT --api-token-file F`), whose bots are the
registry repository's. Reads first, as in the seed; then a write (the seed's
API contract lists POST/PUT/DELETE /bots): on botreg each write is a validated
commit the daemon pushes to the registry repository, so it needs a daemon
started with `--allow-writes` (docs/http-writes.md).

Environment:
  BOTREG_EXAMPLE_URL    the daemon's base URL, e.g. http://127.0.0.1:8470
  BOTREG_EXAMPLE_TOKEN  the daemon's API token (the content of --api-token-file)

Run: BOTREG_EXAMPLE_URL=... BOTREG_EXAMPLE_TOKEN=... python examples/seed/registry_http.py
"""

import asyncio
import os

from botreg.api import HTTPRegistryBackend

URL = os.environ.get("BOTREG_EXAMPLE_URL", "http://127.0.0.1:8470")
TOKEN = os.environ.get("BOTREG_EXAMPLE_TOKEN", "")


async def main() -> None:
    backend = HTTPRegistryBackend(
        base_url=URL,
        auth_header=f"Bearer {TOKEN}",
        timeout=30,
    )
    await backend.initialize()

    # Get config
    config = await backend.get_config("product-guide")
    print(f"product-guide model: {config['llm']['model'] if config else None}")

    # List all
    configs = await backend.list_all()
    print(f"All bots: {sorted((r.bot_id, r.status) for r in configs)}")

    # Write (POST /bots): a commit pushed to the registry repository
    registration = await backend.register("echo", {"name": "Echo", "llm": {"provider": "echo"}})
    print(f"Registered echo at commit {registration.version}")
    echo = await backend.get_config("echo")
    print(f"echo provider: {echo['llm']['provider'] if echo else None}")
    print(f"Active count: {await backend.count()}")

    # Soft delete (PUT {"status": "inactive"}), then hard delete (DELETE)
    print(f"Deactivated: {await backend.deactivate('echo')}")
    print(f"Unregistered: {await backend.unregister('echo')}")
    await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
