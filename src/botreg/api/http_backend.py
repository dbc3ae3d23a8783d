"""A RegistryBackend over a daemon's HTTP API (`/bots`): reads, and writes when allowed.

Applications on hosts without the daemon's data dir read the bots a daemon
serves (any of several: leader or standby). With the daemon's `--allow-writes`
`register`, `update`, `deactivate` and `unregister` send the seed's `POST /bots`,
`PUT` and `DELETE /bots/{id}`: each becomes a validated commit the daemon pushes
to the registry repository (see docs/http-writes.md); the next reads ask for
that commit (`?at=`), so a client reads its own writes. A refused write raises:
`RegistryValidationError` with the findings (422), `RegistryWriteError` otherwise
(403 writes off, 409 an HA standby or a lost race...). With `consistent_with=<a
RedisEventFollower>` every read asks for the commit the follower last saw
applied (`?at=<commit>`): a config fetched after an invalidation is never
older than the change that caused it (a daemon that has not applied it yet
waits for it up to 5 s). When the daemon still answers 409 (the commit is not
there: a forged or far-ahead event), one warning per commit is logged and the
read is made again without `at`: a bad event delays reads, never breaks them.

httpx is imported when the backend is initialized, so `import botreg.api`
stays light.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from typing import Any, Protocol
from urllib.parse import quote

from botreg.api.http_errors import RegistryWriteError, UnknownBotError, write_refusal
from botreg.api.models import Registration, RegistrationStatus
from botreg.api.redis_follower import is_commit_id
from botreg.errors import BotregError, UsageError
from botreg.secrets import redact_url, remember_secret, split_url_credentials

__all__ = ["HTTPRegistryBackend", "RegistryWriteError", "UnknownBotError"]

COMMIT_HEADER = "X-Botreg-Commit"
logger = logging.getLogger("botreg.api")
_WARNED_COMMITS = 128  # commits whose 409 was warned about, remembered (bounded)


class _Applied(Protocol):
    applied_commit: str


class HTTPRegistryBackend:
    """Reads bots from a daemon's `/bots`; writes through it when it allows them.

    `exists`, `list_ids` and `count` see active bots only, `list_all` every bot
    (the seed's semantics).

    Args:
        base_url: The daemon's base URL (e.g. `http://botreg:8080`). User info in
            it is sent as Basic auth, never logged.
        token: The daemon's API token (`--api-token-file`), sent as Bearer.
        auth_token: The seed's name for `token` (give one of them).
        auth_header: The whole Authorization value instead (`"Bearer abc"`, as
            the seed's documentation writes it).
        read_only: Refuse every write here, before any request (the seed's flag).
        consistent_with: An object with `applied_commit` (a RedisEventFollower):
            each read asks for at least that commit (a full commit id; anything
            else is not sent). A 409 for it (not applied there after the
            daemon's wait) logs one warning per commit and the read is made
            again without it, answered from the daemon's served commit.
        timeout: Seconds per request (the daemon waits up to 5 s for `at`, and up
            to 10 s for a write to be applied).
        transport: An httpx transport (tests, proxies); default: a real one.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        auth_token: str | None = None,
        auth_header: str | None = None,
        consistent_with: _Applied | None = None,
        timeout: float = 30.0,
        transport: Any = None,
        read_only: bool = False,
    ) -> None:
        if token and auth_token and token != auth_token:
            raise UsageError("HTTPRegistryBackend: give token= or auth_token=, not both")
        token = token or auth_token
        if token and auth_header:
            raise UsageError("HTTPRegistryBackend: give a token or auth_header, not both")
        bare, basic = split_url_credentials(base_url.rstrip("/"))
        self.url = bare
        self.read_only = read_only
        self._headers = {"Accept": "application/json"}
        if token:
            remember_secret(token)
            self._headers["Authorization"] = f"Bearer {token}"
        elif auth_header:
            remember_secret(auth_header)
            self._headers["Authorization"] = auth_header
        elif basic:
            remember_secret(basic.split(" ", 1)[1])
            self._headers["Authorization"] = basic
        self.consistent_with = consistent_with
        self.timeout = timeout
        self.transport = transport
        self.commit = ""  # the commit the last answer was served from
        self.written = ""  # the commit of this client's last write, until a read has it
        self._warned: OrderedDict[str, None] = OrderedDict()
        self._client: Any = None

    @property
    def base_url(self) -> str:
        """The daemon's base URL (without credentials)."""
        return self.url

    async def initialize(self) -> None:
        """Open the HTTP client."""
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                headers=self._headers,
                timeout=self.timeout,
                follow_redirects=False,  # a redirect must not carry the token elsewhere
                transport=self.transport,
            )

    async def close(self) -> None:
        """Close the HTTP client."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _get(self, path: str) -> Any:
        """The JSON answer to GET `path`, None for a 404."""
        if self._client is None:
            await self.initialize()
        at = getattr(self.consistent_with, "applied_commit", "") if self.consistent_with else ""
        at = at or self.written  # read your own write, once it is applied
        if at and not is_commit_id(at):
            logger.debug("not asking for commit %r: not a full commit id", at)
            at = ""
        if at in self._warned:  # refused once after the daemon's wait: not again
            at = ""
        where = redact_url(self.url + path)
        response = await self._request(path, where, {"at": at} if at else {})
        if response.status_code == 409 and at:
            # not applied there even after the daemon's wait: a forged or far-ahead
            # event must delay reads, not break them; the served commit answers
            self._warn_once(at, where)
            response = await self._request(path, where, {})
        if response.status_code == 404:
            return None
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if response.status_code != 200:
            detail = body.get("error") if isinstance(body, dict) else None
            raise BotregError(
                f"reading {where} failed: HTTP {response.status_code}"
                f"{': ' + redact_url(str(detail)) if detail else ''}"
            )
        if body is None:
            raise BotregError(f"reading {where} failed: the answer is not JSON")
        self.commit = response.headers.get(COMMIT_HEADER, self.commit)
        if at and at == self.written:
            self.written = ""  # served: later reads need not ask for it
        return body

    async def _request(self, path: str, where: str, params: dict[str, str]) -> Any:
        import httpx

        try:
            return await self._client.get(self.url + path, params=params)
        except httpx.HTTPError as exc:
            raise BotregError(f"reading {where} failed: {redact_url(str(exc))}") from None

    def _warn_once(self, commit: str, where: str) -> None:
        if commit in self._warned:
            return
        self._warned[commit] = None
        while len(self._warned) > _WARNED_COMMITS:
            self._warned.popitem(last=False)
        logger.warning(
            "%s has not applied commit %s (the last botreg.sync.completed seen); "
            "reading its served commit instead (and not asking for that commit again)",
            where,
            commit,
        )

    def _registration(self, item: Any) -> Registration:
        if not isinstance(item, dict) or not isinstance(item.get("bot_id"), str):
            raise BotregError(f"{redact_url(self.url)}/bots answered an item without a bot_id")
        config = item.get("config")
        return Registration(
            item["bot_id"],
            config if isinstance(config, dict) else {},
            str(item.get("status") or RegistrationStatus.ACTIVE),
            commit=str(item.get("commit") or self.commit),
        )

    async def get(self, bot_id: str) -> Registration | None:
        """A bot's registration as the daemon serves it (resolved and masked), or None."""
        item = await self._get("/bots/" + quote(bot_id, safe=""))
        return None if item is None else self._registration(item)

    async def get_config(self, bot_id: str) -> dict[str, Any] | None:
        """A bot's config, or None."""
        registration = await self.get(bot_id)
        return None if registration is None else registration.config

    async def _all(self) -> list[Registration]:
        items = await self._get("/bots")
        if items is None:
            raise BotregError(f"{redact_url(self.url)} serves no /bots")
        if isinstance(items, dict):  # tolerate a wrapped list
            items = items.get("bots", [])
        if not isinstance(items, list):
            raise BotregError(f"{redact_url(self.url)}/bots did not answer a list")
        return [self._registration(item) for item in items]

    async def list_active(self) -> list[Registration]:
        """Every active bot."""
        return [r for r in await self._all() if r.is_active]

    async def list_all(self) -> list[Registration]:
        """Every registration the daemon serves, active or not."""
        return await self._all()

    async def list_ids(self) -> list[str]:
        """The active bots' ids, sorted."""
        return sorted(r.bot_id for r in await self.list_active())

    async def exists(self, bot_id: str) -> bool:
        """True if the daemon serves the bot and it is active."""
        registration = await self.get(bot_id)
        return registration is not None and registration.is_active

    async def count(self) -> int:
        """Number of active bots."""
        return len(await self.list_active())

    # --- writes (the daemon's --allow-writes) -------------------------------------------------

    async def register(
        self, bot_id: str, config: dict[str, Any], status: str = RegistrationStatus.ACTIVE
    ) -> Registration:
        """Create or replace a bot: `POST /bots`, or `PUT` if it exists (one commit).

        Raises:
            RegistryValidationError: the registry would not validate (the findings).
            RegistryWriteError: the daemon refused the write (writes off, HA standby...).
        """
        body = {"bot_id": bot_id, "config": config, "status": status}
        try:
            item = await self._write("POST", "/bots", body, bot_id)
        except RegistryWriteError as exc:
            if exc.code != "exists":
                raise
            item = await self._write("PUT", self._path(bot_id), body, bot_id)
        return self._registration(item)

    async def update(self, bot_id: str, config: dict[str, Any]) -> Registration:
        """Replace a bot's config, keeping its status (`PUT /bots/{id}`).

        Raises:
            UnknownBotError: (a KeyError) if the registry has no such bot.
            RegistryValidationError, RegistryWriteError: as for `register`.
        """
        item = await self._write("PUT", self._path(bot_id), {"config": config}, bot_id)
        return self._registration(item)

    async def deactivate(self, bot_id: str) -> bool:
        """Soft delete: `PUT /bots/{id}` with `status: inactive` only, so the daemon keeps
        the config as committed (never the resolved, masked one a read returns).
        False if the bot does not exist."""
        try:
            await self._write("PUT", self._path(bot_id), {"status": "inactive"}, bot_id)
        except UnknownBotError:
            return False
        return True

    async def unregister(self, bot_id: str) -> bool:
        """Hard delete: `DELETE /bots/{id}` (the file is removed in a commit).
        False if the bot does not exist."""
        try:
            await self._write("DELETE", self._path(bot_id), None, bot_id)
        except UnknownBotError:
            return False
        return True

    async def clear(self) -> None:
        """Refused: over HTTP it would delete every bot of the registry repository."""
        raise RegistryWriteError(
            "HTTPRegistryBackend.clear() is refused: it would delete every bot of the "
            "registry repository through the daemon. Remove bots one by one with "
            "unregister(), or with one reviewed commit (git rm bots/*.yaml)"
        )

    @staticmethod
    def _path(bot_id: str) -> str:
        return "/bots/" + quote(bot_id, safe="")

    async def _write(
        self, method: str, path: str, body: dict[str, Any] | None, bot_id: str
    ) -> dict[str, Any]:
        """Send a write; its JSON answer (2xx), else the matching error."""
        import httpx

        where = redact_url(self.url + path)
        if self.read_only:
            raise RegistryWriteError(f"{method} {where}: this backend is read_only", 0, "read_only")
        if self._client is None:
            await self.initialize()
        try:
            response = await self._client.request(method, self.url + path, json=body)
        except httpx.HTTPError as exc:
            raise BotregError(f"{method} {where} failed: {redact_url(str(exc))}") from None
        try:
            answer = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if response.status_code in (200, 201, 202):
            commit = str(answer.get("commit") or "")
            if is_commit_id(commit):
                self.written = commit
            answer.setdefault("bot_id", bot_id)
            return answer
        raise write_refusal(response.status_code, answer, method, where, bot_id)
