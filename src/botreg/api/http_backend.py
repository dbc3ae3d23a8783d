"""A read-only RegistryBackend over a daemon's HTTP read API (`/bots`).

Applications on hosts without the daemon's data dir read the bots a daemon
serves (any of several: leader or standby). With `consistent_with=<a
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

from botreg.api.models import Registration, RegistrationStatus
from botreg.api.redis_follower import is_commit_id
from botreg.errors import BotregError
from botreg.secrets import redact_url, remember_secret, split_url_credentials

__all__ = ["HTTPRegistryBackend"]

COMMIT_HEADER = "X-Botreg-Commit"
logger = logging.getLogger("botreg.api")
_WARNED_COMMITS = 128  # commits whose 409 was warned about, remembered (bounded)


class _Applied(Protocol):
    applied_commit: str


class HTTPRegistryBackend:
    """Reads bots from a daemon's `/bots` (read-only: writes go through git).

    Args:
        url: The daemon's base URL (e.g. `http://botreg:8080`). User info in it
            is sent as Basic auth, never logged.
        token: The daemon's API token (`--api-token-file`), sent as Bearer.
        consistent_with: An object with `applied_commit` (a RedisEventFollower):
            each read asks for at least that commit (a full commit id; anything
            else is not sent). A 409 for it (not applied there after the
            daemon's wait) logs one warning per commit and the read is made
            again without it, answered from the daemon's served commit.
        timeout: Seconds per request (the daemon waits up to 5 s for `at`).
        transport: An httpx transport (tests, proxies); default: a real one.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        consistent_with: _Applied | None = None,
        timeout: float = 10.0,
        transport: Any = None,
    ) -> None:
        bare, basic = split_url_credentials(url.rstrip("/"))
        self.url = bare
        self._headers = {"Accept": "application/json"}
        if token:
            remember_secret(token)
            self._headers["Authorization"] = f"Bearer {token}"
        elif basic:
            remember_secret(basic.split(" ", 1)[1])
            self._headers["Authorization"] = basic
        self.consistent_with = consistent_with
        self.timeout = timeout
        self.transport = transport
        self.commit = ""  # the commit the last answer was served from
        self._warned: OrderedDict[str, None] = OrderedDict()
        self._client: Any = None

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

    async def list_ids(self) -> list[str]:
        """Every bot id (active or not), sorted."""
        return sorted(r.bot_id for r in await self._all())

    async def exists(self, bot_id: str) -> bool:
        """True if the daemon serves the bot."""
        return await self.get(bot_id) is not None

    async def count(self) -> int:
        """Number of bots."""
        return len(await self._all())

    def _read_only(self) -> BotregError:
        return BotregError(
            "HTTPRegistryBackend is read-only: change bots with a commit to the registry "
            "repository (or GitRegistryBackend on a clone)"
        )

    async def register(
        self, bot_id: str, config: dict[str, Any], status: str = RegistrationStatus.ACTIVE
    ) -> Registration:
        """Refused: the registry changes through git."""
        raise self._read_only()

    async def deactivate(self, bot_id: str) -> bool:
        """Refused: the registry changes through git."""
        raise self._read_only()

    async def unregister(self, bot_id: str) -> bool:
        """Refused: the registry changes through git."""
        raise self._read_only()
