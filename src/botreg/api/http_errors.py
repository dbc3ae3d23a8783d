"""The errors of `HTTPRegistryBackend`'s writes, from the daemon's JSON answers.

A 422 becomes the `RegistryValidationError` that `GitRegistryBackend` raises for
the same change (its findings rebuilt from the answer), a 404 `UnknownBotError`
(a KeyError, as the seed raises), anything else `RegistryWriteError` with the
HTTP status and the daemon's error code (see docs/http-writes.md).
"""

from __future__ import annotations

from typing import Any

from botreg.api.git_backend import RegistryValidationError
from botreg.api.models import BotNotFoundError
from botreg.errors import BotregError
from botreg.secrets import redact_url

__all__ = ["RegistryWriteError", "UnknownBotError", "write_refusal"]


class RegistryWriteError(BotregError):
    """A write the daemon refused (or could not make): its HTTP status and error code.

    Attributes:
        status: the HTTP status (403 writes off, 409 conflict or HA standby, ...).
        code: the daemon's error code (`writes_disabled`, `exists`, `conflict`, ...).
    """

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class UnknownBotError(RegistryWriteError, BotNotFoundError):
    """`update` of a bot the registry does not have: the registry's BotNotFoundError
    (a KeyError, as the seed raises), with the HTTP status and code."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def write_refusal(
    status: int, answer: dict[str, Any], method: str, where: str, bot_id: str
) -> BotregError:
    """The error for a refused write: findings for a 422, the daemon's words otherwise.

    Args:
        status: the HTTP status.
        answer: the JSON error body (`error`, `code`, `findings`), {} if none.
        method: the request's method, for the message.
        where: the URL (credentials removed), for the message.
        bot_id: the bot written.

    Returns:
        RegistryValidationError (422, with the findings), UnknownBotError (404), or
        RegistryWriteError.
    """
    from botreg.validation.findings import Finding, Severity

    code = str(answer.get("code") or "")
    detail = redact_url(str(answer.get("error") or f"HTTP {status}"))
    findings = answer.get("findings")
    if status == 422 and isinstance(findings, list):
        return RegistryValidationError(
            bot_id,
            [
                Finding(
                    path=str(f.get("path", "")),
                    code=str(f.get("code", "")),
                    message=str(f.get("message", "")),
                    line=_number(f.get("line")),
                    column=_number(f.get("column")),
                    severity=Severity.WARNING if f.get("severity") == "warning" else Severity.ERROR,
                )
                for f in findings
                if isinstance(f, dict)
            ],
        )
    message = f"{method} {where} refused: HTTP {status}: {detail}"
    if status == 404:
        return UnknownBotError(f"bot {bot_id!r} is not registered ({message})", status, code)
    if status == 403 and code == "writes_disabled":
        message += " (the daemon serves reads only)"
    elif status == 401:
        message += " (give the daemon's API token: token= or auth_token=)"
    return RegistryWriteError(message, status, code)
