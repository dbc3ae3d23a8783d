"""The daemon's Redis Streams sink (issue #11, item 1), against a real redis-server."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from tests.redis_server import redis_server

from botreg.cli import main
from botreg.daemon.metrics import Metrics
from botreg.errors import BotregError
from botreg.events import CloudEvent
from botreg.events.log import read_events
from botreg.events.outbox import Outbox
from botreg.events.redis_stream import REDIS, RedisStreamSink, remember_redis_credentials
from botreg.secrets import mask_text
from helpers import wait_for

STREAM = "botreg:events"


def event(n: int) -> CloudEvent:
    return CloudEvent(type="botreg.bot.updated", source="test", id=f"event-{n}", data={"n": n})


def entries(url: str, stream: str = STREAM) -> list[dict[str, str]]:
    """Every entry of the stream, oldest first, fields decoded."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [fields for _id, fields in client.xrange(stream)]
    finally:
        client.close()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[list[RedisStreamSink]]:
    """Sinks made by a test, closed after it even when it fails."""
    made: list[RedisStreamSink] = []
    yield made
    for sink in made:
        sink.close()


def test_entries_carry_id_type_and_the_cloudevent(
    redis_url: str, tmp_path: Path, sinks: list[RedisStreamSink]
) -> None:
    metrics = Metrics()
    sink = RedisStreamSink(redis_url, tmp_path / "outbox.sqlite", metrics=metrics)
    sinks.append(sink)
    published = [event(n) for n in range(5)]
    for e in published:
        sink(e)
    assert sink.flush(timeout=20)
    got = entries(redis_url)
    assert [g["id"] for g in got] == [e.id for e in published]
    assert [g["type"] for g in got] == ["botreg.bot.updated"] * 5
    assert [g["event"] for g in got] == [e.to_json() for e in published]
    assert sink.pending() == 0
    assert sample(metrics, "botreg_redis_events_appended_total") == 5
    assert sample(metrics, "botreg_redis_outbox_depth") == 0
    assert sample(metrics, "botreg_redis_outbox_oldest_age_seconds") == 0


def test_order_is_kept_across_a_redis_restart_in_the_middle_of_a_burst(
    tmp_path: Path, sinks: list[RedisStreamSink], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="botreg")
    folder = tmp_path / "redis"
    server = redis_server(folder)
    port = server.__enter__()
    url = f"redis://127.0.0.1:{port}/0"
    metrics = Metrics()
    sink = RedisStreamSink(
        url, tmp_path / "outbox.sqlite", metrics=metrics, batch=10, base_delay=0.05, max_delay=0.5
    )
    sinks.append(sink)
    admin = redis.Redis.from_url(url)
    try:
        for n in range(100):
            sink(event(n))
        wait_for(lambda: admin.xlen(STREAM) >= 50)
        # SAVE: what was appended survives the restart, as on a server with persistence
        admin.shutdown(save=True)
    finally:
        admin.close()
        server.__exit__(None, None, None)
    for n in range(100, 200):  # Redis is down: they wait in the outbox
        sink(event(n))
    wait_for(lambda: sample(metrics, "botreg_redis_append_errors_total", reason="connection"))
    assert sink.pending() > 0
    assert not sink.flush(timeout=0.2)
    with redis_server(folder, port):
        for n in range(200, 300):
            sink(event(n))
        assert sink.flush(timeout=30)
        got = [g["id"] for g in entries(url)]
    expected = [f"event-{n}" for n in range(300)]
    first_seen = list(dict.fromkeys(got))
    assert first_seen == expected  # nothing lost, nothing reordered
    assert len(got) - len(first_seen) <= 10  # a re-sent batch at most, same ids
    messages = [r.getMessage() for r in caplog.records if r.name == "botreg.redis_stream"]
    assert len([m for m in messages if m.startswith("cannot append events")]) == 1
    assert len([m for m in messages if "resumed after" in m]) == 1
    assert sample(metrics, "botreg_redis_outbox_depth") == 0


def test_maxlen_trims_the_stream(
    redis_url: str, tmp_path: Path, sinks: list[RedisStreamSink]
) -> None:
    sink = RedisStreamSink(redis_url, tmp_path / "outbox.sqlite", maxlen=100, batch=50)
    sinks.append(sink)
    for n in range(1000):
        sink(event(n))
    assert sink.flush(timeout=30)
    got = entries(redis_url)
    # approximate trimming keeps whole nodes of 100 entries: between 100 and 200 stay
    assert 100 <= len(got) < 250
    assert got[-1]["id"] == "event-999"
    assert [g["id"] for g in got] == [f"event-{n}" for n in range(1000 - len(got), 1000)]


class FencedError(BotregError):
    """The contract's FencedError (HA defines it in botreg.daemon.lease)."""


class FakeFence:
    """A lease whose held token and deposed tokens the test sets."""

    def __init__(self, token: int) -> None:
        self.held = token
        self.deposed: set[int] = set()
        self.checked: list[int] = []

    def token(self) -> int:
        return self.held

    def check(self, token: int | None = None) -> None:
        token = self.held if token is None else token
        self.checked.append(token)
        if token in self.deposed:
            raise FencedError(f"fencing token {token} lost the lease")


def test_fenced_events_are_dropped_and_unfenced_ones_kept(
    redis_url: str,
    tmp_path: Path,
    sinks: list[RedisStreamSink],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="botreg")
    fence = FakeFence(token=5)
    metrics = Metrics()
    sink = RedisStreamSink(redis_url, tmp_path / "outbox.sqlite", fence=fence, metrics=metrics)
    sinks.append(sink)
    sink(event(1))
    sink(event(2))
    assert sink.flush(timeout=20)
    assert 5 in fence.checked
    # deposed while the events of token 5 still wait: they must never reach the stream
    sink.close()
    fence.deposed.add(5)
    for n in (3, 4):
        Outbox(tmp_path / "outbox.sqlite", sink=REDIS).enqueue(
            f"event-{n}", event(n).to_json().encode(), token=5
        )
    fence.held = 0  # a standby: its events carry token 0 (no HA) and are never dropped
    sink = RedisStreamSink(redis_url, tmp_path / "outbox.sqlite", fence=fence, metrics=metrics)
    sinks.append(sink)
    sink(event(5))
    fence.held = 6  # the lease again, with a new token
    sink(event(6))
    assert sink.flush(timeout=20)
    assert [g["id"] for g in entries(redis_url)] == ["event-1", "event-2", "event-5", "event-6"]
    assert sample(metrics, "botreg_redis_events_fenced_total") == 2
    assert sink.pending() == 0
    assert any("dropped 2 events" in r.getMessage() for r in caplog.records)


def test_a_fence_that_cannot_answer_delays_and_never_drops(
    redis_url: str, tmp_path: Path, sinks: list[RedisStreamSink]
) -> None:
    class Unreachable(FakeFence):
        def check(self, token: int | None = None) -> None:
            raise ConnectionRefusedError("the lease's Redis is down")

    fence = Unreachable(token=3)
    metrics = Metrics()
    sink = RedisStreamSink(
        redis_url, tmp_path / "outbox.sqlite", fence=fence, metrics=metrics, base_delay=0.05
    )
    sinks.append(sink)
    sink(event(1))
    wait_for(lambda: sample(metrics, "botreg_redis_append_errors_total", reason="fence"))
    assert sink.pending() == 1 and entries(redis_url) == []


def test_a_stop_is_prompt_while_redis_hangs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="botreg")
    # a server that accepts connections (the kernel's backlog) and never answers
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        url = f"redis://127.0.0.1:{hung.getsockname()[1]}/0"
        sink = RedisStreamSink(url, tmp_path / "outbox.sqlite", timeout=60)
        sink(event(1))
        assert not sink.flush(timeout=0.3)
        started = time.monotonic()
        sink.close(drain=0.5)
        took = time.monotonic() - started
    assert took < 0.5 + 1 + 1.5  # drain + 1 s, with slack for a loaded machine
    # the call cut off by the stop is not reported as a failure
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # nothing was dropped: the next start appends it
    outbox = Outbox(tmp_path / "outbox.sqlite", sink=REDIS)
    try:
        assert outbox.stats()[0] == 1
    finally:
        outbox.close()


def _sync(*args: str) -> int:
    return main(["sync", "--once", "--listen", "off", *args])


def _sync_to(source: Path, data: Path, url: str) -> int:
    return _sync("--source", str(source), "--data-dir", str(data), "--events-redis", url)


def test_sync_once_appends_exactly_the_runs_events_in_log_order(
    git_registry: Path, redis_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    code = _sync(
        "--source", str(git_registry), "--data-dir", str(data), "--events-redis", redis_url,
        "--events-stream", "registry:main",
    )  # fmt: skip
    assert code == 0
    logged = [e["id"] for e in read_events(data / "events.jsonl")]
    assert logged and "botreg.sync.completed" in {
        e["type"] for e in read_events(data / "events.jsonl")
    }
    assert [g["id"] for g in entries(redis_url, "registry:main")] == logged
    assert entries(redis_url) == []  # the default stream was not written


def test_redis_down_at_start_up_queues_then_delivers_in_order(
    git_registry: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    folder = tmp_path / "redis"
    with redis_server(folder) as port:
        pass  # a port that was free, now refused
    url = f"redis://127.0.0.1:{port}/0"
    assert _sync_to(git_registry, data, url) == 0
    logged = [e["id"] for e in read_events(data / "events.jsonl")]
    outbox = Outbox(data / "outbox.sqlite", sink=REDIS)
    try:
        assert outbox.stats()[0] == len(logged)
    finally:
        outbox.close()
    with redis_server(folder, port):
        # nothing new to sync: the events of the first run go out at this start
        assert _sync_to(git_registry, data, url) == 0
        assert [g["id"] for g in entries(url)] == logged


PASSWORD = "Zq8vT3stRedisPassw0rd"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"http://botreg:{PASSWORD}@127.0.0.1:6379/0", "expected redis://"),
        (f"redis://:{PASSWORD}@127.0.0.1:99999/0", "the port is not a number"),
        (f"redis://:{PASSWORD}@/0", "no host"),
        (f"redis://127.0.0.1:6379/zero?password={PASSWORD}", "database number"),
        (f"redis://127.0.0.1:6379/0?password={PASSWORD}&db=x", "'db'"),
        (f"redis://127.0.0.1:6379/0?password={PASSWORD}&nonsense=1", "nonsense"),
        ("unix://", "socket's path"),
    ],
)
def test_a_bad_url_is_a_usage_error_without_the_password(
    url: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert _sync("--source", str(tmp_path), "--data-dir", str(data), "--events-redis", url) == 2
    out, err = capsys.readouterr()
    assert "--events-redis" in err and says in err
    assert PASSWORD not in out + err and "Traceback" not in err
    assert not data.exists()  # refused before anything was created


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--events-stream", ""], "empty"),
        (["--events-stream", "bot events"], "whitespace"),
        (["--events-stream", "bot\x1bevents"], "control"),
        (["--events-maxlen", "999"], "at least 1000"),
    ],
)
def test_bad_stream_flags_are_usage_errors(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _sync("--source", str(tmp_path), "--data-dir", str(tmp_path / "d"), *args) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_the_password_never_reaches_a_log_line_an_error_or_an_event(
    git_registry: Path,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("requirepass", PASSWORD)
    admin.close()
    port = redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    good = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    # a wrong password: the server refuses, the errors are logged
    wrong = f"redis://botreg:{PASSWORD[::-1]}@127.0.0.1:{port}/0?password={PASSWORD[::-1]}"
    metrics = Metrics()
    sink = RedisStreamSink(wrong, tmp_path / "wrong.sqlite", metrics=metrics, base_delay=0.05)
    try:
        sink(event(1))
        wait_for(lambda: sample(metrics, "botreg_redis_append_errors_total", reason="connection"))
    finally:
        sink.close()
    data = tmp_path / "data"
    assert _sync_to(git_registry, data, good) == 0
    got = entries_with_password(port)
    assert got and [g["id"] for g in got] == [e["id"] for e in read_events(data / "events.jsonl")]
    out, err = capsys.readouterr()
    texts = [out, err, (data / "events.jsonl").read_text(), json.dumps(got)]
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    assert any("cannot append events" in t for t in texts)  # the failure was logged
    for text in texts:
        assert PASSWORD not in text and PASSWORD[::-1] not in text


def entries_with_password(port: str) -> list[dict[str, Any]]:
    client = redis.Redis(port=int(port), password=PASSWORD, decode_responses=True)
    try:
        return [fields for _id, fields in client.xrange(STREAM)]
    finally:
        client.close()


def test_the_user_name_is_not_made_a_secret(tmp_path: Path) -> None:
    # a user name such as `botreg` registered as a secret would mask the word in
    # every later message of the process ("***: error: not a *** registry")
    remember_redis_credentials(f"redis://botreg:{PASSWORD}@127.0.0.1:6379/0")
    assert mask_text("botreg: error: not a botreg registry") == (
        "botreg: error: not a botreg registry"
    )
    assert mask_text(f"AUTH botreg {PASSWORD}") == "AUTH botreg ***"
