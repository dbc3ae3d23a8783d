"""What an attacker found on the daemon's Redis side (issue #11, review 1).

Each test reproduces one finding: a Redis (or a man in the middle) that trickles
its reply, `?at=` waiters that held worker threads, a password on the command
line, a foreign lease key without a TTL, and a fencing token that went backwards
after FLUSHALL.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
