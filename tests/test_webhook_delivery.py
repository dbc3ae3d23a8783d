"""Webhook delivery on httpx (issue #10): in order, backoff per receiver, dead letters.

Every test talks to a real HTTP/1.1 receiver on 127.0.0.1 (keep-alive, so the
connection count means something) and a real SQLite outbox in tmp_path.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from botreg.cli import main
from botreg.daemon.metrics import Metrics
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import SyncOptions
from botreg.events import CloudEvent
from botreg.events.outbox import DeadLetter, Outbox
from botreg.events.webhook import WebhookSink
from helpers import wait_for


class Receiver:
    """An HTTP/1.1 receiver that answers `status(n)` to its n-th request (from 0)."""

    def __init__(self, status: Callable[[int], int] = lambda _n: 204) -> None:
        self.status = status
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []  # method, path, ...
        self.connections = 0
        self.gate: threading.Event | None = None  # set: requests wait for it
        self.answered = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the client may reuse the connection

            def setup(self) -> None:
                owner.connections += 1
                super().setup()

            def log_message(self, *_args: Any) -> None:
                return None

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                n = len(owner.requests)
                owner.requests.append((self.command, self.path, dict(self.headers), body))
                if owner.gate is not None:
                    owner.gate.wait(timeout=60)
                code = owner.status(n)
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", owner.elsewhere)
                self.send_header("Content-Length", "0")
                self.end_headers()
                owner.answered += 1

            def do_POST(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                self._answer()

        self.elsewhere = ""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def delivered_ids(self, ok: Callable[[int], bool] = lambda code: code < 300) -> list[str]:
        """Ids of the events the receiver acknowledged, in arrival order."""
        return [
            json.loads(body)["id"]
            for n, (_m, _p, _h, body) in enumerate(list(self.requests))
            if body and ok(self.status(n))
        ]

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(status: Callable[[int], int] = lambda _n: 204) -> Receiver:
        made.append(Receiver(status))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def event(n: int) -> CloudEvent:
    return CloudEvent(
        type="botreg.bot.updated", source="file:///srv/registry", id=f"event-{n:03d}", data={"n": n}
    )


def dead_letter_ids(path: Path) -> list[str]:
    outbox = Outbox(path)
    try:
        return [d.id for d in outbox.dead_letters()]
    finally:
        outbox.close()


def dead_letters(path: Path) -> list[DeadLetter]:
    outbox = Outbox(path)
    try:
        return outbox.dead_letters()
    finally:
        outbox.close()


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text, parsed by prometheus-client's own parser."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_dead_receiver_gets_one_request_per_backoff_step_not_one_per_event(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """Per-event backoff sent a dead receiver 155 requests in 10 s (issue #10)."""
    dead = receivers(lambda _n: 500)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    for n in range(50):  # queued before the sink starts: all of them are due at once
        outbox.enqueue(f"event-{n:03d}", event(n).to_json().encode())
    outbox.close()
    sink = WebhookSink(dead.url, tmp_path / "outbox.sqlite", base_delay=0.2, max_delay=10)
    try:
        time.sleep(2.0)
    finally:
        sink.close()
    # delays of at least 0.1, 0.2, 0.4, 0.8, 1.6 s (0.2 * 2**n, jitter 0.5..1): the 6th
    # request cannot come before 3.1 s, however many events wait; one per event is 50
    assert 1 <= len(dead.requests) <= 5
    # head of the line: only the oldest event was ever sent
    assert {json.loads(body)["id"] for *_, body in dead.requests} == {"event-000"}


def test_events_arrive_in_publish_order_after_an_outage(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """After recovery events arrived out of order (issue #10)."""
    flaky = receivers(lambda n: 503 if n < 6 else 204)
    metrics = Metrics()
    sink = WebhookSink(
        flaky.url, tmp_path / "outbox.sqlite", base_delay=0.01, max_delay=0.05, metrics=metrics
    )
    try:
        for n in range(20):
            sink(event(n))
        wait_for(lambda: sink.delivered == 20)
        values = samples(metrics)
    finally:
        sink.close()
    assert flaky.delivered_ids() == [f"event-{n:03d}" for n in range(20)]
    assert [json.loads(body)["id"] for *_, body in flaky.requests[:6]] == ["event-000"] * 6
    assert values[("botreg_webhook_deliveries_total", (("result", "delivered"),))] == 20
    assert values[("botreg_webhook_deliveries_total", (("result", "rejected"),))] == 6
    assert values[("botreg_webhook_delivery_duration_seconds_count", ())] == 26
    assert values[("botreg_webhook_outbox_depth", ())] == 0
    assert values[("botreg_webhook_outbox_oldest_age_seconds", ())] == 0


def test_the_outbox_gauges_show_what_waits(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    dead = receivers(lambda _n: 500)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    outbox.enqueue("old", event(0).to_json().encode(), now=time.time() - 120)
    outbox.close()
    metrics = Metrics()
    sink = WebhookSink(dead.url, tmp_path / "outbox.sqlite", base_delay=5, metrics=metrics)
    try:
        sink(event(1))
        wait_for(lambda: samples(metrics)[("botreg_webhook_outbox_depth", ())] == 2)
        values = samples(metrics)
    finally:
        sink.close()
    assert values[("botreg_webhook_outbox_oldest_age_seconds", ())] >= 120
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    for name, kind in {
        "botreg_webhook_deliveries": "counter",
        "botreg_webhook_delivery_duration_seconds": "histogram",
        "botreg_webhook_outbox_depth": "gauge",
        "botreg_webhook_outbox_oldest_age_seconds": "gauge",
        "botreg_webhook_dead_letters": "counter",
    }.items():
        assert families[name].type == kind and families[name].documentation, name


def test_queued_events_are_delivered_in_order_after_a_restart(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """The SQLite outbox is the source of truth: a new sink delivers what the old one held."""
    down = receivers(lambda _n: 502)
    sink = WebhookSink(down.url, tmp_path / "outbox.sqlite", base_delay=0.05, max_delay=0.1)
    for n in range(10):
        sink(event(n))
    wait_for(lambda: len(down.requests) >= 2)
    sink.close(drain=0)
    up = receivers()
    again = WebhookSink(up.url, tmp_path / "outbox.sqlite")
    try:
        wait_for(lambda: again.pending() == 0)
    finally:
        again.close()
    assert up.delivered_ids() == [f"event-{n:03d}" for n in range(10)]


def test_connection_is_reused_between_deliveries(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """urllib opened a connection per event; httpx keeps one alive."""
    receiver = receivers()
    sink = WebhookSink(receiver.url, tmp_path / "outbox.sqlite")
    try:
        for n in range(5):
            sink(event(n))
        wait_for(lambda: sink.delivered == 5)
    finally:
        sink.close()
    assert receiver.connections == 1


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_delivery_and_is_never_followed(
    tmp_path: Path, receivers: Callable[..., Receiver], code: int
) -> None:
    """A 302 made urllib re-send a body-less GET, counted delivered and dropped (issue #10)."""
    elsewhere = receivers()
    redirecting = receivers(lambda _n: code)
    redirecting.elsewhere = elsewhere.url
    metrics = Metrics()
    sink = WebhookSink(
        redirecting.url,
        tmp_path / "outbox.sqlite",
        base_delay=0.02,
        max_delay=0.05,
        metrics=metrics,
    )
    try:
        sink(event(0))
        redirected = ("botreg_webhook_deliveries_total", (("result", "redirected"),))
        # retried, not a delivery; wait on the count the sink keeps (the receiver
        # sees a request before the sink has read its answer and counted it)
        wait_for(lambda: samples(metrics).get(redirected, 0) >= 3)
        assert sink.delivered == 0 and sink.pending() == 1
        values = samples(metrics)
    finally:
        sink.close()
    assert elsewhere.requests == []
    assert len(redirecting.requests) >= 3
    assert {method for method, *_ in redirecting.requests} == {"POST"}
    assert ("botreg_webhook_deliveries_total", (("result", "delivered"),)) not in values


@pytest.mark.parametrize("reachable", [True, False])
def test_a_query_token_never_reaches_the_log_on_a_failed_delivery(
    tmp_path: Path,
    receivers: Callable[..., Receiver],
    caplog: pytest.LogCaptureFixture,
    reachable: bool,
) -> None:
    """The webhook URL with its `?token=` was logged on every failed delivery (issue #10)."""
    token = "Qx7rT2mZ9pLk4vW8"
    receiver = receivers(lambda _n: 500)
    port = receiver.server.server_address[1]
    if not reachable:  # connection refused: the error path, not the HTTP status path
        receiver.close()
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    sink = WebhookSink(
        f"http://hook:pw-{token}@127.0.0.1:{port}/in?token={token}&sig={token}",
        tmp_path / "outbox.sqlite",
        base_delay=0.02,
        max_delay=0.05,
    )
    try:
        sink(event(0))
        wait_for(lambda: sink.failures >= 2)
    finally:
        sink.close()
    failures = [r for r in caplog.records if r.name == "botreg.webhook"]
    assert failures and all("failed" in r.getMessage() for r in failures)
    assert "127.0.0.1" in failures[0].getMessage()  # the receiver is named ...
    assert token not in caplog.text  # ... without its credentials
    if reachable:  # the token did reach the receiver: it is redacted from logs only
        assert receiver.requests[0][1] == f"/in?token={token}&sig={token}"
        assert receiver.requests[0][2]["Authorization"].startswith("Basic ")


def test_an_old_failing_event_becomes_a_dead_letter_and_stops_holding_the_line(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(lambda n: 500 if n == 0 else 204)  # fails once
    outbox = Outbox(tmp_path / "outbox.sqlite")
    outbox.enqueue("event-000", event(0).to_json().encode(), now=time.time() - 7200)
    outbox.close()
    given_up: list[CloudEvent] = []
    metrics = Metrics()
    sink = WebhookSink(
        receiver.url,
        tmp_path / "outbox.sqlite",
        base_delay=0.01,
        dead_letter_after=3600,
        metrics=metrics,
        on_dead_letter=given_up.append,
    )
    try:
        sink(event(1))
        wait_for(lambda: sink.delivered == 1)
        values = samples(metrics)
    finally:
        sink.close()
    assert [e.id for e in given_up] == ["event-000"]
    assert given_up[0].type == "botreg.bot.updated"
    assert receiver.delivered_ids() == ["event-001"]  # not held behind the dead one
    assert values[("botreg_webhook_dead_letters_total", ())] == 1
    outbox = Outbox(tmp_path / "outbox.sqlite")
    try:
        dead = outbox.dead_letters()
    finally:
        outbox.close()
    assert [(d.id, d.attempts, d.last_error) for d in dead] == [("event-000", 1, "HTTP 500")]


def test_a_recent_failing_event_keeps_its_place(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(lambda n: 500 if n < 3 else 204)
    sink = WebhookSink(receiver.url, tmp_path / "outbox.sqlite", base_delay=0.01)
    try:
        sink(event(0))
        sink(event(1))
        wait_for(lambda: sink.delivered == 2)
    finally:
        sink.close()
    assert sink.dead_lettered == 0
    assert receiver.delivered_ids() == ["event-000", "event-001"]


def test_dead_letters_are_listed_and_replayed_from_the_cli(
    tmp_path: Path, receivers: Callable[..., Receiver], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    outbox = Outbox(data / "outbox.sqlite")
    for n in range(3):
        outbox.enqueue(f"event-{n:03d}", event(n).to_json().encode(), now=time.time() - 7200)
    assert [d.id for d in outbox.expire(time.time() - 3600)] == [f"event-{n:03d}" for n in range(3)]
    outbox.enqueue("event-003", event(3).to_json().encode())
    outbox.close()

    assert main(["events", "--data-dir", str(data), "--dead-letter"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in text] == ["event-000", "event-001", "event-002"]
    assert "botreg.bot.updated" in text[0]
    assert main(["events", "--data-dir", str(data), "--dead-letter", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in listed] == ["event-000", "event-001", "event-002"]
    assert listed[1]["event"]["data"] == {"n": 1} and listed[1]["type"] == "botreg.bot.updated"

    assert main(["events", "--data-dir", str(data), "--replay", "--id", "event-001"]) == 0
    assert "1 dead letter" in capsys.readouterr().out
    assert main(["events", "--data-dir", str(data), "--replay", "--id", "nope"]) == 2
    assert "no dead letter with id nope" in capsys.readouterr().err

    # delivered in publish order: the replayed event keeps its place before event-003
    receiver = receivers()
    sink = WebhookSink(receiver.url, data / "outbox.sqlite")
    try:
        wait_for(lambda: sink.delivered == 2)
        assert main(["events", "--data-dir", str(data), "--replay"]) == 0  # beside the sink
        assert "2 dead letter" in capsys.readouterr().out
        wait_for(lambda: sink.delivered == 4)
    finally:
        sink.close()
    assert receiver.delivered_ids() == ["event-001", "event-003", "event-000", "event-002"]
    assert main(["events", "--data-dir", str(data), "--dead-letter"]) == 0
    assert capsys.readouterr().out == "no dead letters\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--id", "x"], 2, "--id goes with --replay"),
        (["--dead-letter", "--replay"], 2, "give one of them"),
        (["--dead-letter", "--follow"], 2, "--follow and --since"),
        (["--dead-letter"], 2, "no webhook outbox here"),
    ],
)
def test_dead_letter_command_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    assert main(["events", "--data-dir", str(tmp_path), *args]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "outbox.sqlite").exists()  # listing never creates an outbox


def test_a_damaged_outbox_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "outbox.sqlite").write_bytes(b"not a database, " * 100)
    assert main(["events", "--data-dir", str(tmp_path), "--dead-letter"]) == 1
    err = capsys.readouterr().err
    assert "cannot read the webhook outbox" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_dead_letter_age_must_be_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    args = ["sync", "--source", str(tmp_path), "--data-dir", str(tmp_path / "d"), "--once"]
    assert main([*args, "--webhook-dead-letter-after", value]) == 2
    assert "--webhook-dead-letter-after" in capsys.readouterr().err


def test_close_is_prompt_while_a_delivery_hangs(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """A receiver that never answers does not hold the daemon's stop."""
    hanging = receivers()
    hanging.gate = threading.Event()
    sink = WebhookSink(hanging.url, tmp_path / "outbox.sqlite", timeout=60)
    sink(event(0))
    wait_for(lambda: hanging.requests)
    sink.close(drain=0.2)
    assert hanging.answered == 0  # close returned while the request was still in flight
    hanging.gate.set()
    # at least once: the unacknowledged event waits for the next start
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    try:
        assert db.execute("SELECT id FROM outbox").fetchall() == [("event-000",)]
    finally:
        db.close()


def test_the_daemon_publishes_dead_letters_to_its_log_not_to_the_webhook(
    git_registry: Path, tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    dead = receivers(lambda _n: 500)
    data = tmp_path / "data"
    data.mkdir()
    outbox = Outbox(data / "outbox.sqlite")
    outbox.enqueue("event-000", event(0).to_json().encode(), now=time.time() - 7200)
    outbox.close()
    daemon = Daemon(
        SyncOptions(git_registry.as_uri(), data_dir=data),
        DaemonOptions(listen=None, webhook=dead.url, webhook_dead_letter_after=3600),
    )
    assert daemon.run_once() == 0
    logged = [json.loads(line) for line in (data / "events.jsonl").read_text().splitlines()]
    notices = [e for e in logged if e["type"] == "botreg.webhook.dead_lettered"]
    assert [n["data"]["event_id"] for n in notices] == ["event-000"]
    assert notices[0]["data"]["event_type"] == "botreg.bot.updated"
    sent = {json.loads(body)["type"] for *_, body in dead.requests}
    assert not any(t.startswith("botreg.webhook.") for t in sent)
    assert dead_letter_ids(data / "outbox.sqlite") == ["event-000"]
    assert "botreg_webhook_dead_letters_total 1.0" in daemon.metrics.render().decode()


@pytest.mark.parametrize(
    "url", ["ftp://example.com/in", "http:///no-host", "example.com/in", "http://u:p@h:99999/"]
)
def test_a_webhook_url_that_is_not_http_is_a_usage_error(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    args = ["sync", "--source", str(git_registry), "--data-dir", str(tmp_path / "d"), "--once"]
    assert main([*args, "--webhook", url]) == 2
    err = capsys.readouterr().err
    assert "--webhook" in err and "http:// or https://" in err and "Traceback" not in err


class Trickler:
    """A receiver that answers slowly but never stalls: 1 byte every 0.1 s.

    `phase` "body": `200 OK` and `Content-Length: 1000000` at once, then the body
    byte by byte; "headers": the status line, then a header byte by byte. Each
    byte comes well within any per-step read timeout, so only a deadline for the
    whole attempt ends it (issue #10: one attempt was still in flight after 77 s).
    """

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.connections = 0
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/events"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._trickle, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)  # the request (small: one event)
                if self.phase == "body":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not self.stop.wait(0.1):
                    conn.sendall(b"a")
            except OSError:
                return  # the client gave up: what is wanted

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.listener.close()


@pytest.mark.parametrize("phase", ["body", "headers"])
def test_a_trickling_receiver_cannot_hold_a_delivery_past_its_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, phase: str
) -> None:
    """A receiver trickling its answer held deliveries forever: 0 dead letters (issue #10)."""
    trickler = Trickler(phase)
    metrics = Metrics()
    given_up: list[CloudEvent] = []
    sink = WebhookSink(
        trickler.url,
        tmp_path / "outbox.sqlite",
        timeout=0.5,  # the whole attempt; each byte comes after 0.1 s, within any step
        base_delay=0.05,
        max_delay=0.1,
        dead_letter_after=1.0,
        metrics=metrics,
        on_dead_letter=given_up.append,
    )
    try:
        for n in range(3):
            sink(event(n))
        wait_for(lambda: len(given_up) == 3, timeout=8)
        values = samples(metrics)
    finally:
        sink.close()
        trickler.close()
    assert [e.id for e in given_up] == ["event-000", "event-001", "event-002"]
    assert values[("botreg_webhook_deliveries_total", (("result", "error"),))] >= 1
    assert ("botreg_webhook_deliveries_total", (("result", "delivered"),)) not in values
    assert values[("botreg_webhook_outbox_depth", ())] == 0
    assert values[("botreg_webhook_dead_letters_total", ())] == 3
    # each attempt was cut at the deadline: its connection closed, the next one new
    assert trickler.connections >= 2
    head = dead_letters(tmp_path / "outbox.sqlite")[0]
    assert head.attempts >= 1 and "timed out" in head.last_error
    assert "0.5 s" in head.last_error


def test_dead_letters_record_attempts_and_errors_and_the_messages_agree(
    tmp_path: Path,
    receivers: Callable[..., Receiver],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Dead letters read `after 0 attempts ... ()` and `after 0 attempts: `, and a retry
    was promised for an event already given up on (issue #10)."""
    dead = receivers(lambda _n: 500)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    for n in range(3):
        outbox.enqueue(f"event-{n:03d}", event(n).to_json().encode(), now=time.time() - 7200)
    outbox.enqueue("event-003", event(3).to_json().encode())  # recent: keeps its place
    outbox.close()
    caplog.set_level(logging.WARNING, logger="botreg.webhook")
    sink = WebhookSink(dead.url, tmp_path / "outbox.sqlite", base_delay=5, dead_letter_after=3600)
    try:
        wait_for(lambda: sink.dead_lettered == 3)
    finally:
        sink.close()
    letters = {d.id: (d.attempts, d.last_error) for d in dead_letters(tmp_path / "outbox.sqlite")}
    unsent = "never sent: queued behind an event the receiver failed (HTTP 500)"
    assert letters == {
        "event-000": (1, "HTTP 500"),
        "event-001": (0, unsent),
        "event-002": (0, unsent),
    }

    lines = [r.getMessage() for r in caplog.records if r.name == "botreg.webhook"]
    assert lines[0].startswith(f"webhook delivery to {dead.url} failed: HTTP 500 (event event-000")
    assert "attempt 1, given up on, 1 waiting, next attempt in" in lines[0]
    assert lines[1].startswith("webhook event event-000 given up on after 1 attempt over 7")
    assert "(last error: HTTP 500)" in lines[1]
    assert lines[2].startswith("2 webhook events (event-001 ... event-002) given up on without")
    assert f"({unsent})" in lines[2]
    assert len(lines) == 3  # event-003 waits out the 5 s backoff: no line about event-000 again
    assert not any("0 attempts" in line or "()" in line for line in lines)

    assert main(["events", "--data-dir", str(tmp_path), "--dead-letter"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("event-000  botreg.bot.updated  queued ")
    assert listed[0].endswith(" after 1 attempt: HTTP 500")
    assert all(line.endswith(f" {unsent}") for line in listed[1:]) and len(listed) == 3
