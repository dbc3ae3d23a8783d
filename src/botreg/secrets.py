"""Recognising secrets, so that none is committed and none is printed.

The one redaction module: the portability check (which refuses inline
credentials), the resolver and every output that shows config values or text
that came from outside (findings, events and their sinks, HTTP responses,
logs, status, review, the lock file) use the rules below.

What is masked (`mask_text`, applied to every string that leaves):
- whole PEM private key blocks, BEGIN to END (to the end of the text when the
  END line is missing; from the start of the text when the BEGIN line is
  missing, as in the second chunk of a split key);
- known credential shapes (provider API keys, cloud keys, JWTs, ...) and
  `Authorization: Bearer/Basic` credentials inside text;
- URLs with a password (`scheme://user:pw@` becomes `***`) or whose user name
  is a token (`https://***@host`), credential query parameters
  (`?private_token=***`, `access_token`, `token`, `key`, `sig`, ...) and
  `password=...` in a connection string (`host=db password=***`);
- the default of a `${VAR:default}` when VAR is secret-like or the default
  looks like a secret (`${PG_PASSWORD:***}`);
- every value registered with `remember_secret` (the operator's credentials:
  allowed secret-named variables, token files), wherever it occurs.
`mask_config` also masks values under secret-like keys, and every scalar below
them (`credentials: {pass: ...}`, `api_keys: [...]`; a `${VAR:default}` keeps
its name, its default is masked), and keys whose name is itself a token.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from botreg.envref import PLAIN_REF

__all__ = [
    "MASK",
    "RedactingFilter",
    "dumps_strict",
    "find_token",
    "is_secret_key",
    "locate_token",
    "looks_high_entropy",
    "mask_config",
    "mask_text",
    "mask_value",
    "redact_url",
    "remember_secret",
    "remember_secret_file",
    "safe_repr",
    "secret_scope",
    "split_url_credentials",
]

MASK = "***"

# Keys whose values are credentials: api_key, token, client_secret, password, ...
# (plurals too: `api_keys: [...]`, `passwords: {db: ...}`).
_SECRET_KEY_RE = re.compile(
    r"(^|[_\-.])(key|apikey|api_key|tokens?|secrets?|passwords?|passwd|pwd|credentials?|auth"
    r"|authorization|private|bearer|cookies?|passphrases?|creds?)([_\-.]|$)"
    r"|(key|tokens?|secrets?|passwords?|passphrases?)$|(^|[_\-.])pass$"
    r"|(^|[_\-.])(api|access|secret|private|signing|encryption|ssh|auth)[_\-.]?keys$",
    re.IGNORECASE,
)
# Keys that contain "key" but name something else.
_NOT_SECRET_KEYS = frozenset({"key", "keys", "primary_key", "key_path", "keywords", "monkey"})
# Keys that count or bound something (`max_tokens: 1024`): a number, not a credential.
_QUANTITY_KEY_RE = re.compile(
    r"(^|[_\-.])(max|min|num|total|count|limit|budget|per)([_\-.]|$)", re.IGNORECASE
)
# Under a secret container, these children say what kind or where, not what:
# `credentials: {type: basic, ...}` keeps `type` readable.
_REFERENCE_WORDS = frozenset(
    {"name", "id", "url", "uri", "endpoint", "path", "file", "ref", "type", "kind", "env"}
)
# Keys that name a reference to a secret, not the secret: secret_name, api_key_id,
# token_url, key_vault_uri, private_key_file, ... (the value says where, not what).
_REFERENCE_KEY_RE = re.compile(
    r"[_\-.](name|names|id|ids|url|urls|uri|uris|endpoint|path|paths|file|files|ref|refs"
    r"|type|kind|env|var|variable|length|ttl|expiry|expires|expires_in)$",
    re.IGNORECASE,
)

# The default of a ${VAR:default} (group 2), and the variable's name (group 1).
_ENV_REF_RE = PLAIN_REF
# A hyphenated (or dotted/underscored) slug of lowercase words: not a random token.
_SLUG_RE = re.compile(r"^(?:[a-z]{2,}[0-9]*|v[0-9]+|[0-9]+)(?:[-_.](?:[a-z]+[0-9]*|[0-9]+))+$")
_UUID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
_URL_RE = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)

# The BEGIN/END line of a PEM private key, as written by OpenSSL (5 dashes), by
# SSH2/RFC 4716 tools (`---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----`) or by hand
# (extra spaces). The word count is bounded: no backtracking on long runs.
_PEM_LINE = (
    r"-{{4,5}} ?{0}[ \t]+(?:[A-Z0-9]+[ \t]+){{0,6}}PRIVATE[ \t]+KEY(?:[ \t]+BLOCK)?[ \t]*-{{4,5}}"
)
_PEM_BEGIN, _PEM_END = _PEM_LINE.format("BEGIN"), _PEM_LINE.format("END")
# A PEM private key block; without its END line it runs to the end of the text.
_PEM_RE = re.compile(f"{_PEM_BEGIN}(?:.*?{_PEM_END}|.*\\Z)", re.DOTALL | re.IGNORECASE)
# The tail of a key whose BEGIN line is elsewhere (a chunker split the block):
# from the start of the text to its last END line. Applied after _PEM_RE, so an
# END line still present has no BEGIN before it.
_PEM_TAIL_RE = re.compile(f"\\A.*{_PEM_END}", re.DOTALL | re.IGNORECASE)
# scheme://user:password@host, unless the password is a ${VAR} reference.
# The scheme is bounded: an unbounded `[a-z0-9+.-]*` before `://` rescans the rest
# of the text from every position, quadratic on a long run of letters.
_URL_PASSWORD_RE = re.compile(
    r"([a-z][a-z0-9+.\-]{0,31}://[^/\s:@?#]*:)(?!\$\{[A-Za-z_][A-Za-z0-9_]*\}@)([^/\s@?#]+)@",
    re.I,
)
# scheme://user@host where the user name alone may be a token (group 2).
_URL_USER_RE = re.compile(r"([a-z][a-z0-9+.\-]{0,31}://)([^/\s:@?#]{16,})(?=@)", re.I)
# `Authorization: Bearer <credential>` (any scheme, or none) inside text, and a bare
# `Bearer <random>` or `Basic <base64 of user:password>`.
_AUTH_HEADER_RE = re.compile(
    r"(?<![A-Za-z])((?:(?:proxy-)?authorization|x-api-key|api-key|x-auth-token|private-token)"
    r"[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:bearer|basic|token|digest|negotiate|apikey)\s+)?)"
    r"(?!\$\{)([A-Za-z0-9._~+/\-]{8,}=*)",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"\b(Bearer\s+)(?!\$\{)([A-Za-z0-9._~+/\-]{16,}=*)", re.IGNORECASE)
_BASIC_RE = re.compile(r"\b(Basic\s+)([A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])")
# `password=hunter2` in a libpq DSN or a shell line (`host=db password=hunter2`):
# a secret-like name, `=`, a value that is not a ${VAR} reference.
_ASSIGNED_SECRET_RE = re.compile(
    r"(?:(?<=[\s,;(\[{'\"])|^)([A-Za-z_][A-Za-z0-9_.\-]{0,63}\s?=\s?)"
    r"(?!\$\{)('[^'\n]*'|\"[^\"\n]*\"|[^\s'\",;&)}\]]+)",
    re.MULTILINE,
)
# `"password": "Zq8v..."` in JSON or YAML text inside a value.
_QUOTED_SECRET_RE = re.compile(
    r"([\"']([A-Za-z_][A-Za-z0-9_.\-]{0,63})[\"']\s*:\s*)(?!\"\$\{|'\$\{)(\"[^\"\n]*\"|'[^'\n]*')"
)
# `mysql --password Zq8v...` / `--api-key=Zq8v...` on a command line inside a value.
_FLAG_SECRET_RE = re.compile(
    r"((?<!\S)--?([A-Za-z][A-Za-z0-9\-]{0,40})[ =])(?!\$\{|-)([^\s'\"]+|'[^'\n]*'|\"[^\"\n]*\")"
)
# scheme://userinfo@host: everything before the @ (for URLs the operator gave).
# up to the LAST `@` of the host part, as urlsplit reads it: a raw `@` in a
# password (`redis://u:p@ss@host`) is accepted by clients and must not leak its tail
_URL_USERINFO_RE = re.compile(r"(?<=://)[^/\s?#]+@")
# Credential query parameters: ?private_token=..., &access_token=..., &sig=...
_QUERY_SECRET_RE = re.compile(
    r"([?&;#](?:[A-Za-z0-9_\-.]*(?:token|secret|password|passwd|pwd|apikey|api[_-]?key"
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


def _random_credential(text: str) -> bool:
    # a credential, not a placeholder (YOUR_API_KEY) or a word (tokens, authentication)
    return bool(re.search(r"[0-9]", text) and re.search(r"[A-Za-z]", text)) and (
        looks_high_entropy(text) or find_token(text) is not None
    )


def _url_user_ok(match: re.Match[str]) -> bool:
    user = match.group(2)
    return find_token(user) is not None or looks_high_entropy(user)


def _auth_ok(match: re.Match[str]) -> bool:
    return _random_credential(match.group(2)) or _basic_ok(match)


def _bearer_ok(match: re.Match[str]) -> bool:
    return _random_credential(match.group(2))


def _basic_ok(match: re.Match[str]) -> bool:
    import base64
    import binascii

    body = match.group(2)
    try:
        decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    _user, colon, password = decoded.partition(":")
    return bool(colon and password and decoded.isprintable())


def _named_ok(match: re.Match[str]) -> bool:
    # a secret-like name and a value that is not a placeholder (`"password": "example"`)
    value = match.group(3).strip("'\"")
    if not value or value.startswith("${") or not is_secret_key(match.group(2)):
        return False
    has_digit = any(c.isdigit() for c in value)
    return looks_high_entropy(value) or (len(value) >= 8 and has_digit and value.isalnum())


def _assigned_ok(match: re.Match[str]) -> bool:
    name = match.group(1).rstrip("= ")
    value = match.group(2).strip("'\"")
    return bool(value) and is_secret_key(name) and not value.startswith("${")


# Known credential shapes: (label, pattern, accept). Order: most specific first.
_TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool]], ...] = (
    ("private key block", _PEM_RE, _always),
    ("private key block", _PEM_TAIL_RE, _always),
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
    ("Slack token", re.compile(r"\b(?:xox[abposre]|xapp)-[A-Za-z0-9\-]{10,}"), _always),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}"), _always),
    ("npm token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"), _always),
    (
        "Slack webhook URL",
        re.compile(r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_\-]{20,}"),
        _always,
    ),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), _always),
    ("Stripe key", re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"), _always),
    ("JSON Web Token", re.compile(r"\beyJ[\w\-]{8,}\.eyJ[\w\-]{8,}\.[\w\-]+"), _always),
    ("password in URL", _URL_PASSWORD_RE, _always),
)
# Generic shapes, judged by their context rather than a provider's prefix: they
# are masked everywhere and refused in configs (BR303), but not looked for in
# knowledge files, whose prose legitimately shows `Authorization: Bearer ...`.
_GENERIC_PATTERNS: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool]], ...] = (
    ("token as URL user name", _URL_USER_RE, _url_user_ok),
    ("Authorization header", _AUTH_HEADER_RE, _auth_ok),
    ("bearer token", _BEARER_RE, _bearer_ok),
    ("Basic credentials", _BASIC_RE, _basic_ok),
    ("password in connection string", _ASSIGNED_SECRET_RE, _assigned_ok),
    ("secret in quoted text", _QUOTED_SECRET_RE, _named_ok),
    ("secret on a command line", _FLAG_SECRET_RE, _named_ok),
)
_ANY_GENERIC = re.compile(  # a flag starts a word: a slug's hyphen is no hint
    r"://|uthori|earer|Basic|=|api-key|auth-token|ivate-token|[\"']\s*:|(?<!\S)--?[a-z]",
    re.IGNORECASE,
)
# One cheap pass says whether any shape may be present (most strings stop here).
_ANY_TOKEN = re.compile(
    r"(?i:private)|sk-|sk_|rk_|AKIA|ASIA|AGPA|AIDA|AROA|gh[pousr]_|github_pat_|glpat-|xox|xapp-"
    r"|hf_|npm_|AIza|eyJ|://"
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
    if lowered in _NOT_SECRET_KEYS or _is_reference_name(lowered):
        return False
    return bool(_SECRET_KEY_RE.search(lowered)) and not _QUANTITY_KEY_RE.search(lowered)


def _is_reference_name(lowered: str) -> bool:
    return lowered in _REFERENCE_WORDS or bool(_REFERENCE_KEY_RE.search(lowered))


def secret_scope(parent: object, key: object) -> object:
    """The key that decides masking for the value under `key` inside `parent`'s value.

    A secret-like key's meaning passes down: below `credentials:` or
    `api_keys:` every scalar is a secret, whatever its own key (`pass`,
    `username`, a list index), so `parent` is returned. A child key that names
    a reference (`type`, `secret_name`, `token_url`) is judged by itself.

    Args:
        parent: The key deciding for the enclosing value (itself the result of
            `secret_scope` one level up), or None at the top.
        key: The child's own mapping key (None for a list item).
    """
    if key is None:
        return parent
    if is_secret_key(parent) and not (isinstance(key, str) and _is_reference_name(key.lower())):
        return parent
    return key


def find_token(value: str, *, generic: bool = True) -> str | None:
    """The kind of a known credential found in `value`, or None.

    Args:
        value: Any text.
        generic: Also look for credentials recognised by their context
            (`Authorization:` headers, `password=` assignments, a token as a
            URL's user name), not only by a provider's shape. Knowledge files
            pass False: their prose shows such examples.
    """
    found = locate_token(value, generic=generic)
    return found[0] if found else None


def locate_token(value: str, *, generic: bool = True) -> tuple[str, int] | None:
    """The kind and offset of the first known credential found in `value`, or None.

    Like `find_token`, with where it starts (to name a line in a finding).
    """
    if len(value) < 8:
        return None
    if len(value) >= 16 and _ANY_TOKEN.search(value):
        for label, pattern, accept in _TOKEN_PATTERNS:
            for m in pattern.finditer(value):
                if accept(m):
                    return label, m.start()
    if generic and _ANY_GENERIC.search(value):
        for label, pattern, accept in _GENERIC_PATTERNS:
            for m in pattern.finditer(value):
                if accept(m):
                    return label, m.start()
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


def _keep_prefix(accept: Callable[[re.Match[str]], bool]) -> Callable[[re.Match[str]], str]:
    # `Authorization: Bearer ***`, `https://***@host`: the context stays readable
    return lambda m: m.group(1) + MASK if accept(m) else m.group(0)


def _mask_generic(value: str) -> str:
    for _, pattern, accept in _GENERIC_PATTERNS:
        value = pattern.sub(_keep_prefix(accept), value)
    return value


# The operator's credentials (allowed secret-named variables, token files): masked
# wherever they occur, since a committer can place them anywhere (a store host
# `${CHROMA_AUTH_HEADER}` ends up in an error message).
_KNOWN_LOCK = threading.Lock()
_known_secrets: set[str] = set()
_known_re: list[re.Pattern[str]] = []  # one alternation of them all, longest first
_MIN_KNOWN = 6  # shorter values would mask ordinary words


def remember_secret(value: object) -> None:
    """Register a credential the process holds, so `mask_text` masks it everywhere.

    Values shorter than 6 characters are ignored. For an HTTP header value
    (`Bearer abc...`) the credential after the scheme word is registered too.

    Args:
        value: The secret (a string, or anything whose text is the secret).
    """
    text = str(value).strip() if value is not None else ""
    candidates = {c.strip() for c in (text, *text.split(None, 1)[1:])}
    new = {c for c in candidates if len(c) >= _MIN_KNOWN}
    # and as messages quote it: repr() (`host {host!r}`) and JSON double a
    # backslash, escape quotes and controls; the plain form would not match those
    for c in list(new):
        new.update({repr(c)[1:-1], json.dumps(c)[1:-1], json.dumps(c, ensure_ascii=False)[1:-1]})
    with _KNOWN_LOCK:
        if new <= _known_secrets:
            return
        _known_secrets.update(new)
        ordered = sorted(_known_secrets, key=len, reverse=True)  # longest first
        _known_re[:] = [re.compile("|".join(map(re.escape, ordered)))]


def remember_secret_file(path: Path | str) -> None:
    """Register the content of a credential file (token file, webhook secret).

    An unreadable file is skipped: the command that uses it reports that.
    """
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return
    if len(text) <= 64 * 1024:  # a token, not a key store
        remember_secret(text)


def _mask_known(value: str) -> str:
    patterns = _known_re[:]  # a snapshot: another thread may be registering
    return patterns[0].sub(MASK, value) if patterns else value


def mask_text(value: str) -> str:
    """Mask every known credential inside a string, keeping the rest readable.

    Whole PEM private key blocks, known token shapes, URL passwords, credential
    query parameters and secret `${VAR:default}` defaults become `***`.
    """
    value = _mask_known(value)
    if "${" in value and ":" in value:
        value = _ENV_REF_RE.sub(_secret_default, value)
    if len(value) >= 16 and _ANY_TOKEN.search(value):
        value = _mask_tokens(value)
    if "=" in value and ("?" in value or "&" in value or ";" in value or "#" in value):
        value = _QUERY_SECRET_RE.sub(lambda m: m.group(1) + MASK, value)
    if len(value) >= 8 and _ANY_GENERIC.search(value):
        value = _mask_generic(value)
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
    A number or other non-string scalar is judged by its text too: an operator's
    all-digit credential resolved into `region_hint: ${CHROMA_API_KEY}` is an
    integer by then, and still masked. For a value nested below a secret-like
    key, pass the key `secret_scope` gives.
    """
    if value is not None and not isinstance(value, str | bool):
        text = str(value)
        if len(text) >= _MIN_KNOWN and mask_text(text) != text:
            return MASK
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
    known = sorted({str(s) for s in known if len(str(s)) >= 4}, key=len, reverse=True)
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
                stack.append((out, name, v, secret_scope(key, k)))
            target[slot] = out
        elif isinstance(node, list | tuple):
            items: list[Any] = [None] * len(node)
            stack.extend((items, i, v, key) for i, v in enumerate(node))
            target[slot] = items
        else:
            value = mask_value(node, key)
            if known and value is not None and not isinstance(value, bool):
                text = value if isinstance(value, str) else str(value)
                for secret in known:
                    text = text.replace(secret, MASK)
                if text != (value if isinstance(value, str) else str(value)):
                    value = text if isinstance(value, str) else MASK
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
        # always through _json_ready: json.dumps would write both `1` and `"1"` of one
        # mapping as "1" (a duplicate key, one value lost to every parser)
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
