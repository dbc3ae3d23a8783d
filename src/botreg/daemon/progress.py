"""Progress of a cycle's long work: a bar on a terminal, a log line every few seconds otherwise.

Ingesting 400 files is ten seconds or more; a daemon's first sync of a big
registry is minutes. The cycle reports what it is doing (chunking a domain's
files, embedding its chunks, sending change events) to a `Progress`:

- `BarProgress` (`botreg sync` on a terminal with text logs): a rich progress
  bar on stderr, removed when the cycle ends; log records print above it.
- `LineProgress` (not a terminal: CI, systemd, a pipe, or `--log-format json`):
  an INFO record at most every `interval` seconds (5 by default), through the
  daemon's logging, so a JSON log stays one JSON object per line; its
  `progress` field holds `phase`, `subject`, `done`, `total`, `unit` and
  `elapsed`. Work shorter than the interval logs nothing.
- `Progress` itself reports nothing.

Nothing goes to stdout: `--events-file -` and other consumers of stdout see
only what they saw before.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, TextIO

from botreg.registry.layout import escape_unsafe

__all__ = [
    "DEFAULT_INTERVAL",
    "PROGRESS_MODES",
    "BarProgress",
    "LineProgress",
    "Progress",
    "choose_mode",
    "make_progress",
]

PROGRESS_MODES = ("bar", "lines", "off")
DEFAULT_INTERVAL = 5.0  # seconds between two progress lines (and before the first)

logger = logging.getLogger("botreg.daemon.progress")


class Progress:
    """Reports nothing: the base of the reporters, and `off`."""

    def begin(self) -> None:
        """A cycle starts (the clock of `elapsed` and of the first line starts here)."""

    def update(self, phase: str, subject: str, done: int, total: int, unit: str) -> None:
        """`done` of `total` `unit` of `phase` on `subject` are done.

        Args:
            phase: What is under way (`chunking`, `embedding`, `emitting`).
            subject: What it is done to (`knowledge/billing`; "" for the whole cycle).
            done: How many are done.
            total: How many there are.
            unit: What is counted (`files`, `chunks`, `events`).
        """

    def finish(self) -> None:
        """The cycle ended: a bar is removed (the cycle's summary line follows)."""


class LineProgress(Progress):
    """An INFO record at most every `interval` seconds, none for shorter work.

    Args:
        interval: Seconds between two lines, and before the first (None: `DEFAULT_INTERVAL`).
        clock: The clock (tests pass their own rather than sleep).
        log: Where the lines go.
    """

    def __init__(
        self,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger = logger,
    ) -> None:
        self.interval = DEFAULT_INTERVAL if interval is None else interval
        self._clock = clock
        self._log = log
        self._started = self._last = clock()

    def begin(self) -> None:
        """Restart the clock: a cycle's first line comes `interval` seconds into it."""
        self._started = self._last = self._clock()

    def update(self, phase: str, subject: str, done: int, total: int, unit: str) -> None:
        """Log where the work is if `interval` seconds passed since the last line."""
        now = self._clock()
        if now - self._last < self.interval:
            return
        self._last = now
        elapsed = now - self._started
        percent = 100 * done // total if total > 0 else 100
        where = _where(phase, subject)
        self._log.info(
            "%s: %d/%d %s (%d%%), %.0f s into the cycle",
            where,
            done,
            total,
            unit,
            percent,
            elapsed,
            extra={
                "fields": {
                    "progress": {
                        "phase": phase,
                        "subject": subject,
                        "done": done,
                        "total": total,
                        "unit": unit,
                        "elapsed": round(elapsed, 3),
                    }
                }
            },
        )


class BarProgress(Progress):
    """A rich progress bar on stderr for the work under way, removed at the end of the cycle.

    One bar: a new phase or subject replaces the last one (a registry of 50 domains
    does not stack 100 finished bars).

    Started at the first update; log records written meanwhile print above it
    (rich redirects stderr while the bar is shown; stdout is left alone).

    Args:
        console: A `rich.console.Console` (default: one on stderr).
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self._console = console if console is not None else Console(stderr=True)
        self._bar: Any = None
        self._task: tuple[tuple[str, str], Any] | None = None  # (phase, subject), task id

    def _start(self) -> Any:
        import rich.progress as rp

        bar = rp.Progress(
            rp.TextColumn("{task.description}", markup=False),  # a name is not markup
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            rp.TextColumn("{task.fields[unit]}"),
            rp.TimeElapsedColumn(),
            console=self._console,
            transient=True,
            redirect_stdout=False,  # events on stdout (--events-file -) stay as they are
            redirect_stderr=True,  # log records print above the bar
        )
        bar.start()
        self._bar = bar
        return bar

    def update(self, phase: str, subject: str, done: int, total: int, unit: str) -> None:
        """Move the bar of (`phase`, `subject`), replacing the last one if it is new."""
        bar = self._bar or self._start()
        key = (phase, subject)
        if self._task is None or self._task[0] != key:
            if self._task is not None:
                bar.remove_task(self._task[1])
            description = _where(phase, subject)
            self._task = (key, bar.add_task(description, total=total, unit=unit))
        bar.update(self._task[1], completed=done, total=total)

    def finish(self) -> None:
        """Remove the bar (nothing if none was shown)."""
        bar, self._bar, self._task = self._bar, None, None
        if bar is not None:
            bar.stop()


def _where(phase: str, subject: str) -> str:
    """`chunking knowledge/billing`: what is under way, on one printable line.

    The subject names a folder of the registry: shown escaped (never a terminal
    control sequence), and never read as rich markup by the bar.
    """
    where = f"{phase} {subject}" if subject else phase
    return escape_unsafe(where)


def choose_mode(log_format: str, stream: TextIO) -> str:
    """`bar` for text logs on a terminal, else `lines` (CI, systemd, pipes, JSON logs).

    Args:
        log_format: `--log-format` (`text` or `json`): JSON logs never get a bar.
        stream: Where the logs go (stderr).
    """
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed or not a real stream
        terminal = False
    if log_format != "text" or not terminal or os.environ.get("TERM") == "dumb":
        return "lines"
    return "bar"


def make_progress(mode: str, interval: float | None = None) -> Progress:
    """The reporter for a mode of `PROGRESS_MODES`.

    Args:
        mode: `bar`, `lines` or `off`.
        interval: Seconds between lines (`lines`; None: `DEFAULT_INTERVAL`).

    Raises:
        ValueError: for a mode not in `PROGRESS_MODES`.
    """
    if mode == "bar":
        try:
            return BarProgress()
        except ImportError:  # rich comes with the daemon extra; without it, lines
            return LineProgress(interval)
    if mode == "lines":
        return LineProgress(interval)
    if mode == "off":
        return Progress()
    raise ValueError(f"unknown progress mode {mode!r} (one of {', '.join(PROGRESS_MODES)})")
