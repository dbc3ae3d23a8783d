"""The seed's event bus on a sync daemon's event log (`{"backend": "eventlog"}`).

An application on the daemon's host (sharing its data dir) follows the log
the daemon appends CloudEvents to, without Redis. The daemon's bot and
knowledge events arrive as seed events on `registry:bots` and
`knowledge:ingestion` (see `from_cloudevent`), and as CloudEvents for
EventSource subscribers (`CachingRegistryManager(..., event_bus=bus)`).

The log is written by the daemon alone: `publish` delivers to this process's
handlers and subscribers only (use the redis backend to reach other processes).
Only events appended after `connect()` are delivered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botreg.api.events import Event, EventBusBase, from_cloudevent
from botreg.datadir import DataDir
from botreg.events.model import CloudEvent

if TYPE_CHECKING:
    from botreg.api.reload import EventLogFollower

__all__ = ["EventLogEventBus"]


class EventLogEventBus(EventBusBase):
    """Follows a daemon's event log from this process.

    Args:
        path: The log file (`<data_dir>/events.jsonl`).
        poll: Seconds between reads of the log.
    """

    def __init__(self, path: str | Path, poll: float = 0.1) -> None:
        super().__init__()
        self.path = Path(path)
        self.poll = poll
        self.follower: EventLogFollower | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EventLogEventBus:
        """`{"data_dir": ...}` or `{"path": ...}`, and optionally `{"poll": seconds}`.

        Raises:
            ValueError: without `data_dir` or `path`, or with both.
        """
        data_dir, path = config.get("data_dir"), config.get("path")
        if (data_dir is None) == (path is None):
            raise ValueError(
                "an eventlog event bus needs 'data_dir' (the sync daemon's data dir) "
                "or 'path' (its events.jsonl), not both"
            )
        log = DataDir(data_dir).events if data_dir is not None else Path(str(path))
        return cls(log, float(config.get("poll", 0.1)))

    async def connect(self) -> None:
        """Start following the log (from its current end)."""
        from botreg.api.reload import EventLogFollower

        await super().connect()
        if self.follower is None:
            self.follower = EventLogFollower(self.path, self.poll)
            self.follower.subscribe(self._on_cloudevent)
            self.follower.start()

    async def close(self) -> None:
        """Stop following."""
        follower, self.follower = self.follower, None
        if follower is not None:
            await asyncio.to_thread(follower.stop)
        await super().close()

    async def publish(self, topic: str, event: Event) -> None:
        """Deliver `event` on `topic` in this process (the log is the daemon's)."""
        if event.topic != topic:
            event = Event(event.type, topic, event.payload, event.id, event.timestamp, event.source)
        self._to_sources(event)
        await self._dispatch(event)

    def _on_cloudevent(self, event: CloudEvent) -> None:
        """The follower's thread: to EventSource subscribers, then the topic's handlers."""
        self._sources.deliver(event)
        seed = from_cloudevent(event)
        if seed is not None:
            self._schedule(seed)
