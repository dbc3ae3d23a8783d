"""The HA lease (issue #11, item 3): one holder, monotonic fencing tokens, a deposed
holder fenced before its next write, release hands over at once, and the local
deadline stops writes while Redis is unreachable. Real redis-server, real Chroma."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.daemon.ha import SharedState, adopt_store
from botreg.daemon.lease import FencedError, Lease, check_redis_url
from botreg.errors import UsageError
from botreg.knowledge.ledger import Ledger
from botreg.store.chroma import ChromaStore
from botreg.store.settings import StoreSettings
from helpers import wait_for
from redis_server import redis_server
from sync_helpers import SyncHarness


def test_exactly_one_holder_and_tokens_grow(redis_url: str) -> None:
    a, b = Lease(redis_url, "g", 5), Lease(redis_url, "g", 5)
    try:
        first = a.try_acquire()
        assert first > 0 and a.held()
        assert b.try_acquire() == 0 and not b.held()  # SET NX: one holder
        a.check()
        with pytest.raises(FencedError):
            b.check()
        a.release()
        second = b.try_acquire()  # released: taken at once, not after 5 s
        assert second > first  # monotonic fencing token
        with pytest.raises(FencedError):
            a.check(first)  # an old token is never valid again
    finally:
        a.close()
        b.close()


def test_a_deposed_leader_is_fenced_before_its_next_store_write(
    redis_url: str, tmp_path: Path
) -> None:
    leader, other = Lease(redis_url, "g", 30), Lease(redis_url, "g", 30)
    store = ChromaStore(StoreSettings(), tmp_path / "data")
    try:
        assert leader.try_acquire()
        store.before_write = leader.check
        collection = store.collection("botreg-x-0123456789")
        store.upsert(collection, ["a"], ["text a"], [{"k": "a"}], [[0.1, 0.2]])
        # stolen: the key is deleted (an expiry would do the same) and another takes it
        leader.client.delete("botreg:ha:g:lease")
        assert other.try_acquire()
        assert leader.held()  # by its own clock it still leads: only the token tells
        with pytest.raises(FencedError, match="superseded"):
            store.upsert(collection, ["b"], ["text b"], [{"k": "b"}], [[0.3, 0.4]])
        with pytest.raises(FencedError):
            store.delete(collection, ["a"])
        with pytest.raises(FencedError):
            store.drop_collection("botreg-x-0123456789")
        assert collection.get()["ids"] == ["a"]  # nothing the deposed leader sent landed
        shared = SharedState(leader)
        with pytest.raises(FencedError):
            shared.write("c" * 40, {})
        assert shared.read().commit == ""
        SharedState(other).write("d" * 40, {})
        assert shared.read().commit == "d" * 40
    finally:
        store.close()
        leader.close()
        other.close()


def test_renewal_keeps_the_lease_and_the_deadline_stops_writes_when_redis_is_gone(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path / "redis") as port:
        lease = Lease(f"redis://127.0.0.1:{port}/0", "g", 1)
        lease.start()
        assert lease.try_acquire()
        time.sleep(2.5)  # over two lease periods: only the renewals keep it
        lease.check()
        assert lease.client.get("botreg:ha:g:lease") == lease.holder
    # Redis is gone: past the local deadline it stops writing, whatever Redis would say
    try:
        wait_for(lambda: not lease.held(), timeout=10)
        with pytest.raises(FencedError):
            lease.check()
    finally:
        lease.close()


def test_redis_urls_are_checked_and_their_password_never_shown(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_redis_url("redis://127.0.0.1:6379/0")
    assert check_redis_url("unix:///run/redis.sock")
    with pytest.raises(UsageError) as info:
        check_redis_url("http://user:hunter2-secret@127.0.0.1:6379")
    assert "hunter2-secret" not in str(info.value)
    args = ["sync", "--source", str(git_registry), "--data-dir", str(tmp_path / "d"), "--once"]
    assert main([*args, "--ha-redis", "http://user:hunter2-secret@127.0.0.1:1"]) == 2
    assert main([*args, "--ha-redis", "redis://127.0.0.1:1", "--lease-seconds", "0.5"]) == 2
    assert main([*args, "--ha-group", "x"]) == 2  # a group without a Redis
    err = capsys.readouterr().err
    assert "--lease-seconds" in err and "--ha-redis" in err
    assert "hunter2-secret" not in err and "Traceback" not in err


def test_once_exits_1_when_another_daemon_holds_the_lease(
    git_registry: Path, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = Lease(redis_url, "shared", 1)
    try:
        assert holder.try_acquire()
        holder.start()  # renewed: it stays held for the whole wait
        code = main(
            [
                "sync",
                "--source",
                str(git_registry),
                "--data-dir",
                str(tmp_path / "d"),
                "--once",
                "--ha-redis",
                redis_url,
                "--ha-group",
                "shared",
                "--lease-seconds",
                "1",
            ]
        )
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert code == 1, err
    assert "held by another daemon" in err and holder.holder in err
    assert not (tmp_path / "d" / "chroma").exists()  # nothing was synced


def test_adoption_rebuilds_the_records_ingest_would_have(
    git_registry: Path, tmp_path: Path
) -> None:
    """The adopted ledger's chunk records equal the ones the ingest wrote: same ids,
    paths, content hashes and metadata hashes (so nothing is embedded or rewritten)."""
    h = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        assert h.sync().result == "synced"
        ledger, store = h.syncer.ledger, h.syncer.store
        assert store is not None
        original = {
            state.collection: sorted(
                ledger.chunks_of(state.collection, ledger.files(state.collection)).items()
            )
            for state in ledger.domains()
        }
        fresh = Ledger(tmp_path / "other" / "ledger.sqlite")
        try:
            adopted = adopt_store(store, fresh, {}, "")
            assert adopted == sum(len(c) for rows in original.values() for _, c in rows)
            for collection, rows in original.items():
                got = fresh.chunks_of(collection, [path for path, _ in rows])
                for path, chunks in rows:
                    assert sorted(got[path], key=lambda c: c.id) == sorted(
                        chunks, key=lambda c: c.id
                    )
                # every file is marked unknown: the next ingest re-plans it
                assert set(fresh.files(collection).values()) == {"adopted:unknown"}
        finally:
            fresh.close()
    finally:
        h.close()


def test_once_leads_records_the_commit_releases_and_warns_of_an_embedded_store(
    git_registry: Path, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    password_url = redis_url.replace("redis://", "redis://:s3cret-pass@")
    args = ["sync", "--source", str(git_registry), "--data-dir", str(tmp_path / "d"), "--once"]
    # (redis-py sends the password; this server needs none): it is never shown
    assert main([*args, "--ha-redis", password_url, "--ha-group", "g", "--log-level", "debug"]) == 0
    err = capsys.readouterr().err
    assert "s3cret-pass" not in err and "Traceback" not in err
    assert "embedded store" in err  # each daemon would keep its own store
    probe = Lease(redis_url, "g", 5)
    try:
        head = git_registry.joinpath(".git/refs/heads/main").read_text().strip()
        assert SharedState(probe).read().commit == head  # recorded as applied
        assert probe.client.get("botreg:ha:g:lease") is None  # released at the exit
    finally:
        probe.close()


class _Sink:
    """Stands in for the Redis Streams sink (contract section 3): records flushes."""

    def __init__(self, delivered: bool) -> None:
        self.delivered = delivered
        self.timeouts: list[float] = []

    def flush(self, timeout: float) -> bool:
        self.timeouts.append(timeout)
        return self.delivered

    def close(self, drain: float = 0) -> None:
        pass


def test_the_applied_commit_is_recorded_only_once_the_stream_sink_flushed(
    git_registry: Path, tmp_path: Path, redis_url: str
) -> None:
    from botreg.daemon.run import Daemon, DaemonOptions
    from botreg.daemon.sync import SyncOptions

    def once(sink: _Sink) -> int:
        daemon = Daemon(
            SyncOptions(git_registry.as_uri(), data_dir=tmp_path / "d"),
            DaemonOptions(listen=None, ha_redis=redis_url, lease_seconds=3, ha_group="g"),
        )
        daemon.redis_stream = sink  # type: ignore[assignment]  # a stand-in for the sink
        return daemon.run_once()

    probe = Lease(redis_url, "g", 5)
    try:
        down = _Sink(delivered=False)
        assert once(down) == 0
        assert down.timeouts == [3.0]  # waited up to one lease period
        assert SharedState(probe).read().commit == ""  # events not out: not applied
        up = _Sink(delivered=True)
        assert once(up) == 0  # a noop cycle: the commit is recorded now
        head = git_registry.joinpath(".git/refs/heads/main").read_text().strip()
        assert up.timeouts == [3.0] and SharedState(probe).read().commit == head
    finally:
        probe.close()
