"""Append every event to a Redis stream: in order, at least once, through the outbox.

Events are queued in the daemon's outbox (`outbox.sqlite`, queue `redis`, the
same file the webhook sink uses) before anything else happens, so a crash or a
Redis outage delays them and never drops them. A delivery thread appends them
in publish order, up to `batch` at a time, with one MULTI/EXEC pipeline of

    XADD <stream> MAXLEN ~ <maxlen> * id <event id> type <event type> event <CloudEvent JSON>

and removes them from the outbox once EXEC answered. An answer lost after EXEC
ran (a connection reset at that moment) makes the batch go again: readers see
those events twice, with the same `id` field, and deduplicate by it.

A failing Redis (refused, reset, timed out, LOADING, READONLY, out of memory...)
is retried with an exponential backoff with jitter; the log gets one warning
when the outage starts and one when appending resumes, not one per attempt.
Every Redis call has a socket timeout and, because that bounds each read and
not the call, a deadline for the whole append (`append_deadline`): a server
that trickles a never-ending reply is cut off and counted as a timeout.
`close()` ends a call stuck on a server that accepts and never answers, so a
stop is prompt. The outbox depth and lag gauges read the outbox when scraped,
so they are right even while an append is stuck.

With a fence (HA, see CONTRACT11 section 2), each event keeps the fencing token
its publisher held; before a batch is appended each non-zero token is checked
again, and the events of a token that lost the lease are dropped (the new
leader re-emits them with the same ids). Events queued with token 0 (no HA)
are never dropped.

Credentials in the URL (`redis://user:password@host`, `?password=`) go to the
Redis client only: the process remembers them as secrets (masked in every log
line and message), and only the redacted URL is kept for display.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from botreg.daemon.metrics import Metrics
from botreg.errors import BotregError
from botreg.events.model import CloudEvent
from botreg.events.outbox import Outbox, OutboxEntry
from botreg.redis_url import CallDeadline, check_redis_url, remember_redis_credentials
from botreg.secrets import redact_url

__all__ = [
    "DEFAULT_MAXLEN",
    "DEFAULT_STREAM",
    "MIN_MAXLEN",
    "REDIS",
    "Fence",
    "RedisStreamSink",
    "check_redis_url",
    "check_stream_name",
    "remember_redis_credentials",
]

logger = logging.getLogger("botreg.redis_stream")

REDIS = "redis"  # this sink's queue in the outbox
DEFAULT_STREAM = "botreg:events"
DEFAULT_MAXLEN = 100_000
# The smallest --events-maxlen the CLI takes: approximate trimming removes whole
# stream nodes (100 entries each by default), and a follower away for a restart
# must still find its cursor in the stream, or it sees a gap and drops every cache.
MIN_MAXLEN = 1000


class Fence(Protocol):
    """The lease's fencing token (HA provides it in `botreg.daemon.lease`)."""

    def token(self) -> int:
        """The fencing token held now; 0 when this daemon is not the leader."""
        ...

    def check(self, token: int | None = None) -> None:
        """Raise FencedError (a BotregError) unless `token` still holds the lease."""
        ...


def check_stream_name(name: str) -> None:
    """A stream key an operator can type and read back: non-empty, no spaces or controls.

    Raises:
        ValueError: the name is empty, too long or has whitespace or control characters.
    """
    if not name:
        raise ValueError("the stream name is empty (default: botreg:events)")
    if len(name) > 256:
        raise ValueError(f"the stream name has {len(name)} characters; at most 256")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValueError(f"{name!r} has whitespace or control characters (e.g. botreg:events)")


class _AppendError(Exception):
    """An append that did not go through; `reason` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RedisStreamSink:
    """A bus subscriber that queues events durably and appends them to a Redis stream.

    Args:
        url: redis://, rediss:// or unix:// (credentials allowed; never shown).
        outbox: The SQLite outbox file (created if missing; shared with the webhook).
        stream: The stream's key.
        maxlen: Approximate length the stream is trimmed to at each append.
        fence: The HA lease; None without HA (events are never fenced).
        metrics: Where to count appends (a fresh registry if not given).
        batch: Events appended per MULTI/EXEC at most.
        timeout: Seconds each connect and each Redis reply may take.
        append_deadline: Seconds one whole append (connect, MULTI/EXEC, every
            reply) may take; default twice `timeout`.
        base_delay: The first retry's delay; it doubles with each failure in a row.
        max_delay: The longest delay between two attempts.

    Raises:
        ValueError: the URL or the stream name is not usable (message redacted).
    """

    def __init__(
        self,
        url: str,
        outbox: Path,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = DEFAULT_MAXLEN,
        fence: Fence | None = None,
        metrics: Metrics | None = None,
        batch: int = 100,
        timeout: float = 5.0,
        append_deadline: float | None = None,
        base_delay: float = 0.25,
        max_delay: float = 30.0,
    ) -> None:
        remember_redis_credentials(url)  # before any message can quote it
        self.url = check_redis_url(url)  # the redacted form: the only one kept
        check_stream_name(stream)
        if maxlen < 1 or batch < 1:
            raise ValueError("maxlen and batch must be at least 1")
        self.stream = stream
        self.maxlen = maxlen
        self.fence = fence
        self.batch = batch
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.append_deadline = 2 * timeout if append_deadline is None else append_deadline
        self.appended = 0
        self.fenced = 0
        metrics = metrics or Metrics()
        self._appended = metrics.counter(
            "botreg_redis_events_appended_total",
            "Events appended to the Redis stream (a batch re-sent after a lost reply counts again)",
        )
        self._fenced = metrics.counter(
            "botreg_redis_events_fenced_total",
            "Events dropped unappended because their fencing token lost the lease",
        )
        self._errors = metrics.counter(
            "botreg_redis_append_errors_total",
            "Failed appends to the Redis stream, by reason (connection, timeout, rejected, fence)",
            ["reason"],
        )
        self._duration = metrics.histogram(
            "botreg_redis_append_duration_seconds",
            "Time of one MULTI/EXEC append of a batch to the Redis stream, whatever its result",
        )
        # no client-side retries: the thread's backoff is the only one, and each call
        # is bounded by the socket timeouts
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._call = CallDeadline(self._client)
        self._outbox = Outbox(outbox, sink=REDIS)
        # read from the outbox at scrape time (one COUNT): right even while the
        # thread is stuck in a call, and the age keeps growing while it waits
        self._depth, self._oldest = self._outbox.stats()
        metrics.gauge(
            "botreg_redis_outbox_depth", "Events waiting in the outbox for the Redis stream"
        ).set_function(self._live_depth)
        metrics.gauge(
            "botreg_redis_outbox_oldest_age_seconds",
            "Age of the oldest event waiting for the Redis stream: the stream's lag (0 when empty)",
        ).set_function(self._oldest_age)
        self._last_seq = 0  # the newest seq this sink queued (0: none yet)
        self._progress = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="botreg-redis-stream", daemon=True)
        self._thread.start()

    # --- the bus side ------------------------------------------------------------------

    def __call__(self, event: CloudEvent) -> None:
        """Queue an event (durably, with the fencing token held now) and wake the thread."""
        token = self.fence.token() if self.fence is not None else 0
        # to_json is redacted and strict: neither the outbox nor the stream sees a secret
        seq = self._outbox.enqueue(event.id, event.to_json().encode(), token=token)
        with self._progress:
            self._last_seq = max(self._last_seq, seq)
        self._wake.set()

    def pending(self) -> int:
        """Events not in the stream yet."""
        return self._outbox.stats()[0]

    def flush(self, timeout: float) -> bool:
        """Wait until every event queued before the call is in the stream (or fenced).

        Args:
            timeout: Seconds to wait at most.

        Returns:
            True once they are; False on timeout (Redis down) or when closed.
        """
        deadline = time.monotonic() + timeout
        with self._progress:
            target = self._last_seq
        self._wake.set()
        while True:
            try:
                head = self._outbox.head()
            except sqlite3.ProgrammingError:  # closed
                return False
            # rows left by an earlier run are older than any this run queued; without
            # one of ours, "queued before the call" is all of them
            if head is None or (target and head.seq > target):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                return False
            with self._progress:
                self._progress.wait(timeout=min(remaining, 0.1))

    def close(self, drain: float = 0) -> None:
        """Stop appending, after trying for up to `drain` seconds; returns promptly.

        A call still waiting on Redis is cut off: its events stay in the outbox and
        are appended at the next start (readers deduplicate by id).
        """
        deadline = time.monotonic() + drain
        if drain:
            self.flush(drain)
        self._stop.set()
        self._wake.set()
        # a short grace even without a drain: an append in flight to a healthy Redis
        # takes milliseconds, and cutting it off would append its batch twice
        self._thread.join(timeout=min(0.5, max(0.1, deadline - time.monotonic())))
        if self._thread.is_alive():
            # a reply that never comes: shutting the sockets down wakes the blocked
            # read at once (redis-py's disconnect calls shutdown(SHUT_RDWR))
            with contextlib.suppress(Exception):
                self._client.connection_pool.disconnect()
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()) + 0.5)
        # the thread, if still alive, finds the outbox closed and closes the client
        self._outbox.close()
        if not self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._client.close()

    # --- the delivery thread -----------------------------------------------------------

    def _live(self) -> None:
        """Read the outbox now (a scrape); a closed outbox keeps the last values."""
        with contextlib.suppress(sqlite3.Error):
            self._refresh()

    def _live_depth(self) -> float:
        self._live()
        return float(self._depth)

    def _oldest_age(self) -> float:
        self._live()
        oldest = self._oldest
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    def _refresh(self) -> None:
        self._depth, self._oldest = self._outbox.stats()

    def _backoff(self, failures: int) -> float:
        """The delay after `failures` failed attempts in a row (jittered, capped)."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** min(failures - 1, 60))
        return delay * random.uniform(0.5, 1.0)

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _run(self) -> None:
        failures = 0  # in a row: the backoff's exponent
        outage_since = 0.0
        try:
            while not self._stop.is_set():
                try:
                    sent = self._step()
                except sqlite3.ProgrammingError:
                    return  # closed under us by close(): the stop is under way
                except _AppendError as failure:
                    if self._stop.is_set():
                        return  # cut off by close(): not an outage
                    self._errors.labels(reason=failure.reason).inc()
                    failures += 1
                    if failures == 1:
                        outage_since = time.monotonic()
                        self._refresh()
                        logger.warning(
                            "cannot append events to the Redis stream %s at %s: %s; retrying "
                            "with backoff, events wait in the outbox (%d waiting)",
                            self.stream,
                            self.url,
                            failure,
                            self._depth,
                        )
                    self._stop.wait(timeout=self._backoff(failures))
                    continue
                except sqlite3.Error as exc:  # a full disk, a locked file: retry, never die
                    failures += 1
                    logger.error("Redis stream outbox: %s", exc)
                    self._stop.wait(timeout=self._backoff(failures))
                    continue
                except Exception as exc:  # a bug must not end deliveries for good
                    if self._stop.is_set():
                        return  # a call cut off by close() fails in its own way
                    failures += 1
                    logger.error("Redis stream delivery failed: %s: %s", type(exc).__name__, exc)
                    self._stop.wait(timeout=self._backoff(failures))
                    continue
                if sent and failures:
                    self._refresh()
                    logger.info(
                        "appending to the Redis stream %s at %s resumed after %.1f s "
                        "(%d still waiting)",
                        self.stream,
                        self.url,
                        time.monotonic() - outage_since,
                        self._depth,
                    )
                if sent:
                    failures = 0
        finally:
            self._notify()
            if self._stop.is_set():
                with contextlib.suppress(Exception):
                    self._client.close()

    def _step(self) -> bool:
        """Append the next batch (or wait for one); True when a batch went out."""
        self._refresh()
        entries = self._outbox.batch(self.batch)
        if not entries:
            self._notify()
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            return False
        kept = self._unfenced(entries)
        if kept:
            self._append(kept)
            self.appended += len(kept)
            self._appended.inc(len(kept))
        self._outbox.delivered_through(entries[-1].seq)
        self._refresh()
        self._notify()
        return True

    def _unfenced(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        """The entries whose token still holds the lease; the others are dropped."""
        if self.fence is None:
            return entries
        fenced: set[int] = set()
        for token in sorted({e.token for e in entries if e.token}):
            try:
                self.fence.check(token)
            except BotregError:  # FencedError: that token lost the lease
                fenced.add(token)
            except Exception as exc:  # cannot tell (the lease's Redis is down): wait
                raise _AppendError(
                    "fence", f"cannot check the lease: {type(exc).__name__}: {redact_url(str(exc))}"
                ) from None
        if not fenced:
            return entries
        dropped = [e for e in entries if e.token in fenced]
        self.fenced += len(dropped)
        self._fenced.inc(len(dropped))
        logger.warning(
            "dropped %d event%s queued under fencing token%s %s: this daemon lost the lease, "
            "the new leader emits them again with the same ids",
            len(dropped),
            "" if len(dropped) == 1 else "s",
            "" if len(fenced) == 1 else "s",
            ", ".join(map(str, sorted(fenced))),
        )
        return [e for e in entries if e.token not in fenced]

    def _append(self, entries: list[OutboxEntry]) -> None:
        """One MULTI/EXEC of XADDs, in order; raises _AppendError if it did not go through."""
        started = time.perf_counter()
        try:
            with self._call.bound(self.append_deadline):
                pipe = self._client.pipeline(transaction=True)
                for entry in entries:
                    pipe.xadd(
                        self.stream,
                        {"id": entry.id, "type": _event_type(entry.body), "event": entry.body},
                        maxlen=self.maxlen,
                        approximate=True,
                    )
                pipe.execute()
            if self._call.passed:  # cut off, yet an answer came: EXEC may have run
                raise _AppendError(
                    "timeout", f"no complete answer within {self.append_deadline:g} s"
                )
        except _AppendError:
            raise
        except Exception as exc:
            if self._call.passed and not self._stop.is_set():
                # cut off by the whole-append deadline (a trickling reply): a timeout
                raise _AppendError(
                    "timeout", f"no complete answer within {self.append_deadline:g} s"
                ) from None
            raise _classify(exc) from None
        finally:
            self._duration.observe(time.perf_counter() - started)


def _classify(exc: Exception) -> Exception:
    """The _AppendError of a failed append (other exceptions as they are)."""
    if isinstance(exc, redis.TimeoutError):
        return _AppendError("timeout", "no answer within the socket timeout")
    if isinstance(exc, redis.ConnectionError):  # refused, reset, LOADING, auth
        return _AppendError("connection", _message(exc))
    if isinstance(exc, redis.RedisError):  # READONLY, OOM, WRONGTYPE: the server said no
        return _AppendError("rejected", _message(exc))
    if isinstance(exc, OSError):
        return _AppendError("connection", _message(exc))
    return exc


def _event_type(body: bytes) -> str:
    """The `type` of a queued CloudEvent ('' if the stored body is damaged)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    kind = doc.get("type") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else ""


def _message(exc: BaseException) -> str:
    """An error's class and text, credentials masked (its text may quote the URL)."""
    text = str(exc).strip() or "no detail"
    return f"{type(exc).__name__}: {redact_url(text)}"
