"""botreg's example application: follows the registry's event stream, keeps its bots fresh.

One process of an application fleet (run any number of them, on any hosts):

- `RedisEventFollower` reads the daemons' Redis stream (broadcast: every process
  sees every event, with its own cursor);
- `HotReloadManager` in EVENT_DRIVEN mode turns those events into invalidations
  of a `CachingRegistryManager`, which reads configs from the daemons' HTTP API
  through `HTTPRegistryBackend(consistent_with=follower)`: a config fetched
  after an invalidation is the one the daemons applied, never an older one;
- every (re)loaded config is printed as one JSON line on stdout:
  `{"app": ..., "bot_id": ..., "status": "loaded", "commit": ..., "config_sha256": ...}`
  (`"status": "removed"` when a bot is gone or inactive), so an operator, or a
  test, can see every process converge on the same commit.

Configuration (flags override the environment):

| variable | flag | meaning |
|---|---|---|
| `BOTREG_REDIS_URL` | `--redis-url` | the stream's Redis (redis://, rediss://, unix://), required |
| `BOTREG_EVENTS_STREAM` | `--stream` | the stream key (default `botreg:events`) |
| `BOTREG_REGISTRY_URL` | `--registry-url` | the daemons' HTTP API (http(s)://...), required |
| `BOTREG_API_TOKEN_FILE` | `--api-token-file` | file holding the API's bearer token |
| `BOTREG_APP_CURSOR_FILE` | `--cursor-file` | persist the stream cursor: a restart resumes |
| `BOTREG_APP_NAME` | `--name` | this process's name in the output (default host-pid) |
| `BOTREG_APP_RETRY_SECONDS` | `--retry-seconds` | first retry delay of a failed load (0.5) |

SIGTERM and SIGINT stop it cleanly (exit 0). Exit 2: bad configuration (the
message names the variable and the fix); 1: it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = ["ConfigError", "Settings", "config_hash", "main", "parse_settings"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_HTTP_SCHEMES = ("http://", "https://")
_MAX_RETRY_DELAY = 5.0


class ConfigError(Exception):
    """The application's configuration is unusable (exit 2)."""


@dataclass(frozen=True)
class Settings:
    """What the application was told to do."""

    redis_url: str
    stream: str
    registry_url: str
    token_file: Path | None
    cursor_file: Path | None
    name: str
    retry_seconds: float


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting: main() decides the code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="example-app",
        description="Follow a botreg event stream and keep every bot's config fresh.",
    )
    parser.add_argument("--redis-url", help="$BOTREG_REDIS_URL")
    parser.add_argument("--stream", help="$BOTREG_EVENTS_STREAM (default botreg:events)")
    parser.add_argument("--registry-url", help="$BOTREG_REGISTRY_URL")
    parser.add_argument("--api-token-file", help="$BOTREG_API_TOKEN_FILE")
    parser.add_argument("--cursor-file", help="$BOTREG_APP_CURSOR_FILE")
    parser.add_argument("--name", help="$BOTREG_APP_NAME (default: host-pid)")
    parser.add_argument("--retry-seconds", help="$BOTREG_APP_RETRY_SECONDS (default 0.5)")
    return parser


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """The settings from flags, else the environment, checked.

    Args:
        argv: The command line's arguments (without the program name).
        environ: The environment (os.environ in production).

    Raises:
        ConfigError: naming the variable (and flag) at fault and the fix.
    """
    args = _parser().parse_args(list(argv))

    def pick(flag: str | None, variable: str) -> str:
        return (flag if flag is not None else environ.get(variable, "")).strip()

    redis_url = pick(args.redis_url, "BOTREG_REDIS_URL")
    if not redis_url:
        raise ConfigError(
            "BOTREG_REDIS_URL (--redis-url) is not set: give the Redis the daemons append "
            "events to, e.g. redis://redis:6379/0"
        )
    if not redis_url.startswith(_REDIS_SCHEMES):
        raise ConfigError(
            "BOTREG_REDIS_URL (--redis-url) must start with redis://, rediss:// or unix://"
        )
    registry_url = pick(args.registry_url, "BOTREG_REGISTRY_URL").rstrip("/")
    if not registry_url:
        raise ConfigError(
            "BOTREG_REGISTRY_URL (--registry-url) is not set: give the daemons' HTTP API, "
            "e.g. http://registry:8470"
        )
    if not registry_url.startswith(_HTTP_SCHEMES):
        raise ConfigError(
            "BOTREG_REGISTRY_URL (--registry-url) must start with http:// or https://"
        )
    token = pick(args.api_token_file, "BOTREG_API_TOKEN_FILE")
    token_file = Path(token) if token else None
    if token_file is not None and not token_file.is_file():
        raise ConfigError(
            f"BOTREG_API_TOKEN_FILE (--api-token-file) {token_file}: no such file; "
            "mount the API token secret there or unset the variable"
        )
    cursor = pick(args.cursor_file, "BOTREG_APP_CURSOR_FILE")
    retry_text = pick(args.retry_seconds, "BOTREG_APP_RETRY_SECONDS") or "0.5"
    try:
        retry = float(retry_text)
    except ValueError:
        retry = -1.0
    if not 0 < retry <= 60:  # nan fails this too
        raise ConfigError(
            f"BOTREG_APP_RETRY_SECONDS (--retry-seconds) {retry_text!r}: give seconds "
            "between 0 and 60, e.g. 0.5"
        )
    return Settings(
        redis_url=redis_url,
        stream=pick(args.stream, "BOTREG_EVENTS_STREAM") or "botreg:events",
        registry_url=registry_url,
        token_file=token_file,
        cursor_file=Path(cursor) if cursor else None,
        name=pick(args.name, "BOTREG_APP_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        retry_seconds=retry,
    )


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable digest of a config (key order does not matter): what the JSON lines carry.

    A test computes it from the daemon's `/bots/{id}` answer to check convergence.
    """
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    token = path.read_text(errors="replace").strip()
    if not token:
        raise ConfigError(f"BOTREG_API_TOKEN_FILE {path} is empty: put the API token in it")
    from botreg.secrets import remember_secret

    remember_secret(token)  # masked in anything botreg logs from now on
    return token


async def _run(settings: Settings, out: TextIO) -> int:
    """Follow the stream until SIGTERM/SIGINT; returns the exit code."""
    # imported here: parse_settings() works (and is tested) without the daemon extra
    from botreg.api import (
        CachingRegistryManager,
        HotReloadManager,
        HTTPRegistryBackend,
        RedisEventFollower,
        ReloadMode,
    )
    from botreg.errors import BotregError
    from botreg.secrets import redact_url

    token = _read_token(settings.token_file)
    follower = RedisEventFollower(
        settings.redis_url, settings.stream, cursor_file=settings.cursor_file
    )
    backend = HTTPRegistryBackend(settings.registry_url, token, consistent_with=follower)
    commits: dict[str, str] = {}

    def emit(record: dict[str, Any]) -> None:
        print(json.dumps({"app": settings.name, **record}, sort_keys=True), file=out, flush=True)

    class Recording:
        """The backend, remembering at which commit each bot's config was read."""

        async def get(self, bot_id: str) -> Any:
            registration = await backend.get(bot_id)
            if registration is not None:
                commits[bot_id] = registration.commit or follower.applied_commit
            return registration

        def __getattr__(self, name: str) -> Any:
            return getattr(backend, name)

    class Bots(CachingRegistryManager[str]):
        """Caches each bot's config digest; an invalidation reloads the bot at once."""

        def __init__(self) -> None:
            super().__init__(Recording(), cache_ttl=0, max_cache_size=0)  # type: ignore[arg-type]
            self.closing = False
            self.tasks: set[asyncio.Task[None]] = set()

        async def _create_instance(self, bot_id: str, config: dict[str, Any]) -> str:
            digest = config_hash(config)
            emit(
                {
                    "bot_id": bot_id,
                    "status": "loaded",
                    "commit": commits.get(bot_id, ""),
                    "config_sha256": digest,
                }
            )
            return digest

        async def _destroy_instance(self, instance: str) -> None:
            return None

        def reload(self, bot_id: str) -> None:
            if not self.closing:
                task = asyncio.get_running_loop().create_task(self._reload(bot_id))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

        async def _reload(self, bot_id: str) -> None:
            delay = settings.retry_seconds
            while not self.closing:
                try:
                    await self.get_or_create(bot_id)
                    return
                except BotregError as exc:
                    if "not registered" in str(exc) or "inactive" in str(exc):
                        emit(
                            {
                                "bot_id": bot_id,
                                "status": "removed",
                                "commit": follower.applied_commit,
                            }
                        )
                        return
                    error = str(exc)
                except Exception as exc:  # a daemon restarting, a failover: retry
                    error = f"{type(exc).__name__}: {exc}"
                print(f"example-app: loading {bot_id} failed ({error}); retrying", file=sys.stderr)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY)

        async def invalidate(self, bot_id: str) -> bool:
            dropped = await super().invalidate(bot_id)
            self.reload(bot_id)  # an added bot was not cached: load it too
            return dropped

        async def invalidate_all(self) -> int:
            count = await super().invalidate_all()
            if not self.closing:  # an environment change, a rewritten history, a gap
                task = asyncio.get_running_loop().create_task(self.reload_all())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            return count

        async def reload_all(self) -> None:
            """Load every bot the daemons serve, retried until one answers."""
            delay = settings.retry_seconds
            while not self.closing:
                try:
                    bot_ids = await self.backend.list_ids()
                except Exception as exc:  # a daemon restarting, a failover: retry
                    print(f"example-app: listing bots failed ({exc}); retrying", file=sys.stderr)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _MAX_RETRY_DELAY)
                    continue
                for bot_id in bot_ids:
                    self.reload(bot_id)
                return

    bots = Bots()
    hot = HotReloadManager(backend, bots, event_bus=follower, mode=ReloadMode.EVENT_DRIVEN)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(
        f"example-app {settings.name}: following {settings.stream} on "
        f"{redact_url(settings.redis_url)}, configs from {redact_url(settings.registry_url)}",
        file=sys.stderr,
    )
    initialize = getattr(backend, "initialize", None)
    if initialize is not None:
        await initialize()
    await bots.initialize()
    await hot.initialize()  # subscribed before the follower starts: no event missed
    await asyncio.to_thread(follower.start)
    try:
        first = loop.create_task(bots.reload_all())  # the first load: every bot
        bots.tasks.add(first)
        first.add_done_callback(bots.tasks.discard)
        await stop.wait()
    finally:
        bots.closing = True
        await hot.shutdown()
        await asyncio.to_thread(follower.stop)
        for task in list(bots.tasks):
            task.cancel()
        await asyncio.gather(*bots.tasks, return_exceptions=True)
        await bots.close()
        close = getattr(backend, "close", None)
        if close is not None:
            await close()
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the application; returns the exit code (0 stopped by a signal, 1, 2)."""
    try:
        settings = parse_settings(
            sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ
        )
    except ConfigError as exc:
        print(f"example-app: error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(settings, sys.stdout))
    except ConfigError as exc:
        print(f"example-app: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(
            f"example-app: error: {exc}: install botreg with the daemon extra "
            "(pip install 'botreg[daemon]')",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
