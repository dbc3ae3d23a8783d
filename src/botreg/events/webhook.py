"""Deliver events to a webhook: structured CloudEvents, signed, in order, never blocking.

Each event is POSTed as `application/cloudevents+json` with
`X-Botreg-Signature: sha256=<hex HMAC-SHA256 of the body>` (when a secret is
set), over one reused httpx connection. Events wait in a durable FIFO outbox
(SQLite in the data dir, see `botreg.events.outbox`) until the receiver answers
2xx. Delivery is head-of-line: the oldest event goes first and nothing later is
sent before it, so after an outage the receiver gets events in publish order.
Backoff (exponential, with jitter) belongs to the receiver, not to each event:
while it fails it gets one request per backoff step, however many events wait.
An event still failing after `dead_letter_after` seconds becomes a dead letter
(listed and replayed with `botreg events --dead-letter` / `--replay`), so one
bad day does not hold the line forever. A redirect is a failure, never followed.
Each attempt has a deadline for the whole of it (`timeout`), not only for each
network step: a receiver trickling its answer a byte at a time is cut off when
the deadline passes, and the attempt counts as a failed delivery.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from botreg.daemon.metrics import Metrics
from botreg.events.model import CloudEvent
from botreg.events.outbox import DeadLetter, Outbox
from botreg.secrets import RedactingFilter, redact_url, split_url_credentials

__all__ = ["DEAD_LETTER_AFTER", "WEBHOOK_EVENT_PREFIX", "WebhookSink", "signature"]

logger = logging.getLogger("botreg.webhook")

DEAD_LETTER_AFTER = 86400.0  # a day of failing: long enough for a weekend-free outage
# Events about the webhook itself are never sent to it (a dead receiver would
# otherwise be sent news of its own failures, forever).
WEBHOOK_EVENT_PREFIX = "botreg.webhook."
# What is read of a receiver's answer: enough to keep the connection reusable,
# never a receiver's idea of how much memory we have.
_MAX_RESPONSE_BYTES = 64 * 1024


def signature(secret: bytes, body: bytes) -> str:
    """The `X-Botreg-Signature` value for a body.

    Args:
        secret: The HMAC key (the webhook secret file's content).
        body: The exact bytes POSTed.

    Returns:
        `sha256=` and the hex HMAC-SHA256 of the body.
    """
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _redact_httpx_logs() -> None:
    """httpx logs every request's URL at INFO, `?token=` included: mask it at the source."""
    for name in ("httpx", "httpcore"):
        log = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in log.filters):
            log.addFilter(RedactingFilter())


class _DeliveryError(Exception):
    """A delivery attempt that did not get a 2xx; `result` is the metric label."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result


class _Deadline:
    """Ends an attempt that outlives its deadline, by shutting its socket down.

    httpx's timeouts apply to each network step (connect, each read, each write),
    so a receiver sending one byte every few seconds keeps an attempt alive
    forever. A timer armed for the whole attempt shuts the connection's socket
    down when it fires; the blocked read returns at once and httpx raises. The
    socket is learnt from httpx's `trace` extension when the connection is made
    (the client keeps one connection, so the newest one is the one in use).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self.passed = False

    def trace(self, name: str, info: dict[str, Any]) -> None:
        """httpx's trace callback: remember each new connection's socket."""
        if name != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._socket = sock
                passed = self.passed
            if passed:  # the deadline passed while connecting: no request on it
                self._shut(sock)

    def arm(self, seconds: float) -> None:
        """Start the clock of one attempt."""
        self.passed = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        """The attempt is over (whatever its result): stop the clock."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        with self._lock:
            self.passed = True
            sock = self._socket
        if sock is not None:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        # shutdown, not close: it wakes a read blocked in the delivery thread; the
        # base class's, so a TLS socket is shut at the TCP level too. An OSError:
        # already closed, nothing is in flight on it.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class WebhookSink:
    """A bus subscriber that queues events and delivers them in a thread.

    Args:
        url: The receiver; `user:password@` becomes a Basic Authorization header.
        outbox: The SQLite outbox file (created if missing).
        secret_file: HMAC key file, re-read at each delivery (rotation applies at once).
        timeout: Seconds one delivery attempt may take, in all (and so each of its
            network steps): a receiver still answering then is cut off.
        base_delay: The first retry's delay; it doubles with each failure in a row.
        max_delay: The longest delay between two attempts.
        dead_letter_after: Seconds after which an event that still fails is given up on.
        metrics: Where to count deliveries (a fresh registry if not given).
        on_dead_letter: Called with each event given up on (from the delivery thread).
        transport: An httpx transport (tests); the default is httpx's own.
    """

    def __init__(
        self,
        url: str,
        outbox: Path,
        secret_file: Path | None = None,
        *,
        timeout: float = 10,
        base_delay: float = 0.25,
        max_delay: float = 300,
        dead_letter_after: float = DEAD_LETTER_AFTER,
        metrics: Metrics | None = None,
        on_dead_letter: Callable[[CloudEvent], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # userinfo in the URL becomes an Authorization header: it never reaches a
        # request line, a log line or the outbox
        self.url, self._authorization = split_url_credentials(url)
        self.secret_file = secret_file
        self.timeout = timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.dead_letter_after = dead_letter_after
        self.on_dead_letter = on_dead_letter
        self.delivered = 0
        self.failures = 0
        self.dead_lettered = 0
        metrics = metrics or Metrics()
        self._deliveries = metrics.counter(
            "botreg_webhook_deliveries_total",
            "Webhook delivery attempts, by result (delivered, redirected, rejected, error)",
            ["result"],
        )
        self._duration = metrics.histogram(
            "botreg_webhook_delivery_duration_seconds",
            "Time of one webhook delivery attempt, whatever its result",
        )
        self._dead_letters = metrics.counter(
            "botreg_webhook_dead_letters_total",
            "Events given up on after failing for longer than --webhook-dead-letter-after",
        )
        self._outbox = Outbox(outbox)
        # read at scrape time from what the delivery thread last saw: the age keeps
        # growing while the thread sleeps out a long backoff
        self._depth, self._oldest = self._outbox.stats()
        metrics.gauge(
            "botreg_webhook_outbox_depth", "Events waiting in the webhook outbox"
        ).set_function(lambda: float(self._depth))
        metrics.gauge(
            "botreg_webhook_outbox_oldest_age_seconds",
            "Age of the oldest event waiting in the webhook outbox (0 when empty)",
        ).set_function(self._oldest_age)
        _redact_httpx_logs()
        # one connection, kept alive between deliveries; redirects are failures
        self._client = httpx.Client(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            transport=transport,
        )
        self._deadline = _Deadline()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="botreg-webhook", daemon=True)
        self._thread.start()

    # --- the bus side ------------------------------------------------------------------

    def __call__(self, event: CloudEvent) -> None:
        """Queue an event (durably) and wake the delivery thread."""
        if event.type.startswith(WEBHOOK_EVENT_PREFIX):
            return
        # to_json is redacted and strict: the outbox and the receiver see no secret
        self._outbox.enqueue(event.id, event.to_json().encode())
        self._wake.set()

    def pending(self) -> int:
        """Events not delivered yet (dead letters excluded)."""
        return self._outbox.stats()[0]

    def close(self, drain: float = 0) -> None:
        """Stop delivering, after trying for up to `drain` seconds; returns promptly.

        A delivery still in flight at the end is abandoned: its event stays in the
        outbox and is sent again at the next start (receivers deduplicate by id).
        """
        deadline = time.monotonic() + drain
        while drain and self._thread.is_alive() and time.monotonic() < deadline:
            if not self.pending():
                break
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        # the thread, if still in a request, finds the outbox closed, then closes
        # the client itself (closing it from here would race with the request)
        self._outbox.close()

    # --- the delivery thread -----------------------------------------------------------

    def _oldest_age(self) -> float:
        oldest = self._oldest
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    def _secret(self) -> bytes | None:
        if self.secret_file is None:
            return None
        try:  # read again each time: a rotated secret applies at once
            return self.secret_file.read_bytes().strip()
        except OSError as exc:
            logger.error("cannot read the webhook secret file: %s", exc.strerror)
            return None

    def _deliver(self, body: bytes) -> None:
        """POST one event; raises _DeliveryError unless the receiver answered 2xx."""
        headers = {
            "Content-Type": "application/cloudevents+json; charset=utf-8",
            "User-Agent": "botreg",
        }
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        secret = self._secret()
        if secret:
            headers["X-Botreg-Signature"] = signature(secret, body)
        deadline = self._deadline
        deadline.arm(self.timeout)
        try:
            with self._client.stream(
                "POST",
                self.url,
                content=body,
                headers=headers,
                extensions={"trace": deadline.trace},
            ) as response:
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read > _MAX_RESPONSE_BYTES or deadline.passed:
                        break  # the connection is dropped, not the event's result
                status = response.status_code
                if deadline.passed:  # an answer is only had once it is complete
                    raise httpx.ReadTimeout("the attempt's deadline passed")
        except httpx.HTTPError as exc:
            if deadline.passed or isinstance(exc, httpx.TimeoutException):
                raise _DeliveryError(
                    "error", f"timed out: no complete answer within {self.timeout:g} s"
                ) from None
            # httpx's messages name the error, not the URL; redacted all the same
            raise _DeliveryError("error", f"{type(exc).__name__}: {redact_url(str(exc))}") from None
        finally:
            deadline.disarm()
        if 300 <= status < 400:  # never followed: urllib re-sent a body-less GET elsewhere
            raise _DeliveryError("redirected", f"HTTP {status} (redirects are not followed)")
        if not 200 <= status < 300:
            raise _DeliveryError("rejected", f"HTTP {status}")

    def _backoff(self, failures: int) -> float:
        """The delay after `failures` failed attempts in a row (jittered, capped)."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** min(failures - 1, 60))
        return delay * random.uniform(0.5, 1.0)

    def _refresh(self) -> None:
        self._depth, self._oldest = self._outbox.stats()

    def _give_up(self, dead: list[DeadLetter]) -> None:
        """Count, log and announce the events just moved to the dead letters."""
        never_sent = [d for d in dead if d.attempts == 0]
        for letter in dead:
            self.dead_lettered += 1
            self._dead_letters.inc()
            if letter.attempts:
                logger.warning(
                    "webhook event %s given up on after %d attempt%s over %.0f s "
                    "(last error: %s); `botreg events --dead-letter` lists it, `--replay` "
                    "sends it again",
                    letter.id,
                    letter.attempts,
                    "" if letter.attempts == 1 else "s",
                    letter.dead_at - letter.queued_at,
                    letter.last_error,
                )
        if never_sent:  # one line, not one per event: a long outage queues thousands
            first, last = never_sent[0], never_sent[-1]
            logger.warning(
                "%d webhook event%s (%s%s) given up on without being sent, after %.0f s "
                "or more in the outbox (%s); `botreg events --dead-letter` lists them, "
                "`--replay` sends them again",
                len(never_sent),
                "" if len(never_sent) == 1 else "s",
                first.id,
                "" if first is last else f" ... {last.id}",
                last.dead_at - last.queued_at,
                last.last_error,
            )
        for letter in dead:
            self._notify(letter)

    def _notify(self, dead: DeadLetter) -> None:
        if self.on_dead_letter is None:
            return
        try:
            event = CloudEvent.from_dict(json.loads(dead.body))
            self.on_dead_letter(event)
        except Exception as exc:  # a callback's failure must not stop deliveries
            logger.error("the dead-letter callback failed: %s: %s", type(exc).__name__, exc)

    def _run(self) -> None:
        failures = 0  # in a row, for this receiver: the backoff's exponent
        try:
            while not self._stop.is_set():
                try:
                    failures = self._step(failures)
                except sqlite3.ProgrammingError:
                    return  # closed under us by close(): the stop is under way
                except sqlite3.Error as exc:  # a full disk, a locked file: retry, do not die
                    failures += 1
                    logger.error("webhook outbox: %s", exc)
                    self._stop.wait(timeout=self._backoff(failures))
        finally:
            self._client.close()

    def _step(self, failures: int) -> int:
        """Try the head of the line once (or wait for one); the new failure count."""
        self._refresh()
        entry = self._outbox.head()
        if entry is None:
            self._wake.wait(timeout=1.0)  # a replay from the CLI is seen within 1 s
            self._wake.clear()
            return failures
        started = time.perf_counter()
        try:
            self._deliver(entry.body)
        except _DeliveryError as failure:
            self._duration.observe(time.perf_counter() - started)
            self._deliveries.labels(result=failure.result).inc()
            failures += 1
            self.failures += 1
            delay = self._backoff(failures)
            self._outbox.failed(entry.seq, str(failure))
            dead = self._outbox.expire(
                time.time() - self.dead_letter_after,
                unsent_error=f"never sent: queued behind an event the receiver failed ({failure})",
            )
            self._refresh()
            # the attempt's line first, then the dead letters; an event given up on
            # is not promised a retry
            outcome = f"{self._depth} waiting"
            if self._depth:
                outcome += f", next attempt in {delay:.1f}s"
            if any(letter.seq == entry.seq for letter in dead):
                outcome = f"given up on, {outcome}"
            logger.warning(
                "webhook delivery to %s failed: %s (event %s, attempt %d, %s)",
                redact_url(self.url),
                failure,
                entry.id,
                entry.attempts + 1,
                outcome,
            )
            self._give_up(dead)
            # new events do not cut the backoff short: that is what keeps a dead
            # receiver at one request per step; close() does
            self._stop.wait(timeout=delay)
            return failures
        self._duration.observe(time.perf_counter() - started)
        self._deliveries.labels(result="delivered").inc()
        self._outbox.delivered(entry.seq)
        self.delivered += 1
        return 0
