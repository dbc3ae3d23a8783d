"""Keys the schemas still accept but that no longer do anything (BR204, a warning).

A schema marks such a key with the Draft 2020-12 annotation `"deprecated": true`
and says in its `description` what replaced it. Refusing the key would break
every registry that set it; accepting it silently would let a reviewer believe
it still works. So validation warns, naming the key, its line and what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from botreg.registry.layout import FileKind
from botreg.resources import schema_dir
from botreg.validation.schema import SCHEMA_FILES

__all__ = ["deprecated_keys", "find_deprecated"]


@cache
def deprecated_keys(kind: FileKind) -> tuple[tuple[tuple[str, ...], str], ...]:
    """The (key path, description) of every key marked deprecated in the kind's schema."""
    name = SCHEMA_FILES.get(kind)
    if name is None:
        return ()
    schema = json.loads((schema_dir() / name).read_text(encoding="utf-8"))
    return tuple(_walk(schema, ()))


def _walk(
    schema: Mapping[str, Any], path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], str]]:
    for key, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, Mapping):
            continue
        if sub.get("deprecated") is True:
            yield (*path, key), str(sub.get("description", ""))
        yield from _walk(sub, (*path, key))


def find_deprecated(kind: FileKind, data: object) -> list[tuple[tuple[str, ...], str]]:
    """The deprecated keys that `data` sets, each with the message to show."""
    found: list[tuple[tuple[str, ...], str]] = []
    for path, description in deprecated_keys(kind):
        node: object = data
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
            if node is None:
                break
        else:
            dotted = ".".join(path)
            found.append((path, f"{dotted}: {description or 'deprecated, no effect; remove it'}"))
    return found
