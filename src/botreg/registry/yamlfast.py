"""The fast YAML loader: the C parser's events, built into data without recursion.

Validation time of a large registry is mostly YAML loading. ruamel.yaml's C
parser (ruamel.yaml.clib) produces events; this module builds plain data from
them with an explicit stack, resolving plain scalars by the YAML 1.2 core
schema (`no` and `on` stay strings, `0o17` is octal, timestamps stay strings:
the data is JSON-shaped). Compared with ruamel's composer and constructor this
is about twice as fast, reports every duplicate key with both positions in one
pass, and cannot overflow the C stack on deeply nested input (ruamel's C
composer recurses and crashes the interpreter on `[[[[...` 50,000 levels deep).

Every document is bounded by the operator's ceilings (botreg.registry.limits)
while it is built: nesting, value count and bytes of text with aliases and
`<<` merges expanded (counted before anything is copied), integers within 64 bits, no NaN
or infinity (registry data is JSON-shaped and ends up in JSON events).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

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

from botreg.registry.limits import current_ceilings
from botreg.registry.settings import Limits

if TYPE_CHECKING:
    from botreg.registry.limits import ParseBounds

__all__ = ["MAX_DEPTH", "MAX_EXPANDED_NODES", "YamlLoadError", "YamlProblem", "load_fast"]

# The default ceilings (see botreg.registry.limits; the operator can change them).
# Bound of the document size once aliases are expanded: real configs stay far
# below; a "billion laughs" document (nested aliases) goes far beyond.
MAX_EXPANDED_NODES = 100_000
# Bound of nesting (configs nest a handful of levels; the bound keeps hostile input cheap).
MAX_DEPTH = 200

_YAML = "tag:yaml.org,2002:"


@dataclass(frozen=True, slots=True)
class YamlProblem:
    """Why and where a YAML document cannot be loaded."""

    code: str  # BR101 syntax, BR102 duplicate key, BR104 alias expansion, BR107 number, BR108 size
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


def _load_pure(text: str, bounds: ParseBounds) -> Any:  # pragma: no cover - other interpreters
    """Without ruamel.yaml.clib: ruamel's pure safe loader (slower, same data shape).

    Bounds are checked on the result, so a hostile document can cost more
    here than with the C parser; CPython always has the C parser.
    """
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

    data = plain(YAML(typ="safe", pure=True).load(text))
    _check_loaded(data, bounds, current_ceilings().max_expanded_bytes)
    return data


def _check_loaded(data: Any, bounds: ParseBounds, max_text: int) -> None:  # pragma: no cover
    """Bounds of already-loaded data (iterative; shared containers counted per use)."""
    half = 1 << (bounds.max_int_bits - 1)
    todo: list[tuple[Any, int]] = [(data, 0)]
    total = text = 0
    while todo:
        node, depth = todo.pop()
        total += 1
        if total > bounds.max_values:
            raise YamlLoadError([YamlProblem("BR104", f"more than {bounds.max_values} values")])
        if isinstance(node, str | dict):
            keys = node if isinstance(node, dict) else (node,)
            text += sum(len(str(k).encode("utf-8", "surrogatepass")) for k in keys)
            if text > max_text:
                raise YamlLoadError([YamlProblem("BR104", f"more than {max_text} bytes of text")])
        if isinstance(node, dict | list):
            if depth + 1 > bounds.max_depth:
                raise YamlLoadError(
                    [YamlProblem("BR101", f"nested deeper than {bounds.max_depth} levels")]
                )
            children = node.values() if isinstance(node, dict) else node
            todo.extend((child, depth + 1) for child in children)
        elif isinstance(node, float) and not math.isfinite(node):
            raise YamlLoadError([YamlProblem("BR107", "NaN and infinity are not allowed")])
        elif isinstance(node, int) and not isinstance(node, bool) and not -half <= node < half:
            raise YamlLoadError([YamlProblem("BR107", "an integer is out of range")])


_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)\Z")
_NAN = frozenset({".nan", ".NaN", ".NAN"})
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
}


class _NumberError(Exception):
    """A number the registry refuses (placed at its scalar by the caller)."""


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"


def _integer(value: str, digits: str, base: int, bits: int) -> int:
    """An integer within the signed `bits` range (checked before converting a long string)."""
    # More significant digits than bits: beyond the range in any base >= 2 (and
    # int() of thousands of digits is refused by Python itself, or slow).
    significant = digits.lstrip("0")
    number = int(digits, base) if len(significant) <= bits else None
    if number is not None and value.startswith("-"):
        number = -number
    half = 1 << (bits - 1)
    if number is None or not -half <= number < half:
        raise _NumberError(
            f"an integer of {len(digits)} digits is outside the {bits}-bit range "
            f"({-half} to {half - 1}): quote it to keep it as text"
        )
    return number


def _plain(value: str, bits: int = 64) -> Any:
    """Resolve a plain scalar by the YAML 1.2 core schema (integers within `bits`)."""
    if not value:
        return None
    if value[0] in "0123456789+-.":
        if _INT.match(value):
            return _integer(value, value.lstrip("+-"), 10, bits)
        if _OCT.match(value):
            return _integer(value, value[2:], 8, bits)
        if _HEX.match(value):
            return _integer(value, value[2:], 16, bits)
        if _FLOAT.match(value):
            number = float(value)
            if math.isinf(number):
                raise _NumberError(
                    f"number {_short(value)} is too large to be a finite number: "
                    "write a smaller one, or quote it to keep it as text"
                )
            return number
        if _INF.match(value):
            raise _NumberError(
                f"{value} (infinity) is not allowed: registry data is JSON-shaped; "
                "write a finite number, or quote it to keep it as text"
            )
    if value in _NAN:
        raise _NumberError(
            f"{value} (not a number) is not allowed: registry data is JSON-shaped; "
            "write a number, or quote it to keep it as text"
        )
    if value in _CONSTANTS:
        return _CONSTANTS[value]
    return value


def _tagged(tag: str, value: str, mark: Any, bits: int) -> Any:
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
        resolved = _plain(value, bits)
        if isinstance(resolved, expected[kind]) and (kind == "bool") == isinstance(resolved, bool):
            return float(resolved) if kind == "float" and isinstance(resolved, int) else resolved
        raise _problem(mark, f"{_short(value)!r} is not a valid {kind}")
    raise _problem(mark, f"unsupported tag {tag}: registry files hold plain data; remove it")


def _json_text(key: Any) -> str:
    """A scalar key as JSON text: `true`, `1.0`, `null`, `7` (a string stays itself)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return "null" if key is None else ("true" if key else "false")
    return repr(key)  # int or float (finite: the loader refuses NaN and infinity)


def _problem(mark: Any, message: str, code: str = "BR101") -> YamlLoadError:
    return YamlLoadError([YamlProblem(code, message, mark.line + 1, mark.column + 1)])


class _Frame:
    """An open mapping or sequence while events are read.

    `size`, `height` and `text` describe it once aliases and merges are
    expanded: values inside (itself included), levels of nesting (itself
    included) and UTF-8 bytes of its scalars and keys.
    """

    __slots__ = (
        "container",
        "first_seen",
        "height",
        "key",
        "key_mark",
        "merges",
        "size",
        "text",
    )

    def __init__(self, container: dict[Any, Any] | list[Any]) -> None:
        self.container = container
        self.key: Any = _NO_KEY
        self.key_mark: Any = None
        self.first_seen: dict[Any, Any] = {}
        self.merges: list[tuple[Any, Any]] = []
        self.size = 1
        self.height = 1
        self.text = 0


_NO_KEY = object()
_MERGE = object()


def _build(parser: Any, bounds: ParseBounds, max_text: int) -> Any:
    """Build data from the parser's events with an explicit stack (no recursion).

    Every value is counted as it is added, aliases and merges by the size they
    expand to, so a document beyond `bounds` (or beyond `max_text` UTF-8 bytes
    of scalars and keys) is refused before it is built.
    """
    max_depth, max_values, bits = bounds.max_depth, bounds.max_values, bounds.max_int_bits
    anchors: dict[str, Any] = {}
    scalar_text: dict[str, int] = {}  # anchor of a scalar -> its size in bytes
    # id of every closed container -> (container, expanded size, expanded height,
    # expanded text); the container is kept so its id cannot be reused meanwhile.
    shapes: dict[int, tuple[Any, int, int, int]] = {}
    open_ids: set[int] = set()
    stack: list[_Frame] = []
    duplicates: list[YamlProblem] = []
    root: Any = None
    documents = 0
    total = 0  # values in the document, aliases and merges expanded
    text_total = 0  # bytes of its scalars and keys, aliases and merges expanded
    expanded = False  # an alias or merge was used (decides the code of a breach)

    def grow(text: int, mark: Any) -> None:
        # An alias of a long string costs one value but its whole length in
        # every output (resolve, events): bound the text, not only the values.
        nonlocal text_total
        text_total += text
        if text_total > max_text:
            if expanded:
                raise _problem(
                    mark,
                    f"aliases expand this document beyond {max_text:,} bytes of text "
                    "(the operator's ceiling max_expanded_bytes); write the data out or "
                    "use fewer aliases",
                    "BR104",
                )
            raise _problem(
                mark,
                f"more than {max_text:,} bytes of text in one document (the "
                "operator's ceiling max_expanded_bytes): split the file",
                "BR108",
            )

    def count(size: int, height: int, text: int, mark: Any) -> None:
        nonlocal total
        total += size
        if text:
            grow(text, mark)
        if total > max_values:
            if expanded:
                raise _problem(
                    mark,
                    f"aliases expand this document beyond {max_values} values; "
                    "write the data out or use fewer nested aliases",
                    "BR104",
                )
            raise _problem(
                mark,
                f"more than {max_values} values in one document (the operator's "
                "ceiling max_values): split the file",
                "BR108",
            )
        if len(stack) + height > max_depth:
            if expanded:
                raise _problem(
                    mark,
                    f"aliases nest this document deeper than {max_depth} levels; "
                    "write the data out or use fewer nested aliases",
                    "BR104",
                )
            raise _problem(mark, f"nested deeper than {max_depth} levels")

    def add(
        value: Any, mark: Any, size: int, height: int, text: int, *, plain_merge: bool = False
    ) -> None:
        nonlocal root
        if not stack:
            count(size, height, text, mark)
            root = value
            return
        frame = stack[-1]
        if isinstance(frame.container, list):
            count(size, height, text, mark)
            frame.container.append(value)
        elif frame.key is _NO_KEY:  # this value is a key (keys are not counted as values)
            if text:  # ... but their text is
                grow(text, mark)
                frame.text += text
            if plain_merge:
                frame.key = _MERGE
            elif isinstance(value, dict | list):
                raise _problem(mark, "a mapping key must be a scalar, not a collection")
            else:
                frame.key, frame.key_mark = value, mark
            return
        elif frame.key is _MERGE:
            # `<<: *base`: base's entries will be copied here when the mapping
            # ends; they are counted now, before anything is copied. They sit
            # one level (a list of mappings: two) above the merged value.
            height = max(height - (2 if isinstance(value, list) else 1), 0)
            count(size, height, text, mark)
            frame.merges.append((value, mark))
            frame.key = _NO_KEY
        else:
            count(size, height, text, mark)
            # Keys compare with their type: YAML's `1`, `true` and `1.0` are three
            # keys, though Python finds them equal (1 == True == 1.0).
            key = frame.key
            typed = (type(key), key)
            first = frame.first_seen.get(typed)
            slot, as_json = key, False
            if first is None and key in frame.container:
                # Python-equal to a key of another type: one dict cannot hold both,
                # so this one is stored under its JSON text (what every output
                # shows anyway); if that is taken too, the two keys are duplicates.
                slot = _json_text(key)
                if slot in frame.container:  # rare: find the key stored there
                    as_json = True
                    first = next(
                        (
                            m
                            for (_t, k), m in frame.first_seen.items()
                            if _json_text(k) == slot or (isinstance(k, str) and k == slot)
                        ),
                        frame.key_mark,
                    )
            if first is not None:
                duplicates.append(
                    YamlProblem(
                        "BR102",
                        f"duplicate key {_short(str(key))!r}, first defined at line "
                        f"{first.line + 1}, column {first.column + 1}"
                        f"{' (the same key once written as JSON)' if as_json else ''}"
                        ": remove one of them (YAML allows one)",
                        frame.key_mark.line + 1,
                        frame.key_mark.column + 1,
                    )
                )
            else:
                frame.first_seen[typed] = frame.key_mark
                frame.container[slot] = value
            frame.key = _NO_KEY
        frame.size += size
        frame.text += text
        if height >= frame.height:  # (not max(): this runs for every value)
            frame.height = height + 1

    while True:
        event = parser.get_event()
        kind = type(event)
        mark = event.start_mark
        if kind is ScalarEvent:
            plain = event.tag is None and event.implicit[0]
            try:
                if event.tag is None:
                    value = _plain(event.value, bits) if plain else event.value
                else:
                    value = _tagged(event.tag, event.value, mark, bits)
            except _NumberError as exc:
                raise _problem(mark, str(exc), "BR107") from None
            raw = event.value  # its UTF-8 size (isascii() is a flag check in CPython)
            text = len(raw) if raw.isascii() else len(raw.encode())
            if event.anchor is not None:
                anchors[event.anchor] = value
                scalar_text[event.anchor] = text
            add(value, mark, 1, 0, text, plain_merge=plain and event.value == "<<")
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            container: Any = {} if kind is MappingStartEvent else []
            if event.tag not in (None, "!", f"{_YAML}map", f"{_YAML}seq"):
                raise _problem(mark, f"unsupported tag {event.tag}: use a plain mapping or list")
            if event.anchor is not None:
                anchors[event.anchor] = container
            add(container, mark, 1, 1, 0)  # before its content, so an alias inside sees it
            stack.append(_Frame(container))
            open_ids.add(id(container))
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            frame = stack.pop()
            open_ids.discard(id(frame.container))
            for source, source_mark in frame.merges:  # `<<: *base`: keys not set here
                sources = source if isinstance(source, list) else [source]
                for item in sources:
                    if not isinstance(item, dict):
                        raise _problem(source_mark, "`<<` merges a mapping (or a list of mappings)")
                    for name, value in item.items():
                        frame.container.setdefault(name, value)  # type: ignore[union-attr]
            shapes[id(frame.container)] = (frame.container, frame.size, frame.height, frame.text)
            if stack:  # the parent counted this container as 1 value, 1 level, no text
                parent = stack[-1]
                parent.size += frame.size - 1
                parent.text += frame.text
                parent.height = max(parent.height, frame.height + 1)
        elif kind is AliasEvent:
            if event.anchor not in anchors:
                raise _problem(mark, f"unknown alias *{event.anchor}")
            expanded = True
            target = anchors[event.anchor]
            if not isinstance(target, dict | list):
                add(target, mark, 1, 0, scalar_text[event.anchor])
            elif id(target) in open_ids:
                raise _problem(mark, "a YAML alias refers to its own anchor (recursive)", "BR104")
            else:
                _, size, height, text = shapes[id(target)]
                add(target, mark, size, height, text)
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


@lru_cache(maxsize=64)
def _lowered(depth: int, values: int, bits: int, *lower: int) -> Limits:
    return Limits(
        max_depth=min(depth, lower[0]),
        max_values=min(values, lower[1]),
        max_int_bits=min(bits, lower[2]),
    )


def load_fast(text: str, bounds: ParseBounds | None = None) -> Any:
    """Load one YAML document into plain dicts, lists and scalars (YAML 1.2 core schema).

    Args:
        text: The document.
        bounds: Nesting, value count and integer width allowed (default: the
            operator's ceilings in force); never above the ceilings.

    Raises:
        YamlLoadError: on a syntax error, duplicate keys (all of them), several
            documents, unsupported tags, an integer beyond `max_int_bits`, NaN
            or infinity, nesting beyond `max_depth`, more than `max_values`
            values or `max_expanded_bytes` bytes of scalars and keys (aliases and
            merges expanded), or a recursive alias.
    """
    limits: ParseBounds = current_ceilings()
    if bounds is not None:  # lower than the ceilings only
        limits = _lowered(
            limits.max_depth,
            limits.max_values,
            limits.max_int_bits,
            bounds.max_depth,
            bounds.max_values,
            bounds.max_int_bits,
        )
    try:
        if CParser is None:
            return _load_pure(text, limits)
        parser = CParser(text)
        try:
            return _build(parser, limits, current_ceilings().max_expanded_bytes)
        finally:
            parser.dispose()
    except MarkedYAMLError as exc:
        raise _syntax_error(exc) from None
    except YAMLError as exc:
        raise YamlLoadError([YamlProblem("BR101", f"invalid YAML: {exc}")]) from None
    except UnicodeEncodeError as exc:  # a lone surrogate: not text a file can hold
        raise YamlLoadError(
            [YamlProblem("BR103", f"not valid Unicode text ({exc.reason}); re-save as UTF-8")]
        ) from None
    except RecursionError:  # pragma: no cover - the pure loader only
        raise YamlLoadError([YamlProblem("BR101", "YAML nesting is too deep to load")]) from None
