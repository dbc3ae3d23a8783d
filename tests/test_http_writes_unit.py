"""The write routes' refusals that need no git: HA standby, a crashing writer, the
queue bound, and the JSON shape of Starlette's own errors (issue #12 item 5)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from botreg.daemon.http import DaemonHTTP
from botreg.daemon.write_api import MAX_PENDING_WRITES, WriteAPI
from botreg.daemon.writes import GitOpsWriter, WriteOutcome, parse_author
from botreg.errors import UsageError

ECHO = {"name": "Echo", "llm": {"provider": "echo"}}
AUTH = {"Authorization": "Bearer let-me-in"}


class FakeWriter(GitOpsWriter):
    """A writer whose git work is a callable (no repository)."""

    def __init__(self, work: Any) -> None:
        super().__init__(Path("/nonexistent"), "file:///nonexistent", "main")
        self.work = work

    def create(self, bot_id: str, config: dict[str, Any], status: str) -> WriteOutcome:
        return self.work(bot_id)  # type: ignore[no-any-return]


def http(writes: WriteAPI | None) -> DaemonHTTP:
    return DaemonHTTP(
        "127.0.0.1",
        0,
        status=lambda: {},
        metrics=lambda: "",
        wake=lambda: None,
        query=lambda d, t, k: [],
        readiness=lambda: (True, []),
        hook_secret=lambda: None,
        branch="main",
        bots=lambda: [],
        api_token=lambda: b"let-me-in",
        writes=writes,
    )


def post(server: DaemonHTTP) -> Any:
    with TestClient(server.app, raise_server_exceptions=False) as client:
        return client.post("/bots", headers=AUTH, json={"bot_id": "echo", "config": ECHO})


def test_an_ha_standby_refuses_writes_naming_the_leader() -> None:
    done: list[str] = []
    writes = WriteAPI(
        FakeWriter(done.append),
        wake=lambda: None,
        serves=lambda c: True,
        standby=lambda: "HA group g, lease holder host-a:12:ab",
    )
    server = http(writes)
    try:
        answer = post(server)
    finally:
        server.stop()
    assert answer.status_code == 409 and answer.json()["code"] == "standby"
    assert answer.json()["leader"] == "HA group g, lease holder host-a:12:ab"
    assert done == []  # nothing was written


def test_a_crashing_writer_is_a_json_500_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def crash(bot_id: str) -> WriteOutcome:
        raise RuntimeError("disk on fire")

    server = http(WriteAPI(FakeWriter(crash), wake=lambda: None, serves=lambda c: True))
    try:
        answer = post(server)
    finally:
        server.stop()
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error (RuntimeError)"}
    assert "Traceback" not in caplog.text


def test_writes_beyond_the_queue_bound_are_429() -> None:
    release = threading.Event()
    applied: list[str] = []

    def slow(bot_id: str) -> WriteOutcome:
        release.wait(30)
        return WriteOutcome(bot_id, "c" * 40, "created", ECHO, "active")

    writes = WriteAPI(
        FakeWriter(slow), wake=lambda: None, serves=lambda c: applied.append(c) or True
    )
    server = http(writes)
    server.start()
    answers: list[int] = []
    try:
        import httpx

        url = f"http://{server.address}"

        def one() -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                answers.append(
                    client.post(
                        "/bots", headers=AUTH, json={"bot_id": "e", "config": ECHO}
                    ).status_code
                )

        threads = [threading.Thread(target=one) for _ in range(MAX_PENDING_WRITES + 2)]
        for thread in threads:
            thread.start()
        deadline = threading.Event()
        while len(answers) < 2 and not deadline.wait(0.05):
            pass
        release.set()
        for thread in threads:
            thread.join(60)
    finally:
        server.stop()
    assert sorted(answers) == [201] * MAX_PENDING_WRITES + [429, 429]


def test_starlette_errors_are_json_and_401_says_how() -> None:
    server = http(None)
    try:
        with TestClient(server.app, raise_server_exceptions=False) as client:
            no_token = client.post("/bots", json={})
            assert no_token.status_code == 401 and "Bearer" in no_token.json()["error"]
            missing = client.get("/nowhere/at/all", headers=AUTH)
            assert missing.status_code == 404 and missing.json() == {"error": "not found"}
            wrong = client.request("PATCH", "/bots", headers=AUTH)
            assert wrong.status_code == 405 and wrong.headers["allow"]
            assert wrong.json() == {"error": "method not allowed"}
            off = client.delete("/bots/echo", headers=AUTH)
            assert off.status_code == 403 and off.json()["code"] == "writes_disabled"
            # GET of `/bots/echo%0A` is not bot `echo` (the route's `$` matched before \n)
            assert client.get("/bots/echo%0A", headers=AUTH).status_code == 404
    finally:
        server.stop()


def test_the_write_author_must_name_and_address() -> None:
    assert parse_author("Ops Bot <ops@example.com>") == ("Ops Bot", "ops@example.com")
    for bad in ("ops@example.com", "<ops@example.com>", "Ops <a b>", "Ops\n <o@e>"):
        with pytest.raises(UsageError, match="NAME <EMAIL>"):
            parse_author(bad)
