"""YAML loading: fast where nothing is wrong, exact positions where something is.

Documents are loaded into plain data by `load_fast` (see yamlfast). Only when a
finding needs a line and column is the file parsed again with ruamel.yaml's
round-trip loader, whose nodes carry positions; the same loader edits files
with comments and key order preserved.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from botreg.registry.yamlfast import MAX_EXPANDED_NODES, YamlLoadError, YamlProblem, load_fast

__all__ = [
    "MAX_EXPANDED_NODES",
    "Position",
    "YamlLoadError",
    "YamlProblem",
    "dotted_path",
    "dump_roundtrip",
    "load_fast",
    "load_roundtrip",
    "position_of",
]

if TYPE_CHECKING:
    from ruamel.yaml import YAML

Position = tuple[int, int]  # 1-based line and column


def _roundtrip_yaml() -> YAML:
    from ruamel.yaml import YAML  # the full library: only when a position or an edit is needed

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.allow_duplicate_keys = True  # positions are looked up after duplicates were reported
    return yaml


def load_roundtrip(text: str) -> Any:
    """Load with the round-trip loader: nodes keep comments, order and positions."""
    return _roundtrip_yaml().load(text)


def dump_roundtrip(data: Any) -> str:
    """Write round-trip data back to YAML text, comments and key order preserved."""
    import io

    buf = io.StringIO()
    yaml = _roundtrip_yaml()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.dump(data, buf)
    return buf.getvalue()


def position_of(doc: Any, parts: Sequence[str | int], *, at_key: bool = False) -> Position:
    """The 1-based line and column of the node at a JSON-pointer path.

    Args:
        doc: A document from `load_roundtrip`.
        parts: The path from the root (keys and list indexes).
        at_key: Point at the key of the last part instead of its value (for
            an unknown key, or a key whose value is wrong as a whole).

    Returns:
        The position of the deepest node that exists on the path; (1, 1) for the root.
    """
    line, col = _first_entry(doc)
    node = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        lc = getattr(node, "lc", None)
        if lc is None:
            break
        try:
            if isinstance(node, dict):
                key = _matching_key(node, part)
                if key is None:
                    break
                child = node[key]
                # A block mapping or list as a whole is best shown at its key.
                use_key = last and (at_key or _is_block(child))
                pos = lc.key(key) if use_key else lc.value(key)
                node = child
            elif isinstance(node, list):
                index = int(part)
                if not 0 <= index < len(node):
                    break
                pos = lc.item(index)
                node = node[index]
            else:
                break
        except (KeyError, IndexError, TypeError, ValueError):
            break
        line, col = pos[0] + 1, pos[1] + 1
    return line, col


def _first_entry(doc: Any) -> Position:
    """Where a document's content starts (after leading comments)."""
    lc: Any = getattr(doc, "lc", None)
    try:
        if isinstance(doc, dict) and doc:
            pos = lc.key(next(iter(doc)))
        elif isinstance(doc, list) and doc:
            pos = lc.item(0)
        else:
            return 1, 1
        return pos[0] + 1, pos[1] + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return 1, 1


def _is_block(node: Any) -> bool:
    if not isinstance(node, dict | list):
        return False
    fa = getattr(node, "fa", None)
    return not (fa is not None and fa.flow_style())


def _matching_key(mapping: dict[Any, Any], part: str | int) -> Any:
    if part in mapping:
        return part
    for key in mapping:  # keys that are not strings (1, true) in the document
        if str(key) == str(part):
            return key
    return None


def dotted_path(path: Iterable[str | int], root: str = "top level") -> str:
    """A document path for messages: `tools[0].endpoint` (`root` for the empty path)."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or root
