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

Whoever can XADD to the stream can write anything there, so an entry is data,
never a reason to stop: a malformed entry (any exception while decoding it) is
skipped and the cursor moves past it; a subscriber that raises is logged. A
read that fails backs off (0.1 s doubling to 5 s) until a read succeeds again.
Every Redis call runs under a whole-reply deadline (`block_ms` + 5 s): a server
that trickles its answer has its socket shut down, as `stop()` does to end a
blocked read at once.

redis-py is imported when a follower starts, so `import botreg.api` stays light.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from botreg.events.bus import Subscribers
from botreg.events.model import CloudEvent, event_id
from botreg.secrets import redact_url, remember_secret

__all__ = ["GAP_EVENT", "RedisEventFollower", "is_commit_id"]

logger = logging.getLogger("botreg.api")
GAP_EVENT = "botreg.events.gap"
StreamEntry = tuple[str, dict[str, bytes]]
RawHook = Callable[[str, dict[str, bytes]], None]

_RECENT_IN_CURSOR_FILE = 128  # ids kept across a restart, for a batch appended again
_MAX_DELAY = 5.0  # seconds between retries of a read that keeps failing
_REPLY_GRACE = 5.0  # seconds a reply may take beyond block_ms before its socket is shut
# a full commit id (SHA-1 or SHA-256): anything else in `to` is not a commit
_COMMIT_ID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def is_commit_id(value: object) -> bool:
    """True for a full lowercase hex commit id (40 or 64 characters)."""
    return isinstance(value, str) and _COMMIT_ID.fullmatch(value) is not None


def _shut_sockets(client: Any) -> None:
    """Shut down every socket of a redis-py client, from any thread.

    A read blocked in recv() returns at once (redis-py then raises a
    ConnectionError in the reading thread); closing the client from another
    thread instead would pull the file out from under that read.
    """
    pool = getattr(client, "connection_pool", None)
    try:  # the reading thread may be moving connections between the two
        connections = [
            *list(getattr(pool, "_available_connections", ())),
            *list(getattr(pool, "_in_use_connections", ())),
        ]
    except RuntimeError:
        connections = list(getattr(pool, "_in_use_connections", ()))
    for connection in connections:
        sock = getattr(connection, "_sock", None)
        if isinstance(sock, socket.socket):
            with suppress(OSError):  # already closed or never connected
                sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """Shuts a client's sockets down when one call outlives its deadline.

    redis-py's socket timeout applies to each recv(), so a server sending a
    byte now and then holds a call forever; this deadline covers the whole
    call. One thread per follower, sleeping until the armed deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.client: Any = None  # the client whose sockets a firing shuts
        self.fired = False  # the last armed call outlived its deadline
        self._deadline: float | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run the body (one Redis call) under the deadline."""
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="botreg-redis-watchdog"
                )
                self._thread.start()
            self.fired = False
            self._deadline = time.monotonic() + self.seconds
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._deadline = None

    def shut(self) -> None:
        """Shut the current client's sockets down now (`stop()`)."""
        with self._cond:
            client = self.client
        if client is not None:
            _shut_sockets(client)

    def close(self) -> None:
        """End the watchdog's thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=1)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._deadline = None
                self.fired = True
                if self.client is not None:
                    _shut_sockets(self.client)


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
        count: Entries read at most per call. The count starts at 1 and doubles
            while entries are under `max_entry_bytes`; after a larger one it is 1
            again. Memory per read is bounded by `count` x the largest entry the
            stream holds: whoever can XADD to it is trusted that far.
        max_entry_bytes: Larger entries are skipped (a debug line).
        claim_idle_ms: Group: entries pending this long in another consumer
            (a dead one) are claimed by this one.
        dedupe: Event ids remembered to drop entries appended again.
        reply_deadline: Seconds one Redis call may take in all (default
            `block_ms` + 5 s); a longer one (a server trickling its answer) has
            its socket shut down and counts as an outage.
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
        reply_deadline: float | None = None,
    ) -> None:
        if block_ms < 1 or count < 1 or max_entry_bytes < 1 or dedupe < 1:
            raise ValueError("block_ms, count, max_entry_bytes and dedupe must be positive")
        if reply_deadline is None:
            reply_deadline = block_ms / 1000 + _REPLY_GRACE
        if reply_deadline <= block_ms / 1000:
            raise ValueError("reply_deadline must be longer than block_ms")
        password = urlsplit(url).password
        if password:
            # masked wherever it might surface in a message, as written and decoded
            remember_secret(password)
            remember_secret(unquote(password))
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
        self._wrong_key = False  # the key is not a stream: its error was given
        self._batch = 1  # this read's COUNT: grows while entries are small
        self._oversize = False  # the last batch held an entry over max_entry_bytes
        self._watchdog = _Watchdog(reply_deadline)
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
        self._watchdog = _Watchdog(self._watchdog.seconds)  # stop() closed the last one
        self._load_cursor_file()
        try:
            self._connect()
        except Exception as exc:  # Redis down at start: the thread keeps trying
            self._failed(exc)
        self._thread = threading.Thread(target=self._run, daemon=True, name="botreg-redis-follower")
        self._thread.start()

    def stop(self) -> None:
        """Stop following; the thread ends within about a second.

        The connection's socket is shut down, so a read blocked in Redis (or in
        a server trickling its reply) returns at once; the thread, seeing the
        stop, closes its client itself and logs nothing.
        """
        self._stop.set()
        self._watchdog.shut()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self.block_ms / 1000 + 1)
        if thread is None or not thread.is_alive():
            self._close_client()  # else the thread closes it when its call returns
        self._watchdog.close()

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
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._close_client()
        client = redis.Redis.from_url(
            self.url,
            protocol=2,  # the reply shapes parsed below
            socket_connect_timeout=5,
            # a blocked read answers within block_ms: longer means a dead connection
            socket_timeout=self.block_ms / 1000 + _REPLY_GRACE,
            health_check_interval=0,
            # no retries inside redis-py: a shut socket (stop, the watchdog) must
            # end the call, and _run has its own backoff
            retry=Retry(NoBackoff(), 0),
        )
        self._watchdog.client = client
        self._batch = 1
        try:
            with self._watchdog.guard():  # the handshake is a call too
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
        try:
            self._loop()
        finally:
            self._close_client()  # this thread's own client, whatever ended the loop

    def _loop(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                if self._client is None:
                    self._connect()
                if self.group is not None:
                    self._read_group()
                else:
                    self._read_broadcast()
            except Exception as exc:  # an outage, a bad reply, a wrong key: back off
                if self._stop.is_set():
                    return  # stop() shut the socket: not an outage
                self._close_client()
                self._failed(exc)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, _MAX_DELAY)
                continue
            # only a read that completed ends an outage and resets the backoff: a
            # reconnect that succeeds before the same read fails again does not
            delay = 0.1
            if self._down:
                logger.info("redis event stream at %s is back", self._name)
                self._down = False
            self._wrong_key = False

    def _failed(self, exc: BaseException) -> None:
        """Report a failed call: a key of the wrong type, or an outage."""
        if "WRONGTYPE" in str(exc):  # Redis's error for a key holding another type
            self._wrong_type(exc)
        else:
            self._outage(exc)

    def _wrong_type(self, exc: BaseException) -> None:
        """A key that is not a stream: an operator's mistake, one error until fixed."""
        message = redact_url(str(exc))
        if self._wrong_key:
            logger.debug("redis key %s is still not a stream: %s", self.stream, message)
            return
        self._wrong_key = True
        logger.error(
            "redis key %s at %s is not a stream (%s): delete it or follow another "
            "stream (the daemon's --events-stream); retrying every %.0f s",
            self.stream,
            self._name,
            message,
            _MAX_DELAY,
        )

    def _outage(self, exc: BaseException) -> None:
        """One warning per outage; the rest at debug level."""
        message = redact_url(f"{type(exc).__name__}: {exc}")
        if self._watchdog.fired:
            message += f" (no complete answer within {self._watchdog.seconds:g} s)"
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
        batch = self._batch
        with self._watchdog.guard():
            reply = self._client.xread(
                {self.stream: self._cursor}, count=batch, block=self.block_ms
            )
        entries = self._entries(reply)
        self._oversize = False
        for entry_id, fields in entries:
            if self._stop.is_set():
                return
            self._handle(entry_id, fields)
            self._cursor = entry_id  # moved only once its subscribers ran (or it was skipped)
            self._save_cursor_file()
        self._adapt(len(entries), batch)
        if len(entries) >= batch:  # behind: make sure trimming has not overtaken us
            with self._watchdog.guard():
                self._check_gap(self._client, self._cursor)

    def _adapt(self, read: int, batch: int) -> None:
        """The next read's COUNT: 1 after an oversize entry, else doubling to `count`.

        A reply is read whole before any entry's size is known, so after a large
        entry the next reads take one entry at a time until past the large ones.
        """
        if self._oversize:
            self._batch = 1
        elif read >= batch:
            self._batch = min(batch * 2, self.count)

    def _read_group(self) -> None:
        guard = self._watchdog.guard
        if self._gap_check:
            with guard():
                for group in self._client.xinfo_groups(self.stream):
                    if _text(group.get("name")) == self.group:
                        last = _text(group.get("last-delivered-id", "0-0"))
                        self._check_gap(self._client, last)
            self._gap_check = False
        batch = self._batch
        # own pending entries first (a restart under the same name), then new ones
        with guard():
            pending = self._entries(
                self._client.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=batch)
            )
        claimed = [] if pending else self._claim(batch)
        fresh = []
        if not pending and not claimed:
            with guard():
                fresh = self._entries(
                    self._client.xreadgroup(
                        self.group,
                        self.consumer,
                        {self.stream: ">"},
                        count=batch,
                        block=self.block_ms,
                    )
                )
        entries = [*pending, *claimed, *fresh]
        self._oversize = False
        for entry_id, fields in entries:
            if self._stop.is_set():
                return
            self._handle(entry_id, fields)
            with guard():  # after subscribers ran; a skipped entry is acknowledged too
                self._client.xack(self.stream, self.group, entry_id)
        self._adapt(len(entries), batch)

    def _claim(self, batch: int) -> list[StreamEntry]:
        """Entries idle longer than `claim_idle_ms` in another (dead) consumer."""
        with self._watchdog.guard():
            reply = self._client.xautoclaim(
                self.stream, self.group, self.consumer, self.claim_idle_ms, "0-0", count=batch
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
        """Turn one entry into a delivery; a malformed one is skipped, never raised.

        Anyone who can XADD writes these entries: whatever an entry holds, the
        follower moves past it (an exception here would be taken for an outage
        and the same entry read again forever).
        """
        size = sum(len(v) if isinstance(v, bytes | str) else 0 for v in fields.values())
        if size > self.max_entry_bytes:
            self.skipped += 1
            self._oversize = True
            logger.debug("skipped stream entry %s: %d bytes, over the limit", entry_id, size)
            return
        try:
            event = self._decode(fields)
        except Exception as exc:  # any malformed entry, a RecursionError included
            self.skipped += 1
            logger.debug(
                "skipped malformed stream entry %s: %s", entry_id, f"{type(exc).__name__}: {exc}"
            )
            return
        if event is None:
            if fields and "event" not in {_text(k) for k in fields}:
                self._app_entry(entry_id, fields)
            return  # no fields: trimmed while pending in a group
        if not self.remember(event.id):
            self.duplicates += 1
            return
        self._deliver(event)

    def _app_entry(self, entry_id: str, fields: dict[Any, Any]) -> None:
        """An entry without `event`: an application's own (the seed-style bus)."""
        hook = self._raw_hook
        if hook is None:
            return
        try:
            hook(entry_id, {_text(k): v for k, v in fields.items()})
        except Exception:  # the application's handler: logged, never an outage
            logger.exception("handling application event %s failed", entry_id)

    @staticmethod
    def _decode(fields: dict[Any, Any]) -> CloudEvent | None:
        """The entry's CloudEvent; None when it has none (raises if malformed)."""
        fields = {_text(k): v for k, v in fields.items()}
        if not fields:  # trimmed while pending in a group: nothing left to read
            return None
        raw = fields.get("event")
        if raw is None:
            return None
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("data", {}), dict):
            raise ValueError("not a CloudEvent object")
        event = CloudEvent.from_dict(doc)
        if not all(isinstance(x, str) and x for x in (event.type, event.id)):
            raise ValueError("type and id must be non-empty strings")
        return event

    def _deliver(self, event: CloudEvent) -> None:
        if event.type == "botreg.sync.completed":
            commit = event.data.get("to")
            if is_commit_id(commit):
                # before the subscribers: a config read they trigger asks for this commit
                self.applied_commit = str(commit)
            else:  # forged or broken: a reader asking for it would wait or fail
                logger.debug("ignored botreg.sync.completed %s: 'to' is no commit id", event.id)
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
