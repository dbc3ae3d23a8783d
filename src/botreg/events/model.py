"""CloudEvents 1.0 (JSON format) for registry changes.

The event `id` is derived from what happened (type, commits, subject), not from
when it was sent: when a cycle is re-run after a crash its events are sent
again with the same ids, and consumers deduplicate by id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botreg.secrets import dumps_strict, mask_config, redact_url

__all__ = ["EVENT_TYPES", "CloudEvent", "event_id"]

EVENT_TYPES = (
    "botreg.bot.created",
    "botreg.bot.updated",
    "botreg.bot.deleted",
    "botreg.bot.activated",
    "botreg.bot.deactivated",
    "botreg.knowledge.file.added",
    "botreg.knowledge.file.modified",
    "botreg.knowledge.file.deleted",
    "botreg.knowledge.file.renamed",
    "botreg.knowledge.ingested",
    "botreg.knowledge.ingest_failed",
    "botreg.environment.changed",
    "botreg.registry.changed",
    "botreg.sync.completed",
    "botreg.sync.rejected",
    "botreg.sync.failed",
    "botreg.sync.history_rewritten",
    "botreg.webhook.dead_lettered",
)


def event_id(*parts: str) -> str:
    """A stable id from the parts that identify an event."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One CloudEvent (specversion 1.0)."""

    type: str
    source: str
    id: str
    subject: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def __post_init__(self) -> None:
        # Redacted when created, so every sink (the log, stdout, the webhook and its
        # outbox, Python subscribers) gets the same secret-free event.
        object.__setattr__(self, "source", redact_url(self.source))
        object.__setattr__(self, "subject", redact_url(self.subject))
        object.__setattr__(self, "data", mask_config(self.data))

    def to_dict(self) -> dict[str, Any]:
        """The structured-mode JSON form."""
        doc: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "datacontenttype": "application/json",
            "data": self.data,
        }
        if self.subject:
            doc["subject"] = self.subject
        return doc

    def to_json(self) -> str:
        """One line of strict JSON (never a bare NaN), secrets masked."""
        return dumps_strict(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CloudEvent:
        """Read an event back from its JSON form."""
        return cls(
            type=doc["type"],
            source=doc["source"],
            id=doc["id"],
            subject=doc.get("subject", ""),
            data=doc.get("data") or {},
            time=doc.get("time", ""),
        )
