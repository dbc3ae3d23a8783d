"""Follow the daemon's Redis stream of CloudEvents from any process on any host.

`RedisEventFollower` plays the role of `EventLogFollower` for applications that
do not share a filesystem with the daemon: `botreg sync --events-redis URL`
appends every CloudEvent to a stream (`XADD ... id <event id> type <type>
event <json>`), and each follower reads it with a blocking XREAD (broadcast: its
own cursor, every process sees every event) or XREADGROUP (work distribution:
each event goes to one consumer of the group).

Delivery is ordered and, per follower, at most once per event id: the stream is
written at least once (a retried batch appends the same id again), so ids are
deduplicated in a bounded LRU. The cursor only moves after subscribers ran, so
a Redis outage (reconnect with backoff, one warning per outage) or a restart
with `cursor_file` resumes after the last event delivered, never skipping one.
When the stream was trimmed past the cursor while the follower was away, one
`botreg.events.gap` event says so (caches then drop everything).

redis-py is imported when a follower starts, so `import botreg.api` stays light.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botreg.events.bus import Subscribers
from botreg.events.model import CloudEvent, event_id
from botreg.secrets import redact_url, remember_secret

__all__ = ["GAP_EVENT", "RedisEventFollower"]

logger = logging.getLogger("botreg.api")
GAP_EVENT = "botreg.events.gap"
StreamEntry = tuple[str, dict[str, bytes]]
RawHook = Callable[[str, dict[str, bytes]], None]

_RECENT_IN_CURSOR_FILE = 128  # ids kept across a restart, for a batch appended again


def _parse_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id ("ms-seq") as a comparable pair; (0, 0) if unreadable."""
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisEventFollower:
    """Reads the daemon's CloudEvents from a Redis stream: an EventSource.

    Args:
        url: The Redis URL (redis://, rediss://, unix://). A password in it is
            never logged.
        stream: The stream's key (the daemon's `--events-stream`).
        group: A consumer group for work distribution (None: broadcast, a
            cursor of its own).
        consumer: This process's name in the group (default hostname-pid).
        start: Where a new cursor or group starts: "$" (only events appended
            after `start()`), "0" (the whole stream) or an entry id.
        cursor_file: Broadcast: where the last entry id is kept, so a restart
            resumes after it (it overrides `start` once written).
        block_ms: How long one read blocks; `stop()` returns within about this.
        count: Entries read at most per call (bounds memory per read).
        max_entry_bytes: Larger entries are skipped (a debug line).
        claim_idle_ms: Group: entries pending this long in another consumer
            (a dead one) are claimed by this one.
        dedupe: Event ids remembered to drop entries appended again.
    """

    def __init__(
        self,
        url: str,
        stream: str = "botreg:events",
        *,
        group: str | None = None,
        consumer: str | None = None,
        start: str = "$",
        cursor_file: str | Path | None = None,
        block_ms: int = 1000,
        count: int = 100,
        max_entry_bytes: int = 1024 * 1024,
        claim_idle_ms: int = 30_000,
        dedupe: int = 10_000,
    ) -> None:
        if block_ms < 1 or count < 1 or max_entry_bytes < 1 or dedupe < 1:
            raise ValueError("block_ms, count, max_entry_bytes and dedupe must be positive")
        password = urlsplit(url).password
        if password:
            remember_secret(password)  # masked wherever it might surface in a message
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.start_id = start
        self.cursor_file = Path(cursor_file) if cursor_file is not None else None
        self.block_ms = block_ms
        self.count = count
        self.max_entry_bytes = max_entry_bytes
        self.claim_idle_ms = claim_idle_ms
        self.applied_commit = ""  # the `to` of the last botreg.sync.completed delivered
        self.delivered = 0  # CloudEvents handed to subscribers
        self.duplicates = 0  # entries dropped as an id already delivered
        self.skipped = 0  # malformed or oversized entries
        self.gaps = 0  # gap events delivered
        self.outages = 0  # times Redis became unreachable
        self._subscribers = Subscribers()
        self._raw_hook: RawHook | None = None  # the seed-style bus: entries without `event`
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedupe = dedupe
        self._seen_lock = threading.Lock()  # the bus records its own publishes too
        self._cursor: str | None = None  # broadcast: last entry id handled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._down = False  # inside an outage: its warning was given
        self._gap_check = False  # set on (re)connect; done by the thread, not start()'s caller
        self._name = redact_url(url)

    # -- the EventSource face -------------------------------------------------

    def subscribe(self, subscriber: Callable[[CloudEvent], None]) -> Callable[[], None]:
        """Call `subscriber` with every new event; returns a function that unsubscribes."""
        return self._subscribers.subscribe(subscriber)

    def start(self) -> None:
        """Begin following in a background thread.

        With `start="$"` the current end of the stream is taken here (when Redis
        answers), so an event appended right after `start()` is delivered.
        """
        if self._thread is not None:
            return
        self._stop.clear()
        self._load_cursor_file()
        try:
            self._connect()
        except Exception as exc:  # Redis down at start: the thread keeps trying
            self._outage(exc)
        self._thread = threading.Thread(target=self._run, daemon=True, name="botreg-redis-follower")
        self._thread.start()

    def stop(self) -> None:
        """Stop following (returns within about `block_ms`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.block_ms / 1000 + 10)
            self._thread = None
        self._close_client()

    # -- dedupe -----------------------------------------------------------------

    def remember(self, event_id_: str) -> bool:
        """Record an event id; False if it was already delivered (a duplicate)."""
        with self._seen_lock:
            if event_id_ in self._seen:
                self._seen.move_to_end(event_id_)
                return False
            self._seen[event_id_] = None
            while len(self._seen) > self._dedupe:
                self._seen.popitem(last=False)
            return True

    # -- connection ---------------------------------------------------------------

    def _connect(self) -> None:
        """Open a client and position the cursor or the group (raises if Redis is down)."""
        import redis

        self._close_client()
        client = redis.Redis.from_url(
            self.url,
            protocol=2,  # the reply shapes parsed below
            socket_connect_timeout=5,
            # a blocked read answers within block_ms: longer means a dead connection
            socket_timeout=self.block_ms / 1000 + 10,
            health_check_interval=0,
        )
        try:
            if self.group is not None:
                self._position_group(client)
            else:
                self._position_cursor(client)
        except Exception:
            client.close()
            raise
        self._client = client

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a dead connection: nothing to save
                logger.debug("closing the redis client failed", exc_info=True)

    def _position_cursor(self, client: Any) -> None:
        if self._cursor is None:
            if self.start_id == "$":
                self._cursor = self._last_id(client)  # "$" now, so later appends count
            else:
                self._cursor = "0-0" if self.start_id in ("0", "") else self.start_id
            return
        self._gap_check = True  # resuming: were entries trimmed while away?

    def _position_group(self, client: Any) -> None:
        import redis

        try:
            client.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            self._gap_check = True  # an existing group: were entries trimmed past it?

    def _last_id(self, client: Any) -> str:
        info = self._stream_info(client)
        return _text(info.get("last-generated-id", "0-0")) if info else "0-0"

    def _stream_info(self, client: Any) -> dict[str, Any] | None:
        import redis

        try:
            info: dict[str, Any] = client.xinfo_stream(self.stream)
        except redis.ResponseError:  # no such key: an empty stream
            return None
        return info

    def _check_gap(self, client: Any, cursor: str) -> None:
        """Deliver a gap event if entries after `cursor` were trimmed away.

        Trimming removes the oldest entries first: while the cursor's own entry
        is still there, nothing after it went. Without it, entries after the
        cursor were lost when the stream starts past the cursor and something
        was ever removed from it (a Redis restarted empty removed nothing).
        """
        if cursor in ("0", "0-0") or client.xrange(self.stream, cursor, cursor, count=1):
            return
        info = self._stream_info(client)
        if not info:
            return
        first = info.get("first-entry")
        first_id = _text(first[0]) if first else ""
        added, length = info.get("entries-added"), info.get("length", 0)
        removed = added is None or int(added) > int(length)  # unknown before Redis 7
        deleted = _parse_id(_text(info.get("max-deleted-entry-id") or "0-0"))
        lost = deleted > _parse_id(cursor) or (
            removed and bool(first_id) and _parse_id(first_id) > _parse_id(cursor)
        )
        if not lost:
            return
        logger.warning(
            "the event stream %s was trimmed past this follower's position %s "
            "(first entry now %s): events were missed, everything is invalidated",
            self.stream,
            cursor,
            first_id or "none",
        )
        self.gaps += 1
        self._deliver(
            CloudEvent(
                GAP_EVENT,
                f"redis-stream:{self.stream}",
                event_id(GAP_EVENT, self.stream, cursor, first_id),
                data={"stream": self.stream, "after": cursor, "first": first_id},
            )
        )

    # -- the loop -------------------------------------------------------------

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                if self._client is None:
                    self._connect()
                    if self._down:
                        logger.info("redis event stream at %s is back", self._name)
                        self._down = False
                    delay = 0.1
                if self.group is not None:
                    self._read_group()
                else:
                    self._read_broadcast()
            except Exception as exc:  # an outage or a bad reply: reconnect with backoff
                self._close_client()
                self._outage(exc)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 5.0)

    def _outage(self, exc: BaseException) -> None:
        """One warning per outage; the rest at debug level."""
        message = redact_url(f"{type(exc).__name__}: {exc}")
        if self._down:
            logger.debug("redis event stream at %s still unreachable: %s", self._name, message)
            return
        self._down = True
        self.outages += 1
        logger.warning(
            "redis event stream at %s unreachable (%s); retrying, resuming after %s",
            self._name,
            message,
            self._cursor or "the group's position",
        )

    def _read_broadcast(self) -> None:
        assert self._cursor is not None
        if self._gap_check:
            self._check_gap(self._client, self._cursor)
            self._gap_check = False
        reply = self._client.xread(
            {self.stream: self._cursor}, count=self.count, block=self.block_ms
        )
        entries = self._entries(reply)
        for entry_id, fields in entries:
            if self._stop.is_set():
                return
            self._handle(entry_id, fields)
            self._cursor = entry_id  # moved only once its subscribers ran
            self._save_cursor_file()
        if len(entries) >= self.count:  # behind: make sure trimming has not overtaken us
            self._check_gap(self._client, self._cursor)

    def _read_group(self) -> None:
        if self._gap_check:
            for group in self._client.xinfo_groups(self.stream):
                if _text(group.get("name")) == self.group:
                    self._check_gap(self._client, _text(group.get("last-delivered-id", "0-0")))
            self._gap_check = False
        # own pending entries first (a restart under the same name), then new ones
        pending = self._entries(
            self._client.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=self.count)
        )
        claimed = self._claim()
        fresh = []
        if not pending and not claimed:
            fresh = self._entries(
                self._client.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream: ">"},
                    count=self.count,
                    block=self.block_ms,
                )
            )
        for entry_id, fields in [*pending, *claimed, *fresh]:
            if self._stop.is_set():
                return
            self._handle(entry_id, fields)
            self._client.xack(self.stream, self.group, entry_id)  # after subscribers ran

    def _claim(self) -> list[StreamEntry]:
        """Entries idle longer than `claim_idle_ms` in another (dead) consumer."""
        reply = self._client.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, "0-0", count=self.count
        )
        if not reply or len(reply) < 2:
            return []
        return [(_text(i), dict(f)) for i, f in reply[1] if f is not None]

    @staticmethod
    def _entries(reply: Any) -> list[StreamEntry]:
        out: list[StreamEntry] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                out.append((_text(entry_id), dict(fields or {})))
        return out

    def _handle(self, entry_id: str, fields: dict[Any, Any]) -> None:
        """Turn one entry into a delivery; a malformed one is skipped, never raised."""
        fields = {_text(k): v for k, v in fields.items()}
        if not fields:  # trimmed while pending in a group: nothing left to read
            return
        size = sum(len(v) if isinstance(v, bytes | str) else 0 for v in fields.values())
        if size > self.max_entry_bytes:
            self.skipped += 1
            logger.debug("skipped stream entry %s: %d bytes, over the limit", entry_id, size)
            return
        raw = fields.get("event")
        if raw is None:  # not a CloudEvent: an application's own (the seed-style bus)
            hook = self._raw_hook
            if hook is not None:
                try:
                    hook(entry_id, fields)
                except Exception:
                    logger.exception("handling application event %s failed", entry_id)
            return
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc.get("data", {}), dict):
                raise ValueError("not a CloudEvent object")
            event = CloudEvent.from_dict(doc)
            if not all(isinstance(x, str) and x for x in (event.type, event.id)):
                raise ValueError("type and id must be non-empty strings")
        except (ValueError, KeyError, TypeError) as exc:
            self.skipped += 1
            logger.debug("skipped malformed stream entry %s: %s", entry_id, exc)
            return
        if not self.remember(event.id):
            self.duplicates += 1
            return
        self._deliver(event)

    def _deliver(self, event: CloudEvent) -> None:
        if event.type == "botreg.sync.completed":
            commit = event.data.get("to")
            if isinstance(commit, str) and commit:
                # before the subscribers: a config read they trigger asks for this commit
                self.applied_commit = commit
        self._subscribers.deliver(event)
        self.delivered += 1

    # -- the cursor file ---------------------------------------------------------

    def _load_cursor_file(self) -> None:
        if self.cursor_file is None or self.group is not None or self._cursor is not None:
            return
        try:
            doc = json.loads(self.cursor_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            logger.warning(
                "cursor file %s unreadable (%s): starting from %s",
                self.cursor_file,
                exc,
                self.start_id,
            )
            return
        if not isinstance(doc, dict) or doc.get("stream") != self.stream:
            return  # another stream's position means nothing here
        cursor = doc.get("last_id")
        if isinstance(cursor, str) and _parse_id(cursor) != (0, 0):
            self._cursor = cursor
        for seen in doc.get("recent", []) if isinstance(doc.get("recent"), list) else []:
            if isinstance(seen, str):
                self.remember(seen)

    def _save_cursor_file(self) -> None:
        if self.cursor_file is None:
            return
        with self._seen_lock:
            recent = list(self._seen)[-_RECENT_IN_CURSOR_FILE:]
        doc = {"stream": self.stream, "last_id": self._cursor, "recent": recent}
        temporary = self.cursor_file.with_name(self.cursor_file.name + ".tmp")
        try:
            temporary.write_text(json.dumps(doc), encoding="utf-8")
            os.replace(temporary, self.cursor_file)  # atomic: a kill leaves one or the other
        except OSError as exc:
            logger.warning("cannot write cursor file %s: %s", self.cursor_file, exc)
