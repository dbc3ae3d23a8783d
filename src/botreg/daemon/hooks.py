"""Push webhooks from GitHub, GitLab and Gitea: verify, then only trigger a fetch.

The payload is never trusted for content: a verified push only wakes the loop,
which fetches from the source like any poll. Bursts coalesce into one cycle.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from botreg.registry.content import ContentError, load_json_bounded

__all__ = ["HookVerdict", "verify_push"]


class HookVerdict:
    """The answer to a hook request: HTTP status and a short reason."""

    def __init__(self, status: int, reason: str, trigger: bool = False) -> None:
        self.status = status
        self.reason = reason
        self.trigger = trigger


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def verify_push(
    headers: Mapping[str, str], body: bytes, secret: bytes | None, branch: str
) -> HookVerdict:
    """Check a push webhook's signature and event; say whether to trigger a sync."""
    if not secret:
        return HookVerdict(403, "no webhook secret configured (--webhook-secret-file)")
    github = _header(headers, "X-Hub-Signature-256")
    gitea = _header(headers, "X-Gitea-Signature") or _header(headers, "X-Gogs-Signature")
    gitlab = _header(headers, "X-Gitlab-Token")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if github:
        ok = hmac.compare_digest(github, f"sha256={expected}")
    elif gitea:
        ok = hmac.compare_digest(gitea, expected)
    elif gitlab:
        ok = hmac.compare_digest(gitlab.encode(), secret)
    else:
        return HookVerdict(
            401, "no signature header (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)"
        )
    if not ok:
        return HookVerdict(401, "signature mismatch")
    event = (
        _header(headers, "X-GitHub-Event")
        or _header(headers, "X-Gitea-Event")
        or _header(headers, "X-Gitlab-Event")
        or "push"
    ).lower()
    if event == "ping":
        return HookVerdict(200, "pong")
    if event not in ("push", "push hook"):
        return HookVerdict(202, f"ignored event {event}")
    payload = _payload(body)
    if isinstance(payload, HookVerdict):
        return payload
    ref = payload.get("ref", "") if isinstance(payload, dict) else ""
    if not isinstance(ref, str):
        ref = ""
    if ref and ref != f"refs/heads/{branch}":
        return HookVerdict(202, f"ignored push to {ref}")
    return HookVerdict(202, "sync triggered", trigger=True)


def _payload(body: bytes) -> Any:
    """The hook's JSON payload, parsed within the operator's bounds.

    A body that is not JSON at all (GitHub's form-encoded delivery) gives None and the
    push is taken as it was before; a JSON body that is malformed or nested too deeply
    is a 400: `json.loads` on `[` x 100,000 raised RecursionError (a 500).
    """
    if body.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        return load_json_bounded(body.decode("utf-8"))
    except UnicodeDecodeError:
        return HookVerdict(400, "the push body is not UTF-8 JSON")
    except ContentError as exc:
        return HookVerdict(400, f"the push body is not valid JSON: {exc.message}")
