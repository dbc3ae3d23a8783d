"""What `/readyz` answers: is this daemon fit to serve reads?

Kept apart from the HTTP layer so the rule is one function of the status
document and the store's health, testable without a server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["Readiness"]


class Readiness:
    """Decides readiness from the status document and a store probe."""

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        store_ok: Callable[[], bool],
        stale_after: float,
    ) -> None:
        self.status = status
        self.store_ok = store_ok
        self.stale_after = stale_after

    def __call__(self) -> tuple[bool, list[str]]:
        """`(ready, reasons)`: ready when a commit was applied, the store answers and the
        last success is fresh; otherwise the reasons say why not."""
        doc = self.status()
        reasons = []
        if doc.get("conditions", {}).get("Stalled", {}).get("status") == "True":
            reasons.append("stalled: " + doc["conditions"]["Stalled"].get("message", ""))
        if not doc.get("applied_commit"):
            reasons.append("no commit applied yet")
        if not self.store_ok():
            reasons.append("store unreachable")
        last = doc.get("last_success") or ""
        if last:
            age = time.time() - datetime.fromisoformat(last).replace(tzinfo=UTC).timestamp()
            if age > self.stale_after:
                reasons.append(f"last success {int(age)} s ago")
        else:
            reasons.append("no successful cycle yet")
        return not reasons, reasons
