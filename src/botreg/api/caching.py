"""Caching managers (names from the seed): built bot instances and resolved configs.

Entries expire after `cache_ttl` seconds and the least recently used goes when
`max_cache_size` is reached. Given an event source (the daemon's in-process
`EventBus`, or an `EventLogFollower` on the log of a daemon in another
process), a change event invalidates exactly the bots it names; an
environment change or a rewritten history invalidates everything.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from botreg.api.backends import RegistryBackend
from botreg.api.models import BotNotFoundError, ResolvedConfig
from botreg.errors import BotregError
from botreg.events.model import CloudEvent

__all__ = [
    "CachingRegistryManager",
    "ConfigCachingManager",
    "EventSource",
    "Invalidator",
    "bots_to_invalidate",
]

T = TypeVar("T")
logger = logging.getLogger("botreg.api")
ALL = "*"


class EventSource(Protocol):
    """Anything that calls subscribers with CloudEvents (an EventBus, a follower)."""

    def subscribe(self, subscriber: Callable[[CloudEvent], None]) -> Callable[[], None]:
        """Register a callback; returns a function that unsubscribes."""
        ...


def bots_to_invalidate(event: CloudEvent) -> set[str]:
    """The bot ids an event makes stale ({"*"} for all of them)."""
    if event.type.startswith("botreg.bot."):
        bot_id = event.data.get("bot_id")
        return {str(bot_id)} if bot_id else {ALL}
    if event.type in (
        "botreg.environment.changed",
        "botreg.sync.history_rewritten",
        "botreg.events.gap",  # a follower missed events (stream trimmed): any bot may be stale
    ):
        return {ALL}
    return set()


@dataclass
class _Entry(Generic[T]):
    value: T
    created: float


class _LRUCache(Generic[T]):
    """The TTL + LRU bookkeeping both managers share.

    An entry is fresh for `ttl` seconds: with `ttl=0` never (the seed's
    meaning), so every `get` misses and the caller builds again.
    """

    def __init__(self, ttl: float, max_size: int) -> None:
        if ttl < 0:
            raise ValueError(f"cache_ttl must be 0 (never cached) or more seconds, not {ttl}")
        self.ttl = ttl
        self.max_size = max_size
        self.items: OrderedDict[str, _Entry[T]] = OrderedDict()

    def get(self, key: str) -> T | None:
        entry = self.items.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.created >= self.ttl:
            return None  # expired (at once with ttl 0): the caller replaces it
        self.items.move_to_end(key)
        return entry.value

    def put(self, key: str, value: T) -> list[T]:
        """Store a value; returns the values evicted to make room."""
        self.items[key] = _Entry(value, time.monotonic())
        self.items.move_to_end(key)
        evicted = []
        while self.max_size and len(self.items) > self.max_size:
            _, old = self.items.popitem(last=False)
            evicted.append(old.value)
        return evicted

    def pop(self, key: str) -> T | None:
        entry = self.items.pop(key, None)
        return entry.value if entry is not None else None


_pending: set[asyncio.Task[None]] = set()  # keeps same-thread invalidations alive


class Invalidator:
    """Turns daemon events into invalidations of one manager, run on its loop.

    The daemon emits a commit's change events before it applies the commit
    (and records it as applied) and `botreg.sync.completed` after: a bot event
    that names its commit is held until that commit completes, so a rebuilt
    instance reads the new config, never the old one. A rejected or failed
    cycle drops what was held (the next cycle sends the events again). Events
    without a commit (from other sources) invalidate at once.
    """

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.loop: asyncio.AbstractEventLoop | None = None
        self._held: dict[str, set[str]] = {}

    def __call__(self, event: CloudEvent) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "botreg.sync.completed":
            targets = self._held.pop(str(data.get("to", "")), set())
            self._held.clear()
        elif event.type in ("botreg.sync.failed", "botreg.sync.rejected"):
            self._held.clear()
            return
        else:
            targets = bots_to_invalidate(event)
            commit = data.get("commit")
            if targets and commit:
                self._held.setdefault(str(commit), set()).update(targets)
                return
        self.run(targets)

    def run(self, targets: set[str]) -> None:
        """Invalidate `targets` (bot ids, or {"*"}) on the manager's loop."""
        loop = self.loop
        if not targets or loop is None or loop.is_closed():
            return
        manager = self.manager

        async def run() -> None:
            if ALL in targets:
                await manager.invalidate_all()
            else:
                for bot_id in sorted(targets):
                    await manager.invalidate(bot_id)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # an in-process daemon publishing on the loop's thread
            task = loop.create_task(run())
            _pending.add(task)
            task.add_done_callback(_pending.discard)
        else:  # the daemon's or the follower's thread
            asyncio.run_coroutine_threadsafe(run(), loop)


class _EventDriven:
    """Subscribes a manager to an event source; invalidations run on its loop."""

    def __init__(self, source: EventSource | None) -> None:
        self._source = source
        self._unsubscribe: Callable[[], None] | None = None
        self._invalidator = Invalidator(self)

    def _start_events(self) -> None:
        self._invalidator.loop = asyncio.get_running_loop()
        if self._source is not None and self._unsubscribe is None:
            self._unsubscribe = self._source.subscribe(self._invalidator)

    def _stop_events(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def invalidate(self, bot_id: str) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    async def invalidate_all(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError


class CachingRegistryManager(_EventDriven, ABC, Generic[T]):
    """Caches bot instances built from registry configs.

    Subclasses implement `_create_instance(bot_id, config)` and
    `_destroy_instance(instance)`.

    Args:
        backend: Where the configs come from.
        event_bus: Events that invalidate entries (optional).
        cache_ttl: Seconds an instance lives (0: never cached, as in the seed: each
            `get_or_create` builds a new one and destroys the previous).
        max_cache_size: Instances kept at most (least recently used go first).
    """

    def __init__(
        self,
        backend: RegistryBackend,
        event_bus: EventSource | None = None,
        cache_ttl: float = 300,
        max_cache_size: int = 1000,
    ) -> None:
        super().__init__(event_bus)
        self.backend = backend
        self._cache: _LRUCache[T] = _LRUCache(cache_ttl, max_cache_size)
        self._lock = asyncio.Lock()
        self.created = 0
        self.destroyed = 0

    @abstractmethod
    async def _create_instance(self, bot_id: str, config: dict[str, Any]) -> T:
        """Build an instance from a config."""

    @abstractmethod
    async def _destroy_instance(self, instance: T) -> None:
        """Release an instance."""

    async def initialize(self) -> None:
        """Start listening to events (call from the application's event loop)."""
        self._start_events()

    async def close(self) -> None:
        """Stop listening and destroy every cached instance."""
        self._stop_events()
        await self.invalidate_all()

    async def get_or_create(self, bot_id: str, force_refresh: bool = False) -> T:
        """The cached instance, or a new one from the current config.

        Args:
            bot_id: The bot.
            force_refresh: Build a new instance even if one is cached (the cached
                one is destroyed).

        Raises:
            BotNotFoundError: (a KeyError, as in the seed) if the bot is not
                registered, or is inactive (botreg serves no inactive bot).
        """
        async with self._lock:
            cached = None if force_refresh else self._cache.get(bot_id)
            if cached is not None:
                return cached
            stale = self._cache.pop(bot_id)
            if stale is not None:
                await self._destroy(stale)
            registration = await self.backend.get(bot_id)
            if registration is None:
                raise BotNotFoundError(f"bot {bot_id!r} is not registered")
            if not registration.is_active:
                raise BotNotFoundError(f"bot {bot_id!r} is inactive: activate it to serve it")
            instance = await self._create_instance(bot_id, registration.config)
            self.created += 1
            for evicted in self._cache.put(bot_id, instance):
                await self._destroy(evicted)
            return instance

    async def _destroy(self, instance: T) -> None:
        self.destroyed += 1
        try:
            await self._destroy_instance(instance)
        except Exception:  # a failing destructor must not break the cache
            logger.exception("destroying a bot instance failed")

    async def invalidate(self, bot_id: str) -> bool:
        """Drop one bot's instance (the next get_or_create builds it again)."""
        async with self._lock:
            instance = self._cache.pop(bot_id)
        if instance is None:
            return False
        await self._destroy(instance)
        return True

    async def invalidate_all(self) -> int:
        """Drop every instance; returns how many."""
        async with self._lock:
            instances = [e.value for e in self._cache.items.values()]
            self._cache.items.clear()
        for instance in instances:
            await self._destroy(instance)
        return len(instances)

    def cached_ids(self) -> list[str]:
        """Bot ids with a cached instance (least recently used first)."""
        return list(self._cache.items)


class ConfigCachingManager(_EventDriven):
    """Caches configs resolved for an environment (`ResolvedConfig`).

    Args:
        backend: Where the configs come from.
        environment: An environment name (read from a GitRegistryBackend at the
            same commit) or an environment file's data. None: configs are
            returned as stored, `$resource` references and `${VAR}` unresolved
            (the seed's behaviour without an environment).
        event_bus: Events that invalidate entries (optional).
        cache_ttl: Seconds an entry lives (0: never cached, as in the seed).
        max_cache_size: Entries kept at most.
        env: Variables for `${VAR}` expansion (default: the process environment).
    """

    def __init__(
        self,
        backend: RegistryBackend,
        environment: str | dict[str, Any] | None = None,
        event_bus: EventSource | None = None,
        cache_ttl: float = 300,
        max_cache_size: int = 1000,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(event_bus)
        self.backend = backend
        self.environment = environment
        self.env = env
        self._cache: _LRUCache[ResolvedConfig] = _LRUCache(cache_ttl, max_cache_size)
        self._lock = asyncio.Lock()

    async def initialize(self) -> None:
        """Start listening to events."""
        self._start_events()

    async def close(self) -> None:
        """Stop listening."""
        self._stop_events()

    def _environment_data(self) -> tuple[str, dict[str, Any]]:
        if isinstance(self.environment, dict):
            return str(self.environment.get("name", "")), self.environment
        if isinstance(self.environment, str):
            reader = getattr(self.backend, "environment", None)
            if reader is None:
                raise BotregError(
                    "pass the environment's data: this backend has no environment files"
                )
            return self.environment, reader(self.environment)
        return "", {}

    async def get(self, bot_id: str, force_refresh: bool = False) -> ResolvedConfig:
        """The bot's config resolved for the environment, and its version.

        The version is the commit the config was read from, or for a registration
        outside git (InMemoryBackend) a digest of its config and status.

        Args:
            bot_id: The bot.
            force_refresh: Resolve again even if an entry is cached.

        Raises:
            BotNotFoundError: (a KeyError) if the bot is unknown.
            ResolutionError: if it cannot resolve for the environment.
        """
        from botreg.resolve import resolve_config

        async with self._lock:
            cached = None if force_refresh else self._cache.get(bot_id)
            if cached is not None:
                return cached
            registration = await self.backend.get(bot_id)
            if registration is None:
                raise BotNotFoundError(f"bot {bot_id!r} is not registered")
            if self.environment is None:
                config = copy.deepcopy(registration.config)  # as stored: nothing to resolve with
                name = ""
            else:
                name, data = await asyncio.to_thread(self._environment_data)
                config = resolve_config(registration.config, data, self.env)
            resolved = ResolvedConfig(bot_id, config, registration.version, name)
            self._cache.put(bot_id, resolved)
            return resolved

    async def invalidate(self, bot_id: str) -> bool:
        """Drop one entry."""
        async with self._lock:
            return self._cache.pop(bot_id) is not None

    async def invalidate_all(self) -> int:
        """Drop every entry."""
        async with self._lock:
            count = len(self._cache.items)
            self._cache.items.clear()
            return count
