"""Recognising secrets, so that none is committed and none is printed.

One module for the rules, shared by the portability check (which refuses
inline credentials), the resolver and every output that shows config values
(which mask them).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = [
    "MASK",
    "find_token",
    "is_secret_key",
    "looks_high_entropy",
    "mask_config",
    "mask_text",
    "safe_repr",
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

# Known credential shapes. Each entry: (label, pattern). Order: most specific first.
_TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private key block", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----")),
    ("Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}")),
    ("OpenAI API key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}")),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}")),
    ("Stripe key", re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}")),
    ("JSON Web Token", re.compile(r"\beyJ[\w\-]{8,}\.eyJ[\w\-]{8,}\.[\w\-]+")),
    # scheme://user:password@host, unless the password is a ${VAR} reference
    ("password in URL", re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@]+:(?!\$\{)[^/\s@]+@", re.I)),
)

_ENV_REF_RE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::[^}]*)?\}")


def is_secret_key(key: object) -> bool:
    """True if a mapping key names a credential (api_key, token, password, ...)."""
    return isinstance(key, str) and _is_secret_name(key)


@lru_cache(maxsize=4096)  # configs reuse a small vocabulary of keys
def _is_secret_name(key: str) -> bool:
    lowered = key.lower()
    if lowered in _NOT_SECRET_KEYS:
        return False
    return bool(_SECRET_KEY_RE.search(lowered))


# One pass over the value finds any known shape; the per-shape patterns then name it.
_ANY_TOKEN = re.compile("|".join(f"(?:{p.pattern})" for _, p in _TOKEN_PATTERNS), re.IGNORECASE)


def find_token(value: str) -> str | None:
    """The kind of a known credential found in `value`, or None."""
    if len(value) < 16 or not _ANY_TOKEN.search(value):
        return None
    for label, pattern in _TOKEN_PATTERNS:
        if pattern.search(value):
            return label
    return None


def _entropy(value: str) -> float:
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def looks_high_entropy(value: str) -> bool:
    """True for random-looking strings such as generated tokens.

    `${VAR}` references are removed first, and prose (with spaces) is not random.
    """
    stripped = _ENV_REF_RE.sub("", value).strip()
    if len(stripped) < 16 or " " in stripped:
        return False
    classes = sum(
        bool(re.search(p, stripped)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]")
    )
    return classes >= 2 and _entropy(stripped) >= 3.5


def mask_text(value: str) -> str:
    """Mask every known credential inside a string, keeping the rest readable."""
    for _, pattern in _TOKEN_PATTERNS:
        value = pattern.sub(MASK, value)
    return value


def mask_config(data: Any, *, _key: object = None) -> Any:
    """A copy of `data` with values under secret-like keys and known tokens masked."""
    if isinstance(data, Mapping):
        return {k: mask_config(v, _key=k) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_config(v, _key=_key) for v in data]
    if isinstance(data, str):
        if is_secret_key(_key) and data and not _ENV_REF_RE.fullmatch(data):
            return MASK
        return mask_text(data)
    if is_secret_key(_key) and data is not None and not isinstance(data, bool):
        return MASK
    return data


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
