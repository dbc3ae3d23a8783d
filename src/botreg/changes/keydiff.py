"""Semantic diff of two configs: every changed key path with its old and new value.

List items that are mappings with a `name` or `id` are matched by it, not by
position (a reorder alone is reported once, as such); values under secret-like
keys and known token shapes are masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botreg.secrets import mask_config, mask_text, mask_value, secret_scope

__all__ = ["MISSING", "KeyChange", "diff_values"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_MATCH_KEYS = ("name", "id")


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One changed key path: `kind` is added, removed, changed or reordered."""

    path: str
    kind: str
    old: Any = None
    new: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (values already masked)."""
        return {"path": self.path, "kind": self.kind, "old": self.old, "new": self.new}


def _mask(value: Any, key: object) -> Any:
    if value is MISSING:
        return None
    if isinstance(value, Mapping | list):
        masked = mask_config({key: value} if isinstance(key, str) else value)
        return masked[key] if isinstance(key, str) else masked
    return mask_value(value, key)


def _join(prefix: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{prefix}[{part}]"
    if part.startswith("["):
        return f"{prefix}{part}"
    part = mask_text(part)  # a key whose name is itself a token is shown masked
    return f"{prefix}.{part}" if prefix else part


def _match_key(old: list[Any], new: list[Any]) -> str | None:
    """`name` or `id`, if every item of both lists has a unique one."""
    for key in _MATCH_KEYS:
        ok = True
        for items in (old, new):
            values = [item.get(key) for item in items if isinstance(item, Mapping)]
            if (
                len(values) != len(items)
                or not all(isinstance(v, str | int) for v in values)
                or len(set(values)) != len(values)
            ):
                ok = False
        if ok:
            return key
    return None


# A pending comparison (old, new, path, key), or a change to emit in its turn.
_Task = tuple[Any, Any, str, object] | KeyChange


def diff_values(old: Any, new: Any, path: str = "", key: object = None) -> list[KeyChange]:
    """Every changed key path between two values (masked).

    The walk is iterative (an explicit stack of pending comparisons), so the
    depth of a document cannot exhaust the stack of the daemon's worker thread.

    Args:
        old: The old value (`MISSING` if absent).
        new: The new value (`MISSING` if absent).
        path: The path so far (dotted, `[name]` for matched list items).
        key: The mapping key holding these values (decides masking).
    """
    changes: list[KeyChange] = []
    # A task is a pair to compare, or a change to emit once the pairs pushed
    # after it are done (pushed in reverse: changes come out in document order).
    todo: list[_Task] = [(old, new, path, key)]
    while todo:
        task = todo.pop()
        if isinstance(task, KeyChange):
            changes.append(task)
            continue
        a, b, where, name = task
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            names = list(a) + [k for k in b if k not in a]
            todo.extend(
                (a.get(n, MISSING), b.get(n, MISSING), _join(where, str(n)), secret_scope(name, n))
                for n in reversed(names)
            )
        elif isinstance(a, list) and isinstance(b, list):
            todo.extend(reversed(_diff_lists(a, b, where, name)))
        else:
            change = _compare(a, b, where, name)
            if change is not None:
                changes.append(change)
    return changes


def _compare(old: Any, new: Any, path: str, key: object) -> KeyChange | None:
    """The change between two values that are not both mappings or both lists."""
    if old is MISSING and new is MISSING:
        return None
    if old is MISSING:
        return KeyChange(path, "added", None, _mask(new, key))
    if new is MISSING:
        return KeyChange(path, "removed", _mask(old, key), None)
    if old == new and type(old) is type(new):
        return None
    return KeyChange(path, "changed", _mask(old, key), _mask(new, key))


def _diff_lists(old: list[Any], new: list[Any], path: str, key: object) -> list[_Task]:
    """What comparing two lists takes: changes and pairs still to compare, in order."""
    match = _match_key(old, new) if old and new else None
    if match is None:
        if old == new:
            return []
        if sorted(map(repr, old)) == sorted(map(repr, new)):
            return [KeyChange(path, "reordered", _mask(old, key), _mask(new, key))]
        if len(old) == len(new):  # positional, item by item
            return [
                (a, b, _join(path, index), key)
                for index, (a, b) in enumerate(zip(old, new, strict=True))
            ]
        return [KeyChange(path, "changed", _mask(old, key), _mask(new, key))]
    old_by = {item[match]: item for item in old}
    new_by = {item[match]: item for item in new}
    tasks: list[_Task] = [
        (old_by.get(name, MISSING), new_by.get(name, MISSING), _join(path, f"[{name}]"), key)
        for name in list(old_by) + [n for n in new_by if n not in old_by]
    ]
    common_old = [n for n in old_by if n in new_by]
    common_new = [n for n in new_by if n in old_by]
    if common_old != common_new:
        tasks.append(KeyChange(path, "reordered", common_old, common_new))
    return tasks
