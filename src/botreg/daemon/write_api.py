"""The HTTP side of the daemon's writes: `POST /bots`, `PUT` and `DELETE /bots/{id}`.

Off unless the daemon runs with `--allow-writes` (and then always behind its API
token). Every request is bounded before the writer sees it: a JSON body of at
most `WRITE_MAX_BODY` bytes (413), `Content-Type: application/json` (415), parsed
within the operator's ceilings (depth, values, integer size: 400), a bot id that
follows the registry's naming rule (400), at most `MAX_PENDING_WRITES` writes
waiting for the writer (429). The git work runs on one thread of its own, so
writes never take the read handlers' threads.

A write that is pushed wakes the sync loop and waits up to `APPLY_WAIT` seconds
for the daemon to apply it: then 201 (created) or 200, else 202 (pushed, not
applied yet). Either way the answer names the commit (`commit` and
`X-Botreg-Commit`): `GET /bots/{id}?at=COMMIT` reads the write once applied.
See docs/http-writes.md for every status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request

from botreg.api.git_backend import RegistryValidationError
from botreg.daemon.writes import (
    BotExistsError,
    BotNotFoundError,
    GitOpsWriter,
    HeadRejectedError,
    SourceError,
    WriteConflictError,
    WriteOutcome,
)
from botreg.registry.content import ContentError, load_json_bounded
from botreg.registry.layout import IDENTIFIER_RE
from botreg.secrets import MASK

__all__ = [
    "APPLY_WAIT",
    "MAX_PENDING_WRITES",
    "WRITE_MAX_BODY",
    "Reply",
    "WriteAPI",
    "writes_off",
]

WRITE_MAX_BODY = 1024 * 1024  # bytes of a write's JSON body
APPLY_WAIT = 10.0  # seconds a write waits for the daemon to apply its commit
MAX_PENDING_WRITES = 8  # writes waiting for the writer at once; beyond: 429
_STATUSES = ("active", "inactive")
_FIELDS = frozenset({"bot_id", "config", "status"})
_CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class Reply:
    """An answer: status, JSON body, headers (the HTTP layer masks and renders it)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _refused(status: int, code: str, message: str, **extra: Any) -> Reply:
    headers = extra.pop("headers", {})
    return Reply(status, {"error": message, "code": code, **extra}, headers)


class _Refused(Exception):  # noqa: N818 - carries a refusal out of parsing
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.body["error"])
        self.reply = reply


def writes_off(has_body: bool) -> Reply:
    """The answer to a write when the daemon runs without `--allow-writes`: 403."""
    return _refused(
        403,
        "writes_disabled",
        "writes are off on this daemon: the registry changes through git commits, "
        "or start the daemon with --allow-writes (and --api-token-file)",
        headers=_CLOSE if has_body else {},
    )


def check_bot_id(bot_id: str) -> None:
    """Refuse (400) a bot id the registry's naming rule does not allow."""
    if not IDENTIFIER_RE.match(bot_id):
        shown = repr(bot_id[:80])  # repr: control characters and bidi marks escaped
        raise _Refused(
            _refused(
                400,
                "invalid_bot_id",
                f"invalid bot id {shown}: 1 to 63 lowercase letters, digits, '_' and '-', "
                "starting with a letter or digit",
            )
        )


class WriteAPI:
    """Parses, bounds and answers the write routes; the git work is `GitOpsWriter`'s."""

    def __init__(
        self,
        writer: GitOpsWriter,
        *,
        wake: Callable[[], None],
        serves: Callable[[str], bool | None],
        standby: Callable[[], str | None] = lambda: None,
        apply_wait: float = APPLY_WAIT,
        max_body: int = WRITE_MAX_BODY,
        body_timeout: float = 30.0,
    ) -> None:
        """Args:
        writer: commits and pushes.
        wake: asks the sync loop for a cycle now (after a push).
        serves: True once the daemon applied a commit (or a descendant of it).
        standby: None on a daemon that may write, else who leads (HA standby: 409).
        apply_wait: seconds a write waits for its commit to be applied.
        max_body: bytes of a request body.
        body_timeout: seconds for the body to arrive.
        """
        self.writer = writer
        self.wake = wake
        self.serves = serves
        self.standby = standby
        self.apply_wait = apply_wait
        self.max_body = max_body
        self.body_timeout = body_timeout
        self._pending = 0  # touched on the event loop's thread only
        self._git: anyio.CapacityLimiter | None = None  # made on the loop, at first use
        self._checks: anyio.CapacityLimiter | None = None

    async def post(self, request: Request) -> Reply:
        """`POST /bots` `{"bot_id", "config", "status"?}`: 201, 202, or a refusal."""
        try:
            body = await self._body(request)
            bot_id = body.get("bot_id")
            if not isinstance(bot_id, str):
                raise _Refused(_refused(400, "bad_request", "bot_id: a string is required"))
            check_bot_id(bot_id)
            config, status = _config(body, required=True)
        except _Refused as refused:
            return refused.reply
        assert config is not None
        return await self._run(lambda: self.writer.create(bot_id, config, status or "active"))

    async def put(self, request: Request, bot_id: str) -> Reply:
        """`PUT /bots/{id}` `{"config"?, "status"?}` (one at least): 200, 202, or a refusal."""
        try:
            check_bot_id(bot_id)
            body = await self._body(request)
            if "bot_id" in body and body["bot_id"] != bot_id:
                raise _Refused(
                    _refused(400, "bad_request", "bot_id in the body differs from the URL's")
                )
            config, status = _config(body, required=False)
        except _Refused as refused:
            return refused.reply
        return await self._run(lambda: self.writer.update(bot_id, config, status))

    async def delete(self, request: Request, bot_id: str) -> Reply:
        """`DELETE /bots/{id}`: the bot's file removed (a hard delete): 200, 202, or 404."""
        try:
            check_bot_id(bot_id)
        except _Refused as refused:
            return refused.reply
        return await self._run(lambda: self.writer.delete(bot_id))

    # --- the request body ------------------------------------------------------------------

    async def _body(self, request: Request) -> dict[str, Any]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise _Refused(
                _refused(
                    415,
                    "unsupported_media_type",
                    "send the body as JSON with Content-Type: application/json",
                    headers=_CLOSE,
                )
            )
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > self.max_body:
            raise _Refused(self._too_large())
        raw = bytearray()
        try:
            with anyio.fail_after(self.body_timeout):
                async for chunk in request.stream():
                    raw += chunk
                    if len(raw) > self.max_body:  # chunked, or more than declared
                        raise _Refused(self._too_large())
        except TimeoutError:
            message = f"request body not received within {self.body_timeout:g} s"
            raise _Refused(_refused(408, "body_timeout", message, headers=_CLOSE)) from None
        except ClientDisconnect:
            raise _Refused(_refused(400, "bad_request", "incomplete request")) from None
        try:
            data = load_json_bounded(bytes(raw).decode("utf-8"))
        except UnicodeDecodeError:
            raise _Refused(_refused(400, "bad_request", "the body is not UTF-8 JSON")) from None
        except ContentError as exc:
            message = f"the body is not valid JSON: {exc.message}"
            raise _Refused(_refused(400, "bad_request", message)) from None
        if not isinstance(data, dict):
            raise _Refused(_refused(400, "bad_request", "the body must be a JSON object"))
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            message = f"unknown field {unknown[0][:80]!r}: expected bot_id, config, status"
            raise _Refused(_refused(400, "bad_request", message))
        return data

    def _too_large(self) -> Reply:
        return _refused(413, "too_large", f"the body is over {self.max_body} bytes", headers=_CLOSE)

    # --- running a write ----------------------------------------------------------------------

    async def _run(self, work: Callable[[], WriteOutcome]) -> Reply:
        leader = self.standby()
        if leader is not None:
            return _refused(
                409,
                "standby",
                f"this daemon is an HA standby: send writes to the leader ({leader})",
                leader=leader,
            )
        if self._pending >= MAX_PENDING_WRITES:
            return _refused(
                429,
                "busy",
                f"{MAX_PENDING_WRITES} writes are waiting already: retry shortly",
                headers={"Retry-After": "1"},
            )
        if self._git is None:
            self._git, self._checks = anyio.CapacityLimiter(1), anyio.CapacityLimiter(2)
        self._pending += 1
        try:
            outcome = await anyio.to_thread.run_sync(work, limiter=self._git)
        except RegistryValidationError as exc:
            return _refused(
                422,
                "invalid",
                "the registry would not validate with this change: nothing was committed",
                findings=[_finding(f) for f in exc.findings],
            )
        except BotExistsError as exc:
            return _refused(409, "exists", str(exc))
        except HeadRejectedError as exc:
            return _refused(409, "head_rejected", str(exc))
        except WriteConflictError as exc:
            return _refused(409, "conflict", str(exc), headers={"Retry-After": "1"})
        except BotNotFoundError as exc:
            return _refused(404, "not_found", str(exc))
        except SourceError as exc:
            return _refused(502, "source", str(exc))
        finally:
            self._pending -= 1
        self.wake()
        applied = await self._applied(outcome.commit)
        body: dict[str, Any] = {"bot_id": outcome.bot_id}
        if outcome.action == "deleted":
            body["deleted"] = True
        else:
            body.update(config=outcome.config, status=outcome.status)
        body.update(commit=outcome.commit, applied=applied)
        code = 202 if not applied else 201 if outcome.action == "created" else 200
        headers = {"X-Botreg-Commit": outcome.commit}
        if outcome.action == "created":
            headers["Location"] = f"/bots/{outcome.bot_id}"
        return Reply(code, body, headers)

    async def _applied(self, commit: str) -> bool:
        """True once the daemon applied `commit` (or a later commit that has it)."""
        deadline = anyio.current_time() + self.apply_wait
        while True:
            if await anyio.to_thread.run_sync(self.serves, commit, limiter=self._checks):
                return True
            if anyio.current_time() >= deadline:
                return False
            await anyio.sleep(0.1)


def _config(body: dict[str, Any], *, required: bool) -> tuple[dict[str, Any] | None, str | None]:
    """The body's config and status, checked: (config or None, status or None)."""
    config = body.get("config")
    if config is None and required:
        raise _Refused(_refused(400, "bad_request", "config: a JSON object is required"))
    if config is not None and not isinstance(config, dict):
        raise _Refused(_refused(400, "bad_request", "config must be a JSON object"))
    status = body.get("status")
    if status is None and config is not None and "status" in config:
        status = config["status"]
    if status is not None and status not in _STATUSES:
        raise _Refused(_refused(400, "bad_request", "status must be 'active' or 'inactive'"))
    if config is None and status is None:
        raise _Refused(_refused(400, "bad_request", "give config, status, or both"))
    if config is not None:
        config = {k: v for k, v in config.items() if k != "status"}
        masked = _masked_key(config)
        if masked is not None:
            raise _Refused(
                _refused(
                    400,
                    "masked_value",
                    f"config.{masked} holds {MASK!r}, the mask GET /bots shows for secrets: "
                    "a config read from GET /bots (or HTTPRegistryBackend.get_config) is "
                    "resolved for the daemon's environment and masked, and writing it back "
                    "would commit the mask and resolved values into git. Send the stored "
                    "config (as in the repository, with its ${VAR} and $resource "
                    "references); nothing was written",
                )
            )
    return config, status


def _masked_key(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string holding the mask, else None (bounded: the
    body is already limited in size and depth)."""
    if isinstance(value, str):
        return path or "(value)" if MASK in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _masked_key(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found[:200]
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _masked_key(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _finding(finding: Any) -> dict[str, Any]:
    return {
        "path": finding.path,
        "line": finding.line,
        "column": finding.column,
        "code": finding.code,
        "severity": str(finding.severity),
        "message": finding.message,
    }
