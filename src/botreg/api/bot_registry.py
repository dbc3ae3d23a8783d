"""BotRegistry (the seed's names): bot instances for many tenants, cached with a TTL.

The seed's `BotRegistry` builds `DynaBot`s; botreg does not own a bot class, so
the application passes `bot_factory(bot_id, config)` (a function or a coroutine
function) and gets back whatever it builds. The rest is the seed's: a storage
backend (InMemoryBackend, or GitRegistryBackend where a git repository replaces
the seed's databases), `$resource` resolution for an environment, portability
validation on `register`, and an LRU cache of instances with a TTL.

Environments: a name is read from the backend when it has environment files
(GitRegistryBackend: `environments/<name>.yaml` at the commit it reads), else
from `env_dir/<name>.yaml` as in the seed; a mapping is used as the
environment file's data. Without an environment, configs are used as stored.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from botreg.api.backends import InMemoryBackend, RegistryBackend
from botreg.api.caching import _LRUCache
from botreg.api.models import BotNotFoundError, Registration, RegistrationStatus
from botreg.errors import BotregError, UsageError
from botreg.validation.portability import validate_portability

__all__ = ["BotFactory", "BotRegistry", "InMemoryBotRegistry", "create_memory_registry"]

logger = logging.getLogger("botreg.api")
BotFactory = Callable[[str, dict[str, Any]], Any | Awaitable[Any]]
Environment = str | dict[str, Any] | None


class BotRegistry:
    """Bot instances per bot id, built from registered configs and cached.

    Args:
        backend: Where configs live (default: a new InMemoryBackend).
        environment: An environment name or an environment file's data, for
            `$resource` and `${VAR}` resolution; None: configs are used as stored.
        env_dir: Where a named environment's file is read when the backend has
            none (`<env_dir>/<name>.yaml`).
        cache_ttl: Seconds a built bot is reused (0: never cached).
        max_cache_size: Bots kept at most; the least recently used goes first.
        validate_on_register: Refuse non-portable configs in `register`.
        config_key: The key holding the bot's own config (`config["bot"]`); a
            config without it is passed whole.
        bot_factory: `(bot_id, config) -> bot`, sync or async: builds what
            `get_bot` returns (botreg does not build DynaBot).
        env: Variables for `${VAR}` expansion (default: the process environment).
    """

    def __init__(
        self,
        backend: RegistryBackend | None = None,
        environment: Environment = None,
        env_dir: str | Path = "config/environments",
        cache_ttl: float = 300,
        max_cache_size: int = 1000,
        validate_on_register: bool = True,
        config_key: str = "bot",
        *,
        bot_factory: BotFactory | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._backend: RegistryBackend = backend if backend is not None else InMemoryBackend()
        self._environment = environment
        self._env_dir = Path(env_dir)
        self._cache: _LRUCache[Any] = _LRUCache(cache_ttl, max_cache_size)
        self._validate_on_register = validate_on_register
        self._config_key = config_key
        self.bot_factory = bot_factory
        self._env = env
        self._lock = asyncio.Lock()
        self._initialized = False

    @property
    def backend(self) -> RegistryBackend:
        """The storage backend."""
        return self._backend

    @property
    def environment(self) -> Environment:
        """The environment given (a name or data), or None."""
        return self._environment

    @property
    def environment_name(self) -> str | None:
        """The environment's name, or None without one."""
        if isinstance(self._environment, dict):
            return str(self._environment.get("name", "")) or None
        return self._environment

    @property
    def cache_ttl(self) -> float:
        """Seconds a built bot is reused."""
        return self._cache.ttl

    @property
    def max_cache_size(self) -> int:
        """Bots kept at most."""
        return self._cache.max_size

    async def initialize(self) -> None:
        """Initialize the backend (once)."""
        if not self._initialized:
            await self._backend.initialize()
            self._initialized = True

    async def close(self) -> None:
        """Drop every cached bot and close the backend."""
        async with self._lock:
            self._cache.items.clear()
        await self._backend.close()
        self._initialized = False

    async def register(
        self,
        bot_id: str,
        config: dict[str, Any],
        status: str = RegistrationStatus.ACTIVE,
        skip_validation: bool = False,
    ) -> Registration:
        """Store a bot's portable config (on git: a validated commit).

        Raises:
            PortabilityError: if the config is not portable (unless skipped).
        """
        if self._validate_on_register and not skip_validation:
            validate_portability(config)
        registration = await self._backend.register(bot_id, config, status)
        async with self._lock:
            self._cache.pop(bot_id)
        return registration

    def _environment_data(self) -> dict[str, Any] | None:
        from botreg.registry.yamlfast import YamlLoadError, load_fast

        if self._environment is None or isinstance(self._environment, dict):
            return self._environment
        name = self._environment
        reader = getattr(self._backend, "environment", None)
        if callable(reader):  # the registry's own environments (GitRegistryBackend)
            data = reader(name)
            return data if isinstance(data, dict) else {}
        path = self._env_dir / f"{name}.yaml"
        try:
            data = load_fast(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(
                f"environment {name!r} not found: no {path} (pass env_dir=, or the "
                "environment's data as environment=)"
            ) from None
        except (OSError, UnicodeDecodeError, YamlLoadError) as exc:
            raise BotregError(f"{path}: cannot load the environment: {exc}") from None
        if not isinstance(data, dict):
            raise BotregError(f"{path}: an environment file must be a mapping")
        return data

    async def _build(self, bot_id: str) -> Any:
        from botreg.resolve import resolve_config

        if self.bot_factory is None:
            raise UsageError(
                "BotRegistry.get_bot needs a bot factory: BotRegistry(..., "
                "bot_factory=build) where build(bot_id, config) returns your bot"
            )
        registration = await self._backend.get(bot_id)
        if registration is None:
            raise BotNotFoundError(f"no bot configuration found for {bot_id!r}")
        if not registration.is_active:
            raise BotNotFoundError(f"bot {bot_id!r} is inactive: activate it to serve it")
        config = registration.config
        environment = await asyncio.to_thread(self._environment_data)
        if environment is not None:
            config = resolve_config(config, environment, self._env)
        bot_config = config.get(self._config_key, config)
        built = self.bot_factory(bot_id, bot_config)
        return await built if inspect.isawaitable(built) else built

    async def get_bot(self, bot_id: str, force_refresh: bool = False) -> Any:
        """The bot built from its current config, cached for `cache_ttl` seconds.

        Args:
            bot_id: The bot.
            force_refresh: Build it again even if a cached one is fresh.

        Raises:
            BotNotFoundError: (a KeyError) if the bot is not registered or inactive.
            ResolutionError: if its config does not resolve for the environment.
            UsageError: without a `bot_factory`.
        """
        async with self._lock:
            cached = None if force_refresh else self._cache.get(bot_id)
            if cached is not None:
                return cached
            bot = await self._build(bot_id)
            self._cache.put(bot_id, bot)
            return bot

    async def get_config(self, bot_id: str) -> dict[str, Any] | None:
        """The bot's config as stored (unresolved), or None."""
        return await self._backend.get_config(bot_id)

    async def get_registration(self, bot_id: str) -> Registration | None:
        """The bot's registration, or None."""
        return await self._backend.get(bot_id)

    async def _uncache(self, bot_id: str) -> None:
        async with self._lock:
            self._cache.pop(bot_id)

    async def unregister(self, bot_id: str) -> bool:
        """Remove the bot (hard delete); False if it was not registered."""
        await self._uncache(bot_id)
        return await self._backend.unregister(bot_id)

    async def deactivate(self, bot_id: str) -> bool:
        """Deactivate the bot (soft delete); False if it was not registered."""
        await self._uncache(bot_id)
        return await self._backend.deactivate(bot_id)

    async def exists(self, bot_id: str) -> bool:
        """True if the bot is registered and active."""
        return await self._backend.exists(bot_id)

    async def list_bots(self) -> list[str]:
        """The active bots' ids."""
        return await self._backend.list_ids()

    async def count(self) -> int:
        """Number of active bots."""
        return await self._backend.count()

    def get_cached_bots(self) -> list[str]:
        """Ids of the bots cached now (least recently used first)."""
        return list(self._cache.items)

    def clear_cache(self) -> None:
        """Drop every cached bot (registrations stay)."""
        self._cache.items.clear()

    async def invalidate(self, bot_id: str) -> bool:
        """Drop one cached bot (so a HotReloadManager can drive this registry)."""
        async with self._lock:
            return self._cache.pop(bot_id) is not None

    async def invalidate_all(self) -> int:
        """Drop every cached bot; returns how many."""
        async with self._lock:
            count = len(self._cache.items)
            self._cache.items.clear()
            return count

    # the seed's older names
    async def register_client(self, client_id: str, bot_config: dict[str, Any]) -> None:
        """Deprecated seed name of `register`."""
        await self.register(client_id, bot_config)

    async def remove_client(self, client_id: str) -> None:
        """Deprecated seed name of `unregister`."""
        await self.unregister(client_id)

    def get_cached_clients(self) -> list[str]:
        """Deprecated seed name of `get_cached_bots`."""
        return self.get_cached_bots()

    def __repr__(self) -> str:
        env = f", environment={self.environment_name!r}" if self.environment_name else ""
        cached = len(self._cache.items)
        return f"{type(self).__name__}(backend={self._backend!r}, cached={cached}{env})"


class InMemoryBotRegistry(BotRegistry):
    """A BotRegistry on its own InMemoryBackend (tests, CLIs, one process).

    Takes BotRegistry's arguments except `backend`.
    """

    def __init__(
        self,
        environment: Environment = None,
        env_dir: str | Path = "config/environments",
        cache_ttl: float = 300,
        max_cache_size: int = 1000,
        validate_on_register: bool = True,
        config_key: str = "bot",
        *,
        bot_factory: BotFactory | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            InMemoryBackend(),
            environment,
            env_dir,
            cache_ttl,
            max_cache_size,
            validate_on_register,
            config_key,
            bot_factory=bot_factory,
            env=env,
        )

    async def clear(self) -> None:
        """Remove every registration and every cached bot."""
        await self._backend.clear()
        self.clear_cache()


def create_memory_registry(
    environment: Environment = None,
    env_dir: str | Path = "config/environments",
    cache_ttl: float = 300,
    max_cache_size: int = 1000,
    validate_on_register: bool = True,
    config_key: str = "bot",
    *,
    bot_factory: BotFactory | None = None,
    env: dict[str, str] | None = None,
) -> InMemoryBotRegistry:
    """An InMemoryBotRegistry (the seed's factory; same arguments)."""
    return InMemoryBotRegistry(
        environment,
        env_dir,
        cache_ttl,
        max_cache_size,
        validate_on_register,
        config_key,
        bot_factory=bot_factory,
        env=env,
    )
