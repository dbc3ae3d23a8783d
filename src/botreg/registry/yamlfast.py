"""The fast YAML loader: the C parser's events, built into data without recursion.

Validation time of a large registry is mostly YAML loading. ruamel.yaml's C
parser (ruamel.yaml.clib) produces events; this module builds plain data from
them with an explicit stack, resolving plain scalars by the YAML 1.2 core
schema (`no` and `on` stay strings, `0o17` is octal, timestamps stay strings:
the data is JSON-shaped). Compared with ruamel's composer and constructor this
is about twice as fast, reports every duplicate key with both positions in one
pass, and cannot overflow the C stack on deeply nested input (ruamel's C
composer recurses and crashes the interpreter on `[[[[...` 50,000 levels deep).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

__all__ = ["MAX_DEPTH", "MAX_EXPANDED_NODES", "YamlLoadError", "YamlProblem", "load_fast"]

# Bound of the document size once aliases are expanded: real configs stay far
# below; a "billion laughs" document (nested aliases) goes far beyond.
MAX_EXPANDED_NODES = 100_000
# Bound of nesting (configs nest a handful of levels; the bound keeps hostile input cheap).
MAX_DEPTH = 200

_YAML = "tag:yaml.org,2002:"


@dataclass(frozen=True, slots=True)
class YamlProblem:
    """Why and where a YAML document cannot be loaded."""

    code: str  # BR101 syntax, BR102 duplicate key, BR104 alias expansion
    message: str
    line: int = 1
    column: int = 1


class YamlLoadError(Exception):
    """A YAML document that cannot be loaded; `problems` has one entry or more."""

    def __init__(self, problems: list[YamlProblem]) -> None:
        first = problems[0]
        super().__init__(f"{first.line}:{first.column}: {first.message}")
        self.problems = problems


CParser: Any
try:  # the C parser comes with ruamel.yaml.clib (a dependency on CPython)
    from ruamel.yaml.cyaml import CParser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other interpreters use the pure parser
    CParser = None


def _load_pure(text: str) -> Any:
    """Without ruamel.yaml.clib: ruamel's pure safe loader (slower, same data shape)."""
    import datetime

    from ruamel.yaml import YAML

    def plain(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: plain(v) for k, v in node.items()}
        if isinstance(node, list):
            return [plain(v) for v in node]
        if isinstance(node, datetime.date):
            return node.isoformat()
        return node

    return plain(YAML(typ="safe", pure=True).load(text))


_INT = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)\Z")
_CONSTANTS: dict[str, Any] = {
    "~": None,
    "null": None,
    "Null": None,
    "NULL": None,
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
    ".nan": float("nan"),
    ".NaN": float("nan"),
    ".NAN": float("nan"),
}


def _plain(value: str) -> Any:
    """Resolve a plain scalar by the YAML 1.2 core schema."""
    if not value:
        return None
    if value[0] in "0123456789+-.":
        if _INT.match(value):
            return int(value)
        if value.startswith("0o") and value[2:].isdigit() and "8" not in value and "9" not in value:
            return int(value[2:], 8)
        if value.startswith("0x"):
            try:
                return int(value[2:], 16)
            except ValueError:
                return value
        if _FLOAT.match(value):
            return float(value)
        if _INF.match(value):
            return float("-inf") if value[0] == "-" else float("inf")
    if value in _CONSTANTS:
        return _CONSTANTS[value]
    return value


def _tagged(tag: str, value: str, mark: Any) -> Any:
    if tag in ("!", f"{_YAML}str", f"{_YAML}timestamp"):
        return value
    kind = tag[len(_YAML) :] if tag.startswith(_YAML) else ""
    expected: dict[str, type | tuple[type, ...]] = {
        "int": int,
        "float": (int, float),
        "bool": bool,
        "null": type(None),
    }
    if kind in expected:
        resolved = _plain(value)
        if isinstance(resolved, expected[kind]) and (kind == "bool") == isinstance(resolved, bool):
            return float(resolved) if kind == "float" and isinstance(resolved, int) else resolved
        raise _problem(mark, f"{value!r} is not a valid {kind}")
    raise _problem(mark, f"unsupported tag {tag}: registry files hold plain data; remove it")


def _problem(mark: Any, message: str, code: str = "BR101") -> YamlLoadError:
    return YamlLoadError([YamlProblem(code, message, mark.line + 1, mark.column + 1)])


class _Frame:
    """An open mapping or sequence while events are read."""

    __slots__ = ("container", "first_seen", "key", "key_mark", "merges")

    def __init__(self, container: dict[Any, Any] | list[Any]) -> None:
        self.container = container
        self.key: Any = _NO_KEY
        self.key_mark: Any = None
        self.first_seen: dict[Any, Any] = {}
        self.merges: list[tuple[Any, Any]] = []


_NO_KEY = object()
_MERGE = object()


def _build(parser: Any) -> Any:
    """Build data from the parser's events with an explicit stack (no recursion)."""
    anchors: dict[str, Any] = {}
    stack: list[_Frame] = []
    duplicates: list[YamlProblem] = []
    root: Any = None
    documents = 0

    def add(value: Any, mark: Any, *, plain_merge: bool = False) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        frame = stack[-1]
        if isinstance(frame.container, list):
            frame.container.append(value)
        elif frame.key is _NO_KEY:  # this value is a key
            if plain_merge:
                frame.key = _MERGE
            elif isinstance(value, dict | list):
                raise _problem(mark, "a mapping key must be a scalar, not a collection")
            else:
                frame.key, frame.key_mark = value, mark
        elif frame.key is _MERGE:
            frame.merges.append((value, mark))
            frame.key = _NO_KEY
        else:
            key, first = frame.key, frame.first_seen.get(frame.key)
            if first is not None:
                duplicates.append(
                    YamlProblem(
                        "BR102",
                        f"duplicate key {str(key)!r}, first defined at line {first.line + 1}, "
                        f"column {first.column + 1}: remove one of them (YAML allows one)",
                        frame.key_mark.line + 1,
                        frame.key_mark.column + 1,
                    )
                )
            else:
                frame.first_seen[key] = frame.key_mark
                frame.container[key] = value
            frame.key = _NO_KEY

    while True:
        event = parser.get_event()
        kind = type(event)
        mark = event.start_mark
        if kind is ScalarEvent:
            if event.tag is None:
                plain = event.implicit[0]
                value = _plain(event.value) if plain else event.value
            else:
                plain = False
                value = _tagged(event.tag, event.value, mark)
            if event.anchor is not None:
                anchors[event.anchor] = value
            add(value, mark, plain_merge=plain and event.value == "<<")
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            container: Any = {} if kind is MappingStartEvent else []
            if event.tag not in (None, "!", f"{_YAML}map", f"{_YAML}seq"):
                raise _problem(mark, f"unsupported tag {event.tag}: use a plain mapping or list")
            if len(stack) >= MAX_DEPTH:
                raise _problem(mark, f"nested deeper than {MAX_DEPTH} levels")
            if event.anchor is not None:
                anchors[event.anchor] = container
            add(container, mark)  # before its content, so an alias inside sees it
            stack.append(_Frame(container))
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            frame = stack.pop()
            for source, source_mark in frame.merges:  # `<<: *base`: keys not set here
                sources = source if isinstance(source, list) else [source]
                for item in sources:
                    if not isinstance(item, dict):
                        raise _problem(source_mark, "`<<` merges a mapping (or a list of mappings)")
                    for name, value in item.items():
                        frame.container.setdefault(name, value)  # type: ignore[union-attr]
        elif kind is AliasEvent:
            if event.anchor not in anchors:
                raise _problem(mark, f"unknown alias *{event.anchor}")
            add(anchors[event.anchor], mark)
        elif kind is DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _problem(mark, "invalid YAML: expected a single document, found another")
        elif kind is StreamEndEvent:
            break
    if duplicates:
        raise YamlLoadError(sorted(duplicates, key=lambda p: (p.line, p.column)))
    return root


def _syntax_error(exc: MarkedYAMLError) -> YamlLoadError:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = exc.problem or "invalid YAML"
    if exc.context:
        problem = f"{problem} ({exc.context})"
    return YamlLoadError([YamlProblem("BR101", f"invalid YAML: {problem}", line, col)])


def load_fast(text: str) -> Any:
    """Load one YAML document into plain dicts, lists and scalars (YAML 1.2 core schema).

    Raises:
        YamlLoadError: on a syntax error, duplicate keys (all of them), several
            documents, unsupported tags, or aliases that expand beyond
            `MAX_EXPANDED_NODES`.
    """
    try:
        if CParser is None:
            data = _load_pure(text)
        else:
            parser = CParser(text)
            try:
                data = _build(parser)
            finally:
                parser.dispose()
    except MarkedYAMLError as exc:
        raise _syntax_error(exc) from None
    except YAMLError as exc:
        raise YamlLoadError([YamlProblem("BR101", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise YamlLoadError([YamlProblem("BR101", "YAML nesting is too deep to load")]) from None
    if "&" in text:  # aliases need anchors: only then can expansion blow up
        _check_expansion(data)
    return data


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
            raise YamlLoadError(
                [YamlProblem("BR104", "a YAML alias refers to its own anchor (recursive)")]
            )
        in_progress.add(key)
        total = 1
        for child in node.values() if isinstance(node, dict) else node:
            total += size(child)
            if total > MAX_EXPANDED_NODES:
                raise YamlLoadError(
                    [
                        YamlProblem(
                            "BR104",
                            f"aliases expand this document beyond {MAX_EXPANDED_NODES} values; "
                            "write the data out or use fewer nested aliases",
                        )
                    ]
                )
        in_progress.discard(key)
        sizes[key] = total
        return total

    size(data)
