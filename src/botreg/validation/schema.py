"""JSON Schema validation with findings a person can act on.

jsonschema finds the errors; this module turns each into a finding at the node
at fault: an unknown key points at that key, a missing key at its parent, and
for `oneOf`/`anyOf` the branch selected by the discriminating field (`type`,
`provider`, ...) explains the error instead of a misleading "best match".
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from botreg.registry.layout import FileKind
from botreg.resources import schema_dir
from botreg.secrets import safe_repr

__all__ = ["SCHEMA_FILES", "SchemaIssue", "check_schema", "schema_ids"]

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
def _validator(kind: FileKind) -> Draft202012Validator:
    schemas = _schemas()
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values()
    )
    return Draft202012Validator(schemas[SCHEMA_FILES[kind]], registry=registry)


def schema_ids() -> dict[str, str]:
    """Schema file name -> its `$id` (what editors reference)."""
    return {name: schema["$id"] for name, schema in _schemas().items()}


def check_schema(kind: FileKind, data: Any) -> list[SchemaIssue]:
    """All schema problems of one loaded document, each at the node at fault."""
    validator = _validator(kind)
    issues: list[SchemaIssue] = []
    for error in validator.iter_errors(data):
        issues.extend(_explain(error))
    # the same node can fail through two routes (e.g. required + oneOf): report it once
    seen: set[tuple[str, tuple[str | int, ...], bool]] = set()
    unique = []
    for issue in sorted(issues, key=lambda i: (tuple(map(str, i[2])), i[0])):
        key = (issue[1], issue[2], issue[3])
        if key not in seen:
            seen.add(key)
            unique.append(issue)
    return unique


def _where(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "top level"


def _explain(error: ValidationError) -> list[SchemaIssue]:
    path = tuple(error.absolute_path)
    where = _where(path)
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


def _discriminator(branches: list[Any]) -> str | None:
    """The property whose `const` tells the inline branches of a oneOf apart."""
    inline = [b for b in branches if isinstance(b, Mapping) and "$ref" not in b]
    if len(inline) != len(branches):
        return None
    candidates: set[str] | None = None
    for branch in inline:
        consts = {
            name
            for name, sub in branch.get("properties", {}).items()
            if isinstance(sub, Mapping) and "const" in sub
        }
        candidates = consts if candidates is None else candidates | consts
    for name in sorted(candidates or ()):
        with_const = [b for b in inline if "const" in b.get("properties", {}).get(name, {})]
        if len(with_const) >= len(inline) - 1:
            return name
    return None


def _explain_choice(error: ValidationError, path: tuple[str | int, ...]) -> list[SchemaIssue]:
    branches: Any = error.validator_value
    instance = error.instance
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        by_branch.setdefault(int(sub.relative_schema_path[0]), []).append(sub)

    field = _discriminator(branches) if isinstance(instance, Mapping) else None
    if field is not None and isinstance(instance, Mapping):
        if field not in instance:
            return []  # the object's own `required` reports the missing field
        chosen = _branch_for(branches, field, instance[field])
        if chosen is None:
            options = [
                b["properties"][field]["const"]
                for b in branches
                if "const" in b.get("properties", {}).get(field, {})
            ]
            return [
                (
                    "BR201",
                    f"{_where((*path, field))}: unknown {field} {safe_repr(instance[field])}: "
                    f"use one of {', '.join(map(str, options))}",
                    (*path, field),
                    False,
                )
            ]
        return [issue for sub in by_branch.get(chosen, []) for issue in _explain(sub)]

    # No discriminating field: drop branches of the wrong type; if one is left, it explains.
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
        return [("BR201", f"{_where(path)}: must be {expected}", path, False)]
    best = best_match(error.context or ())
    return _explain(best) if best is not None else [("BR201", error.message, path, False)]


def _branch_for(branches: list[Mapping[str, Any]], field: str, value: Any) -> int | None:
    fallback = None
    for index, branch in enumerate(branches):
        sub = branch.get("properties", {}).get(field, {})
        if "const" in sub:
            if sub["const"] == value:
                return index
        elif fallback is None and Draft202012Validator(sub).is_valid(value):
            fallback = index
    return fallback
