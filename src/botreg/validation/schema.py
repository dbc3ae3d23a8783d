"""JSON Schema validation with findings a person can act on.

A compiled fastjsonschema validator answers "valid?" for the common case (most
files are); only an invalid document is validated again with jsonschema, whose
errors carry the detail. This module turns each of those errors into a finding
at the node at fault: an unknown key points at that key, a missing key at its parent. For
`oneOf`/`anyOf` the branch selected by the discriminating field (`type`,
`provider`, ...) explains the error instead of a misleading "best match": the
validator runs a compiled form of the schema (see schema_compile) in which that
branch is the only one evaluated; other unions are narrowed by value type.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import marshal
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastjsonschema

from botreg.registry.layout import FileKind
from botreg.registry.yamlio import dotted_path
from botreg.resources import schema_dir
from botreg.secrets import safe_repr
from botreg.validation.schema_compile import compile_schema

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

__all__ = ["SCHEMA_FILES", "SchemaIssue", "check_schema", "is_valid", "warm_up"]

SCHEMA_FILES: dict[FileKind, str] = {
    FileKind.BOT: "bot.schema.json",
    FileKind.ENVIRONMENT: "environment.schema.json",
    FileKind.REGISTRY: "registry.schema.json",
    FileKind.DOMAIN: "domain.schema.json",
}

# (code, message, pointer, at_key)
SchemaIssue = tuple[str, str, tuple[str | int, ...], bool]


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(schema_dir().glob("*.schema.json"))
    }


@cache
def _compiled(kind: FileKind) -> dict[str, Any]:
    by_id = {schema["$id"]: schema for schema in _schemas().values()}
    return compile_schema(_schemas()[SCHEMA_FILES[kind]]["$id"], by_id)


@cache
def _fast(kind: FileKind) -> Callable[[Any], Any]:
    # The compiled schema only uses keywords that mean the same in draft-07, the
    # newest draft fastjsonschema implements (tests/test_schemas.py checks that
    # both validators agree).
    schema = {**_compiled(kind), "$schema": "http://json-schema.org/draft-07/schema#"}
    # Generating and compiling the validator costs ~60 ms, a fifth of a hook run's
    # budget: keep its bytecode in the user's cache, like Python keeps .pyc files.
    digest = hashlib.sha256(
        f"{json.dumps(schema, sort_keys=True)}|{fastjsonschema.VERSION}|{sys.version}".encode()
    ).hexdigest()[:32]
    cache_file = _cache_dir() / f"validator-{kind}-{digest}.bin"
    try:
        code = marshal.loads(cache_file.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        code = compile(fastjsonschema.compile_to_code(schema), f"<botreg {kind} schema>", "exec")
        _write_atomically(cache_file, marshal.dumps(code))
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    names = [name for name in namespace if name.startswith("validate_")]
    if len(names) != 1:  # pragma: no cover - fastjsonschema changed its output
        return fastjsonschema.compile(schema)
    return namespace[names[0]]  # type: ignore[no-any-return]


def _cache_dir() -> Path:
    configured = os.environ.get("BOTREG_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "botreg"


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: validate without the cache


# A `$` that ends a pattern, not escaped: in ECMA-262 (JSON Schema's regex dialect)
# it matches only at the very end; Python's `$` also matches before a final "\n".
_FINAL_DOLLAR = re.compile(r"(?<!\\)\$$")


def _ecma_pattern(pattern: str) -> str:
    """A schema pattern for Python's re with ECMA-262's end anchor.

    fastjsonschema rewrites `$` to `\\Z` itself; jsonschema does not, so without
    this a name with a trailing newline (`main\\n`) would fail the fast check and
    yet get no explanation.
    """
    return _FINAL_DOLLAR.sub(r"\\Z", pattern)


@cache
def _validator(kind: FileKind) -> Draft202012Validator:
    from jsonschema import Draft202012Validator, validators  # only to explain invalid files
    from jsonschema.exceptions import ValidationError

    def pattern(
        validator: Any, regex: str, instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[ValidationError]:
        if validator.is_type(instance, "string") and not re.search(_ecma_pattern(regex), instance):
            yield ValidationError(f"{instance!r} does not match {regex!r}")

    cls = validators.extend(Draft202012Validator, {"pattern": pattern})  # type: ignore[no-untyped-call]
    return cls(_compiled(kind))  # type: ignore[no-any-return]


def warm_up(kind: FileKind) -> None:
    """Compile the fast validator of a kind now (before worker processes fork)."""
    _fast(kind)


def is_valid(kind: FileKind, data: Any) -> bool:
    """True if `data` matches the schema of its file kind (the fast path)."""
    try:
        _fast(kind)(data)
    except fastjsonschema.JsonSchemaValueException:
        return False
    except Exception:  # data the generated code does not expect: let jsonschema decide
        return not any(True for _ in _validator(kind).iter_errors(data))
    return True


def check_schema(kind: FileKind, data: Any) -> list[SchemaIssue]:
    """All schema problems of one loaded document, each at the node at fault."""
    if is_valid(kind, data):
        return []
    validator = _validator(kind)
    issues: list[SchemaIssue] = []
    for error in validator.iter_errors(data):
        issues.extend(_explain(error))
    if not issues:  # the two validators disagree: never let the file pass silently
        issues.append(
            ("BR201", "top level: does not match the schema; run check-jsonschema on it", (), False)
        )
    # the same node can fail through two routes (e.g. required + oneOf): report it once
    seen: set[tuple[str, tuple[str | int, ...], bool]] = set()
    unique = []
    for issue in sorted(issues, key=lambda i: (tuple(map(str, i[2])), i[0])):
        key = (issue[1], issue[2], issue[3])
        if key not in seen:
            seen.add(key)
            unique.append(issue)
    return unique


def _explain(error: ValidationError) -> list[SchemaIssue]:
    path = tuple(error.absolute_path)
    where = dotted_path(path)
    kind = error.validator
    instance = error.instance
    value: Any = error.validator_value
    schema: Any = error.schema
    key = path[-1] if path else None

    if kind in ("oneOf", "anyOf"):
        return _explain_choice(error, path)
    if kind == "additionalProperties" and isinstance(instance, Mapping):
        allowed = sorted(schema.get("properties", {}))
        out: list[SchemaIssue] = []
        for extra in _extra_keys(schema, instance):
            hint = difflib.get_close_matches(str(extra), allowed, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else "remove it"
            if allowed:
                fix += f" (allowed here: {', '.join(allowed)})"
            message = f"{where}: unknown key {str(extra)!r}: {fix}"
            out.append(("BR202", message, (*path, str(extra)), True))
        return out
    if kind == "required" and isinstance(instance, Mapping):
        return [
            ("BR203", f"{where}: missing required key {name!r}", path, True)
            for name in value
            if name not in instance
        ]
    if "propertyNames" in tuple(error.relative_schema_path)[-2:-1]:
        # a bad key name: jsonschema reports it on the parent; point at the key itself
        pattern = schema.get("pattern", "")
        return [
            (
                "BR201",
                f"{where}: invalid name {str(instance)!r}: use lowercase letters, digits, "
                f"'_' and '-' (pattern {pattern})",
                (*path, str(instance)),
                True,
            )
        ]
    if kind == "enum":
        options = ", ".join(json.dumps(v) for v in value)
        msg = f"{where}: {safe_repr(instance, key)} is not allowed: use one of {options}"
    elif kind == "const":
        msg = f"{where}: must be {json.dumps(value)}, not {safe_repr(instance, key)}"
    elif kind == "type":
        expected = " or ".join(value) if isinstance(value, list) else value
        msg = f"{where}: must be {_article(expected)}, not {safe_repr(instance, key)}"
    elif kind == "pattern":
        described = schema.get("description")
        msg = f"{where}: {safe_repr(instance, key)} does not have the expected form"
        msg += f": {described}" if described else f" (pattern {value})"
    elif kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        words = {
            "minimum": "at least",
            "exclusiveMinimum": "greater than",
            "maximum": "at most",
            "exclusiveMaximum": "less than",
        }
        msg = f"{where}: must be {words[kind]} {value}, not {safe_repr(instance, key)}"
    elif kind == "minLength":
        msg = f"{where}: must not be empty" if value == 1 else f"{where}: needs {value}+ characters"
    elif kind == "maxLength":
        msg = f"{where}: must be at most {value} characters long"
    elif kind == "minItems":
        msg = f"{where}: needs at least {value} item{'s' if value != 1 else ''}"
    elif kind == "maxItems" and isinstance(instance, list):  # not the default: it echoes the list
        msg = f"{where}: at most {value} items allowed, found {len(instance)}"
    elif kind == "uniqueItems":
        msg = f"{where}: items must be unique; remove the repeated entry"
    else:
        msg = f"{where}: {error.message}"
    return [("BR201", msg, path, False)]


def _article(type_name: str) -> str:
    nouns = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "null": "null",
    }
    return " or ".join(nouns.get(t, t) for t in type_name.split(" or "))


def _extra_keys(schema: Mapping[str, Any], instance: Mapping[str, Any]) -> list[Any]:
    import re

    props = schema.get("properties", {})
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [k for k in instance if k not in props and not any(p.search(str(k)) for p in patterns)]


def _explain_choice(error: ValidationError, path: tuple[str | int, ...]) -> list[SchemaIssue]:
    branches: Any = error.validator_value
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        by_branch.setdefault(int(sub.relative_schema_path[0]), []).append(sub)

    # Discriminated unions never get here (schema_compile turns them into if/then).
    # Drop branches of the wrong type; if one is left, its errors explain the failure.
    def wrong_type(index: int) -> bool:
        return any(
            sub.validator == "type" and not sub.relative_path for sub in by_branch.get(index, [])
        )

    fitting = [i for i in range(len(branches)) if not wrong_type(i)]
    if len(fitting) == 1:
        return [issue for sub in by_branch.get(fitting[0], []) for issue in _explain(sub)]
    if not fitting:
        types = sorted(
            {
                str(sub.validator_value)
                for subs in by_branch.values()
                for sub in subs
                if sub.validator == "type"
            }
        )
        expected = " or ".join(_article(t) for t in types) or "another kind of value"
        return [("BR201", f"{dotted_path(path)}: must be {expected}", path, False)]
    from jsonschema.exceptions import best_match

    best = best_match(error.context or ())
    return _explain(best) if best is not None else [("BR201", error.message, path, False)]
