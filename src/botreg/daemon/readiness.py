"""What `/readyz` answers: is this daemon fit to serve reads?

Kept apart from the HTTP layer so the rule is one function of the status
document and the store's health, testable without a server.

Ready means: a commit was applied and its store answers (the daemon opens it at
start-up, not at the next commit), the read model has loaded the applied commit
(at start-up it loads in the background: `GET /bots` would otherwise wait for
it), no cycle is stalled, and the source was fetched successfully within
`stale_after` seconds. The staleness clock survives a restart: the last
successful fetch saved in status.json counts until this process fetches, so a
daemon restarted while its remote is gone is not ready for another
`stale_after`. A rejected head is not a
reason: the daemon keeps serving its last good commit, and says so in the status
(`rejected_commit`, `ValidationFailed`) and in `botreg_rejected_head`. Whether
the last fetch found news does not matter either: a no-op or a rejected cycle
whose fetch succeeded is fresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["Readiness", "default_stale_after", "status_timestamp"]


def default_stale_after(interval: float) -> float:
    """The default `--stale-after`: three polls, and at least five minutes."""
    return max(3 * interval, 300.0)


def status_timestamp(value: object) -> float | None:
    """A status time (ISO 8601) as Unix time; None if absent or unreadable.

    Args:
        value: A time of the status document (a string, or anything a damaged file holds).

    Returns:
        Seconds since the epoch, or None.
    """
    if not isinstance(value, str):
        return None
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Readiness:
    """Decides readiness from the status document and a store probe.

    Args:
        status: The status document (with `Stalled` already worked out).
        store_ok: True if the applied commit's store is open and answers.
        stale_after: Seconds without a successful fetch after which the daemon is not ready.
        since: When the daemon started (Unix time): if no fetch ever succeeded
            (none in this process, none saved), the staleness clock runs from here.
        last_fetch: The last successful fetch saved before this start (Unix time,
            from status.json): it counts until this process fetches, so a restart
            does not reset the clock.
        read_model_loaded: True once the read model holds the applied commit
            (None: no read model is served, e.g. no HTTP).
    """

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        store_ok: Callable[[], bool],
        stale_after: float,
        since: float | None = None,
        last_fetch: float | None = None,
        read_model_loaded: Callable[[], bool] | None = None,
    ) -> None:
        self.status = status
        self.store_ok = store_ok
        self.stale_after = stale_after
        self.since = time.time() if since is None else since
        self.last_fetch = last_fetch
        self.read_model_loaded = read_model_loaded

    def __call__(self) -> tuple[bool, list[str]]:
        """`(ready, reasons)` for the current status (see `evaluate`)."""
        return self.evaluate(self.status())

    def evaluate(self, doc: dict[str, Any]) -> tuple[bool, list[str]]:
        """`(ready, reasons)` for a status document: the reasons say why not ready.

        Args:
            doc: The status document.

        Returns:
            True and no reasons when a commit is applied, its store answers, no
            cycle is stalled and the last successful fetch is fresh.
        """
        reasons = []
        stalled = doc.get("conditions", {}).get("Stalled", {})
        if stalled.get("status") == "True":
            reasons.append("stalled: " + str(stalled.get("message", "")))
        if not doc.get("applied_commit"):
            reasons.append("no commit applied yet")
        else:
            if not self.store_ok():
                reasons.append("store unreachable")
            if self.read_model_loaded is not None and not self.read_model_loaded():
                reasons.append("read model loading")
        # this process's last fetch, else the one saved before the restart: a restart
        # must not make a daemon whose remote is gone look fresh for another stale_after
        fetched = status_timestamp(doc.get("last_fetch"))
        if fetched is None:
            fetched = self.last_fetch
        age = time.time() - (self.since if fetched is None else fetched)
        if age > self.stale_after:
            if fetched is None:
                reasons.append(f"no successful fetch since the start {int(age)} s ago")
            else:
                reasons.append(f"last successful fetch {int(age)} s ago")
        return not reasons, reasons
