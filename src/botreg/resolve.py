"""Resolve a portable config for one environment.

Two steps, in this order:
1. every `{"$resource": <name>, "type": <type>}` is replaced by a copy of
   `resources.<type>.<name>` from the environment file;
2. every `${VAR}` / `${VAR:default}` is expanded from the variables given (by
   default the process environment; the daemon passes only the variables the
   operator allows, see `allowed_environ`). The default applies when VAR is
   unset or empty; `$${` writes a literal `${`.
A value that is exactly one reference takes the type the text spells
(`port: ${PG_PORT:5432}` becomes the integer 5432).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from botreg.envref import REF
from botreg.errors import ResolutionError
from botreg.registry.yamlio import dotted_path
from botreg.secrets import is_secret_key, mask_config, remember_secret

__all__ = [
    "allowed_environ",
    "expand_variables",
    "resolve_config",
    "resolve_for_display",
    "resolve_resources",
]

_REF = REF
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def allowed_environ(
    patterns: Iterable[str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables of `environ` whose name matches one of `patterns` (fnmatch).

    Whoever can commit writes the `${VAR}` references; a daemon that expanded
    them from its whole environment would hand its own secrets
    (`${AWS_SECRET_ACCESS_KEY}`) to anyone who can read its API. So a daemon
    expands only what the operator allows (`--allow-env 'BOTREG_*'`); any other
    variable reads as unset (its default applies, or it is reported missing).

    The value of every allowed variable whose name is secret-like
    (`CHROMA_AUTH_HEADER`, `CHROMA_API_KEY`) is registered with
    `botreg.secrets.remember_secret`: a committer can place it anywhere (a store
    host `${CHROMA_AUTH_HEADER}` ends up in an error message), and every output
    masks it.

    Args:
        patterns: Shell-style name patterns, case-sensitive; none allows nothing.
        environ: The variables to choose from (default: the process environment).
    """
    source = os.environ if environ is None else environ
    wanted = tuple(patterns)
    allowed = {
        name: value
        for name, value in source.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in wanted)
    }
    for name, value in allowed.items():
        if is_secret_key(name):
            remember_secret(value)
    return allowed


def resolve_resources(config: Any, resources: Mapping[str, Any]) -> Any:
    """Replace `$resource` references by the environment's resources.

    Raises:
        ResolutionError: naming every reference the environment does not define.
    """
    missing: list[str] = []

    def walk(node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, Mapping):
            if "$resource" in node:
                name, rtype = node.get("$resource"), node.get("type")
                group = resources.get(rtype) if isinstance(rtype, str) else None
                if not isinstance(group, Mapping) or name not in group:
                    missing.append(f"{dotted_path(path, root='.')} -> resources.{rtype}.{name}")
                    return None
                return walk(group[name], path)
            return {k: walk(v, (*path, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        return node

    result = walk(config, ())
    if missing:
        raise ResolutionError(
            "undefined resources: " + "; ".join(missing) + " (define them in the environment file)"
        )
    return result


def _typed(text: str) -> Any:
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    return text


def expand_variables(config: Any, env: Mapping[str, str] | None = None) -> Any:
    """Expand `${VAR}` and `${VAR:default}` in every string of `config`.

    Raises:
        ResolutionError: naming every variable that is unset and has no default.
    """
    variables = os.environ if env is None else env
    missing: list[str] = []

    def expand(text: str, path: tuple[str | int, ...]) -> Any:
        whole = _REF.fullmatch(text)

        def substitute(match: re.Match[str]) -> str:
            escaped, name, default = match.groups()
            if escaped:
                return match.group(0)[1:]
            value = variables.get(name)
            if value:
                return value
            if default is not None:
                return default
            missing.append(f"{name} (at {dotted_path(path, root='.')})")
            return ""

        result = _REF.sub(substitute, text)
        return _typed(result) if whole and not whole.group(1) else result

    def walk(node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, Mapping):
            return {k: walk(v, (*path, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:
            return expand(node, path)
        return node

    result = walk(config, ())
    if missing:
        raise ResolutionError(
            "environment variables not set and without default: "
            + ", ".join(missing)
            + "; export them or write ${VAR:default} (the sync daemon reads only the "
            "variables it is started with --allow-env for)"
        )
    return result


def resolve_config(
    config: Mapping[str, Any],
    environment: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A bot config with `$resource` references and `${VAR}` values resolved.

    Args:
        config: The portable config (a bot file's data).
        environment: The environment file's data (its `resources` are used).
        env: Variables to expand; defaults to the process environment.

    Raises:
        ResolutionError: for undefined resources or unset variables without default.
    """
    resources = environment.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise ResolutionError("the environment's `resources` is not a mapping")
    resolved = resolve_resources(config, resources)
    expanded = expand_variables(resolved, env)
    assert isinstance(expanded, dict)
    return expanded


def resolve_for_display(
    config: Mapping[str, Any],
    environment: Mapping[str, Any],
    allow: Iterable[str],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A config resolved with only the allowed variables, masked for showing (GET /bots).

    Values under secret-like keys (and every scalar below them) are masked, and
    so is the value of every allowed variable with a secret-like name
    (`CHROMA_AUTH_HEADER`) wherever a committer placed it, a number included
    (`region_hint: ${CHROMA_API_KEY}` resolves to an integer): allowing a
    variable for the store does not publish it.

    Raises:
        ResolutionError: for undefined resources or variables unset (or not allowed)
            without a default.
    """
    env = allowed_environ(allow, environ)
    resolved = resolve_config(config, environment, env)
    secret_values = [value for name, value in env.items() if is_secret_key(name)]
    masked: dict[str, Any] = mask_config(resolved, known=secret_values)
    return masked
