"""The daemon's status: conditions in the Kubernetes style, persisted beside the ledger.

Conditions: Ready, Reconciling, Stalled, FetchFailed, ValidationFailed,
IngestFailed; each is True or False with a reason, a message and the time it
last changed. `last_cycle` is what the last cycle that did something did
(`botreg.daemon.summary.last_cycle`: its fields and its summary line); the
findings of a rejected head are kept with their total. The status is written
to `<data-dir>/status.json` after every change (atomically), so `botreg status`
can read it while the daemon runs or after it stopped.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botreg.registry.layout import escape_unsafe
from botreg.secrets import dumps_strict, mask_config, mask_text, redact_url

__all__ = ["CONDITIONS", "FINDINGS_SHOWN", "DaemonStatus", "finding_line", "finding_lines"]

CONDITIONS = ("Ready", "Reconciling", "Stalled", "FetchFailed", "ValidationFailed", "IngestFailed")


FINDINGS_SHOWN = 50  # findings a log or `botreg status` lists; the rest are counted


def finding_line(finding: Any) -> str:
    """`path:line:col: CODE message` of one stored finding, on one line, secrets masked.

    A damaged status file (a finding that is not a mapping) gives a line, not an error.
    """
    f = finding if isinstance(finding, dict) else {"message": str(finding)}
    warning = "warning: " if f.get("severity") == "warning" else ""
    text = (
        f"{f.get('path', '')}:{f.get('line', 0)}:{f.get('column', 0)}: "
        f"{f.get('code', '')} {warning}{f.get('message', '')}"
    )
    # paths and messages come from the commit: no line break, no credential
    return escape_unsafe(mask_text(text))


def finding_lines(
    findings: Any, total: int | None = None, limit: int = FINDINGS_SHOWN
) -> list[str]:
    """At most `limit` finding lines, then `and N more` if `total` (or the list) has more."""
    items = findings if isinstance(findings, list) else []
    lines = [finding_line(f) for f in items[:limit]]
    known = max(total or 0, len(items))
    if known > len(lines):
        lines.append(f"and {known - len(lines)} more")
    return lines


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DaemonStatus:
    """Thread-safe status document."""

    def __init__(self, path: Path, *, source: str, branch: str, environment: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        previous = self._read(path)
        findings = previous.get("findings")
        findings = findings if isinstance(findings, list) else []  # a damaged file: none
        last_cycle = previous.get("last_cycle")
        self.doc: dict[str, Any] = {
            "source": redact_url(source),
            "branch": branch,
            "environment": environment,
            "pid": os.getpid(),
            "running": True,
            "applied_commit": previous.get("applied_commit", ""),
            "head_commit": previous.get("head_commit", ""),
            "rejected_commit": previous.get("rejected_commit", ""),
            "last_attempt": previous.get("last_attempt", ""),
            "last_success": previous.get("last_success", ""),
            "last_result": previous.get("last_result", ""),
            "last_error": previous.get("last_error", ""),
            # the last cycle that did something: result, from, to, counts, summary line
            "last_cycle": last_cycle if isinstance(last_cycle, dict) else {},
            "findings": findings,
            "findings_total": previous.get("findings_total", len(findings)),
            "domains": previous.get("domains", {}),
            "conditions": {
                name: {"status": "False", "reason": "", "message": "", "lastTransitionTime": ""}
                for name in CONDITIONS
            },
        }

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def set_condition(self, name: str, status: bool, reason: str = "", message: str = "") -> None:
        """Set one condition (its transition time changes only when its status does)."""
        with self._lock:
            current = self.doc["conditions"][name]
            value = "True" if status else "False"
            if current["status"] != value or not current["lastTransitionTime"]:
                current["lastTransitionTime"] = _now()
            current.update(status=value, reason=reason, message=message[:2000])

    def update(self, **values: Any) -> None:
        """Set top-level fields."""
        with self._lock:
            self.doc.update(values)

    def condition(self, name: str) -> bool:
        """True if the condition is set."""
        with self._lock:
            return bool(self.doc["conditions"][name]["status"] == "True")

    def snapshot(self) -> dict[str, Any]:
        """A copy of the document, secrets masked (what status.json and /status show).

        Messages come from git, the store and the repository: any credential in
        them (a URL's userinfo or token parameter, a key) is masked here, once.
        """
        with self._lock:
            copy: dict[str, Any] = json.loads(dumps_strict(self.doc))
        masked: dict[str, Any] = mask_config(copy)
        masked["source"] = redact_url(str(masked.get("source", "")))
        return masked

    def save(self) -> None:
        """Write the document atomically."""
        data = dumps_strict(self.snapshot(), indent=2, sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".status-")
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        os.replace(tmp, self.path)

    @staticmethod
    def load(path: Path) -> dict[str, Any]:
        """Read a saved status ({} if there is none)."""
        return DaemonStatus._read(path)
