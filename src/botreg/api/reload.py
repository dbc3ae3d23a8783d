"""Hot reload (names from the seed): a poller, an event-log follower, and the manager
that wires them to a caching manager."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from botreg.api.backends import RegistryBackend
from botreg.api.caching import EventSource, Invalidator
from botreg.api.models import ReloadMode
from botreg.events.bus import Subscribers
from botreg.events.log import EventLogReader
from botreg.events.model import CloudEvent

__all__ = ["EventLogFollower", "HotReloadManager", "RegistryPoller"]

logger = logging.getLogger("botreg.api")
OnChange = Callable[[str, dict[str, Any] | None, dict[str, Any] | None], Awaitable[None] | None]


class RegistryPoller:
    """Polls a backend and reports each bot whose config changed (added, changed, removed).

    `on_change(bot_id, old_config, new_config)` may be a coroutine function;
    old or new is None for an added or removed bot.
    """

    def __init__(
        self, backend: RegistryBackend, poll_interval: float = 60, on_change: OnChange | None = None
    ) -> None:
        self.backend = backend
        self.poll_interval = poll_interval
        self.on_change = on_change
        self._known: dict[str, dict[str, Any]] | None = None
        self._version: str | None = None  # the backend's commit at the last snapshot
        self._task: asyncio.Task[None] | None = None

    async def _snapshot(self) -> dict[str, dict[str, Any]] | None:
        """Every bot's config with its status; None if the backend says nothing moved."""
        changes_since = getattr(self.backend, "changes_since", None)
        if changes_since is not None:  # GitRegistryBackend: O(1) while the commit stays
            version, configs = await changes_since(self._version)
            self._version = str(version)
            return None if configs is None else dict(configs)
        # every bot, inactive ones too: a deactivation is a change to report
        list_all = getattr(self.backend, "list_all", None)
        if list_all is not None:
            registrations = await list_all()
        else:  # a backend from before `list_all` was in the protocol
            found = [await self.backend.get(b) for b in await self.backend.list_ids()]
            registrations = [r for r in found if r is not None]
        return {r.bot_id: {**r.config, "status": r.status} for r in registrations}

    async def poll_once(self) -> list[str]:
        """Compare with the last poll; report and return the changed bot ids."""
        current = await self._snapshot()
        if current is None:
            return []
        if self._known is None:
            self._known = current
            return []
        changed = sorted(
            b for b in {*self._known, *current} if self._known.get(b) != current.get(b)
        )
        previous, self._known = self._known, current
        for bot_id in changed:
            if self.on_change is not None:
                result = self.on_change(bot_id, previous.get(bot_id), current.get(bot_id))
                if asyncio.iscoroutine(result):
                    await result
        return changed

    async def start(self) -> None:
        """Take the first snapshot and poll in the background."""
        await self.poll_once()

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.poll_interval)
                try:
                    await self.poll_once()
                except Exception:  # a failed poll is retried at the next interval
                    logger.exception("registry poll failed")

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class EventLogFollower:
    """Follows a daemon's event log from another process: an EventSource.

    Only events appended after `start()` are delivered, each once, in order,
    across rotations of the log (see `botreg.events.log.EventLogReader`).
    """

    def __init__(self, path: str | Path, poll: float = 0.1) -> None:
        self.path = Path(path)
        self.poll = poll
        self._subscribers = Subscribers()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, subscriber: Callable[[CloudEvent], None]) -> Callable[[], None]:
        """Call `subscriber` with every new event; returns a function that unsubscribes."""
        return self._subscribers.subscribe(subscriber)

    def start(self) -> None:
        """Begin following (from the current end of the log)."""
        # positioned here, not in the thread: an event appended right after start() counts
        reader = EventLogReader(self.path, from_end=True)
        self._thread = threading.Thread(
            target=self._run, args=(reader,), daemon=True, name="botreg-event-follower"
        )
        self._thread.start()

    def _run(self, reader: EventLogReader) -> None:
        try:
            while True:
                for raw in reader.read():
                    try:
                        event = CloudEvent.from_dict(raw)
                    except (KeyError, TypeError):
                        continue
                    self._subscribers.deliver(event)
                if self._stop.wait(self.poll):
                    return
        except OSError as exc:  # the log's folder went away: say so once, stop following
            logger.error("event log follower stopped: %s", exc)
        finally:
            reader.close()

    def stop(self) -> None:
        """Stop following."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class HotReloadManager:
    """Keeps a caching manager fresh: by polling the backend, by events, or both.

    Args:
        backend: The registry backend.
        caching_manager: A CachingRegistryManager or ConfigCachingManager.
        event_bus: The event source for EVENT_DRIVEN and HYBRID (an EventBus or
            an EventLogFollower).
        mode: ReloadMode.POLLING, EVENT_DRIVEN or HYBRID.
        polling_interval: Seconds between polls.
    """

    def __init__(
        self,
        backend: RegistryBackend,
        caching_manager: Any,
        event_bus: EventSource | None = None,
        mode: ReloadMode = ReloadMode.POLLING,
        polling_interval: float = 60,
    ) -> None:
        if mode is not ReloadMode.POLLING and event_bus is None:
            raise ValueError(f"{mode.name} needs an event_bus")
        self.backend = backend
        self.caching_manager = caching_manager
        self.event_bus = event_bus
        self.mode = mode
        self.poller = RegistryPoller(backend, polling_interval, self._on_change)
        self._unsubscribe: Callable[[], None] | None = None
        self._invalidator = Invalidator(caching_manager)

    async def _on_change(self, bot_id: str, _old: Any, _new: Any) -> None:
        await self.caching_manager.invalidate(bot_id)

    async def initialize(self) -> None:
        """Start polling and/or listening, as the mode says."""
        self._invalidator.loop = asyncio.get_running_loop()
        if self.mode in (ReloadMode.EVENT_DRIVEN, ReloadMode.HYBRID):
            assert self.event_bus is not None
            self._unsubscribe = self.event_bus.subscribe(self._invalidator)
        if self.mode in (ReloadMode.POLLING, ReloadMode.HYBRID):
            await self.poller.start()

    async def shutdown(self) -> None:
        """Stop polling and listening."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.poller.stop()
