"""What an attacker found on the daemon's Redis side (issue #11, review 1).

Each test reproduces one finding: a Redis (or a man in the middle) that trickles
its reply, `?at=` waiters that held worker threads, a password on the command
line, a foreign lease key without a TTL, and a fencing token that went backwards
after FLUSHALL.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import yaml

from botreg.daemon import http as http_module
from botreg.daemon.http import DaemonHTTP
from botreg.daemon.lease import FencedError, Lease
from botreg.daemon.metrics import Metrics
from botreg.events import CloudEvent
from botreg.events.redis_stream import RedisStreamSink
from helpers import wait_for


class Trickler:
    """A fake Redis that answers every request with a never-ending reply, a few
    bytes every 50 ms (`*1000000` then `:1` forever): each read gets data, so a
    per-read socket timeout never fires."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                if not conn.recv(65536):
                    return
                conn.sendall(b"*1000000\r\n")
                while not self.stop.wait(0.05):
                    conn.sendall(b":1\r\n")
            except OSError:
                return  # the client cut it off: what the deadline is for

    def close(self) -> None:
        self.stop.set()
        self.server.close()


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    fake = Trickler()
    yield fake
    fake.close()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def event(n: int) -> CloudEvent:
    return CloudEvent(type="botreg.bot.updated", source="test", id=f"event-{n}", data={"n": n})


# --- 1. a trickled reply ------------------------------------------------------------------


def test_a_trickled_reply_is_a_timeout_counted_once_warned_and_the_depth_is_live(
    trickler: Trickler, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="botreg")
    metrics = Metrics()
    # the password must not show either: the fake is reached with one
    url = f"redis://:tr1ckle-pw@127.0.0.1:{trickler.port}/0"
    sink = RedisStreamSink(
        url,
        tmp_path / "outbox.sqlite",
        metrics=metrics,
        timeout=1.0,  # per read: never reached, the fake sends something every 50 ms
        append_deadline=0.5,
        base_delay=0.05,
        max_delay=0.2,
    )
    try:
        sink(event(0))
        # before the fix the first append never returned: no error was ever counted
        wait_for(
            lambda: sample(metrics, "botreg_redis_append_errors_total", reason="timeout") >= 3,
            timeout=8,
        )
        for n in range(1, 18):
            sink(event(n))
        # the gauges read the outbox at scrape time, whatever the thread is doing
        assert sample(metrics, "botreg_redis_outbox_depth") == 18
        assert sample(metrics, "botreg_redis_outbox_oldest_age_seconds") > 0
        assert not sink.flush(timeout=0.2)
    finally:
        sink.close()
    assert trickler.connections >= 3  # each attempt was cut off and a new one made
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # one warning for the whole outage, not one per attempt
    assert len([w for w in warnings if "cannot append events" in w]) == 1, warnings
    assert all("tr1ckle-pw" not in w for w in warnings)
    assert any("no complete answer within 0.5 s" in w for w in warnings), warnings


def test_a_lease_renewal_on_a_trickling_redis_ends_by_the_local_deadline(
    redis_url: str, trickler: Trickler
) -> None:
    lease = Lease(redis_url, "g", 1.5)
    try:
        assert lease.try_acquire()
        # from now on the lease's Redis (or a man in the middle) trickles its replies
        pool = lease.client.connection_pool
        pool.connection_kwargs["port"] = trickler.port
        pool.disconnect()
        pool.reset()  # new connections, made with the new port
        outcome: list[object] = []

        def renew() -> None:
            try:
                outcome.append(lease.renew())
            except Exception as exc:  # what the renewal thread handles
                outcome.append(exc)

        worker = threading.Thread(target=renew, daemon=True)
        worker.start()
        # before the fix the renewal read the endless reply forever
        wait_for(lambda: not worker.is_alive(), timeout=8)
        assert outcome and outcome[0] is not True
        with pytest.raises(FencedError):  # the check is bounded the same way
            lease.check()
    finally:
        lease.close()


# --- 4. a foreign lease key without a TTL -------------------------------------------------


def test_a_foreign_lease_key_without_a_ttl_expires_and_a_daemon_takes_over(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="botreg")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    lease = Lease(redis_url, "g", 1)
    try:
        client.set("botreg:ha:g:lease", "somevalue")  # no PX: before, nobody ever led again
        assert lease.try_acquire() == 0  # held by someone: not taken at once...
        assert 0 < client.pttl("botreg:ha:g:lease") <= 1000  # ...but given a lease period
        token = wait_for(lease.try_acquire, timeout=8)
        assert token > 0 and client.get("botreg:ha:g:lease") == lease.holder
        warned = [r.getMessage() for r in caplog.records if "had no expiry" in r.getMessage()]
        assert len(warned) == 1, warned
        assert client.pttl("botreg:ha:g:lease") > 0  # ours: always with an expiry
    finally:
        lease.close()
        client.close()


# --- 5. the fencing token after a data loss -----------------------------------------------


def test_the_fencing_token_never_goes_backwards_after_flushall(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    lease = Lease(redis_url, "g", 5)
    try:
        tokens = []
        for _ in range(4):
            tokens.append(lease.try_acquire())
            lease.release()
        assert tokens == [1, 2, 3, 4]
        client.flushall()  # a Redis restart without persistence does the same
        again = lease.try_acquire()
        assert again == 5  # before the fix: 1, so a write fenced by 4 looked newer
        assert client.get("botreg:ha:g:fence") == "5"  # Redis continues from there
        lease.check(again)
        with pytest.raises(FencedError):
            lease.check(4)
    finally:
        lease.close()
        client.close()


# --- 3. the Redis password on the command line --------------------------------------------

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _redis_urls_with_a_password(args: list[str]) -> list[str]:
    found = []
    for arg in args:
        for url in re.findall(r"(?:rediss?|unix)://\S+", arg):
            parts = urlsplit(url)
            if parts.password or "password=" in parts.query or "$(" in url:
                found.append(url)
    # a flag whose value is a variable expanded into the args is as visible in ps
    for flag, value in itertools.pairwise(args):
        if flag in ("--events-redis", "--ha-redis"):
            found.append(value)
    return found


def test_no_manifest_or_compose_argument_carries_a_redis_url() -> None:
    daemon = [
        doc
        for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / "daemon.yaml").read_text())
        if doc and doc.get("kind") == "Deployment"
    ]
    assert daemon
    for doc in daemon:
        for container in doc["spec"]["template"]["spec"]["containers"]:
            args = [str(a) for a in container.get("args", []) + container.get("command", [])]
            assert _redis_urls_with_a_password(args) == [], container["name"]
            env = {e["name"]: e for e in container.get("env", [])}
            for name in ("BOTREG_EVENTS_REDIS_URL", "BOTREG_HA_REDIS_URL"):
                assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "botreg-secrets"
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    for name, service in compose["services"].items():
        command = service.get("command") or []
        args = [str(a) for a in (command if isinstance(command, list) else [command])]
        assert _redis_urls_with_a_password(args) == [], name
    daemon_env = compose["services"]["daemon-a"]["environment"]
    assert {"BOTREG_EVENTS_REDIS_URL", "BOTREG_HA_REDIS_URL"} <= set(daemon_env)


def test_the_redis_urls_default_to_their_environment_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from botreg.cli import main

    monkeypatch.setenv("BOTREG_EVENTS_REDIS_URL", "ftp://:env-s3cret@127.0.0.1:1/0")
    # the env var is read: its (bad) URL is refused naming the variable, password masked
    assert main(["sync", "--once", "--source", "/nonexistent", "--data-dir", "/tmp/x"]) == 2
    err = capsys.readouterr().err
    assert "$BOTREG_EVENTS_REDIS_URL (the default of --events-redis)" in err
    assert "env-s3cret" not in err
    # a flag given wins over the variable, and the message names the flag
    argv = ["sync", "--once", "--source", "/nonexistent", "--data-dir", "/tmp/x"]
    assert main([*argv, "--events-redis", "gopher://127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert "--events-redis gopher://" in err and "BOTREG_EVENTS_REDIS_URL" not in err
    monkeypatch.delenv("BOTREG_EVENTS_REDIS_URL")
    monkeypatch.setenv("BOTREG_HA_REDIS_URL", "ftp://:env-s3cret@127.0.0.1:1/0")
    assert main(["sync", "--once", "--source", "/nonexistent", "--data-dir", "/tmp/x"]) == 2
    err = capsys.readouterr().err
    assert "$BOTREG_HA_REDIS_URL (the default of --ha-redis)" in err
    assert "env-s3cret" not in err
    help_text = _help(capsys)
    assert "BOTREG_EVENTS_REDIS_URL" in help_text and "BOTREG_HA_REDIS_URL" in help_text


@pytest.mark.parametrize("name", ["BOTREG_EVENTS_REDIS_URL", "BOTREG_HA_REDIS_URL"])
@pytest.mark.parametrize("password", ["S3c#retPW-1", "S3c/retPW-2", "S3c?retPW-3"])
def test_a_password_with_an_unencoded_separator_is_refused_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, password: str
) -> None:
    """Observed: `redis://:S3c#retPW@host` was refused as "port is not a number" with
    the whole password in the message (a parser ends the host part at `#`)."""
    from botreg.cli import main

    monkeypatch.setenv(name, f"redis://:{password}@127.0.0.1:6379/0")
    assert main(["sync", "--once", "--source", "/nonexistent", "--data-dir", "/tmp/x"]) == 2
    err = capsys.readouterr().err
    assert f"${name}" in err and "percent-encode" in err
    assert password not in err and password[:3] + password[4:] not in err
    assert "port is not a number" not in err and "Traceback" not in err


def test_a_raw_at_sign_in_a_password_is_masked_whole() -> None:
    """Observed: `redis://bot:S3c@retPW@host` authenticates (the client reads the host
    part up to its last `@`), but redaction cut at the first `@` and logs showed
    `redis://***@retPW@host`."""
    from botreg.redis_url import remember_redis_credentials
    from botreg.secrets import mask_text, redact_url

    url = "redis://bot:S3c@retPW-4@127.0.0.1:6379/0"
    assert "retPW-4" not in redact_url(f"HA: Redis {url}")
    assert redact_url(url) == "redis://***@127.0.0.1:6379/0"
    remember_redis_credentials(url)
    assert "retPW-4" not in mask_text(f"cannot reach bot:S3c@retPW-4 at {url}")


@pytest.mark.parametrize("flag", ["--events-redis", "--ha-redis"])
def test_a_parameter_the_client_refuses_is_a_usage_error_not_a_crash(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Observed: `?ssl_cert_reqs=bogus` raised RedisError at the first connection:
    exit 3 ("unexpected error") and a crash log."""
    from botreg.cli import main

    argv = ["sync", "--once", "--source", "/nonexistent", "--data-dir", "/tmp/x"]
    assert main([*argv, flag, "rediss://127.0.0.1:6391/0?ssl_cert_reqs=bogus"]) == 2
    err = capsys.readouterr().err
    assert flag in err and "Certificate Requirements Flag" in err
    assert "unexpected error" not in err and "Traceback" not in err


def _help(capsys: pytest.CaptureFixture[str]) -> str:
    from botreg.cli import main

    with contextlib.suppress(SystemExit):  # argparse's own exit after the help
        main(["sync", "--help"])
    return " ".join(capsys.readouterr().out.split())


# --- 2. `?at=` waiters ---------------------------------------------------------------------

APPLIED = "a" * 40
UNKNOWN = "c" * 40


@pytest.fixture
def at_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[DaemonHTTP, list[str]]]:
    """A DaemonHTTP whose `?at=` waits last long enough to be seen (60 s), serving
    APPLIED; append to the list to apply another commit."""
    monkeypatch.setattr(http_module, "AT_WAIT", 60.0)
    applied = [APPLIED]

    def serves(commit: str) -> bool | None:
        if commit == "7" * 40:
            return None  # a tree or a blob: never applied
        return any(c.startswith(commit) for c in applied)

    http = DaemonHTTP(
        "127.0.0.1",
        0,
        status=dict,
        metrics=str,
        wake=lambda: None,
        query=lambda d, q, k: [],
        readiness=lambda: (True, []),
        hook_secret=lambda: None,
        branch="main",
        bots=lambda: [{"bot_id": "x"}],
        served_commit=lambda: applied[-1],
        serves=serves,
    )
    http.start()
    yield http, applied
    http.stop()


def _send(address: str, path: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return sock


def _read(sock: socket.socket) -> str:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data.decode("latin-1")


def test_a_hundred_at_waiters_hold_no_worker_thread_and_probes_answer(
    at_server: tuple[DaemonHTTP, list[str]],
) -> None:
    http, _ = at_server
    waiters = [_send(http.address, f"/bots?at={UNKNOWN}") for _ in range(100)]
    try:
        # 64 wait (no thread each), the other 36 are refused at once, with Retry-After
        wait_for(lambda: http._at_waiters == http_module.AT_MAX_WAITERS, timeout=20)
        answered = wait_for(
            lambda: (r := select.select(waiters, [], [], 0)[0]) and len(r) >= 36 and r,
            timeout=20,
        )
        refused = [_read(s) for s in answered]
        assert len(refused) == 36
        assert all(r.startswith("HTTP/1.1 409") and "retry-after: 1" in r.lower() for r in refused)
        # the probes answer while the 64 are still waiting (before: queued behind them)
        for path in ("/readyz", "/healthz", "/status"):
            assert _read(_send(http.address, path)).startswith("HTTP/1.1 200"), path
        assert http._at_waiters == http_module.AT_MAX_WAITERS  # still waiting: order shown
        assert not select.select([s for s in waiters if s not in answered], [], [], 0)[0]
    finally:
        for sock in waiters:
            sock.close()


def test_an_at_waiter_is_served_once_its_commit_is_applied(
    at_server: tuple[DaemonHTTP, list[str]],
) -> None:
    http, applied = at_server
    waiter = _send(http.address, f"/bots?at={UNKNOWN}")
    wait_for(lambda: http._at_waiters == 1, timeout=20)
    applied.append(UNKNOWN)  # the daemon applies (or follows) it
    answer = _read(waiter)
    assert answer.startswith("HTTP/1.1 200") and f"x-botreg-commit: {UNKNOWN}" in answer.lower()
    # what can never be applied is refused at once, without waiting
    assert _read(_send(http.address, "/bots?at=" + "7" * 40)).startswith("HTTP/1.1 409")
    assert http._at_waiters == 0


def test_a_tree_blob_or_unknown_prefix_can_never_be_served(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from botreg.daemon.run import Daemon

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "f.txt").write_text("hello\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "one"], check=True)

    def rev(name: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "rev-parse", name], capture_output=True, text=True,
            check=True,
        ).stdout.strip()  # fmt: skip

    fake = SimpleNamespace(data=SimpleNamespace(root=tmp_path / "data", mirror=repo / ".git"))
    serves = Daemon._serves.__get__(fake)
    assert serves(rev("HEAD^{tree}")) is None  # a tree never becomes applied
    assert serves(rev("HEAD:f.txt")) is None  # nor a blob
    assert serves("abcdef0") is None  # nor a prefix of no commit
    assert serves(rev("HEAD")) is False  # a commit not applied yet may be: wait
    assert serves("d" * 40) is False  # a full id not fetched yet may be: wait
