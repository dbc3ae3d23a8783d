"""Deliver events to a webhook: structured CloudEvents, signed, retried, never blocking.

Each event is POSTed as `application/cloudevents+json` with
`X-Botreg-Signature: sha256=<hex HMAC-SHA256 of the body>` (when a secret is
set). Events wait in a durable outbox (SQLite in the data dir) until the
receiver answers 2xx; failures are retried with exponential backoff and
jitter, in a background thread, so a failing receiver never blocks syncing and
a restart loses nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from botreg.events.model import CloudEvent
from botreg.secrets import redact_url, split_url_credentials

__all__ = ["WebhookSink", "signature"]

logger = logging.getLogger("botreg.webhook")


def signature(secret: bytes, body: bytes) -> str:
    """The `X-Botreg-Signature` value for a body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery: urllib would re-send the event as a body-less
    GET (counted delivered, the event lost) with our Authorization header, to
    whatever host the Location names."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError for the 3xx: retried with backoff


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


class WebhookSink:
    """A bus subscriber that queues events and delivers them in a thread."""

    def __init__(
        self,
        url: str,
        outbox: Path,
        secret_file: Path | None = None,
        *,
        timeout: float = 10,
        base_delay: float = 1,
        max_delay: float = 300,
    ) -> None:
        # userinfo in the URL becomes an Authorization header (urllib would try to
        # resolve `user:pw@host` as a host name and never deliver)
        self.url, self._authorization = split_url_credentials(url)
        self.secret_file = secret_file
        self.timeout = timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.delivered = 0
        self.failures = 0
        self._db = sqlite3.connect(
            outbox, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "id TEXT NOT NULL, body BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
            "next_at REAL NOT NULL DEFAULT 0)"
        )
        # a (re)start is a good moment to retry what is waiting: no inherited backoff
        self._db.execute("UPDATE outbox SET next_at = 0")
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="botreg-webhook", daemon=True)
        self._thread.start()

    def __call__(self, event: CloudEvent) -> None:
        # to_json is redacted and strict: the outbox and the receiver see no secret
        body = event.to_json().encode()
        with self._lock:
            self._db.execute("INSERT INTO outbox (id, body) VALUES (?, ?)", (event.id, body))
        self._wake.set()

    def pending(self) -> int:
        """Events not delivered yet."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self, drain: float = 0) -> None:
        """Stop the thread (after trying to deliver for up to `drain` seconds)."""
        deadline = time.monotonic() + drain
        while drain and self.pending() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.timeout + 5)
        with self._lock:
            self._db.close()

    def _secret(self) -> bytes | None:
        if self.secret_file is None:
            return None
        try:  # read again each time: a rotated secret applies at once
            return self.secret_file.read_bytes().strip()
        except OSError as exc:
            logger.error("cannot read the webhook secret file: %s", exc.strerror)
            return None

    def _next(self) -> tuple[int, bytes, int] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT seq, body, attempts FROM outbox WHERE next_at <= ? ORDER BY seq LIMIT 1",
                (time.time(),),
            ).fetchone()
        return (int(row[0]), bytes(row[1]), int(row[2])) if row else None

    def _deliver(self, body: bytes) -> None:
        headers = {
            "Content-Type": "application/cloudevents+json; charset=utf-8",
            "User-Agent": "botreg",
        }
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        secret = self._secret()
        if secret:
            headers["X-Botreg-Signature"] = signature(secret, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with _NO_REDIRECTS.open(request, timeout=self.timeout) as response:
            if not 200 <= response.status < 300:
                raise urllib.error.HTTPError(self.url, response.status, "not 2xx", {}, None)  # type: ignore[arg-type]

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._next()
            if item is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            seq, body, attempts = item
            try:
                self._deliver(body)
            except (OSError, urllib.error.URLError, ValueError) as exc:
                self.failures += 1
                delay = min(self.max_delay, self.base_delay * 2**attempts)
                delay *= random.uniform(0.5, 1.0)
                logger.warning(
                    "webhook delivery to %s failed (attempt %d, retry in %.1fs): %s",
                    redact_url(self.url),
                    attempts + 1,
                    delay,
                    redact_url(str(exc)),
                )
                with self._lock:
                    self._db.execute(
                        "UPDATE outbox SET attempts = attempts + 1, next_at = ? WHERE seq = ?",
                        (time.time() + delay, seq),
                    )
                self._wake.wait(timeout=min(delay, 1.0))
                self._wake.clear()
                continue
            self.delivered += 1
            with self._lock:
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
