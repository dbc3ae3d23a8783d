"""What one ingestion of a domain did, and the stop that may end it early.

`IngestionResult` carries the seed's counters (files processed and skipped,
chunks created, deleted, unchanged and embedded) and the files that failed;
`IngestInterrupted` ends an ingestion that was asked to stop between batches.
Both are importable from `botreg.knowledge.ingest` as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["IngestInterrupted", "IngestionResult"]


class IngestInterrupted(Exception):  # noqa: N818 - a stop asked for, not an error
    """A stop was asked for between batches: what was written is stored and recorded.

    Not a `BotregError`: the cycle it ends is interrupted, not failed.
    """


@dataclass
class IngestionResult:
    """What one ingestion of a domain did (names follow the seed)."""

    domain_id: str
    files_processed: int = 0
    files_skipped: int = 0
    chunks_created: int = 0
    chunks_deleted: int = 0
    chunks_unchanged: int = 0
    chunks_embedded: int = 0  # texts sent to the embedding function: the bill
    # One per failed file: path (control characters escaped) and message.
    errors: list[dict[str, str]] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    completed_at: datetime | None = None
    version: str = ""  # the source's version ingested (set by the seed-style manager)

    @property
    def success(self) -> bool:
        """True if every file ingested."""
        return not self.errors

    @property
    def duration_seconds(self) -> float | None:
        """Wall time of the ingestion, once completed."""
        if self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "domain_id": self.domain_id,
            "files_processed": self.files_processed,
            "files_skipped": self.files_skipped,
            "chunks_created": self.chunks_created,
            "chunks_deleted": self.chunks_deleted,
            "chunks_unchanged": self.chunks_unchanged,
            "chunks_embedded": self.chunks_embedded,
            "errors": self.errors,
            "started_at": self.started_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "success": self.success,
            "duration_seconds": self.duration_seconds,
            **({"version": self.version} if self.version else {}),
        }
