"""The daemon as a whole: loop, triggers, HTTP surface, webhook sink, lock, signals."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import SyncOptions
from botreg.events.log import read_events
from conftest import git
from helpers import wait_for, write
from sync_helpers import commit


def events(data: Path) -> list[dict[str, Any]]:
    return list(read_events(data / "events.jsonl"))


def completed(data: Path) -> list[str]:
    return [e["data"]["to"] for e in events(data) if e["type"] == "botreg.sync.completed"]


class Running:
    """A daemon running in a thread."""

    def __init__(self, source: str, data: Path, **options: Any) -> None:
        self.data = data
        self.daemon = Daemon(
            SyncOptions(source, data_dir=data, allow_env=options.pop("allow_env", ())),
            DaemonOptions(**{"listen": "127.0.0.1:0", **options}),
        )
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.daemon.run()

    @property
    def url(self) -> str:
        return str(wait_for(lambda: self.daemon.http and f"http://{self.daemon.http.address}"))

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                body = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            with exc:
                body, status = exc.read(), exc.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode()

    def stop(self) -> int | None:
        self.daemon.stop()
        self.thread.join(timeout=30)
        return self.code


@pytest.fixture
def running(git_registry: Path, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(**options: Any) -> Running:
        daemon = Running(
            git_registry.as_uri() if not options.get("watch") else str(git_registry),
            tmp_path / "data",
            **options,
        )
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def test_http_surface(
    running: Callable[..., Running],
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = running(interval=3600)
    wait_for(lambda: completed(tmp_path / "data"))
    assert d.get("/healthz") == (200, "ok\n")
    status, ready = d.get("/readyz")
    assert (status, ready) == (200, {"ready": True, "reasons": [], "role": "single"})
    status, doc = d.get("/status")
    head = git(git_registry, "rev-parse", "HEAD").strip()
    assert status == 200 and doc["applied_commit"] == head
    assert set(doc["conditions"]) == {
        "Ready",
        "Reconciling",
        "Stalled",
        "FetchFailed",
        "ValidationFailed",
        "IngestFailed",
    }
    assert doc["domains"]["billing"]["status"] == "ready"
    status, metrics = d.get("/metrics")
    assert 'botreg_sync_cycles_total{result="synced"} 1.0' in metrics
    assert 'botreg_sync_phase_duration_seconds_count{phase="fetch"} 1.0' in metrics
    assert "botreg_chunks_embedded_total 29.0" in metrics
    assert "botreg_last_success_timestamp_seconds " in metrics
    status, found = d.get("/knowledge/billing/query?q=purchase+orders&k=2")
    assert status == 200 and len(found["results"]) == 2
    assert d.get("/knowledge/nope/query?q=x")[0] == 404
    assert d.get("/knowledge/billing/query")[0] == 400
    # the CLI asks the daemon while it holds the data dir
    assert main(["status", "--data-dir", str(tmp_path / "data"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["running"] is True
    code = main(
        [
            "query",
            "--data-dir",
            str(tmp_path / "data"),
            "--repo",
            str(git_registry),
            "--domain",
            "billing",
            "--format",
            "json",
            "purchase orders",
        ]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["results"]


def test_push_hook_triggers_a_sync(
    running: Callable[..., Running], git_registry: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hook-secret\n")
    d = running(interval=3600, webhook_secret_file=secret)
    wait_for(lambda: completed(tmp_path / "data"))
    write(git_registry, "knowledge/billing/h.md", "# H\n\nFrom a hook.\n")
    head = commit(git_registry)
    body = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()

    def post(headers: dict[str, str]) -> int:
        request = urllib.request.Request(d.url + "/hooks/git", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)

    assert post({"X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Event": "push"}) == 401
    assert head not in completed(tmp_path / "data")
    good = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    started = time.monotonic()
    assert post({"X-Hub-Signature-256": good, "X-GitHub-Event": "push"}) == 202
    wait_for(lambda: head in completed(tmp_path / "data"), timeout=10)
    assert time.monotonic() - started < 5
    gitea = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    assert post({"X-Gitea-Signature": gitea, "X-Gitea-Event": "push"}) == 202
    assert post({"X-Gitlab-Token": "hook-secret", "X-Gitlab-Event": "Push Hook"}) == 202
    assert post({"X-Gitlab-Token": "wrong", "X-Gitlab-Event": "Push Hook"}) == 401


def test_watch_syncs_a_local_commit_within_seconds(
    running: Callable[..., Running], git_registry: Path, tmp_path: Path
) -> None:
    running(interval=3600, watch=True)
    wait_for(lambda: completed(tmp_path / "data"))
    time.sleep(0.3)  # the watcher is up
    write(git_registry, "knowledge/product/w.md", "# W\n\nWatched.\n")
    started = time.monotonic()
    head = commit(git_registry)
    wait_for(lambda: head in completed(tmp_path / "data"), timeout=10)
    assert time.monotonic() - started < 5


def test_max_failures_exits_1(tmp_path: Path) -> None:
    daemon = Daemon(
        SyncOptions(str(tmp_path / "missing-repo"), data_dir=tmp_path / "data"),
        DaemonOptions(interval=1, listen=None, max_failures=2),
    )
    started = time.monotonic()
    assert daemon.run() == 1
    assert time.monotonic() - started < 10
    types = [e["type"] for e in events(tmp_path / "data")]
    assert types == ["botreg.sync.failed", "botreg.sync.failed"]


class Receiver:
    """A webhook receiver on 127.0.0.1 that fails its first `failures` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if owner.failures > 0:
                    owner.failures -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                owner.received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_is_signed_and_retried(git_registry: Path, tmp_path: Path) -> None:
    receiver = Receiver(failures=3)
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    try:
        daemon = Daemon(
            SyncOptions(git_registry.as_uri(), data_dir=tmp_path / "data"),
            DaemonOptions(listen=None, webhook=receiver.url, webhook_secret_file=secret),
        )
        assert daemon.run_once() == 0  # syncing did not wait for the failing receiver
        logged = events(tmp_path / "data")
        assert len(receiver.received) == len(logged)  # retried until delivered (drained at exit)
        for headers, body in receiver.received:
            expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert headers["X-Botreg-Signature"] == expected
            assert headers["Content-Type"].startswith("application/cloudevents+json")
        assert {json.loads(b)["id"] for _, b in receiver.received} == {e["id"] for e in logged}
    finally:
        receiver.close()


def test_undelivered_events_survive_a_restart(git_registry: Path, tmp_path: Path) -> None:
    daemon = Daemon(
        SyncOptions(git_registry.as_uri(), data_dir=tmp_path / "data"),
        DaemonOptions(listen=None, webhook="http://127.0.0.1:9/unreachable"),
    )
    assert daemon.run_once() == 0
    outbox = sqlite3.connect(tmp_path / "data" / "outbox.sqlite")
    waiting = outbox.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    outbox.close()
    assert waiting == len(events(tmp_path / "data"))
    receiver = Receiver(failures=0)
    try:
        again = Daemon(
            SyncOptions(git_registry.as_uri(), data_dir=tmp_path / "data"),
            DaemonOptions(listen=None, webhook=receiver.url),
        )
        # the same outbox file: the new receiver URL gets the old events too
        assert again.run_once() == 0
        assert len(receiver.received) == waiting
    finally:
        receiver.close()


def test_second_daemon_on_the_same_data_dir_exits_at_once(
    running: Callable[..., Running],
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    running(interval=3600)
    wait_for(lambda: completed(tmp_path / "data"))
    started = time.monotonic()
    code = main(
        ["sync", "--source", str(git_registry), "--once", "--data-dir", str(tmp_path / "data")]
    )
    assert code == 1 and time.monotonic() - started < 2
    assert "in use by another botreg process" in capsys.readouterr().err


def _botreg(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "botreg", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_sigterm_stops_cleanly(git_registry: Path, tmp_path: Path) -> None:
    proc = _botreg(
        "sync",
        "--source",
        str(git_registry),
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "3600",
    )
    try:
        wait_for(lambda: completed(tmp_path / "data"), timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        status = json.loads((tmp_path / "data" / "status.json").read_text())
        assert status["running"] is False
    finally:
        proc.kill()
        proc.communicate()


def test_sighup_syncs_now(git_registry: Path, tmp_path: Path) -> None:
    proc = _botreg(
        "sync",
        "--source",
        str(git_registry),
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        "off",
        "--interval",
        "3600",
    )
    try:
        wait_for(lambda: completed(tmp_path / "data"), timeout=60)
        write(git_registry, "knowledge/billing/s.md", "# S\n\nSignalled.\n")
        head = commit(git_registry)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: head in completed(tmp_path / "data"), timeout=20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.timeout(300)
def test_sigkill_during_ingestion_converges(git_registry: Path, tmp_path: Path) -> None:
    """Kill -9 in the middle of ingesting, restart: exactly the chunks of the tree."""
    for i in range(300):
        write(
            git_registry,
            f"knowledge/product/bulk/doc-{i:03d}.md",
            f"# Doc {i}\n\n"
            + "".join(
                f"## Part {j}\n\nText {i} {j} about refunds and plans, number {i * j}.\n\n"
                for j in range(12)
            ),
        )
    commit(git_registry, "bulk")
    data = tmp_path / "data"
    proc = _botreg("sync", "--source", str(git_registry), "--data-dir", str(data), "--once")
    ledger_file = data / "ledger.sqlite"

    def ingesting() -> bool:
        if not ledger_file.exists():
            return False
        try:
            db = sqlite3.connect(f"file:{ledger_file}?mode=ro", uri=True, timeout=1)
            try:
                row = db.execute("SELECT COUNT(*) FROM domains WHERE status = 'ingesting'")
                return bool(row.fetchone()[0])
            finally:
                db.close()
        except sqlite3.Error:
            return False

    wait_for(ingesting, timeout=120, step=0.01)
    time.sleep(0.3)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not completed(data)  # it really died mid-cycle
    again = _botreg("sync", "--source", str(git_registry), "--data-dir", str(data), "--once")
    _out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    head = git(git_registry, "rev-parse", "HEAD").strip()
    assert completed(data) == [head]

    from botreg.knowledge.chunkers import chunk_file
    from botreg.knowledge.ledger import Ledger
    from botreg.registry.settings import ChunkingSettings, Limits
    from botreg.store.chroma import ChromaStore
    from botreg.store.settings import StoreSettings

    ledger = Ledger(ledger_file)
    store = ChromaStore(StoreSettings(), data)
    try:
        for domain in ("billing", "product"):
            state = ledger.domain(domain)
            assert state is not None and str(state.status) == "ready"
            got = store.collection(state.collection).get(include=["documents", "metadatas"])
            pairs = [
                (m["path"], d) for d, m in zip(got["documents"], got["metadatas"], strict=True)
            ]
            expected = set()
            for path in (git_registry / "knowledge" / domain).rglob("*"):
                rel = path.relative_to(git_registry).as_posix()
                if path.is_file() and path.name != "_domain.yaml":
                    expected |= {
                        (rel, c.text)
                        for c in chunk_file(rel, path.read_bytes(), ChunkingSettings(), Limits())
                    }
            assert len(pairs) == len(set(pairs))  # no duplicates
            assert set(pairs) == expected  # nothing stale, nothing missing
            assert set(got["ids"]) == ledger.all_chunk_ids(state.collection)
    finally:
        ledger.close()


def test_events_command(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 0
    capsys.readouterr()
    assert main(["events", "--data-dir", str(data)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["type"] == "botreg.sync.completed"
    middle = lines[len(lines) // 2]["id"]
    assert main(["events", "--data-dir", str(data), "--since", middle]) == 0
    after = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert after == lines[len(lines) // 2 + 1 :]
    assert main(["events", "--data-dir", str(data), "--since", "nope"]) == 2


def test_follow_sees_new_events(git_registry: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 0
    seen: list[str] = []
    stop = threading.Event()

    def follow() -> None:
        for event in read_events(data / "events.jsonl", follow=True, poll=0.05, stop=stop.is_set):
            seen.append(event["type"])

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    wait_for(lambda: "botreg.sync.completed" in seen)
    write(git_registry, "knowledge/billing/f.md", "# F\n\nFollowed.\n")
    commit(git_registry)
    assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 0
    wait_for(lambda: seen.count("botreg.sync.completed") == 2)
    stop.set()
    thread.join(timeout=5)


def test_status_command_after_the_daemon_stopped(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    bot = git_registry / "bots/product-guide.yaml"
    bot.write_text(bot.read_text().replace("status: active", "status: on"))
    commit(git_registry)
    assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 1
    capsys.readouterr()
    assert main(["status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "running:     no" in out and "rejected:" in out
    assert "ValidationFailed  True" in out
    assert main(["status", "--data-dir", str(tmp_path / "nothing")]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "0"], "--interval must be a positive number"),
        (["--interval", "nan"], "--interval must be a positive number"),  # nan spun the loop
        (["--events-file", "/no/such/dir/e.jsonl"], "--events-file /no/such/dir/e.jsonl"),
        (["--listen", "nonsense"], "expected HOST:PORT"),
        (["--token-file", "/no/such/file"], "--token-file /no/such/file: no such file"),
        (["--watch", "--source2"], ""),
    ],
)
def test_sync_usage_errors(
    git_registry: Path,
    tmp_path: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["sync", "--source", str(git_registry), "--data-dir", str(tmp_path / "d")]
    assert main(base + args) == 2
    assert message in capsys.readouterr().err


def test_watch_needs_a_local_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "sync",
                "--source",
                "https://example.com/x.git",
                "--watch",
                "--data-dir",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert "--watch needs a local repository" in capsys.readouterr().err


def test_a_cycle_that_runs_too_long_is_stalled(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    d = running(interval=3600)
    wait_for(lambda: completed(tmp_path / "data"))
    assert d.get("/status")[1]["conditions"]["Stalled"]["status"] == "False"
    syncer = d.daemon.syncer
    assert syncer is not None
    # the event is emitted before the cycle ends: wait until the daemon clears it
    wait_for(lambda: syncer.cycle_started is None)
    syncer.cycle_started = time.monotonic() - 100_000  # as if a cycle hung
    code, doc = d.get("/status")
    assert code == 200 and doc["conditions"]["Stalled"]["status"] == "True"
    code, ready = d.get("/readyz")
    assert code == 503 and ready["reasons"][0].startswith("stalled")
    d.daemon.syncer.cycle_started = None


def test_read_api_follows_the_seed_contract(
    running: Callable[..., Running], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-should-never-be-shown-0123456789")
    d = running(interval=3600, allow_env=("ANTHROPIC_*",))  # the operator allows it
    wait_for(lambda: completed(tmp_path / "data"))
    code, bots = d.get("/bots")
    assert code == 200 and [b["bot_id"] for b in bots] == [
        "billing-assistant",
        "internal-helpdesk",
        "product-guide",
    ]
    code, bot = d.get("/bots/billing-assistant")
    assert code == 200 and set(bot) >= {"bot_id", "config", "status"}
    assert bot["status"] == "active"
    assert bot["config"]["llm"]["endpoint"]["api_key"] == "***"  # resolved, then masked
    assert bot["config"]["conversation_storage"] == {
        "backend": "sqlite",
        "path": ".botreg/conversations.db",
    }
    assert "sk-ant" not in json.dumps(bots)
    assert d.get("/bots/nope")[0] == 404
    code, domain = d.get("/knowledge/billing")
    assert code == 200 and domain["status"] == "ready" and domain["collection"]
    assert d.get("/knowledge/nope")[0] == 404


def test_api_token_guards_everything_but_health(
    running: Callable[..., Running], tmp_path: Path
) -> None:
    token = tmp_path / "api-token"
    token.write_text("let-me-in\n")
    d = running(interval=3600, api_token_file=token)
    wait_for(lambda: completed(tmp_path / "data"))
    assert d.get("/healthz")[0] == 200 and d.get("/readyz")[0] == 200
    assert d.get("/status")[0] == 401 and d.get("/bots")[0] == 401
    request = urllib.request.Request(d.url + "/bots", headers={"Authorization": "Bearer let-me-in"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    # the CLI finds the token through daemon.json (which holds its path, not the token)
    assert "let-me-in" not in (tmp_path / "data" / "daemon.json").read_text()
    assert main(["status", "--data-dir", str(tmp_path / "data"), "--format", "json"]) == 0


def test_listening_beyond_loopback_needs_a_token(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "sync",
                "--source",
                str(git_registry),
                "--data-dir",
                str(tmp_path / "d"),
                "--listen",
                "0.0.0.0:0",
            ]
        )
        == 2
    )
    assert "--api-token-file" in capsys.readouterr().err


def test_a_data_dir_that_cannot_be_created_is_a_usage_error(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["sync", "--source", str(git_registry), "--data-dir", str(blocker), "--once"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cannot use" in err and "--data-dir" in err and "Traceback" not in err


def test_webhook_userinfo_becomes_an_authorization_header(tmp_path: Path) -> None:
    """`--webhook http://user:pw@host/` delivers, with the credentials as a header."""
    import base64
    import http.server

    from botreg.events import CloudEvent
    from botreg.events.webhook import WebhookSink

    seen: list[tuple[str, str]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers.get("Authorization", "")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    sink = WebhookSink(f"http://hook:pw%40x@127.0.0.1:{port}/in", tmp_path / "outbox.sqlite")
    try:
        sink(CloudEvent(type="botreg.sync.completed", source="s", id="1", subject="", data={}))
        wait_for(lambda: bool(seen))
    finally:
        sink.close(drain=2)
        server.shutdown()
        server.server_close()
    assert seen == [("/in", "Basic " + base64.b64encode(b"hook:pw@x").decode())]


def test_a_webhook_redirect_is_a_failed_delivery_and_sends_nothing_elsewhere(
    tmp_path: Path,
) -> None:
    """A 302 made urllib re-send a body-less GET with our credentials elsewhere (issue #9)."""
    import http.server

    from botreg.events import CloudEvent
    from botreg.events.webhook import WebhookSink

    elsewhere: list[str] = []
    posts: list[str] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            elsewhere.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.end_headers()

        def do_POST(self) -> None:
            self.do_GET()

        def log_message(self, *args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    target = f"http://localhost:{other.server_address[1]}/stolen"

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(self.path)
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for s in (server, other):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    sink = WebhookSink(
        f"http://hook:pw@127.0.0.1:{server.server_address[1]}/in",
        tmp_path / "outbox.sqlite",
        base_delay=0.05,
        max_delay=0.1,
    )
    try:
        sink(CloudEvent(type="botreg.sync.completed", source="s", id="1", subject="", data={}))
        wait_for(lambda: len(posts) >= 2)  # retried: the redirect was not a delivery
        assert sink.delivered == 0 and sink.failures >= 1
    finally:
        sink.close(drain=0)
        for s in (server, other):
            s.shutdown()
            s.server_close()
    assert elsewhere == []


def test_a_busy_listen_port_is_a_usage_error(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A busy --listen port was 'unexpected error ... this is a bug', exit 3."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["sync", "--source", str(git_registry), "--data-dir", str(tmp_path / "d")]
        assert main([*args, "--listen", f"127.0.0.1:{port}", "--interval", "3600"]) == 2
    err = capsys.readouterr().err
    assert f"--listen 127.0.0.1:{port}: cannot listen there" in err and "bug" not in err
