"""The data dir: where botreg keeps its state for one registry and environment.

<data-dir>/
  lock              held by the process that writes (ingest, the daemon)
  ledger.sqlite     what is stored (see botreg.knowledge.ledger)
  chroma/           the embedded Chroma store (unless the environment names a server)
  mirror.git/       the daemon's git mirror
  events.jsonl      the daemon's event log
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from botreg.errors import BotregError, UsageError
from botreg.secrets import redact_url

__all__ = [
    "RESERVED_NAMES",
    "DataDir",
    "DataDirError",
    "DataDirLockedError",
    "disk_bytes",
    "is_reserved",
]


# What botreg itself keeps at the top of a data dir: an embedded store folder
# named after one of these would overwrite it (a store in mirror.git/refs broke
# every later fetch). SQLite's -wal/-shm/-journal companions are covered by prefix.
RESERVED_NAMES = frozenset(
    {
        "lock",
        "ledger.sqlite",
        "mirror.git",
        "events.jsonl",
        "status.json",
        "daemon.json",
        "outbox.sqlite",
        "worktree",  # the work tree HTTP writes commit in (`--allow-writes`)
        "knowledge-status.json",  # ingestion statuses set through the knowledge API
    }
)


def is_reserved(name: str) -> bool:
    """True if a top-level name in the data dir is one of botreg's own files or folders."""
    return any(name == r or name.startswith(f"{r}-") for r in RESERVED_NAMES)


class DataDirLockedError(BotregError):
    """Another process holds the data dir."""


class DataDirError(UsageError):
    """The data dir cannot be created or written (exit code 2)."""


class DataDir:
    """Paths inside a data dir, and its lock."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def ledger(self) -> Path:
        """The SQLite ledger."""
        return self.root / "ledger.sqlite"

    @property
    def mirror(self) -> Path:
        """The daemon's bare git mirror."""
        return self.root / "mirror.git"

    @property
    def events(self) -> Path:
        """The event log (CloudEvents, one JSON object per line)."""
        return self.root / "events.jsonl"

    @property
    def lock_file(self) -> Path:
        """The lock file."""
        return self.root / "lock"

    def holder(self) -> str:
        """What the lock file says about its holder ('' if unknown), credentials masked.

        Masked on reading too: a lock file written by an older botreg may hold a
        `--source` URL with its userinfo.
        """
        try:
            return redact_url(self.lock_file.read_text(errors="replace").strip()[:1000])
        except OSError:
            return ""

    @contextmanager
    def locked(self, what: str) -> Iterator[None]:
        """Hold the data dir exclusively, or fail at once if another process does.

        Chroma's embedded store is not safe for two writers, and a second opener
        can hang for minutes: refusing quickly is the kind answer.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.lock_file, "a+")  # noqa: SIM115 - held for the context
        except OSError as exc:  # a file in the way, no permission, a read-only disk
            raise DataDirError(
                f"cannot use {self.root} as the data dir: {exc.strerror or exc}; "
                "pass --data-dir DIR of a writable folder"
            ) from None
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self.holder() or "unknown"
                raise DataDirLockedError(
                    f"{self.root} is in use by another botreg process ({holder}); stop it, "
                    "or use another --data-dir"
                ) from None
            handle.seek(0)
            handle.truncate()
            # `what` names the command, often with its --source URL: never its credentials
            handle.write(f"pid {os.getpid()}: {redact_url(what)}\n")
            handle.flush()
            yield
        finally:
            handle.close()  # closing releases the lock


def disk_bytes(path: Path) -> int:
    """Bytes on disk of a file, or of every file below a folder, counted in blocks as
    `du` counts them (a 200-byte file takes a whole block); 0 if it is gone."""
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue  # removed meanwhile
    return total
