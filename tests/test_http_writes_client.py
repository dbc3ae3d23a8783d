"""HTTPRegistryBackend's writes through a real daemon (issue #12 item 4): the seed's
register / update / deactivate / unregister round trip, its active-only reads, and
the errors a refused write raises."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from botreg.api.factory import create_registry_backend
from botreg.api.git_backend import RegistryValidationError
from botreg.api.http_backend import HTTPRegistryBackend
from botreg.api.http_errors import RegistryWriteError, UnknownBotError
from botreg.api.models import BotNotFoundError
from botreg.errors import UsageError
from conftest import git
from write_helpers import ECHO, TOKEN, Served, daemons


@pytest.fixture
def serve(git_registry: Path, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    yield from daemons(git_registry, tmp_path)


def test_the_seed_round_trip_through_the_daemon(serve: Callable[..., Served]) -> None:
    d = serve()

    async def scenario() -> None:
        # the seed's factory and keys: base_url, auth_token, timeout
        backend = create_registry_backend(
            "http", {"base_url": d.url, "auth_token": TOKEN, "timeout": 60}
        )
        assert isinstance(backend, HTTPRegistryBackend)
        await backend.initialize()
        try:
            active_before = await backend.count()
            registration = await backend.register("echo", ECHO)
            assert (registration.bot_id, registration.status) == ("echo", "active")
            assert registration.config == ECHO and registration.commit == d.head()
            # read your own write: the next read asks for that commit, then stops asking
            assert backend.written == registration.commit
            assert (await backend.get_config("echo") or {})["name"] == "Echo"
            assert backend.written == "" and backend.commit == registration.commit
            assert await backend.exists("echo") and await backend.count() == active_before + 1
            # register again: the seed's upsert (POST answers exists, then PUT)
            again = await backend.register("echo", {**ECHO, "description": "v2"})
            assert again.config["description"] == "v2"
            updated = await backend.update("echo", {**ECHO, "description": "v3"})
            assert updated.status == "active"
            got = await backend.get("echo")
            assert got is not None and got.config["description"] == "v3"
            # deactivate: the commit changes the status only, the config stays as written
            assert await backend.deactivate("echo")
            text = git(d.source, "show", "main:bots/echo.yaml")
            assert "status: inactive" in text and "description: v3" in text
            assert not await backend.exists("echo")  # active only, as the seed
            assert "echo" not in await backend.list_ids()
            assert await backend.count() == active_before
            every = {r.bot_id: r.status for r in await backend.list_all()}
            assert every["echo"] == "inactive"
            assert "echo" not in {r.bot_id for r in await backend.list_active()}
            # hard delete
            assert await backend.unregister("echo")
            assert await backend.get("echo") is None
            assert not await backend.unregister("echo") and not await backend.deactivate("echo")
            with pytest.raises(UnknownBotError) as missing:
                await backend.update("echo", ECHO)
            assert isinstance(missing.value, BotNotFoundError) and "echo" in str(missing.value)
            assert isinstance(missing.value, KeyError)
            with pytest.raises(RegistryWriteError, match="clear"):
                await backend.clear()
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_refused_writes_raise_clear_errors(serve: Callable[..., Served]) -> None:
    writable = serve()
    read_only = serve(allow_writes=False)
    before = writable.head()

    async def scenario() -> None:
        backend = HTTPRegistryBackend(writable.url, auth_header=f"Bearer {TOKEN}")
        try:
            bad = {"name": "Broken", "llm": {"provider": "echo"}, "typo_key": 1}
            with pytest.raises(RegistryValidationError) as invalid:
                await backend.register("broken", bad)
            finding = invalid.value.findings[0]
            assert finding.path == "bots/broken.yaml" and finding.code.startswith("BR")
            assert "typo_key" in str(invalid.value)
        finally:
            await backend.close()
        off = HTTPRegistryBackend(read_only.url, TOKEN)
        try:
            with pytest.raises(RegistryWriteError, match="--allow-writes") as refused:
                await off.register("echo", ECHO)
            assert (refused.value.status, refused.value.code) == (403, "writes_disabled")
            assert await off.count() >= 1  # reads still work
        finally:
            await off.close()
        anonymous = HTTPRegistryBackend(writable.url)
        try:
            with pytest.raises(RegistryWriteError, match="API token") as unauthorized:
                await anonymous.unregister("product-guide")
            assert unauthorized.value.status == 401
        finally:
            await anonymous.close()
        local = HTTPRegistryBackend(writable.url, TOKEN, read_only=True)
        with pytest.raises(RegistryWriteError, match="read_only"):
            await local.register("echo", ECHO)
        await local.close()

    asyncio.run(scenario())
    assert writable.head() == before  # nothing was committed


def test_the_constructor_takes_the_seeds_spellings_and_never_two_tokens() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json=[{"bot_id": "a", "config": {}, "status": "active"}])

    async def scenario(**kwargs: Any) -> None:
        backend = HTTPRegistryBackend(
            "http://daemon:8080", transport=httpx.MockTransport(answer), **kwargs
        )
        assert await backend.list_ids() == ["a"]
        await backend.close()

    asyncio.run(scenario(auth_token="tok-123456"))
    asyncio.run(scenario(token="tok-123456"))
    asyncio.run(scenario(auth_header="Bearer hdr-123456"))
    assert seen == ["Bearer tok-123456", "Bearer tok-123456", "Bearer hdr-123456"]
    with pytest.raises(UsageError):
        HTTPRegistryBackend("http://d", token="a-123456", auth_token="b-123456")
    with pytest.raises(UsageError):
        HTTPRegistryBackend("http://d", auth_token="a-123456", auth_header="Bearer b-123456")
    assert HTTPRegistryBackend("http://d/").base_url == "http://d"


def test_a_hostile_daemon_answer_is_an_error_not_a_crash() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        findings = [{"path": "x", "line": "NaN", "column": None}, "not a finding"]
        return httpx.Response(422, json={"error": "bad", "findings": findings})

    async def scenario() -> None:
        backend = HTTPRegistryBackend("http://d", transport=httpx.MockTransport(answer))
        with pytest.raises(RegistryValidationError) as refused:
            await backend.register("echo", ECHO)
        assert [f.line for f in refused.value.findings] == [0]
        await backend.close()

    asyncio.run(scenario())
