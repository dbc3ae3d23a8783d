"""Bounded excerpts of changed values, for every output that shows a change.

A change event, a review and a log line show what changed, never a file's
content: a hostile commit can hold a 5 MB string, a list of 100,000 items or
an alias expanded a thousand times. Each output gives one file a `Budget` of
characters; `clip_value` copies a value within it (long strings, big and deep
containers cut, with markers saying what was left out).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_KEY", "Budget", "clip_change", "clip_changes", "clip_text", "clip_value"]

FILE_BUDGET = 4000  # characters of values one file may show
MAX_STRING = 500  # characters of any one string
MAX_KEY = 200  # characters of a key or a change path
MAX_DEPTH = 16  # levels of a container shown


class Budget:
    """Characters of excerpt one file may still show."""

    def __init__(self, chars: int = FILE_BUDGET) -> None:
        self.left = chars


def clip_text(value: str, limit: int) -> str:
    """`value`, or its first `limit` characters and a marker saying how long it was."""
    if len(value) <= limit:
        return value
    return value[: max(limit, 0)] + f"... [truncated: {len(value)} characters in all]"


def _clip_str(value: str, budget: Budget, limit: int = MAX_STRING) -> str:
    room = max(min(limit, budget.left), 0)
    budget.left -= min(len(value), room)
    return clip_text(value, room)


def clip_value(value: Any, budget: Budget, depth: int = 0) -> Any:
    """A copy of `value` bounded by `budget`: long strings, big and deep containers cut.

    Depth-bounded (at most `MAX_DEPTH` levels), so no input can exhaust the stack.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _clip_str(value, budget)
    if isinstance(value, int):
        budget.left -= 8
        # a huge integer cannot even be printed (Python's 4,300-digit limit)
        return value if value.bit_length() <= 64 else f"[integer of {value.bit_length()} bits]"
    if isinstance(value, float):
        budget.left -= 8
        return value if math.isfinite(value) else str(value)  # JSON has no NaN
    if not isinstance(value, Mapping | list | tuple):
        return _clip_str(str(value), budget)
    if depth >= MAX_DEPTH:
        return f"[nested deeper than {MAX_DEPTH} levels]"
    size = len(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if budget.left <= 0:
                out["..."] = f"[truncated: {size - index} more keys]"
                break
            out[_clip_str(str(key), budget, MAX_KEY)] = clip_value(item, budget, depth + 1)
        return out
    items: list[Any] = []
    for index, item in enumerate(value):
        if budget.left <= 0:
            items.append(f"[truncated: {size - index} more items]")
            break
        items.append(clip_value(item, budget, depth + 1))
    return items


def clip_change(change: Mapping[str, Any], budget: Budget) -> dict[str, Any]:
    """A key-diff change (`path`, `kind`, `old`, `new`) with its values within `budget`."""
    return {
        **change,
        "path": clip_text(str(change["path"]), MAX_KEY),
        "old": clip_value(change.get("old"), budget),
        "new": clip_value(change.get("new"), budget),
    }


def clip_changes(
    changes: list[dict[str, Any]], *, max_items: int = 200, chars: int = 16_000
) -> tuple[list[dict[str, Any]], int]:
    """At most `max_items` changes, their values within one budget of `chars`.

    Returns:
        The kept changes and how many were left out (0 when none was).
    """
    budget = Budget(chars)
    kept = [clip_change(change, budget) for change in changes[:max_items]]
    return kept, max(len(changes) - max_items, 0)
