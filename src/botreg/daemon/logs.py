"""The daemon's logging: one record per line, text or JSON, credentials masked.

`configured_logging(fmt, level)` installs one handler on the root logger for the
time of a `botreg sync` run and restores everything after (tests and embedders
run the daemon inside a bigger process). Every record goes through
`RedactingFilter`; the formatters then mask exception text the same way and
escape newlines, so git's multi-line stderr or a traceback stays one line that
a log collector cannot split (or be fed a forged record through).

JSON lines carry `time` (ISO 8601, UTC), `level`, `logger`, `message`, an
`exception` string when there is one, and the fields a caller put in
`extra={"fields": {...}}`: a cycle's `from`, `to`, `result`, `duration`,
`counts` and the summary's integers (`bots_created`, `files_changed`,
`chunks_embedded`, ...: see `botreg.daemon.summary`), or a progress record's
`progress` object (`botreg.daemon.progress`).

Libraries that log every request at INFO (httpx for each Chroma server call,
chromadb, urllib3, watchfiles for each ref change `--watch` sees) are held at
WARNING unless the level is DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from botreg.secrets import RedactingFilter, redact_url

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "NOISY_LOGGERS",
    "JsonFormatter",
    "TextFormatter",
    "configured_logging",
    "one_line",
]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
# Per-request INFO lines: one per Chroma server call, per model download chunk,
# per batch of file changes `--watch` sees ("watchfiles.main: 1 change detected").
NOISY_LOGGERS = ("httpx", "httpcore", "chromadb", "urllib3", "watchfiles")


def one_line(text: str) -> str:
    """`text` on one line: CR, LF and other line breaks escaped as `\\n` and the like."""
    if "\n" not in text and "\r" not in text and "\u2028" not in text and "\u2029" not in text:
        return text
    return (
        text.replace("\\", "\\\\")
        .replace("\r", "\\r")
        .replace("\n", "\\n")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback (and stack), masked, or "" if it has none."""
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    # a traceback quotes arguments and URLs: the same masking as the message
    return redact_url("\n".join(parts)) if parts else ""


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _masked(value: Any) -> Any:
    """A field's value with the redaction of messages applied to every string in it."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, Mapping):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, one line per record (a traceback is escaped into it)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record on one line."""
        line = f"{_time(record)} {record.levelname} {record.name}: {one_line(record.getMessage())}"
        exception = _exception_text(self, record)
        return f"{line} | {one_line(exception)}" if exception else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (newlines inside values are JSON-escaped)."""
        doc: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            # the four fields above always win; a field's text (an error) is masked too
            doc.setdefault(str(key), _masked(value))
        exception = _exception_text(self, record)
        if exception:
            doc["exception"] = exception
        # ensure_ascii: U+2028 and friends are escaped too; default=str: never a failure
        return json.dumps(doc, ensure_ascii=True, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each record (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always sys.stderr


@contextmanager
def configured_logging(fmt: str = "text", level: str = "info") -> Iterator[logging.Handler]:
    """Log to stderr in `fmt` at `level` for the duration of the block, then restore.

    Args:
        fmt: "text" or "json".
        level: "debug", "info", "warning" or "error".

    Yields:
        The installed handler.

    Raises:
        ValueError: for a format or level not in `LOG_FORMATS` / `LOG_LEVELS`.
    """
    if fmt not in LOG_FORMATS or level not in LOG_LEVELS:
        raise ValueError(f"unknown log format {fmt!r} or level {level!r}")
    numeric = getattr(logging, level.upper())
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())  # no credential in any line
    root = logging.getLogger()
    saved_root = root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    # a handler someone else installed (an embedding app) must not leak credentials either
    others = list(root.handlers)
    redacting = RedactingFilter()
    for other in others:
        other.addFilter(redacting)
    root.addHandler(handler)
    root.setLevel(numeric)
    quiet = logging.DEBUG if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for other in others:
            other.removeFilter(redacting)
        root.setLevel(saved_root)
        for name, previous in noisy.items():
            logging.getLogger(name).setLevel(previous)
