"""Prepare botreg's JSON Schemas for fast validation with the same meaning.

The published schemas stay easy to read and complete in editors (`$ref`s
between files, `oneOf` unions). Validating two thousand bots with them spends
most of its time resolving references and trying every `oneOf` branch, so the
validator uses a derived schema:

- every `$ref` is inlined (non-recursive schemas only; a cycle keeps its `$ref`);
- a `oneOf` whose branches are told apart by a `const` field (the discriminator,
  e.g. `provider` or `type`) becomes `if field == const then branch` rules, so
  only the selected branch is evaluated, and its errors are the ones reported.

Both forms accept exactly the same documents: the branches of a discriminated
`oneOf` are mutually exclusive, so "exactly one branch is valid" is "the branch
selected by the field is valid".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any
from urllib.parse import urldefrag, urljoin

__all__ = ["compile_schema", "discriminator"]


def discriminator(branches: list[Any]) -> str | None:
    """The property whose `const` tells the branches of a `oneOf` apart, if any.

    Every branch must be an inline schema; all but at most one (a fallback for
    other values) must give the property a distinct `const`.
    """
    if not branches or not all(isinstance(b, Mapping) and "$ref" not in b for b in branches):
        return None
    names: set[str] = set()
    for branch in branches:
        names.update(
            name
            for name, sub in branch.get("properties", {}).items()
            if isinstance(sub, Mapping) and "const" in sub
        )
    for name in sorted(names):
        consts = [
            b["properties"][name]["const"]
            for b in branches
            if "const" in b.get("properties", {}).get(name, {})
        ]
        unique = len({repr(c) for c in consts}) == len(consts)
        if unique and len(consts) >= len(branches) - 1:
            return name
    return None


def _pointer(doc: Any, fragment: str) -> Any:
    node = doc
    for raw in [p for p in fragment.lstrip("/").split("/") if p]:
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def compile_schema(root_id: str, documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The validation form of the schema `root_id`.

    Args:
        root_id: The `$id` of the schema to compile.
        documents: Every schema document by its `$id`.
    """

    def resolve(node: Any, base: str, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(item, base, stack) for item in node]
        if not isinstance(node, Mapping):
            return node
        if isinstance(node.get("$ref"), str):
            target_uri = urljoin(base, node["$ref"])
            doc_uri, fragment = urldefrag(target_uri)
            if target_uri in stack or doc_uri not in documents:
                return {**node, "$ref": target_uri}  # recursive or external: leave it to jsonschema
            target = resolve(_pointer(documents[doc_uri], fragment), doc_uri, (*stack, target_uri))
            siblings = {k: resolve(v, base, stack) for k, v in node.items() if k != "$ref"}
            merged = dict(target)
            for key, value in siblings.items():
                if key in merged and merged[key] != value:
                    return {"allOf": [target, siblings]}
                merged[key] = value
            return merged
        out = {
            key: resolve(value, base, stack)
            for key, value in node.items()
            if key not in ("$id", "$schema", "$defs") or (not stack and key != "$defs")
        }
        if isinstance(out.get("oneOf"), list):
            rules = _discriminated(out["oneOf"])
            if rules is not None:
                del out["oneOf"]
                out["allOf"] = [*out.get("allOf", []), *rules]
        return out

    return resolve(copy.deepcopy(documents[root_id]), root_id, ())  # type: ignore[no-any-return]


def _discriminated(branches: list[Any]) -> list[dict[str, Any]] | None:
    field = discriminator(branches)
    if field is None:
        return None
    consts = [
        b["properties"][field]["const"]
        for b in branches
        if "const" in b["properties"].get(field, {})
    ]
    rules: list[dict[str, Any]] = []
    fallback = None
    for branch in branches:
        sub = branch["properties"].get(field, {})
        if "const" in sub:
            condition = {"properties": {field: {"const": sub["const"]}}, "required": [field]}
            rules.append({"if": condition, "then": branch})
        else:
            fallback = branch
    if fallback is None:
        rules.append({"properties": {field: {"enum": consts}}})
    else:
        other = {"properties": {field: {"not": {"enum": consts}}}, "required": [field]}
        rules.append({"if": other, "then": fallback})
    return rules
