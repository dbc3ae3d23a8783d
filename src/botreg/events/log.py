"""The event log: one CloudEvent per line in `<data-dir>/events.jsonl`, always written.

Appends are flushed and fsynced before the bus reports an event published. A
line torn by a crash (no trailing newline) is skipped by readers and cut off
before the next append.

Rotation by size: when an append would take the log past `max_bytes`, the log
is renamed to `events.jsonl-1` (older ones shift to `-2` ... `-keep`, the oldest
is deleted) and a new log is started. Renaming never changes a file a reader has
open, so readers (`EventLogReader`, `botreg events --follow`, the API's
`EventLogFollower`) drain the old file to its end, then switch to the new one:
no event is lost or repeated. The `-N` names are covered by the data dir's
reserved names (an embedded store can never be placed on them).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from botreg.events.model import CloudEvent

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "EventLog",
    "EventLogReader",
    "read_events",
    "rotated_logs",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_KEEP = 5


def rotated_logs(path: Path) -> list[Path]:
    """The rotated files of a log that exist, oldest first (`-keep` ... `-1`)."""
    pattern = re.compile(re.escape(path.name) + r"-(\d+)")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    found = [(int(m[1]), path.parent / n) for n in names if (m := pattern.fullmatch(n))]
    return [p for _, p in sorted(found, reverse=True)]


class EventLog:
    """Appends events to a JSON-lines file, rotating it by size.

    Args:
        path: The log.
        max_bytes: Rotate before an append would take the log past this size
            (a single larger event still gets a file of its own).
        keep: How many rotated files to keep (0: the rotated log is deleted).
        on_rotate: Called after each rotation (the daemon counts rotations in its
            metrics as they happen, not at its next disk measure).
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
        on_rotate: Callable[[], None] | None = None,
    ) -> None:
        if max_bytes < 1 or keep < 0:
            raise ValueError("max_bytes must be positive and keep not negative")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.on_rotate = on_rotate
        self.rotations = 0  # since start
        self._deferred = 0  # > 0 inside `batch()`: one fsync at its end
        self._unsynced = False
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._size = path.stat().st_size if path.exists() else 0

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
        if self._size and self._size + len(line) > self.max_bytes:
            self.rotate()
        with open(self.path, "ab") as handle:
            handle.write(line)
            handle.flush()
            if self._deferred:
                self._unsynced = True
            else:
                os.fsync(handle.fileno())
            self._size = handle.tell()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Appends inside are written at once and made durable together, at the end.

        For a cycle's change events: one fsync per event was 1.8 s of 5,000
        events. Safe because a cycle is applied only after its events: a crash
        inside the batch re-runs the cycle, which sends the same ids again.
        """
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
            if not self._deferred and self._unsynced:
                self._unsynced = False
                self._sync_file()

    def _sync_file(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:  # rotated away with nothing after: the rename synced it
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rotate(self) -> None:
        """Rename the log to `<name>-1` (shifting older ones) and start a new one.

        Only renames: a reader that has a rotated file open reads it to its end.
        """
        if not self.path.exists():
            return
        if self._unsynced:  # what a batch wrote is durable before the file is renamed
            self._sync_file()
            self._unsynced = False
        for old in rotated_logs(self.path):  # oldest first, so no rename overwrites
            number = int(old.name.rsplit("-", 1)[1])
            if number >= self.keep:
                old.unlink(missing_ok=True)
            else:
                os.replace(old, old.with_name(f"{self.path.name}-{number + 1}"))
        if self.keep:
            os.replace(self.path, self.path.with_name(f"{self.path.name}-1"))
        else:
            self.path.unlink()
        _fsync_dir(self.path.parent)  # the renames survive a crash before the next write
        self._size = 0
        self.rotations += 1
        if self.on_rotate is not None:
            self.on_rotate()

    def size(self) -> int:
        """Bytes in the current log and its rotated files."""
        total = 0
        for path in [*rotated_logs(self.path), self.path]:
            try:
                total += path.stat().st_size
            except OSError:
                continue  # rotated away meanwhile
        return total


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse to sync a directory: the rename still happened
    finally:
        os.close(fd)


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


class EventLogReader:
    """Reads a log's events as it grows and rotates, each event exactly once.

    Files are followed by open handle, not by name: when the log is renamed
    away (rotation) the old file is read to its end, then every newer file
    (rotated ones the reader fell behind on, then the new log), so a slow
    reader loses nothing as long as it is less than `keep` files behind. A log
    truncated in place (an external copy-truncate) is read again from its start.

    Args:
        path: The log.
        history: Start with the rotated files still kept (oldest first).
        from_end: Start at the current end of the log (only later events).
    """

    def __init__(self, path: Path, *, history: bool = True, from_end: bool = False) -> None:
        self.path = path
        self._queue: list[tuple[BinaryIO, tuple[int, int]]] = []  # oldest first; last: tail
        files = self._snapshot()
        if from_end:
            for handle, _ in files[:-1]:
                handle.close()
            self._queue = files[-1:]
            if self._queue:
                self._skip_to_end(self._queue[0][0])
        elif history:
            self._queue = files
        else:
            self._queue = files[-1:] if files and self._is_live(files[-1][1]) else []
            for handle, _ in files:
                if all(handle is not h for h, _ in self._queue):
                    handle.close()

    def _is_live(self, key: tuple[int, int]) -> bool:
        try:
            return _identity(os.stat(self.path)) == key
        except OSError:
            return False

    def _snapshot(self) -> list[tuple[BinaryIO, tuple[int, int]]]:
        """Open the rotated files and the log, oldest first, as one consistent set.

        Opened before anything is read, and checked against the names again, so a
        rotation meanwhile cannot move a file out from under the list.
        """
        for _attempt in range(5):
            files = _open_all(self.path)
            after = []
            for name in [*rotated_logs(self.path), self.path]:
                try:
                    after.append(_identity(os.stat(name)))
                except OSError:
                    continue
            if after == [key for _, key in files]:
                return files
            for handle, _ in files:
                handle.close()
        return _open_all(self.path)  # a log rotating nonstop: the last try as it is

    @staticmethod
    def _skip_to_end(handle: BinaryIO) -> None:
        """Position after the last complete line (a line being written is read later)."""
        end = handle.seek(0, os.SEEK_END)
        start = max(0, end - 65536)
        while True:
            handle.seek(start)
            newline = handle.read(end - start).rfind(b"\n")
            if newline >= 0:
                handle.seek(start + newline + 1)
                return
            if start == 0:
                handle.seek(0)
                return
            end, start = start, max(0, start - 65536)

    @staticmethod
    def _lines(handle: BinaryIO) -> Iterator[dict[str, Any]]:
        handle.seek(handle.tell())  # forget buffered EOF: see what was appended since
        while True:
            start = handle.tell()
            raw = handle.readline()
            if not raw:
                return
            if not raw.endswith(b"\n"):
                handle.seek(start)  # a line being written: read it next time
                return
            try:
                event = json.loads(raw)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
                continue  # a damaged line: the others still count
            if isinstance(event, dict):
                yield event

    def read(self) -> Iterator[dict[str, Any]]:
        """The events appended since the last call (all of them at the first call)."""
        while True:
            while len(self._queue) > 1:  # rotated files: complete, read them to the end
                handle, _ = self._queue.pop(0)
                try:
                    yield from self._lines(handle)
                finally:
                    handle.close()
            if self._queue:
                tail, tail_id = self._queue[0]
                yield from self._lines(tail)
                try:
                    stat = os.stat(self.path)
                except FileNotFoundError:
                    return  # renamed away, the new log not yet written: keep the old one
                if _identity(stat) == tail_id:
                    if stat.st_size < tail.tell():
                        tail.seek(0)  # truncated in place: what is there now is new
                        continue
                    return
            # the tail was renamed away (rotation) or there was no log yet: the writer
            # never appends to a renamed file, so once drained it is complete (a torn
            # last line there stays unread); every file newer than it comes next
            files = self._snapshot()
            keys = [key for _, key in files]
            newer = files
            if self._queue:
                tail_id = self._queue[0][1]
                newer = files[keys.index(tail_id) + 1 :] if tail_id in keys else files
            for handle, _ in files:
                if all(handle is not h for h, _ in newer):
                    handle.close()
            if not newer:
                return
            self._queue.extend(newer)

    def close(self) -> None:
        """Close every open file."""
        for handle, _ in self._queue:
            handle.close()
        self._queue.clear()


def _open_all(path: Path) -> list[tuple[BinaryIO, tuple[int, int]]]:
    """The log's files that exist, opened, oldest first, with their identities."""
    files: list[tuple[BinaryIO, tuple[int, int]]] = []
    for name in [*rotated_logs(path), path]:
        try:
            handle = open(name, "rb")  # noqa: SIM115 - the reader closes it once drained
        except FileNotFoundError:
            continue  # rotated away meanwhile (or no log yet)
        except OSError:
            for opened, _ in files:
                opened.close()
            raise  # a log that cannot be read is the caller's error
        files.append((handle, _identity(os.fstat(handle.fileno()))))
    return files


def read_events(
    path: Path,
    since: str | None = None,
    follow: bool = False,
    poll: float = 0.5,
    stop: Callable[[], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """Events of a log and its rotated files, after the one with id `since` (if given).

    Args:
        path: The log.
        since: Start after this event id (nothing is yielded if it is not found,
            until it is: callers check it exists first).
        follow: Keep reading as events are appended and the log rotates (until
            `stop()` is true).
        poll: Seconds between checks while following.
        stop: A callable that ends following when it returns true.
    """
    started = since is None
    reader = EventLogReader(path)
    try:
        while True:
            for event in reader.read():
                if not started:
                    started = event.get("id") == since
                    continue
                yield event
            if not follow or (stop is not None and stop()):
                return
            time.sleep(poll)
    finally:
        reader.close()
