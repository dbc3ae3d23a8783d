"""Recognising secrets, so that none is committed and none is printed.

The one redaction module: the portability check (which refuses inline
credentials), the resolver and every output that shows config values or text
that came from outside (findings, events and their sinks, HTTP responses,
logs, status, review, the lock file) use the rules below.

What is masked (`mask_text`, applied to every string that leaves):
- whole PEM private key blocks, BEGIN to END (to the end of the text when the
  END line is missing);
- known credential shapes (provider API keys, cloud keys, JWTs, ...);
- URLs with a password (`scheme://user:pw@` becomes `***`) and credential query
  parameters (`?private_token=***`, `access_token`, `token`, `key`, `sig`, ...);
- the default of a `${VAR:default}` when VAR is secret-like or the default
  looks like a secret (`${PG_PASSWORD:***}`).
`mask_config` also masks values under secret-like keys (a `${VAR:default}`
keeps its name, its default is masked) and keys whose name is itself a token.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

__all__ = [
    "MASK",
    "RedactingFilter",
    "dumps_strict",
    "find_token",
    "is_secret_key",
    "looks_high_entropy",
    "mask_config",
    "mask_text",
    "mask_value",
    "redact_url",
    "safe_repr",
    "split_url_credentials",
]

MASK = "***"

# Keys whose values are credentials: api_key, token, client_secret, password, ...
_SECRET_KEY_RE = re.compile(
    r"(^|[_\-.])(key|apikey|api_key|token|secret|password|passwd|pwd|credentials?|auth"
    r"|authorization|private)([_\-.]|$)|(key|token|secret|password)$",
    re.IGNORECASE,
)
# Keys that contain "key" but name something else.
_NOT_SECRET_KEYS = frozenset({"key", "keys", "primary_key", "key_path", "keywords", "monkey"})
# Keys that name a reference to a secret, not the secret: secret_name, api_key_id,
# token_url, key_vault_uri, private_key_file, ... (the value says where, not what).
_REFERENCE_KEY_RE = re.compile(
    r"[_\-.](name|names|id|ids|url|urls|uri|uris|endpoint|path|paths|file|files|ref|refs"
    r"|type|kind|env|var|variable|length|ttl|expiry|expires|expires_in)$",
    re.IGNORECASE,
)

# The default of a ${VAR:default} (group 2), and the variable's name (group 1).
_ENV_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
# A hyphenated (or dotted/underscored) slug of lowercase words: not a random token.
_SLUG_RE = re.compile(r"^(?:[a-z]{2,}[0-9]*|v[0-9]+|[0-9]+)(?:[-_.](?:[a-z]+[0-9]*|[0-9]+))+$")
_UUID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
_URL_RE = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)

# A PEM private key block; without its END line it runs to the end of the text.
_PEM_RE = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
    re.DOTALL,
)
# scheme://user:password@host, unless the password is a ${VAR} reference.
# The scheme is bounded: an unbounded `[a-z0-9+.-]*` before `://` rescans the rest
# of the text from every position, quadratic on a long run of letters.
_URL_PASSWORD_RE = re.compile(
    r"([a-z][a-z0-9+.\-]{0,31}://[^/\s:@?#]*:)(?!\$\{[A-Za-z_][A-Za-z0-9_]*\}@)([^/\s@?#]+)@",
    re.I,
)
# scheme://userinfo@host: everything before the @ (for URLs the operator gave).
_URL_USERINFO_RE = re.compile(r"(?<=://)[^/@\s?#]+@")
# Credential query parameters: ?private_token=..., &access_token=..., &sig=...
_QUERY_SECRET_RE = re.compile(
    r"([?&;](?:[A-Za-z0-9_\-.]*(?:token|secret|password|passwd|pwd|apikey|api[_-]?key"
    r"|credentials?|signature|auth)|key|sig)=)(?!\$\{)([^&#\s\"'<>]+)",
    re.IGNORECASE,
)


def _is_slug(body: str) -> bool:
    """True for word-hyphen-word text such as `enterprise-annual-plan-2025-eu`."""
    return bool(_SLUG_RE.match(body)) and all(len(part) <= 16 for part in re.split(r"[-_.]", body))


def _openai_ok(match: re.Match[str]) -> bool:
    # A real key is random: mixed case or digits throughout, not a slug of words.
    body = re.sub(r"^sk-(?:proj-|svcacct-|admin-)?", "", match.group(0))
    return not _is_slug(body) and bool(re.search(r"[0-9]", body) or re.search(r"[A-Z]", body))


def _always(_match: re.Match[str]) -> bool:
    return True


# Known credential shapes: (label, pattern, accept). Order: most specific first.
_TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool]], ...] = (
    ("private key block", _PEM_RE, _always),
    ("Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}"), _always),
    (
        "OpenAI API key",
        re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
        _openai_ok,
    ),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"), _always),
    (
        "GitHub token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
        _always,
    ),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"), _always),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), _always),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), _always),
    ("Stripe key", re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"), _always),
    ("JSON Web Token", re.compile(r"\beyJ[\w\-]{8,}\.eyJ[\w\-]{8,}\.[\w\-]+"), _always),
    ("password in URL", _URL_PASSWORD_RE, _always),
)
# One cheap pass says whether any shape may be present (most strings stop here).
_ANY_TOKEN = re.compile(
    r"BEGIN|sk-|sk_|rk_|AKIA|ASIA|AGPA|AIDA|AROA|gh[pousr]_|github_pat_|glpat-|xox|AIza|eyJ|://"
)


def is_secret_key(key: object) -> bool:
    """True if a mapping key names a credential (api_key, token, password, ...).

    Keys that name a reference to a secret (`secret_name`, `api_key_id`,
    `token_url`, `key_vault_uri`, `private_key_file`, ...) are not secret.
    """
    return isinstance(key, str) and _is_secret_name(key)


@lru_cache(maxsize=4096)  # configs reuse a small vocabulary of keys
def _is_secret_name(key: str) -> bool:
    lowered = key.lower()
    if lowered in _NOT_SECRET_KEYS or _REFERENCE_KEY_RE.search(lowered):
        return False
    return bool(_SECRET_KEY_RE.search(lowered))


def find_token(value: str) -> str | None:
    """The kind of a known credential found in `value`, or None."""
    if len(value) < 16 or not _ANY_TOKEN.search(value):
        return None
    for label, pattern, accept in _TOKEN_PATTERNS:
        if any(accept(m) for m in pattern.finditer(value)):
            return label
    return None


def _entropy(value: str) -> float:
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def looks_high_entropy(value: str) -> bool:
    """True for random-looking strings such as generated tokens.

    `${VAR}` references are removed first; prose (with spaces), UUIDs, URLs
    without credentials and slugs of lowercase words are not random tokens.
    """
    stripped = _ENV_REF_RE.sub("", value).strip()
    if len(stripped) < 16 or " " in stripped:
        return False
    if _UUID_RE.match(stripped) or _is_slug(stripped):
        return False
    if _URL_RE.match(stripped) and mask_text(stripped) == stripped:
        return False  # a URL: its credentials, if any, are found by the patterns
    classes = sum(
        bool(re.search(p, stripped)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]")
    )
    return classes >= 2 and _entropy(stripped) >= 3.5


def _masked_default(match: re.Match[str]) -> str:
    name, default = match.group(1), match.group(2)
    return f"${{{name}:{MASK}}}" if default else match.group(0)


def _secret_default(match: re.Match[str]) -> str:
    name, default = match.group(1), match.group(2)
    if not default:
        return match.group(0)
    if is_secret_key(name) or find_token(default) or looks_high_entropy(default):
        return f"${{{name}:{MASK}}}"
    return match.group(0)


def _replacer(accept: Callable[[re.Match[str]], bool]) -> Callable[[re.Match[str]], str]:
    return lambda m: MASK if accept(m) else m.group(0)


def _mask_tokens(value: str) -> str:
    for _, pattern, accept in _TOKEN_PATTERNS:
        value = pattern.sub(_replacer(accept), value)
    return value


def mask_text(value: str) -> str:
    """Mask every known credential inside a string, keeping the rest readable.

    Whole PEM private key blocks, known token shapes, URL passwords, credential
    query parameters and secret `${VAR:default}` defaults become `***`.
    """
    if "${" in value and ":" in value:
        value = _ENV_REF_RE.sub(_secret_default, value)
    if len(value) >= 16 and _ANY_TOKEN.search(value):
        value = _mask_tokens(value)
    if "=" in value and ("?" in value or "&" in value or ";" in value):
        value = _QUERY_SECRET_RE.sub(lambda m: m.group(1) + MASK, value)
    return value


def redact_url(text: str) -> str:
    """Text with URL userinfo (`user:password@`) and credential parameters removed.

    For URLs the operator gives (`--source`, `--webhook`): unlike `mask_text`
    the whole userinfo goes, since a token is often written as the user name.
    """
    return mask_text(_URL_USERINFO_RE.sub(f"{MASK}@", text))


def mask_value(value: Any, key: object = None) -> Any:
    """One scalar for display: masked if its key is secret-like, else its tokens masked.

    A `${VAR}` reference under a secret key stays readable, its default is masked.
    """
    if isinstance(value, str):
        if is_secret_key(key) and value:
            if _ENV_REF_RE.sub("", value).strip():
                return MASK  # text besides references: the secret itself, or part of it
            return _ENV_REF_RE.sub(_masked_default, value)
        return mask_text(value)
    if is_secret_key(key) and value is not None and not isinstance(value, bool):
        return MASK
    return value


def _mask_key(key: Any, taken: Mapping[Any, Any]) -> Any:
    """A key whose name is itself a token is masked (numbered if several are)."""
    if not isinstance(key, str):
        return key
    masked = mask_text(key)
    if masked == key:
        return key
    candidate, n = masked, 2
    while candidate in taken:
        candidate, n = f"{masked}#{n}", n + 1
    return candidate


def mask_config(data: Any, *, known: Sequence[str] = (), _key: object = None) -> Any:
    """A copy of `data` with values under secret-like keys and known tokens masked.

    Keys whose name is itself a token are masked too. Iterative, so depth is no risk.

    Args:
        data: JSON-shaped data.
        known: Secret values to mask wherever they appear (e.g. the values of
            secret-named variables a config was resolved with).
    """
    known = sorted({s for s in known if len(s) >= 4}, key=len, reverse=True)
    root: dict[str, Any] = {}
    # (container to fill, slot in it, value, key the value is under)
    stack: list[tuple[Any, Any, Any, object]] = [(root, "v", data, _key)]
    while stack:
        target, slot, node, key = stack.pop()
        if isinstance(node, Mapping):
            out: dict[Any, Any] = {}
            for k, v in node.items():
                name = _mask_key(k, out)
                out[name] = None
                stack.append((out, name, v, k))
            target[slot] = out
        elif isinstance(node, list | tuple):
            items: list[Any] = [None] * len(node)
            stack.extend((items, i, v, key) for i, v in enumerate(node))
            target[slot] = items
        else:
            value = mask_value(node, key)
            if known and isinstance(value, str):
                for secret in known:
                    value = value.replace(secret, MASK)
            target[slot] = value
    return root["v"]


def _json_key(key: Any) -> str:
    """A mapping key as JSON writes it: numbers, booleans and null as JSON text, else str()."""
    if isinstance(key, bool | int | float) or key is None:
        return json.dumps(key)  # 1 -> "1", True -> "true", None -> "null" (as json.dumps does)
    return str(key)


def _json_ready(data: Any) -> Any:
    """A copy of YAML-loaded data JSON can write whatever the options.

    Non-finite floats become None; every mapping key becomes a string (JSON object
    keys are strings, and `sort_keys` cannot order `1` against `"a"`). A key whose
    string form is already taken in its mapping is numbered (`1#2`), so no value
    is lost and the result is the same for the same document. Iterative: depth is
    no risk.
    """
    root: dict[str, Any] = {}
    stack: list[tuple[Any, Any, Any]] = [(root, "v", data)]  # (container, slot, value)
    while stack:
        target, slot, node = stack.pop()
        if isinstance(node, Mapping):
            out: dict[str, Any] = {}
            taken = {k for k in node if isinstance(k, str)}  # string keys keep their name
            for k, v in node.items():
                name = k if isinstance(k, str) else _json_key(k)
                if not isinstance(k, str):
                    candidate, n = name, 2
                    while candidate in taken:
                        candidate, n = f"{name}#{n}", n + 1
                    name = candidate
                    taken.add(name)
                out[name] = None
                stack.append((out, name, v))
            target[slot] = out
        elif isinstance(node, list | tuple):
            items: list[Any] = [None] * len(node)
            stack.extend((items, i, v) for i, v in enumerate(node))
            target[slot] = items
        elif isinstance(node, float) and not math.isfinite(node):
            target[slot] = None
        else:
            target[slot] = node
    return root["v"]


def dumps_strict(data: Any, **kwargs: Any) -> str:
    """`json.dumps` of any YAML-loaded data: never bare NaN/Infinity, never a key error.

    Output must be JSON every consumer can parse; a non-finite number that got
    this far becomes null, and non-string mapping keys (`1: one` in a bot's
    metadata) become strings, rather than crashing the writer (see `_json_ready`).
    """
    kwargs.setdefault("default", str)
    try:
        try:
            return json.dumps(data, allow_nan=False, **kwargs)
        except (ValueError, TypeError):  # NaN, or keys sort_keys cannot order / JSON cannot hold
            return json.dumps(_json_ready(data), allow_nan=False, **kwargs)
    except RecursionError:  # hostile depth: say so instead of crashing the writer
        return json.dumps({"error": "value too deeply nested to serialise"}, **kwargs)


class RedactingFilter(logging.Filter):
    """A logging filter that masks credentials in every record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its masked form (never drops a record)."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave the record to logging
            return True
        masked = redact_url(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def safe_repr(value: Any, key: object = None, limit: int = 40) -> str:
    """A short, secret-free rendering of a value for messages."""
    if isinstance(value, str):
        if is_secret_key(key) or find_token(value) or looks_high_entropy(value):
            return f"a secret-like string of {len(value)} characters"
        if len(value) > limit:
            return f"a string of {len(value)} characters"
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if value is None:
        return "null"
    return repr(value)


def split_url_credentials(url: str) -> tuple[str, str | None]:
    """An http(s) URL without its userinfo, and that userinfo as a Basic auth header.

    For URLs the operator gives (`--source`, `--webhook`): the credentials then
    travel in a header, never in a stored URL, a log line or a request line.

    Returns:
        (url, None) when the URL carries no user name or password.
    """
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or (parts.username is None and not parts.password):
        return url, None
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
