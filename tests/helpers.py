"""Test helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botreg.registry.source import WorkingTreeSource
from botreg.validation.runner import Report, validate_registry


def validate(root: Path, paths: list[str] | None = None) -> Report:
    """Validate a registry folder."""
    return validate_registry(WorkingTreeSource(root), paths)


def codes(report: Report, path: str | None = None) -> list[str]:
    """The codes of a report's findings (of one path, if given)."""
    return [f.code for f in report.findings if path is None or f.path == path]


def write(root: Path, rel: str, text: str | bytes) -> Path:
    """Write a file below root, creating folders."""
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text, encoding="utf-8")
    return target


def wait_for(condition: Callable[[], Any], timeout: float = 30, step: float = 0.05) -> Any:
    """Poll until `condition()` gives something true and return it (a bound on
    waiting, not a timed assertion); AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s")
