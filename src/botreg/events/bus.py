"""The in-process event bus: every event goes to the log, then to the other sinks.

The log is written first and synchronously; other sinks (stdout, the webhook,
Python subscribers) must not block syncing: a failing subscriber is logged and
skipped, and the webhook sink queues and delivers in the background.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TextIO

from botreg.events.log import EventLog
from botreg.events.model import CloudEvent

__all__ = ["EventBus", "Subscriber", "Subscribers", "stdout_sink"]

Subscriber = Callable[[CloudEvent], None]
logger = logging.getLogger("botreg.events")


class Subscribers:
    """A thread-safe list of subscribers, and delivery that survives a bad one."""

    def __init__(self) -> None:
        self._items: list[Subscriber] = []
        self._lock = threading.Lock()
        self.failed = 0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every event; returns a function that unsubscribes."""
        with self._lock:
            self._items.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._items:
                    self._items.remove(subscriber)

        return unsubscribe

    def deliver(self, event: CloudEvent) -> None:
        """Hand an event to every subscriber; one that fails is logged and skipped."""
        with self._lock:
            subscribers = list(self._items)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:  # one bad subscriber must not stop syncing
                self.failed += 1
                logger.exception("event subscriber failed on %s %s", event.type, event.id)


class EventBus:
    """Publishes events to the log and to subscribers."""

    def __init__(self, log: EventLog | None = None) -> None:
        self.log = log
        self._subscribers = Subscribers()
        self.published = 0

    @property
    def failed(self) -> int:
        """Subscriber calls that raised."""
        return self._subscribers.failed

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every event; returns a function that unsubscribes."""
        return self._subscribers.subscribe(subscriber)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Events published inside reach the log at once and are fsynced together at
        the end (see `EventLog.batch`); subscribers still get each one as it comes."""
        with self.log.batch() if self.log is not None else nullcontext():
            yield

    def publish(self, event: CloudEvent) -> None:
        """Write the event to the log, then hand it to every subscriber."""
        if self.log is not None:
            self.log.append(event)
        self.published += 1
        self._subscribers.deliver(event)


def stdout_sink(stream: TextIO | None = None) -> Subscriber:
    """A subscriber that prints each event as one JSON line."""

    def write(event: CloudEvent) -> None:
        out = stream or sys.stdout
        out.write(event.to_json() + "\n")
        out.flush()

    return write
