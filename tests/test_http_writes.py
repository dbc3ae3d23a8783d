"""Writes over HTTP as GitOps (issue #12 item 5): POST /bots, PUT and DELETE /bots/{id}.

A real daemon in a thread follows a bare repository (`file://`) and serves its HTTP
API on loopback; each write must be a commit on the source's branch that the
daemon's own sync cycle then applies.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from botreg.cli import main
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import SyncOptions
from botreg.errors import UsageError
from botreg.events.log import read_events
from conftest import git
from helpers import wait_for
from write_helpers import AUTH, ECHO, TOKEN, Served, daemons


@pytest.fixture
def serve(git_registry: Path, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    yield from daemons(git_registry, tmp_path)


def test_post_is_a_pushed_commit_the_daemon_applies(serve: Callable[..., Served]) -> None:
    d = serve()
    before = d.head()
    answer = d.request("POST", "/bots", json={"bot_id": "echo", "config": ECHO})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    commit = body["commit"]
    assert body == {
        "bot_id": "echo",
        "config": ECHO,
        "status": "active",
        "commit": commit,
        "applied": True,
    }
    assert answer.headers["x-botreg-commit"] == commit
    assert answer.headers["location"] == "/bots/echo"
    # a commit on the source's branch, by the configured author, naming the route
    assert d.head() == commit
    assert git(d.source, "rev-parse", f"{commit}^").strip() == before
    log = git(d.source, "log", "-1", "--format=%an <%ae>|%cn|%B", commit)
    assert log.startswith("botreg daemon <botreg@localhost>|botreg daemon|Register bot echo")
    assert "(POST /bots)" in log
    assert git(d.source, "show", "--name-only", "--format=", commit).split() == ["bots/echo.yaml"]
    text = git(d.source, "show", f"{commit}:bots/echo.yaml")
    assert "name: Echo" in text and "status: active" in text
    # applied by the daemon's own cycle: read it back, at that commit
    got = d.request("GET", "/bots/echo", params={"at": commit})
    assert got.status_code == 200 and got.json()["config"]["name"] == "Echo"
    assert commit in d.completed()
    # the write emitted nothing itself: the cycle's usual events announce it
    created = [
        (e["data"]["bot_id"], e["data"]["commit"])
        for e in read_events(d.data / "events.jsonl")
        if e["type"] == "botreg.bot.created" and e["data"]["commit"] == commit
    ]
    assert created == [("echo", commit)]


def test_put_updates_and_deactivates_delete_removes(serve: Callable[..., Served]) -> None:
    d = serve(write_author="Ops Bot <ops@example.com>")
    created = d.request("POST", "/bots", json={"bot_id": "echo", "config": ECHO})
    assert created.status_code == 201
    changed = {**ECHO, "description": "now with a description"}
    put = d.request("PUT", "/bots/echo", json={"config": changed})
    assert put.status_code == 200, put.text
    assert put.json()["status"] == "active" and put.json()["applied"] is True
    assert d.request("GET", "/bots/echo").json()["config"]["description"] == changed["description"]
    author = git(d.source, "log", "-1", "--format=%an <%ae>", put.json()["commit"]).strip()
    assert author == "Ops Bot <ops@example.com>"
    # status alone: the config is kept as the branch has it
    off = d.request("PUT", "/bots/echo", json={"status": "inactive"})
    assert off.status_code == 200, off.text
    assert off.json()["config"] == changed and off.json()["status"] == "inactive"
    assert d.request("GET", "/bots/echo").json()["status"] == "inactive"
    # the seed's PUT body (bot_id repeated) is accepted
    seed_body = {"bot_id": "echo", "config": ECHO, "status": "active"}
    back = d.request("PUT", "/bots/echo", json=seed_body)
    assert back.status_code == 200 and back.json()["status"] == "active"
    gone = d.request("DELETE", "/bots/echo")
    assert gone.status_code == 200, gone.text
    assert gone.json() == {
        "bot_id": "echo",
        "deleted": True,
        "commit": gone.json()["commit"],
        "applied": True,
    }
    assert "bots/echo.yaml" not in git(d.source, "ls-tree", "-r", "--name-only", "main")
    assert d.request("GET", "/bots/echo").status_code == 404
    # unknown bots: JSON 404; an existing one cannot be POSTed again: 409
    for method in ("PUT", "DELETE"):
        missing = d.request(method, "/bots/nobody", json={"config": ECHO})
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    again = d.request("POST", "/bots", json={"bot_id": "product-guide", "config": ECHO})
    assert again.status_code == 409 and again.json()["code"] == "exists"


def test_an_invalid_config_is_422_with_findings_and_commits_nothing(
    serve: Callable[..., Served],
) -> None:
    d = serve()
    before = d.head()
    bad = {"name": "Broken", "llm": {"provider": "echo"}, "temperature_typo": 3}
    answer = d.request("POST", "/bots", json={"bot_id": "broken", "config": bad})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] == "invalid" and body["findings"]
    finding = body["findings"][0]
    assert set(finding) == {"path", "line", "column", "code", "severity", "message"}
    assert finding["path"] == "bots/broken.yaml" and finding["line"] >= 1
    assert finding["code"].startswith("BR") and "temperature_typo" in json.dumps(body)
    assert d.head() == before  # nothing committed, nothing pushed
    put = d.request("PUT", "/bots/product-guide", json={"config": {"name": ""}})
    assert put.status_code == 422 and d.head() == before


def test_writes_need_the_token_and_are_off_by_default(serve: Callable[..., Served]) -> None:
    d = serve(allow_writes=False)
    before = d.head()
    unauthenticated = d.request("POST", "/bots", auth=False, json={"bot_id": "x", "config": ECHO})
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    assert "error" in unauthenticated.json()
    for method, path in (("POST", "/bots"), ("PUT", "/bots/echo"), ("DELETE", "/bots/echo")):
        off = d.request(method, path, json={"bot_id": "echo", "config": ECHO})
        assert off.status_code == 403, (method, off.text)
        assert off.json()["code"] == "writes_disabled"
        assert "--allow-writes" in off.json()["error"]
    # a large body is refused unread with the same answer, not a 413
    big = d.request(
        "POST",
        "/bots",
        content=b"{" + b" " * 100_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert big.status_code == 403 and big.headers["connection"] == "close"
    assert d.head() == before


def test_every_error_status_is_json(serve: Callable[..., Served]) -> None:
    d = serve()
    unknown = d.request("GET", "/nowhere")
    assert unknown.status_code == 404 and unknown.json() == {"error": "not found"}
    for method, path, allow in (
        ("DELETE", "/bots", "GET, HEAD, POST"),
        ("PATCH", "/bots/echo", "GET, HEAD, PUT, DELETE"),
        ("POST", "/status", "GET, HEAD"),
    ):
        refused = d.request(method, path)
        assert refused.status_code == 405, (method, path)
        assert refused.json() == {"error": "method not allowed"}
        assert set(refused.headers["allow"].split(", ")) == set(allow.split(", "))
    big = d.request(
        "POST",
        "/bots",
        content=b'{"a": "' + b"x" * (1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert big.status_code == 413 and big.json()["code"] == "too_large"
    text = d.request("POST", "/bots", content=b"bot_id=x", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and text.json()["code"] == "unsupported_media_type"
    for raw in (b"{", b"[1]", b'{"bot_id": "x", "config": {}, "extra": 1}', b"[" * 100_000):
        bad = d.request("POST", "/bots", content=raw, headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and bad.json()["code"] == "bad_request", raw[:20]
    for body in ({"bot_id": "x"}, {"bot_id": "x", "config": []}, {"bot_id": 3, "config": {}}):
        assert d.request("POST", "/bots", json=body).status_code == 400
    status = d.request("POST", "/bots", json={"bot_id": "x", "config": ECHO, "status": "gone"})
    assert status.status_code == 400 and "status" in status.json()["error"]
    assert d.request("PUT", "/bots/echo", json={}).status_code == 400


HOSTILE = ["../registry", "a/b", "echo\n", "echo\x1b[31m", "Echo", "x" * 64, "\u00e9", ".hidden"]


def test_a_hostile_bot_id_is_refused(serve: Callable[..., Served]) -> None:
    d = serve()
    before = d.head()
    for bot_id in HOSTILE:
        posted = d.request("POST", "/bots", json={"bot_id": bot_id, "config": ECHO})
        assert posted.status_code == 400 and posted.json()["code"] == "invalid_bot_id"
        assert "\x1b" not in posted.text and "\n" not in posted.json()["error"]
        path = "/bots/" + quote(bot_id, safe="")  # the daemon decodes it: ../ arrives as is
        for method in ("PUT", "DELETE"):
            answer = d.request(method, path, json={"config": ECHO})
            assert answer.status_code == 400, (bot_id, method, answer.text)
            assert answer.json()["code"] == "invalid_bot_id"
    assert d.head() == before


def test_concurrent_writes_all_land(serve: Callable[..., Served]) -> None:
    d = serve()
    before = d.head()
    answers: list[Any] = []

    def post(n: int) -> None:
        with httpx.Client(base_url=d.url, timeout=120) as client:
            answers.append(
                client.post("/bots", headers=AUTH, json={"bot_id": f"bot-{n}", "config": ECHO})
            )

    threads = [threading.Thread(target=post, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # one write at a time (the daemon's lock): every one lands, in some order
    assert all(a.status_code in (201, 202) for a in answers), [a.text for a in answers]
    landed = {a.json()["bot_id"] for a in answers}
    assert landed == {f"bot-{n}" for n in range(4)}
    tree = git(d.source, "ls-tree", "-r", "--name-only", "main")
    assert {f"bots/{b}.yaml" for b in landed} <= set(tree.split())
    commits = git(d.source, "rev-list", f"{before}..main").split()
    assert len(commits) == len(landed)  # one commit per write that landed, none lost


def test_a_push_race_is_retried_on_the_new_head(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    """Someone pushed to the branch since the daemon's last fetch: both writes stay."""
    d = serve()
    clone = tmp_path / "someone"
    git(tmp_path, "clone", "-q", str(d.source), str(clone))
    (clone / "README-someone.md").write_text("pushed by a person\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "a person's commit")
    git(clone, "push", "-q", "origin", "main")
    theirs = d.head()
    answer = d.request("POST", "/bots", json={"bot_id": "echo", "config": ECHO})
    assert answer.status_code == 201
    assert git(d.source, "rev-parse", f"{answer.json()['commit']}^").strip() == theirs


def test_allow_writes_needs_a_token_and_the_http_surface(tmp_path: Path) -> None:
    sync = SyncOptions("/nonexistent", data_dir=tmp_path / "data")
    with pytest.raises(UsageError, match="--api-token-file"):
        Daemon(sync, DaemonOptions(allow_writes=True))
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with pytest.raises(UsageError, match="HTTP surface"):
        Daemon(sync, DaemonOptions(allow_writes=True, listen=None, api_token_file=token))
    with pytest.raises(UsageError, match="NAME <EMAIL>"):
        Daemon(sync, DaemonOptions(allow_writes=True, api_token_file=token, write_author="me"))
    code = main(
        [
            "sync",
            "--source",
            str(tmp_path),
            "--data-dir",
            str(tmp_path / "d"),
            "--allow-writes",
            "--once",
        ]
    )
    assert code == 2


def test_a_push_race_in_the_middle_of_a_write_is_retried(
    serve: Callable[..., Served], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer pushes between the daemon's fetch and its push: the push is
    refused (non-fast-forward), the write is made again on the new head, both stay."""
    from botreg.daemon.writes import GitOpsWriter

    d = serve()
    clone = tmp_path / "someone"
    git(tmp_path, "clone", "-q", str(d.source), str(clone))
    amend = GitOpsWriter._amend
    raced: list[str] = []

    def racing(self: GitOpsWriter, message: str) -> None:
        amend(self, message)
        if not raced:  # once: someone else's commit lands first
            git(clone, "pull", "-q", "--ff-only")
            (clone / f"note-{len(raced)}.md").write_text("a person's change\n")
            git(clone, "add", "-A")
            git(clone, "commit", "-q", "-m", "a person's commit")
            git(clone, "push", "-q", "origin", "main")
            raced.append(git(clone, "rev-parse", "HEAD").strip())

    monkeypatch.setattr(GitOpsWriter, "_amend", racing)
    answer = d.request("POST", "/bots", json={"bot_id": "echo", "config": ECHO})
    assert answer.status_code == 201, answer.text
    commit = answer.json()["commit"]
    assert git(d.source, "rev-parse", f"{commit}^").strip() == raced[0]
    assert d.head() == commit


def test_a_write_that_always_loses_the_race_is_409_and_writes_nothing(
    serve: Callable[..., Served], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botreg.daemon.writes import PUSH_ATTEMPTS, GitOpsWriter

    d = serve()
    clone = tmp_path / "someone"
    git(tmp_path, "clone", "-q", str(d.source), str(clone))
    amend = GitOpsWriter._amend
    pushes: list[int] = []

    def racing(self: GitOpsWriter, message: str) -> None:
        amend(self, message)
        git(clone, "pull", "-q", "--ff-only")
        (clone / f"note-{len(pushes)}.md").write_text("a person's change\n")
        git(clone, "add", "-A")
        git(clone, "commit", "-q", "-m", "a person's commit")
        git(clone, "push", "-q", "origin", "main")
        pushes.append(1)

    monkeypatch.setattr(GitOpsWriter, "_amend", racing)
    answer = d.request("POST", "/bots", json={"bot_id": "echo", "config": ECHO})
    assert answer.status_code == 409 and answer.json()["code"] == "conflict", answer.text
    assert answer.headers["retry-after"] == "1"
    assert len(pushes) == PUSH_ATTEMPTS
    assert "bots/echo.yaml" not in git(d.source, "ls-tree", "-r", "--name-only", "main")


def test_a_config_read_back_with_its_mask_is_refused_and_nothing_is_committed(
    serve: Callable[..., Served],
) -> None:
    """Observed: `cfg = await http.get_config(x); cfg[...] = ...; await http.update(x, cfg)`
    (the seed's read-edit-write) committed the daemon's resolved view: secrets as the
    literal mask and resolved ${VAR} values, into git."""
    d = serve()
    before = d.head()
    leaked = {**ECHO, "description": "***db/x | /root"}
    answer = d.request("PUT", "/bots/product-guide", json={"config": leaked})
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == "masked_value" and "config.description" in body["error"]
    nested = {**ECHO, "metadata": {"owners": ["a", "x***"]}}
    answer = d.request("POST", "/bots", json={"bot_id": "echo", "config": nested})
    assert answer.json()["code"] == "masked_value" and "metadata.owners[1]" in answer.text
    assert d.head() == before


def test_a_write_on_a_rejected_head_is_refused_not_committed_for_ever_unapplied(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    """Observed: with an invalid commit at the head (pushed past the hook), writes were
    committed on top of it and answered 202: the daemon rejects every such commit."""
    d = serve()
    clone = tmp_path / "someone"
    git(tmp_path, "clone", "-q", str(d.source), str(clone))
    (clone / "bots" / "ext.yaml").write_text("name: [\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "a broken bot, pushed with --no-verify")
    git(clone, "push", "-q", "origin", "main")
    broken = d.head()
    d.daemon.wake()
    wait_for(lambda: d.daemon.syncer.status.doc.get("rejected_commit") == broken)  # type: ignore[union-attr]
    answer = d.request("POST", "/bots", json={"bot_id": "echo", "config": ECHO})
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "head_rejected" and broken[:12] in answer.text
    assert d.head() == broken  # nothing committed on top of it
