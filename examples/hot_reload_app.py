"""Serve bots from a botreg registry; a committed change reaches them without a restart.

Run the sync daemon, then this app beside it (both on the same data dir):

    botreg sync --source my-registry --watch &
    OPENAI_API_KEY=... ANTHROPIC_API_KEY=... \
        python examples/hot_reload_app.py --data-dir .botreg --env development
    curl -s 127.0.0.1:8480/bots/product-guide/chat -d 'hello'

The app reads bots at the daemon's applied commit (`GitRegistryBackend`),
caches one instance per bot (`CachingRegistryManager`), and follows the
daemon's event log (`EventLogFollower`): when a commit changes a bot, exactly
that instance is dropped and the next request builds it from the new config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from botreg import (
    CachingRegistryManager,
    ConfigCachingManager,
    EventLogFollower,
    GitRegistryBackend,
    HotReloadManager,
    ReloadMode,
)


class EchoBot:
    """A stand-in for a real bot: it answers with what its config says."""

    def __init__(self, bot_id: str, config: dict[str, Any], version: str) -> None:
        self.bot_id = bot_id
        self.llm = config.get("llm", {})
        self.version = version

    def chat(self, message: str) -> str:
        model = self.llm.get("model", self.llm.get("deployment", "?"))
        return (
            f"[{self.bot_id} @ {self.version[:7]}: {self.llm.get('provider')}/{model}, "
            f"temperature {self.llm.get('temperature', '-')}] you said: {message}"
        )


class BotManager(CachingRegistryManager[EchoBot]):
    """Builds bots from configs resolved for the environment."""

    def __init__(
        self, backend: GitRegistryBackend, configs: ConfigCachingManager, **kwargs: Any
    ) -> None:
        super().__init__(backend, **kwargs)
        self.configs = configs

    async def _create_instance(self, bot_id: str, config: dict[str, Any]) -> EchoBot:
        # resolve the config this instance is built from, never an older one
        resolved = await self.configs.get(bot_id, force_refresh=True)
        return EchoBot(bot_id, resolved.config, resolved.version)

    async def _destroy_instance(self, instance: EchoBot) -> None:
        print(f"reloading {instance.bot_id}", flush=True)


def serve(manager: BotManager, loop: asyncio.AbstractEventLoop, port: int) -> ThreadingHTTPServer:
    def call(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            return None

        def reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/bots":
                active = call(manager.backend.list_active())
                self.reply(200, [r.bot_id for r in active])
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            parts = self.path.strip("/").split("/")
            if len(parts) != 3 or parts[0] != "bots" or parts[2] != "chat":
                self.reply(404, {"error": "not found"})
                return
            message = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            try:
                bot = call(manager.get_or_create(parts[1]))
            except Exception as exc:  # an unknown or inactive bot
                self.reply(404, {"error": str(exc)})
                return
            self.reply(200, {"reply": bot.chat(message)})

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=".botreg", help="the sync daemon's data dir")
    parser.add_argument("--env", default="development", help="environment to resolve for")
    parser.add_argument("--port", type=int, default=8480)
    args = parser.parse_args()

    backend = GitRegistryBackend(data_dir=args.data_dir)
    await backend.initialize()
    events = EventLogFollower(Path(args.data_dir) / "events.jsonl")
    events.start()
    configs = ConfigCachingManager(backend, environment=args.env, cache_ttl=0)  # never cached
    manager = BotManager(backend, configs, cache_ttl=3600, max_cache_size=100)
    await manager.initialize()
    reload = HotReloadManager(
        backend, manager, event_bus=events, mode=ReloadMode.HYBRID, polling_interval=60
    )  # events, with a slow poll as a safety net
    await reload.initialize()
    server = serve(manager, asyncio.get_running_loop(), args.port)
    print(f"serving bots on http://127.0.0.1:{args.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        server.shutdown()
        await reload.shutdown()
        await manager.close()
        events.stop()
        await backend.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
