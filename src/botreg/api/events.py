"""The seed's event bus: `create_event_bus`, `Event`, `EventType`, topics.

Applications written against the seed publish and subscribe with
`await bus.publish(topic, Event(...))` and `await bus.subscribe(topic, handler)`
(handlers sync or `async def`, both run; a handler that raises is logged and
counted in `bus.handler_errors`, and the next handler still runs). Three backends:

- `{"backend": "memory"}`: one process.
- `{"backend": "redis", "url": ..., "stream": "botreg:events"}`: the daemon's
  Redis stream, followed by a `RedisEventFollower`. The daemon's CloudEvents
  arrive as seed events (`botreg.bot.*` on `registry:bots`,
  `botreg.knowledge.ingested` / `ingest_failed` on `knowledge:ingestion`), and
  events an application publishes are appended to the same stream (fields
  `topic`, `id`, `type`, `data`; no `event` field, so daemons and other readers
  of CloudEvents skip them) and reach every process that follows it.
- `{"backend": "eventlog", "data_dir": ".botreg"}`: the event log of a sync
  daemon on this host (`<data_dir>/events.jsonl`, or `"path"`), followed by an
  `EventLogFollower` (see `botreg.api.eventlog_bus`). The log is the daemon's:
  events an application publishes reach this process's handlers only.

A bus is also an EventSource: `CachingRegistryManager(backend, event_bus=bus)`
and `HotReloadManager(..., event_bus=bus)` subscribe to it with one callback
and get CloudEvents (a seed event on `registry:bots` becomes `botreg.bot.<type>`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from botreg.api.redis_follower import RedisEventFollower
from botreg.events.bus import Subscribers
from botreg.events.model import CloudEvent
from botreg.secrets import dumps_strict, redact_url, remember_secret

__all__ = [
    "BOTS_TOPIC",
    "KNOWLEDGE_TOPIC",
    "Event",
    "EventBusBase",
    "EventType",
    "MemoryEventBus",
    "RedisEventBus",
    "Subscription",
    "create_event_bus",
]

logger = logging.getLogger("botreg.api")
BOTS_TOPIC = "registry:bots"
KNOWLEDGE_TOPIC = "knowledge:ingestion"
Handler = Callable[["Event"], Awaitable[None] | None]


class EventType(StrEnum):
    """What happened (the seed's names)."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"
    FAILED = "failed"


@dataclass(frozen=True)
class Event:
    """One seed-style event on a topic."""

    type: EventType
    topic: str
    payload: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form carried on the stream."""
        return {
            "type": self.type.value,
            "topic": self.topic,
            "payload": self.payload,
            "id": self.id,
            "timestamp": self.timestamp.isoformat(),
            "source": self.source,
        }


# the daemon's CloudEvents that the seed's topics carry
_FROM_CLOUDEVENT: dict[str, tuple[str, EventType]] = {
    "botreg.bot.created": (BOTS_TOPIC, EventType.CREATED),
    "botreg.bot.updated": (BOTS_TOPIC, EventType.UPDATED),
    "botreg.bot.deleted": (BOTS_TOPIC, EventType.DELETED),
    "botreg.bot.activated": (BOTS_TOPIC, EventType.ACTIVATED),
    "botreg.bot.deactivated": (BOTS_TOPIC, EventType.DEACTIVATED),
    "botreg.knowledge.ingested": (KNOWLEDGE_TOPIC, EventType.UPDATED),
    "botreg.knowledge.ingest_failed": (KNOWLEDGE_TOPIC, EventType.FAILED),
}


def from_cloudevent(event: CloudEvent) -> Event | None:
    """The seed event for a daemon CloudEvent (None for types no topic carries)."""
    mapped = _FROM_CLOUDEVENT.get(event.type)
    if mapped is None:
        return None
    topic, kind = mapped
    try:
        when = datetime.fromisoformat(event.time)
    except ValueError:
        when = datetime.now(UTC)
    return Event(kind, topic, dict(event.data), event.id, when, event.source)


def to_cloudevent(event: Event) -> CloudEvent | None:
    """The CloudEvent an EventSource subscriber gets for a seed event on `registry:bots`."""
    if event.topic != BOTS_TOPIC:
        return None
    return CloudEvent(
        f"botreg.bot.{event.type.value}",
        event.source or "app",
        event.id,
        data=dict(event.payload),
        time=event.timestamp.isoformat(),
    )


class Subscription:
    """A topic subscription: `await` it (the seed's style) or call it to unsubscribe."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel = cancel

    async def cancel(self) -> None:
        """Unsubscribe (the seed's `await subscription.cancel()`)."""
        self._cancel()

    def __await__(self) -> Generator[Any, None, Subscription]:
        # registered already: awaiting is for code written against the seed
        return self
        yield  # pragma: no cover - makes this a generator

    def __call__(self) -> None:
        """Unsubscribe."""
        self._cancel()


class EventBusBase:
    """Topics and handlers, shared by every backend."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._lock = threading.Lock()
        self._sources = Subscribers()  # EventSource subscribers: CloudEvents
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handler_failures = 0

    @property
    def handler_errors(self) -> int:
        """How many handler calls raised (topic handlers and CloudEvent subscribers).

        Each failure is also logged with its traceback; the other handlers still run.
        """
        with self._lock:
            return self._handler_failures + self._sources.failed

    async def publish(self, topic: str, event: Event) -> None:
        """Deliver `event` on `topic` (each backend says where it goes)."""
        raise NotImplementedError  # pragma: no cover - every backend overrides it

    async def connect(self) -> None:
        """Start delivering (handlers then run on this event loop)."""
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Stop delivering."""
        self._loop = None

    def subscribe(self, topic: Any, handler: Handler | None = None) -> Any:
        """`await bus.subscribe(topic, handler)`; or, as an EventSource,
        `bus.subscribe(callback)` for CloudEvents, returning an unsubscribe function.

        Args:
            topic: A topic name (or, alone, a CloudEvent callback).
            handler: Called with each `Event` on the topic; sync or async.
        """
        if handler is None:
            if not callable(topic):
                raise TypeError("subscribe(topic, handler) or subscribe(callback)")
            if inspect.iscoroutinefunction(topic):
                raise TypeError(
                    "subscribe(callback) takes a plain function called with CloudEvents; "
                    "for an async handler, subscribe(topic, handler)"
                )
            return self._subscribe_cloudevents(topic)
        if not callable(handler):
            raise TypeError(f"the handler for {topic!r} is not callable")
        name = str(topic)
        with self._lock:
            self._handlers.setdefault(name, []).append(handler)

        def cancel() -> None:
            with self._lock:
                handlers = self._handlers.get(name, [])
                if handler in handlers:
                    handlers.remove(handler)

        return Subscription(cancel)

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a topic subscription."""
        subscription()

    def _subscribe_cloudevents(self, callback: Callable[[CloudEvent], None]) -> Callable[[], None]:
        return self._sources.subscribe(callback)

    async def _dispatch(self, event: Event) -> None:
        """Run every handler of the event's topic, in order; one that fails is logged."""
        with self._lock:
            handlers = list(self._handlers.get(event.topic, []))
        for handler in handlers:
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                with self._lock:
                    self._handler_failures += 1
                logger.exception("event handler failed on %s %s", event.topic, event.id)

    def _schedule(self, event: Event) -> None:
        """Dispatch on the bus's loop, from another thread (a follower's)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # closed: nobody is listening any more
        try:
            asyncio.run_coroutine_threadsafe(self._dispatch(event), loop)
        except RuntimeError:  # the loop closed meanwhile
            return

    def _to_sources(self, event: Event) -> None:
        cloud = to_cloudevent(event)
        if cloud is not None:
            self._sources.deliver(cloud)


class MemoryEventBus(EventBusBase):
    """One process: `publish` runs the topic's handlers before it returns."""

    async def publish(self, topic: str, event: Event) -> None:
        """Deliver `event` on `topic`."""
        if event.topic != topic:
            event = Event(event.type, topic, event.payload, event.id, event.timestamp, event.source)
        self._to_sources(event)
        await self._dispatch(event)


class RedisEventBus(EventBusBase):
    """The daemon's Redis stream as the seed's bus, across processes and hosts.

    Args:
        url: The Redis URL.
        stream: The stream (the daemon's `--events-stream`).
        maxlen: Approximate length the stream is trimmed to on publish.
        **follower: More `RedisEventFollower` arguments (`group`, `consumer`,
            `start`, `cursor_file`, `block_ms`).
    """

    def __init__(
        self, url: str, stream: str = "botreg:events", maxlen: int = 100_000, **follower: Any
    ) -> None:
        super().__init__()
        self._url = url  # with its password: used to connect, never shown
        self.url = redact_url(url)
        self.stream = stream
        self.maxlen = maxlen
        self.follower = RedisEventFollower(url, stream, **follower)
        self.follower._raw_hook = self._on_app_entry
        self.follower.subscribe(self._on_cloudevent)
        self._client: Any = None

    async def connect(self) -> None:
        """Connect for publishing and start following the stream."""
        import redis.asyncio

        await super().connect()
        self._client = redis.asyncio.Redis.from_url(self._url, socket_connect_timeout=5)
        await asyncio.to_thread(self.follower.start)

    async def close(self) -> None:
        """Stop following and disconnect."""
        await asyncio.to_thread(self.follower.stop)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        await super().close()

    async def publish(self, topic: str, event: Event) -> None:
        """Append `event` to the stream, for every process following it.

        This process's handlers run before `publish` returns (as with the memory
        backend); its own entry, read back from the stream, is then skipped.
        """
        if self._client is None:
            raise RuntimeError("connect() the event bus before publishing")
        if event.topic != topic:
            event = Event(event.type, topic, event.payload, event.id, event.timestamp, event.source)
        doc = event.to_dict()
        fields = {
            "topic": topic,
            "id": event.id,
            "type": event.type.value,
            "data": dumps_strict(doc),
        }
        self.follower.remember(event.id)
        try:
            await self._client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
        except Exception as exc:
            raise ConnectionError(
                f"publishing to {redact_url(self.url)} failed: {redact_url(str(exc))}"
            ) from None
        self._to_sources(event)
        await self._dispatch(event)

    # -- the follower's thread ----------------------------------------------------

    def _on_cloudevent(self, event: CloudEvent) -> None:
        """A daemon's CloudEvent: to the EventSource subscribers, then the topic's handlers.

        EventSource subscribers are kept apart from the follower's own list, so an
        application's event (turned into a CloudEvent for them) never comes back
        here to be dispatched to the topic's handlers a second time.
        """
        self._sources.deliver(event)
        seed = from_cloudevent(event)
        if seed is not None:
            self._schedule(seed)

    def _on_app_entry(self, entry_id: str, fields: dict[str, bytes]) -> None:
        """An event another process published: parse it, dedupe, deliver."""
        try:
            doc = json.loads(fields["data"])
            event = Event(
                EventType(doc["type"]),
                str(doc["topic"]),
                dict(doc.get("payload") or {}),
                str(doc["id"]),
                datetime.fromisoformat(doc["timestamp"]),
                str(doc.get("source", "")),
            )
        except Exception as exc:  # anyone can XADD: any malformed entry is skipped
            logger.debug(
                "skipped application entry %s: %s", entry_id, f"{type(exc).__name__}: {exc}"
            )
            return
        if not self.follower.remember(event.id):
            return  # this process published it, or it was appended twice
        self._to_sources(event)
        self._schedule(event)


def create_event_bus(config: dict[str, Any]) -> EventBusBase:
    """An event bus from a config (the seed's factory).

    Args:
        config: `{"backend": "memory"}`; `{"backend": "redis", "url": ...,
            "stream": "botreg:events"}` (or `host`, `port`, `db`, `password`,
            `ssl` instead of `url`, as in the seed's environment files; and
            `group`, `consumer`, `start`, `cursor_file`, `block_ms`, `maxlen`);
            or `{"backend": "eventlog", "data_dir": ...}` (or `"path"`: the log
            file; and `"poll"`: seconds between reads, default 0.1).

    Raises:
        ValueError: for an unknown backend, a redis config without a server, or
            an eventlog config without `data_dir` or `path`.
    """
    backend = str(config.get("backend", "memory"))
    if backend == "memory":
        return MemoryEventBus()
    if backend == "eventlog":
        from botreg.api.eventlog_bus import EventLogEventBus

        return EventLogEventBus.from_config(config)
    if backend != "redis":
        raise ValueError(
            f"unknown event bus backend {backend!r}: use 'memory', 'redis' or 'eventlog'"
        )
    url = config.get("url")
    if not url:
        host = config.get("host")
        if not host:
            raise ValueError("a redis event bus needs 'url' or 'host'")
        scheme = "rediss" if config.get("ssl") else "redis"
        password = config.get("password")
        auth = ""
        if password:
            remember_secret(str(password))  # before anything could print it
            # quoted: '%', '/', '@', ':' or '#' in a password would break the URL
            auth = f":{quote(str(password), safe='')}@"
        url = f"{scheme}://{auth}{host}:{int(config.get('port', 6379))}/{int(config.get('db', 0))}"
    options = {
        k: config[k]
        for k in ("group", "consumer", "start", "cursor_file", "block_ms")
        if k in config
    }
    return RedisEventBus(
        str(url),
        str(config.get("stream", "botreg:events")),
        int(config.get("maxlen", 100_000)),
        **options,
    )
