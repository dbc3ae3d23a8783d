"""The small exception tree that the CLI maps to exit codes.

Library code raises these; `botreg.cli` turns them into a message and an exit
code (errors 1, usage 2). Anything else that escapes is a bug: exit 3, and a
crash log (`write_crash_log`) keeps the traceback for the bug report.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "BotregError",
    "EmbeddingUnavailableError",
    "RepositoryError",
    "ResolutionError",
    "UsageError",
    "crash_dir",
    "redact_arg",
    "write_crash_log",
]


class BotregError(Exception):
    """An expected failure with a message for the user (exit code 1)."""

    exit_code = 1


class UsageError(BotregError):
    """Wrong arguments or options (exit code 2)."""

    exit_code = 2


class RepositoryError(BotregError):
    """The registry repository cannot be read at all (exit code 2)."""

    exit_code = 2


class ResolutionError(BotregError):
    """A config cannot be resolved for an environment (exit code 1)."""


class EmbeddingUnavailableError(BotregError):
    """The configured embedding function cannot run here (exit code 1)."""


# --- crash logs ----------------------------------------------------------------------------

# URL userinfo (`https://user:token@host`) and credential query parameters: a crash
# log is a file users attach to bug reports, so it must not carry what they typed.
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
_QUERY_SECRET_RE = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*(?:token|secret|password|passwd|key|auth|signature|sig)"
    r"[a-z0-9_.-]*)=)[^&;#\s]+"
)


def redact_arg(text: str) -> str:
    """`text` with URL userinfo and credential query parameters masked."""
    return _QUERY_SECRET_RE.sub(r"\1***", _USERINFO_RE.sub(r"\1***@", text))


MAX_CRASH_LOGS = 100


def crash_dir() -> Path:
    """Where crash logs go: $XDG_STATE_HOME/botreg, else ~/.local/state/botreg."""
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "botreg"


def write_crash_log(exc: BaseException, argv: Sequence[str], context: str = "") -> Path | None:
    """Write the traceback of `exc` with what is needed to report it; return the file.

    Tries `crash_dir()`, then the temporary directory. Returns None when neither
    can be written: a crash log must never turn into a second crash.

    Args:
        exc: The exception (its traceback is written).
        argv: The command line (URL userinfo and credential parameters redacted).
        context: One more line for the reader (e.g. the sync phase that failed).
    """
    # imported here: only a crash pays for them, never the hook's start-up
    import platform
    import tempfile
    import traceback

    from botreg import __version__

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    lines = [
        f"botreg {__version__} crashed at {stamp}",
        f"python {sys.version.split()[0]} ({platform.platform()})",
        f"argv: {' '.join(redact_arg(a) for a in argv)}",
    ]
    if context:
        lines.append(f"context: {context}")
    body = "\n".join(lines) + "\n\n" + "".join(traceback.format_exception(exc))
    name = f"crash-{stamp}-{os.getpid()}.log"
    for folder in (crash_dir(), Path(tempfile.gettempdir()) / "botreg"):
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = folder / name
            # 0600: a traceback can quote file content; keep it to the user
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
                handle.write(body)
            _prune(folder)
            return path
        except (OSError, ValueError):
            continue
    return None


def _prune(folder: Path) -> None:
    """Keep the newest MAX_CRASH_LOGS crash logs: a daemon retrying for months stays bounded."""
    try:
        logs = sorted(folder.glob("crash-*.log"))  # names start with a UTC timestamp
        for old in logs[:-MAX_CRASH_LOGS]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
