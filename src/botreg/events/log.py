"""The event log: one CloudEvent per line in `<data-dir>/events.jsonl`, always written.

Appends are flushed and fsynced before the bus reports an event published. A
line torn by a crash (no trailing newline) is skipped by readers and cut off
before the next append.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botreg.events.model import CloudEvent

__all__ = ["EventLog", "read_events"]


class EventLog:
    """Appends events to a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()

    def _repair(self) -> None:
        """Cut a line torn by a crash, so the next append starts on a new line."""
        if not self.path.exists():
            return
        content = self.path.read_bytes()
        if content and not content.endswith(b"\n"):
            with open(self.path, "rb+") as handle:
                handle.truncate(content.rfind(b"\n") + 1)

    def append(self, event: CloudEvent) -> None:
        """Append one event durably (its JSON is redacted and strict: see CloudEvent)."""
        line = (event.to_json() + "\n").encode()
        with open(self.path, "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def read_events(
    path: Path, since: str | None = None, follow: bool = False, poll: float = 0.5, stop: Any = None
) -> Iterator[dict[str, Any]]:
    """Events of a log, after the one with id `since` (if given).

    Args:
        path: The log.
        since: Start after this event id (all events if None or not found... see below).
        follow: Keep reading as events are appended (until `stop()` is true).
        poll: Seconds between checks while following.
        stop: A callable that ends following when it returns true.
    """
    position = 0
    started = since is None
    pending_since = since
    while True:
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(position)
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break  # a line being written: read it next time
                    position += len(raw)
                    try:
                        event = json.loads(raw)
                    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
                        continue  # a damaged line: the others still count
                    if not isinstance(event, dict):
                        continue
                    if not started:
                        if event.get("id") == pending_since:
                            started = True
                        continue
                    yield event
        if not follow or (stop is not None and stop()):
            return
        time.sleep(poll)
