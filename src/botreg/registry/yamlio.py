"""YAML loading: fast where nothing is wrong, exact positions where something is.

Parsing is the main cost of validating a large registry, so documents are loaded
with ruamel.yaml's C-accelerated safe loader (YAML 1.2: `no` stays a string)
into plain Python data. Only when a finding needs a line and column is the file
parsed again with the round-trip loader, whose nodes carry positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

_BaseLoader: Any
try:  # the C parser comes with ruamel.yaml.clib; the pure loader is ~10x slower
    from ruamel.yaml.cyaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on the platform
    from ruamel.yaml.loader import SafeLoader as _BaseLoader

__all__ = [
    "MAX_EXPANDED_NODES",
    "Position",
    "YamlLoadError",
    "YamlProblem",
    "dump_roundtrip",
    "find_duplicate_keys",
    "iter_leaves",
    "load_fast",
    "load_roundtrip",
    "position_of",
]

# Bound of the document size once aliases are expanded: real configs stay far
# below; a "billion laughs" document (nested aliases) goes far beyond.
MAX_EXPANDED_NODES = 100_000

Position = tuple[int, int]  # 1-based line and column


@dataclass(frozen=True, slots=True)
class YamlProblem:
    """Why and where a YAML document cannot be loaded."""

    code: str  # BR101 syntax, BR102 duplicate key, BR104 alias expansion
    message: str
    line: int = 1
    column: int = 1


class YamlLoadError(Exception):
    """A YAML document that cannot be loaded; `problems` has one entry or more."""

    def __init__(self, code: str, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.problems = [YamlProblem(code, message, line, column)]


class _Loader(_BaseLoader):  # type: ignore[misc]
    """Safe loader whose output is JSON-shaped: timestamps stay strings."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)


def load_fast(text: str) -> Any:
    """Load one YAML document into plain dicts, lists and scalars.

    Raises:
        YamlLoadError: on a syntax error, a duplicate key, several documents, or
            aliases that would expand beyond `MAX_EXPANDED_NODES`.
    """
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except MarkedYAMLError as exc:
        if type(exc).__name__ == "DuplicateKeyError":
            dups = find_duplicate_keys(text)
            if dups:
                error = YamlLoadError("BR101", "duplicate keys")
                error.problems = [
                    YamlProblem(
                        "BR102",
                        f"duplicate key {key!r}, first defined at line {first[0]}, column "
                        f"{first[1]}: remove one of them (YAML would keep only the last)",
                        *second,
                    )
                    for key, first, second in dups
                ]
                raise error from None
        raise _syntax_error(exc) from None
    except YAMLError as exc:
        raise YamlLoadError("BR101", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlLoadError("BR104", "YAML nesting is too deep to load") from None
    finally:
        loader.dispose()
    if "&" in text:  # aliases need anchors: only then can expansion blow up
        _check_expansion(data)
    return data


def _syntax_error(exc: MarkedYAMLError) -> YamlLoadError:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = exc.problem or "invalid YAML"
    if exc.context:
        problem = f"{problem} ({exc.context})"
    return YamlLoadError("BR101", f"invalid YAML: {problem}", line, col)


def _check_expansion(data: Any) -> None:
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise YamlLoadError("BR104", "a YAML alias refers to its own anchor (recursive)")
        in_progress.add(key)
        children = node.values() if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_EXPANDED_NODES:
                raise YamlLoadError(
                    "BR104",
                    f"aliases expand this document beyond {MAX_EXPANDED_NODES} values; "
                    "write the data out or use fewer nested aliases",
                )
        in_progress.discard(key)
        sizes[key] = total
        return total

    size(data)


def find_duplicate_keys(text: str) -> list[tuple[str, Position, Position]]:
    """Every duplicated mapping key as (key, first position, duplicate position)."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except YAMLError:
        return []
    finally:
        loader.dispose()
    found: list[tuple[str, Position, Position]] = []
    seen_nodes: set[int] = set()
    stack: list[Node] = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[str, Position] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in first:
                    found.append((key, first[key], pos))
                else:
                    first[key] = pos
                stack.extend((key_node, value_node))
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return sorted(found, key=lambda item: item[2])


def _roundtrip_yaml() -> YAML:
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
    lc = getattr(doc, "lc", None)
    # the root: where its content starts (after leading comments)
    line, col = (lc.line + 1, lc.col + 1) if lc is not None and lc.line is not None else (1, 1)
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


def iter_leaves(
    data: Any, prefix: tuple[str | int, ...] = ()
) -> Iterable[tuple[tuple[str | int, ...], Any]]:
    """Every scalar of a loaded document with its path (aliases visited once per use)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from iter_leaves(value, (*prefix, str(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from iter_leaves(value, (*prefix, index))
    else:
        yield prefix, data
