"""Portability: a config must work in every environment, unchanged.

As in the seed's `validate_portability`: a bot or environment file may not hold
values that only make sense on one machine (absolute local paths,
localhost/loopback addresses) nor credentials. Such values come from `${VAR}`
references (resolved per environment) or `$resource` references.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botreg.envref import PLAIN_REF
from botreg.registry.yamlio import dotted_path
from botreg.secrets import (
    find_token,
    is_secret_key,
    looks_high_entropy,
    mask_text,
    secret_scope,
)

__all__ = [
    "PortabilityError",
    "PortabilityIssue",
    "find_portability_issues",
    "has_resource_references",
    "is_portable",
    "validate_portability",
]

_ENV_REF = PLAIN_REF
_ABSOLUTE_PATH = re.compile(
    r"^(?:~[/\\]|/(?:home|Users|root|tmp|var|opt|etc|srv|mnt|media|data|usr|private|Volumes)"
    r"(?:/|$)|[A-Za-z]:[\\/]|\\\\[^\\]+\\|file://)"
)
# Anything that might interest one of the checks below (a superset, checked fast).
_SUSPECT = re.compile(
    r"^[/~\\]|^[A-Za-z]:|file:|localhost|127\.|::1|0\.0\.0\.0|://[^/\s]*@"
    r"|sk-|sk_|rk_|AKIA|ASIA|AGPA|AIDA|AROA|gh[pousr]_|github_pat_|glpat-|xox|xapp-|hf_|AIza|eyJ"
    r"|PRIVATE|://|uthori|earer|basic|=",
    re.IGNORECASE,
)
_LOOPBACK = re.compile(
    r"(?:^|[/@\s=,])(localhost|127(?:\.\d{1,3}){3}|0\.0\.0\.0|\[::1\]|::1)(?::\d+)?(?:[/\s?#,]|$)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class PortabilityIssue:
    """One non-portable value: check code, path of the value, and what to do."""

    code: str
    path: tuple[str | int, ...]
    message: str


class PortabilityError(ValueError):
    """A config holds values that are not portable across environments."""

    def __init__(self, issues: list[PortabilityIssue]) -> None:
        self.issues = issues
        lines = "; ".join(issue.message for issue in issues[:5])
        more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"config is not portable: {lines}{more}")


def _suggest_var(path: tuple[str | int, ...]) -> str:
    words = [str(p) for p in path if isinstance(p, str)][-2:]
    return re.sub(r"[^A-Z0-9]+", "_", "_".join(words).upper()).strip("_") or "VALUE"


def _check_key(path: tuple[str | int, ...], key: str) -> list[PortabilityIssue]:
    """A mapping key whose name is itself a credential (`ghp_...: {nested: x}`)."""
    token = find_token(key)
    if not token:
        return []
    # the pointer names the key: Finding masks it, and the message never quotes it
    return [
        PortabilityIssue(
            "BR303",
            path,
            f"{mask_text(dotted_path(path, root='value'))}: a key that is an inline credential "
            f"({token}); rename the key, and rotate the exposed credential",
        )
    ]


def _check_value(
    path: tuple[str | int, ...], value: str, scope: object = None
) -> list[PortabilityIssue]:
    if scope is None:  # called without a scope: the nearest key decides
        scope = next((p for p in reversed(path) if isinstance(p, str)), None)
    key = scope
    found: list[tuple[str, str]] = []  # (code, message template); formatted below
    # Credentials are looked for everywhere, ${VAR:default} defaults included.
    token = find_token(value)
    if token:
        found.append(
            (
                "BR303",
                f"an inline credential ({token}); store it in a secret and "
                "write ${{{var}}} instead, then rotate the exposed credential",
            )
        )
    elif is_secret_key(key) and not _ENV_REF.fullmatch(value) and looks_high_entropy(value):
        found.append(
            (
                "BR304",
                "looks like a secret written inline; write ${{{var}}} (or use "
                "a $resource) and keep the value out of git",
            )
        )
    # Paths and hosts: a ${VAR:default} default is an explicit, overridable fallback.
    maybe_path = value[0] in "/~\\Cf" or value[1:2] == ":"  # cheap pre-check: most values
    if maybe_path and not value.startswith("${") and _ABSOLUTE_PATH.match(value):
        found.append(
            (
                "BR301",
                "absolute local path; write ${{{var}:<path>}} or a path "
                "relative to the data dir so every environment can set its own",
            )
        )
    maybe_host = any(h in value.lower() for h in ("localhost", "127.", "::1", "0.0.0.0"))
    if maybe_host and _LOOPBACK.search(_ENV_REF.sub("", value)):
        found.append(
            (
                "BR302",
                "localhost/loopback address only works on one machine; "
                "write ${{{var}:<url>}} or define it as a resource in environments/",
            )
        )
    if not found:
        return []
    where, var = dotted_path(path, root="value"), _suggest_var(path)
    return [
        PortabilityIssue(code, path, f"{where}: " + text.format(var=var)) for code, text in found
    ]


def find_portability_issues(config: Any) -> list[PortabilityIssue]:
    """Every non-portable value in a config (any JSON-shaped data).

    The walk is iterative (an explicit stack): any depth gives the same verdict,
    on the main thread or a worker's smaller stack.
    """
    issues: list[PortabilityIssue] = []
    # (node, path, the key deciding whether it is a secret: a secret-like key's
    # meaning passes down, so `credentials: {pass: ...}` and `api_keys: [...]`
    # are checked like `password: ...`); children pushed in reverse, so issues
    # come out in document order
    todo: list[tuple[Any, tuple[str | int, ...], object]] = [(config, (), None)]
    while todo:
        node, path, scope = todo.pop()
        if isinstance(node, dict):
            for key in node:
                if isinstance(key, str) and len(key) >= 16 and _SUSPECT.search(key):
                    issues.extend(_check_key((*path, key), key))
            todo.extend(
                (value, (*path, str(key)), secret_scope(scope, key))
                for key, value in reversed(node.items())
            )
        elif isinstance(node, list):
            todo.extend(
                (value, (*path, index), scope) for index, value in reversed(list(enumerate(node)))
            )
        elif isinstance(node, str) and node and (is_secret_key(scope) or _SUSPECT.search(node)):
            # the pre-check is one regex pass; most values are plain text and stop here
            issues.extend(_check_value(path, node, scope))
    return issues


def validate_portability(config: Any) -> list[PortabilityIssue]:
    """Check that a config is portable.

    Returns:
        An empty list when the config is portable.

    Raises:
        PortabilityError: listing every issue, when there is any.
    """
    issues = find_portability_issues(config)
    if issues:
        raise PortabilityError(issues)
    return issues


def is_portable(config: Any) -> bool:
    """True if the config has no non-portable values."""
    return not find_portability_issues(config)


def has_resource_references(config: Any) -> bool:
    """True if the config contains at least one `{"$resource": ..., "type": ...}`."""
    todo = [config]
    seen: set[int] = set()  # a shared (aliased) container is looked at once
    while todo:
        node = todo.pop()
        if isinstance(node, Mapping | list):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, Mapping):
                if "$resource" in node:
                    return True
                todo.extend(node.values())
            else:
                todo.extend(node)
    return False
