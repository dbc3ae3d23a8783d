"""Readiness that tells the truth (issue #10, item 6): a restarted daemon serves its
applied commit at once, a rejected head does not take a healthy daemon out of
service, stale means no successful fetch for `--stale-after` seconds, and `/status`
and `/readyz` always agree."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from botreg.daemon.readiness import Readiness, default_stale_after
from conftest import git
from sync_helpers import commit
from test_daemon import Running, completed, events, wait_for


@pytest.fixture
def daemons() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for daemon in started:
        daemon.stop()


def start(daemons: list[Running], source: Path, data: Path, **options: Any) -> Running:
    daemon = Running(source.as_uri(), data, **options)
    daemons.append(daemon)
    return daemon


def ready_condition(d: Running) -> dict[str, Any]:
    status, doc = d.get("/status")
    assert status == 200
    return dict(doc["conditions"]["Ready"])


def metric(d: Running, name: str) -> float | None:
    _status, text = d.get("/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_a_restarted_daemon_is_ready_and_answers_queries_without_a_new_commit(
    daemons: list[Running], git_registry: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = start(daemons, git_registry, data, interval=3600)
    wait_for(lambda: completed(data))
    assert first.stop() == 0
    again = start(daemons, git_registry, data, interval=3600)
    # before: 503 "store unreachable" until someone pushed (the store opened on apply)
    wait_for(
        lambda: again.get("/readyz") == (200, {"ready": True, "reasons": [], "role": "single"})
    )
    assert ready_condition(again)["status"] == "True"  # /status agrees
    status, found = again.get("/knowledge/billing/query?q=purchase+orders&k=2")
    assert status == 200 and len(found["results"]) == 2
    assert completed(data) == [git(git_registry, "rev-parse", "HEAD").strip()]  # no new apply


def test_the_store_is_open_before_the_first_cycle_after_a_restart(
    git_registry: Path, tmp_path: Path
) -> None:
    from botreg.daemon.run import Daemon, DaemonOptions
    from botreg.daemon.sync import SyncOptions

    data = tmp_path / "data"
    assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 0
    daemon = Daemon(SyncOptions(git_registry.as_uri(), data_dir=data), DaemonOptions(listen=None))
    with daemon._running():  # start-up only: no cycle runs
        assert daemon.readiness is not None
        assert daemon.readiness() == (True, [])
        assert daemon._query("billing", "purchase orders", 2)


def test_a_rejected_head_keeps_a_serving_daemon_ready(
    daemons: list[Running], git_registry: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    # staleness after 3 s: a rejected cycle used to count as stale (no "success");
    # fetches every 0.2 s keep it fresh even on a loaded machine
    d = start(daemons, git_registry, data, interval=0.2, stale_after=3.0)
    good = wait_for(lambda: completed(data))[0]
    bot = git_registry / "bots/billing-assistant.yaml"
    bot.write_text(bot.read_text().replace("status: active", "status: enabled"))
    bad = commit(git_registry, "bad")
    wait_for(lambda: any(e["type"] == "botreg.sync.rejected" for e in events(data)))
    synced_at = time.monotonic()
    while time.monotonic() - synced_at < 4.0:  # past --stale-after since the last apply
        time.sleep(0.1)
    assert d.get("/readyz") == (200, {"ready": True, "reasons": [], "role": "single"})
    _status, doc = d.get("/status")
    assert doc["applied_commit"] == good and doc["rejected_commit"] == bad
    assert doc["conditions"]["Ready"]["status"] == "True"
    assert doc["conditions"]["ValidationFailed"]["status"] == "True"  # reported, not hidden
    assert metric(d, "botreg_rejected_head") == 1.0
    bot.write_text(bot.read_text().replace("status: enabled", "status: active"))
    fixed = commit(git_registry, "fix")
    wait_for(lambda: fixed in completed(data))
    wait_for(lambda: metric(d, "botreg_rejected_head") == 0.0)


def test_no_successful_fetch_for_stale_after_is_not_ready_then_recovers(
    daemons: list[Running], git_registry: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    d = start(daemons, git_registry, data, interval=0.2, stale_after=1.0)
    wait_for(lambda: completed(data))
    wait_for(lambda: d.get("/readyz")[0] == 200)
    gone = tmp_path / "gone"
    git_registry.rename(gone)  # the remote is down: every fetch fails

    def stale() -> bool:
        status, body = d.get("/readyz")
        return status == 503 and any("successful fetch" in r for r in body["reasons"])

    wait_for(stale)
    condition = ready_condition(d)  # /status says the same, with the same reason
    assert condition["status"] == "False" and "successful fetch" in condition["message"]
    gone.rename(git_registry)
    d.daemon.wake()
    wait_for(lambda: d.get("/readyz")[0] == 200)
    assert ready_condition(d)["status"] == "True"


# --- the rule itself ----------------------------------------------------------------


def _doc(**values: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "applied_commit": "a" * 40,
        "rejected_commit": "",
        "last_fetch": datetime.now(UTC).isoformat(timespec="seconds"),
        "conditions": {"Stalled": {"status": "False"}},
    }
    doc.update(values)
    return doc


def test_readiness_rule() -> None:
    now = time.time()
    old = (datetime.now(UTC) - timedelta(seconds=600)).isoformat(timespec="seconds")
    rule = Readiness(_doc, lambda: True, stale_after=300, since=now - 1000)
    assert rule() == (True, [])
    assert rule.evaluate(_doc(rejected_commit="b" * 40)) == (True, [])  # serving last good
    ready, reasons = rule.evaluate(_doc(last_fetch=old))
    assert not ready and reasons == ["last successful fetch 600 s ago"]
    assert rule.evaluate(_doc(applied_commit="")) == (False, ["no commit applied yet"])
    down = Readiness(_doc, lambda: False, stale_after=300)
    assert down() == (False, ["store unreachable"])
    # just started: the fetch saved before the restart counts until this process fetches
    # (it used to be forgiven: a daemon whose remote is gone looked fresh after a restart)
    recent = (datetime.now(UTC) - timedelta(seconds=60)).timestamp()
    restarted = Readiness(lambda: _doc(last_fetch=""), lambda: True, 300, last_fetch=recent)
    assert restarted() == (True, [])
    long_ago = Readiness(lambda: _doc(last_fetch=""), lambda: True, 300, last_fetch=now - 600)
    ready, reasons = long_ago()
    assert not ready and len(reasons) == 1 and reasons[0].startswith("last successful fetch 6")
    # this process's own fetch wins over the saved one
    fetched_now = Readiness(_doc, lambda: True, 300, last_fetch=now - 600)
    assert fetched_now() == (True, [])
    loading = Readiness(_doc, lambda: True, 300, read_model_loaded=lambda: False)
    assert loading() == (False, ["read model loading"])
    never = Readiness(lambda: _doc(last_fetch=""), lambda: True, stale_after=300, since=now - 400)
    assert not never()[0] and "no successful fetch since the start" in never()[1][0]
    assert default_stale_after(30) == 300 and default_stale_after(600) == 1800


def test_stale_after_must_be_positive(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for value in ("0", "-5", "nan"):
        args = ["sync", "--source", str(git_registry), "--data-dir", str(tmp_path / "d")]
        assert main([*args, "--stale-after", value]) == 2
        assert "--stale-after must be a positive number of seconds" in capsys.readouterr().err


def test_a_store_that_cannot_open_at_start_up_is_a_reason_not_a_crash(
    git_registry: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from botreg.daemon.run import Daemon, DaemonOptions
    from botreg.daemon.sync import APPLIED_KEY, SyncOptions
    from botreg.knowledge.ledger import Ledger

    data = tmp_path / "data"
    assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 0
    ledger = Ledger(data / "ledger.sqlite")
    ledger.put(APPLIED_KEY, "f" * 40)  # a commit the mirror does not hold
    ledger.close()
    daemon = Daemon(SyncOptions(git_registry.as_uri(), data_dir=data), DaemonOptions(listen=None))
    with daemon._running():  # starts: the next apply opens the store
        assert daemon.readiness is not None
        assert daemon.readiness() == (False, ["store unreachable"])
    assert "could not open the store of the applied commit: the applied commit ffffffffffff" in (
        caplog.text
    )


def test_a_store_that_failed_to_open_is_retried_by_the_next_quiet_cycle(
    git_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a new commit nothing would open it again: a no-op cycle retries."""
    from botreg.daemon.run import Daemon, DaemonOptions
    from botreg.daemon.sync import Syncer, SyncOptions
    from botreg.errors import BotregError

    data = tmp_path / "data"
    assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 0
    original = Syncer.open_applied_store
    calls: list[bool] = []

    def flaky(self: Syncer) -> Any:
        calls.append(True)
        if len(calls) == 1:
            raise BotregError("the store is not there yet")
        return original(self)

    monkeypatch.setattr(Syncer, "open_applied_store", flaky)
    daemon = Daemon(SyncOptions(git_registry.as_uri(), data_dir=data), DaemonOptions(listen=None))
    with daemon._running():
        assert daemon.syncer is not None and daemon.syncer.store is None
        result = daemon._cycle(daemon.syncer)
        daemon._after_cycle(result)
        assert result.result == "noop"
        assert len(calls) == 2 and daemon.syncer.store is not None
        assert daemon.readiness is not None and daemon.readiness() == (True, [])
