"""What a sync cycle did: one line for people, the same counts as fields for machines.

A cycle's log record (`botreg sync`, text or JSON), the `last_cycle` of
status.json and `botreg status` all say it the same way:

    synced (initial)..19adea244109 in 2.78 s: bots 3 created, 0 updated, 0 deleted;
    knowledge files 7 added, 0 changed, 0 removed; chunks 29 embedded, 0 deleted

`from` is `(initial)` when nothing was applied before (the first sync), `to` is
`(none)` when the cycle failed before it knew the head. The fields are flat
integers (`bots_created`, `files_changed`, `chunks_embedded`, ...) beside the
cycle's raw `counts`, so a log pipeline can graph them without parsing text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from botreg.registry.layout import escape_unsafe

__all__ = [
    "INITIAL",
    "NO_HEAD",
    "SUMMARY_COUNTS",
    "Cycle",
    "cycle_fields",
    "cycle_line",
    "last_cycle",
    "span",
    "summary_counts",
    "summary_text",
]

INITIAL = "(initial)"  # the `from` of a first sync: nothing was applied before
NO_HEAD = "(none)"  # the `to` of a cycle that failed before the head was known

# The summary's counts, in the order a line says them; each sums the raw counts listed.
SUMMARY_COUNTS: dict[str, tuple[str, ...]] = {
    "bots_created": ("bots_created",),
    # a status flip is an update of the bot's file; its event type says which
    "bots_updated": ("bots_updated", "bots_activated", "bots_deactivated"),
    "bots_deleted": ("bots_deleted",),
    "files_added": ("files_added",),
    "files_changed": ("files_modified", "files_renamed"),
    "files_removed": ("files_deleted",),
    "chunks_embedded": ("chunks_embedded",),
    "chunks_deleted": ("chunks_deleted",),
}


class Cycle(Protocol):
    """What the summary reads of a cycle (`botreg.daemon.sync.CycleResult`)."""

    result: str
    from_commit: str
    to_commit: str
    counts: dict[str, int]
    durations: dict[str, float]
    error: str
    phase: str


def _count(counts: Mapping[str, Any], key: str) -> int:
    value = counts.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def summary_counts(counts: Mapping[str, Any]) -> dict[str, int]:
    """The summary's counts from a cycle's raw counts (missing or damaged ones are 0).

    Args:
        counts: A cycle's `counts` (the diff's `bots_created`, `files_modified`, ...
            and the ingest's `chunks_embedded`, ...).

    Returns:
        Every key of `SUMMARY_COUNTS`, in its order.
    """
    return {
        name: sum(_count(counts, raw) for raw in parts) for name, parts in SUMMARY_COUNTS.items()
    }


def summary_text(counts: Mapping[str, Any]) -> str:
    """`bots 3 created, 0 updated, 0 deleted; knowledge files ...; chunks ...`.

    The three groups are always there (a 0 says nothing happened, rather than
    leaving the reader to wonder); chunks whose vectors were reused, other
    files that changed and knowledge files not ingested follow when there are any.

    Args:
        counts: A cycle's raw `counts`.
    """
    s = summary_counts(counts)
    reused = _count(counts, "chunks_created") - s["chunks_embedded"]
    chunks = f"chunks {s['chunks_embedded']} embedded, "
    if reused > 0:
        chunks += f"{reused} reused, "
    parts = [
        f"bots {s['bots_created']} created, {s['bots_updated']} updated, "
        f"{s['bots_deleted']} deleted",
        f"knowledge files {s['files_added']} added, {s['files_changed']} changed, "
        f"{s['files_removed']} removed",
        chunks + f"{s['chunks_deleted']} deleted",
    ]
    other = []
    environments = _count(counts, "environments_changed")
    if environments:
        other.append(f"{environments} environment file{'s' if environments != 1 else ''}")
    if _count(counts, "registry_changed"):
        other.append("registry.yaml")
    if other:
        parts.append("also changed: " + ", ".join(other))
    failed = _count(counts, "files_failed")
    if failed:
        parts.append(f"{failed} knowledge file{'s' if failed != 1 else ''} not ingested")
    return "; ".join(parts)


def span(from_commit: str, to_commit: str) -> str:
    """`FROM..TO` in short commit ids: `(initial)` for no from, `(none)` for no to."""
    return f"{from_commit[:12] or INITIAL}..{to_commit[:12] or NO_HEAD}"


def cycle_line(cycle: Cycle) -> str:
    """The cycle in one line, without the word `cycle` (a log record puts it first).

    `synced A..B in 2.78 s: bots ...`, `rejected A..B in 0.31 s: 2 errors, 0 warnings;
    still serving A`, `failed A..B in phase fetch after 1.02 s: ERROR`,
    `noop B is applied (0.02 s)`, `interrupted by a stop after 3.10 s (A..B); the next
    run resumes`, `fenced A..B after 1.00 s: ERROR`.
    """
    seconds = cycle.durations.get("cycle", 0.0)
    between = span(cycle.from_commit, cycle.to_commit)
    if cycle.result == "synced":
        return f"synced {between} in {seconds:.2f} s: {summary_text(cycle.counts)}"
    if cycle.result == "noop":
        return f"noop: {cycle.to_commit[:12] or NO_HEAD} is applied ({seconds:.2f} s)"
    if cycle.result == "rejected":
        serving = cycle.from_commit[:12] or "nothing (no commit applied yet)"
        return (
            f"rejected {between} in {seconds:.2f} s: "
            f"{_nouns(_count(cycle.counts, 'errors'), 'error')}, "
            f"{_nouns(_count(cycle.counts, 'warnings'), 'warning')}; still serving {serving}"
        )
    if cycle.result == "interrupted":
        return f"interrupted by a stop after {seconds:.2f} s ({between}); the next run resumes"
    # an error quotes git, the store or the repository: one printable line, no
    # terminal escape (the text log only escapes line breaks)
    error = escape_unsafe(str(cycle.error))
    if cycle.result == "failed":
        phase = escape_unsafe(cycle.phase or "-")
        return f"failed in phase {phase} after {seconds:.2f} s ({between}): {error}"
    return f"{escape_unsafe(str(cycle.result))} {between} after {seconds:.2f} s: {error}"


def cycle_fields(cycle: Cycle) -> dict[str, Any]:
    """The fields of a cycle's log record: `from`, `to`, `result`, `duration`, the raw
    `counts`, the summary's counts flat beside them (a synced cycle), and `phase` and
    `error` (a failed or fenced cycle)."""
    fields: dict[str, Any] = {
        "from": cycle.from_commit or INITIAL,
        "to": cycle.to_commit or NO_HEAD,
        "result": cycle.result,
        "duration": round(cycle.durations.get("cycle", 0.0), 3),
        "counts": dict(cycle.counts),
    }
    if cycle.result == "synced":
        fields.update(summary_counts(cycle.counts))
    elif cycle.result == "rejected":
        fields.update(
            errors=_count(cycle.counts, "errors"), warnings=_count(cycle.counts, "warnings")
        )
    elif cycle.result in ("failed", "fenced"):
        fields.update(phase=cycle.phase, error=cycle.error)
    return fields


def last_cycle(cycle: Cycle, finished: str) -> dict[str, Any]:
    """The status's `last_cycle`: the log record's fields, when it ended, and its line.

    Args:
        cycle: The cycle.
        finished: When it ended (ISO 8601).
    """
    return {**cycle_fields(cycle), "finished": finished, "summary": cycle_line(cycle)}


def _nouns(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
