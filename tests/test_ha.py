"""Highly available daemons (issue #11, item 3): two `botreg sync` daemons for one
registry and one store (a real Chroma server) and a lease in a real Redis.

Exactly one leads; the standby serves the leader's commit (`/bots` with
`X-Botreg-Commit`, `?at=`, `/readyz` with `role`); a clean stop hands the lease
over at once; a leader SIGKILLed mid-ingest is replaced within two lease periods
and the new leader finishes the commit without embedding what the dead one
stored, re-emitting its events with the same ids, leaving the store equal to a
fresh sync's; a deposed leader is fenced before its next write.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from botreg.daemon.lease import Lease
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import SyncOptions
from botreg.events.log import read_events
from botreg.store.chroma import ChromaStore
from botreg.store.settings import StoreSettings
from chroma_server import chroma_server, free_port
from conftest import git
from helpers import wait_for, write
from redis_server import redis_server
from sync_helpers import SyncHarness, commit

ENV = "environments/development.yaml"
LEASE = 2.0

# a section long enough (over 1/8 of the budget) to be a chunk of its own, not merged
LONG = "It says what a customer asks about and what the answer is, in a few more words."


def use_store(repo: Path, store: str) -> None:
    """Point the registry's development environment at another knowledge store."""
    path = repo / ENV
    text = path.read_text()
    old = "    type: persistent\n    path: chroma            # relative to the data dir\n"
    assert old in text
    path.write_text(text.replace(old, store))


def server_store(port: int) -> str:
    return f"    type: http\n    host: ${{STORE_HOST:127.0.0.1}}\n    port: {port}\n"


@pytest.fixture
def chroma_port(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "chroma-server").mkdir()
    with chroma_server(tmp_path / "chroma-server" / "data") as port:
        yield port


def events(data: Path) -> list[dict[str, Any]]:
    log = data / "events.jsonl"
    return list(read_events(log)) if log.exists() else []


def completed(data: Path) -> list[str]:
    return [e["data"]["to"] for e in events(data) if e["type"] == "botreg.sync.completed"]


def get(url: str) -> tuple[int, Any, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            body, status = response.read(), response.status
            headers = {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        with exc:
            body, status = exc.read(), exc.code
            headers = {k.lower(): v for k, v in exc.headers.items()}
    try:
        return status, json.loads(body), headers
    except ValueError:
        return status, body.decode(), headers


class Running:
    """An HA daemon running in a thread of this process."""

    def __init__(self, source: str, data: Path, redis_url: str) -> None:
        self.daemon = Daemon(
            SyncOptions(source, data_dir=data),
            DaemonOptions(
                interval=3600,
                listen="127.0.0.1:0",
                ha_redis=redis_url,
                lease_seconds=LEASE,
                ha_group="test",
            ),
        )
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return str(wait_for(lambda: self.daemon.http and f"http://{self.daemon.http.address}"))

    def get(self, path: str) -> tuple[int, Any, dict[str, str]]:
        return get(self.url + path)

    def stop(self) -> None:
        self.daemon.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


@pytest.mark.timeout(120)
def test_one_leader_and_a_standby_that_serves_the_leaders_commit(
    git_registry: Path, tmp_path: Path, redis_url: str, chroma_port: int
) -> None:
    use_store(git_registry, server_store(chroma_port))
    head = commit(git_registry, "store on the server")
    a = Running(git_registry.as_uri(), tmp_path / "a", redis_url)
    b = Running(git_registry.as_uri(), tmp_path / "b", redis_url)
    try:
        roles = wait_for(
            lambda: (
                sorted((a.daemon.role, b.daemon.role)) == ["leader", "standby"]
                and (a.daemon.role, b.daemon.role)
            )
        )
        leader, standby = (a, b) if roles[0] == "leader" else (b, a)
        wait_for(lambda: completed(leader.daemon.data.root) == [head])
        # the standby serves the leader's commit and is ready for it, with no cycle of its own
        wait_for(
            lambda: (
                standby.get("/readyz")[:2]
                == (200, {"ready": True, "reasons": [], "role": "standby"})
            )
        )
        assert leader.get("/readyz")[1]["role"] == "leader"
        assert not events(standby.daemon.data.root)  # a standby publishes nothing
        code, bots, headers = standby.get("/bots")
        assert code == 200 and headers["x-botreg-commit"] == head
        assert bots and {bot["commit"] for bot in bots} == {head}
        code, bot, headers = standby.get("/bots/billing-assistant")
        assert code == 200 and headers["x-botreg-commit"] == head and bot["commit"] == head
        code, status, _ = standby.get("/status")
        assert status["role"] == "standby" and status["applied_commit"] == head
        # what an operator needs to see: the group, Redis answering, the recorded commit
        ha = wait_for(lambda: standby.get("/status")[1]["ha"])
        assert ha["group"] == "test" and ha["redis"] == "reachable" and ha["fence"] == 0
        assert ha["shared_commit"] == head and ha["last_writer"] == leader.daemon.lease.holder  # type: ignore[union-attr]
        assert leader.get("/status")[1]["ha"]["fence"] >= 1
        # counted from 0, so an alert on its rate covers a daemon that never led
        assert metric(standby.get("/metrics")[1], "botreg_ha_takeovers_total") == 0
        assert metric(standby.get("/metrics")[1], "botreg_ha_redis_up") == 1
        # knowledge is read from the shared store, through the leader's collections
        code, found, _ = standby.get("/knowledge/billing/query?q=refund&k=2")
        assert code == 200 and found["results"], found
        assert metric(standby.get("/metrics")[1], "botreg_ha_leader") == 0
        assert metric(leader.get("/metrics")[1], "botreg_ha_leader") == 1

        # ?at= a commit the standby does not serve yet: it waits for it
        bot_file = git_registry / "bots/billing-assistant.yaml"
        bot_file.write_text(bot_file.read_text().replace("temperature: 0.2", "temperature: 0.3"))
        newer = commit(git_registry, "bump")
        assert newer != head
        code, _, headers = standby.get(f"/bots?at={head}")  # served already: no wait
        assert code == 200 and headers["x-botreg-commit"] == head
        leader.daemon.wake()
        code, bots, headers = standby.get(f"/bots?at={newer}")
        assert code == 200 and headers["x-botreg-commit"] == newer, bots
        # a commit nobody applies: 409 after the wait, saying what is served
        code, refused, _ = standby.get("/bots?at=" + "0" * 40)
        assert code == 409 and refused["served_commit"] == newer
        assert standby.get("/bots?at=not-a-commit")[0] == 400

        # a clean stop releases the lease: it is free (or already the standby's) at once,
        # not after the lease period
        holder = leader.daemon.lease.holder  # type: ignore[union-attr]
        client = standby.daemon.lease.client  # type: ignore[union-attr]
        leader.stop()
        assert client.get("botreg:ha:test:lease") in (None, standby.daemon.lease.holder)  # type: ignore[union-attr]
        assert client.get("botreg:ha:test:lease") != holder
        wait_for(lambda: standby.daemon.role == "leader")
        assert metric(standby.get("/metrics")[1], "botreg_ha_takeovers_total") == 1
        wait_for(lambda: standby.get("/readyz")[1].get("role") == "leader")
    finally:
        a.stop()
        b.stop()


def test_a_deposed_leader_ends_its_cycle_fenced_and_publishes_nothing(
    git_registry: Path, tmp_path: Path, redis_url: str
) -> None:
    h = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    lease, thief = Lease(redis_url, "g", 30), Lease(redis_url, "g", 30)
    try:
        assert lease.try_acquire()
        h.syncer.fence = lease
        assert h.sync().result == "synced"
        write(git_registry, "knowledge/billing/new.md", "# New\n\nA new page about invoices.\n")
        commit(git_registry, "new page")
        lease.client.delete("botreg:ha:g:lease")  # stolen: another daemon leads now
        assert thief.try_acquire()
        stored = h.stored("billing")
        result = h.sync()
        assert result.result == "fenced" and result.exit_code == 1
        assert h.events == []  # not one event of the deposed leader
        assert h.stored("billing") == stored  # and not one store write
        assert not h.syncer.status.doc.get("last_crash_log")
        assert h.syncer.status.doc["last_result"] == "fenced"
    finally:
        lease.close()
        thief.close()
        h.close()


# --- a leader SIGKILLed mid-ingest: subprocess daemons ------------------------------

# Test-only, loaded by `python -m botreg` through PYTHONPATH: slows the offline hash
# embedding per batch so the ingest lasts long enough to be killed in the middle.
_SITECUSTOMIZE = """
import os, time

delay = float(os.environ.get("BOTREG_TEST_EMBED_DELAY", "0"))
if delay:
    from botreg.store import embedding

    original = embedding.HashEmbeddingFunction.__call__

    def slow(self, input):
        time.sleep(delay)
        return original(self, input)

    embedding.HashEmbeddingFunction.__call__ = slow
"""


def _botreg(tmp_path: Path, name: str, *args: str) -> subprocess.Popen[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    environ = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "BOTREG_TEST_EMBED_DELAY": "0.5",
    }
    with open(tmp_path / f"{name}.log", "w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "botreg", *args],
            env=environ,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _stored(ledger_file: Path) -> int:
    if not ledger_file.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{ledger_file}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM chunks WHERE stored = 1").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _collections(store: ChromaStore) -> dict[str, dict[str, Any]]:
    """Every botreg collection: id -> (document, metadata without commit, embedding)."""
    found: dict[str, dict[str, Any]] = {}
    for collection in store.client.list_collections():
        if not collection.name.startswith("botreg-"):
            continue
        got = collection.get(include=["documents", "metadatas", "embeddings"])
        found[collection.name] = {
            i: (d, {k: v for k, v in m.items() if k != "commit"}, [round(float(x), 5) for x in e])
            for i, d, m, e in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
            )
        }
    return found


def _hashes(store: ChromaStore) -> set[str]:
    return {
        meta[1]["content_hash"]
        for chunks in _collections(store).values()
        for meta in chunks.values()
    }


@pytest.mark.timeout(240)
def test_a_leader_killed_mid_ingest_is_replaced_and_nothing_is_embedded_twice(
    git_registry: Path, tmp_path: Path, redis_url: str, chroma_port: int
) -> None:
    for i in range(16):  # about 650 distinct texts: three embedding batches of 256
        write(
            git_registry,
            f"knowledge/product/bulk/doc-{i:03d}.md",
            f"# Doc {i}\n\n"
            + "".join(
                f"## Part {j}\n\nText {i} {j} about plans, number {i * 1000 + j}. {LONG}\n\n"
                for j in range(40)
            ),
        )
    use_store(git_registry, server_store(chroma_port))
    head = commit(git_registry, "bulk knowledge on the server")
    common = ("--source", git_registry.as_uri(), "--interval", "3600", "--ha-redis", redis_url)
    ha = ("--lease-seconds", str(int(LEASE)), "--ha-group", "kill")
    a_data, b_data = tmp_path / "a", tmp_path / "b"
    a = _botreg(tmp_path, "a", "sync", *common, *ha, "--data-dir", str(a_data), "--listen", "off")
    lease = Lease(redis_url, "probe", 5)
    client = lease.client
    b: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: f":{a.pid}:" in (client.get("botreg:ha:kill:lease") or ""), timeout=60)
        b = _botreg(
            tmp_path,
            "b",
            "sync",
            *common,
            *ha,
            "--data-dir",
            str(b_data),
            "--listen",
            "127.0.0.1:0",
        )
        url = wait_for(
            lambda: (
                (b_data / "daemon.json").exists()
                and json.loads((b_data / "daemon.json").read_text())["url"]
            ),
            timeout=60,
        )
        wait_for(lambda: get(url + "/readyz")[1].get("role") == "standby", timeout=30)
        wait_for(lambda: _stored(a_data / "ledger.sqlite") >= 256, timeout=120, step=0.02)
        a.kill()
        killed = time.monotonic()
        a.wait(timeout=30)
        assert a.returncode == -signal.SIGKILL
        assert not completed(a_data), "the leader finished before it was killed"
        dead_ids = {e["id"] for e in events(a_data)}
        server = ChromaStore(
            StoreSettings(type="http", host="127.0.0.1", port=chroma_port), tmp_path
        )
        try:
            kept = _hashes(server)  # what the dead leader stored
            assert len(kept) >= 256

            # the standby takes over within two lease periods (plus a poll)
            wait_for(lambda: get(url + "/readyz")[1].get("role") == "leader", timeout=60, step=0.05)
            took = time.monotonic() - killed
            assert took < 2 * LEASE + 1.5, f"takeover took {took:.1f} s"
            wait_for(lambda: completed(b_data) == [head], timeout=120)
            final = _collections(server)
            needed = _hashes(server)
        finally:
            server.close()
        # nothing the dead leader stored was embedded again
        [done] = [e for e in events(b_data) if e["type"] == "botreg.sync.completed"]
        embedded = done["data"]["counts"]["chunks_embedded"]
        assert embedded == len(needed - kept) and 0 < embedded < len(needed)
        # the dead leader's events are re-emitted with the same ids (at least once)
        assert dead_ids and dead_ids <= {e["id"] for e in events(b_data)}

        # a clean SIGTERM releases the lease at once (not after the lease period)
        b.send_signal(signal.SIGTERM)
        assert b.wait(timeout=30) == 0
        assert client.get("botreg:ha:kill:lease") is None
    finally:
        for proc in (a, b):
            if proc is not None:
                proc.kill()
                proc.wait()
        lease.close()
    assert "Traceback" not in (tmp_path / "b.log").read_text()

    # the store equals a fresh sync's (ids, texts, vectors, metadata but `commit`)
    fresh_repo = tmp_path / "fresh"
    shutil.copytree(git_registry, fresh_repo)
    path = fresh_repo / ENV
    path.write_text(
        path.read_text().replace(
            server_store(chroma_port), "    type: persistent\n    path: chroma\n"
        )
    )
    git(fresh_repo, "commit", "-qam", "embedded store")
    h = SyncHarness(fresh_repo.as_uri(), tmp_path / "fresh-data")
    try:
        assert h.sync().result == "synced"
        assert h.syncer.store is not None
        assert _collections(h.syncer.store) == final
    finally:
        h.close()


def test_one_repository_written_differently_is_one_group(tmp_path: Path) -> None:
    """A second daemon started with `/srv/reg/`, `file:///srv/reg` or `/srv/reg/.git`
    for `/srv/reg` must share the first one's lease, not lead beside it."""
    from botreg.daemon.ha import default_group

    repo = tmp_path / "reg"
    (repo / ".git").mkdir(parents=True)
    same = [
        str(repo),
        f"{repo}/",
        repo.as_uri(),
        f"file://localhost{repo}",
        f"{repo}/.git",
        str(tmp_path / "." / "reg"),
    ]
    assert len({default_group(s, "main", "production") for s in same}) == 1
    urls = [
        "https://github.com/acme/registry",
        "https://user:token@GitHub.com/acme/registry.git",
        "https://github.com:443/acme/registry/",
    ]
    assert len({default_group(u, "main", "production") for u in urls}) == 1
    assert default_group("git@github.com:acme/registry.git", "main", "p") == default_group(
        "ssh://git@github.com/acme/registry", "main", "p"
    )
    # and what differs still differs: another repository, branch or environment
    base = default_group(urls[0], "main", "production")
    assert default_group("https://github.com/acme/other", "main", "production") != base
    assert default_group(urls[0], "release", "production") != base
    assert default_group(urls[0], "main", "staging") != base


@pytest.mark.timeout(120)
def test_a_redis_outage_shows_in_status_metrics_and_botreg_status(
    git_registry: Path, tmp_path: Path
) -> None:
    """While the HA Redis does not answer nobody leads and commits wait: /status,
    `botreg status` and a gauge say so (they said `Synced` and nothing else)."""
    port = free_port()
    with redis_server(tmp_path / "redis", port):
        daemon = Running(git_registry.as_uri(), tmp_path / "a", f"redis://127.0.0.1:{port}/0")
        try:
            wait_for(lambda: daemon.daemon.role == "leader")
            wait_for(lambda: daemon.get("/status")[1].get("ha", {}).get("redis") == "reachable")
        except BaseException:
            daemon.stop()
            raise
    try:  # the server is gone now
        wait_for(lambda: daemon.get("/status")[1]["ha"]["redis"] == "unreachable", timeout=30)
        ha = daemon.get("/status")[1]["ha"]
        assert ha["redis_error"] and ha["redis_since"]
        assert metric(daemon.get("/metrics")[1], "botreg_ha_redis_up") == 0
        out = subprocess.run(
            [sys.executable, "-m", "botreg", "status", "--data-dir", str(tmp_path / "a")],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode in (0, 1), out.stderr
        assert "HA Redis:    unreachable since" in out.stdout, out.stdout
        assert "role:        " in out.stdout and "(group test)" in out.stdout
        with redis_server(tmp_path / "redis", port):  # back: it says so, and leads again
            wait_for(lambda: daemon.get("/status")[1]["ha"]["redis"] == "reachable", timeout=30)
            wait_for(lambda: daemon.daemon.role == "leader", timeout=30)
            assert metric(daemon.get("/metrics")[1], "botreg_ha_redis_up") == 1
            daemon.stop()
    finally:
        if daemon.thread.is_alive():
            daemon.stop()


@pytest.mark.timeout(120)
def test_a_takeover_with_no_new_commit_brings_the_new_leaders_store_in_line(
    git_registry: Path, tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Observed (embedded stores, which the README warns against for HA): the new
    leader adopted its own empty store, said ready, and answered knowledge queries
    with nothing until the next commit. A takeover now brings the store in line
    with the applied commit at once, and a standby warns of the embedded store too."""
    caplog.set_level(logging.INFO, "botreg.daemon")
    head = git(git_registry, "rev-parse", "HEAD").strip()
    a = Running(git_registry.as_uri(), tmp_path / "a", redis_url)
    wait_for(lambda: a.daemon.role == "leader" and a.get("/status")[1]["applied_commit"] == head)
    b = Running(git_registry.as_uri(), tmp_path / "b", redis_url)
    try:
        wait_for(lambda: b.daemon.role == "standby" and b.get("/readyz")[1].get("ready"))
        assert any("embedded store" in r.getMessage() for r in caplog.records)
        assert not b.get("/knowledge/billing/query?q=refund&k=2")[1].get("results")
        a.stop()
        wait_for(lambda: b.daemon.role == "leader")
        found = wait_for(
            lambda: b.get("/knowledge/billing/query?q=refund&k=2")[1].get("results"), timeout=60
        )
        assert found
        wait_for(lambda: any("brought the store in line" in r.getMessage() for r in caplog.records))
    finally:
        a.stop()
        b.stop()
