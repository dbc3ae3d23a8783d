"""Fixes found by testers on the merged #10: a bad store setting does not break the
served store, stops are prompt in every phase, interrupted cycles are not failures,
readiness survives a restart, a corrupt ledger is an operator error."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from botreg.cli import main
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import APPLIED_KEY, CycleResult, Syncer, SyncOptions
from conftest import git
from sync_helpers import SyncHarness, commit
from test_prompt_stop import wait_for

BAD_STORE = "    type: http\n    host: chroma.example.invalid\n    port: 8000\n"
GOOD_STORE = "    type: persistent\n    path: chroma            # relative to the data dir\n"


@pytest.fixture
def daemon(git_registry: Path, tmp_path: Path) -> Iterator[Daemon]:
    """A daemon with its start-up done (no cycle run yet, no HTTP server)."""
    d = Daemon(
        SyncOptions(git_registry.as_uri(), data_dir=tmp_path / "data"),
        DaemonOptions(listen=None),
    )
    with d._running():
        yield d


def cycle(d: Daemon) -> str:
    """One cycle as the daemon's loop runs it; its result."""
    assert d.syncer is not None
    result = d._cycle(d.syncer)
    d._after_cycle(result)
    return result.result


# --- item 6: one bad commit must not break the embedded store ---------------------------


def test_a_commit_naming_an_unreachable_store_keeps_the_old_one_serving(
    daemon: Daemon, git_registry: Path
) -> None:
    assert cycle(daemon) == "synced"
    assert daemon.readiness is not None and daemon.readiness() == (True, [])
    env = git_registry / "environments" / "development.yaml"
    good = env.read_text()
    assert GOOD_STORE in good
    env.write_text(good.replace(GOOD_STORE, BAD_STORE))
    commit(git_registry, "store on a host that does not exist")
    assert cycle(daemon) == "failed"  # as expected: the new store cannot open
    assert daemon.syncer is not None
    assert "chroma.example.invalid" in daemon.syncer.status.doc["last_error"]
    # before: 503 "store unreachable" and queries failing until a restart
    assert daemon.readiness() == (True, [])
    assert daemon._query("billing", "purchase orders", 2)
    assert cycle(daemon) == "failed"  # the retry of the same head changes nothing
    assert daemon.readiness() == (True, [])
    assert daemon._query("billing", "purchase orders", 2)
    env.write_text(good)
    fixed = commit(git_registry, "back to the embedded store")
    assert cycle(daemon) == "synced"  # before: AttributeError in phase apply, every cycle
    assert daemon.syncer.status.doc["applied_commit"] == fixed
    assert daemon.readiness() == (True, [])
    assert daemon._query("billing", "purchase orders", 2)


def test_other_settings_for_the_same_folder_swap_the_client_without_breaking_it(
    daemon: Daemon, git_registry: Path, tmp_path: Path
) -> None:
    # New settings, same folder: the new client opens while the old one is still open
    # (Chroma shares one system per path), then the old one closes: the new must work.
    assert cycle(daemon) == "synced"
    env = git_registry / "environments" / "development.yaml"
    env.write_text(env.read_text().replace("path: chroma ", "path: ./chroma "))
    commit(git_registry, "the same folder, spelt otherwise")
    assert cycle(daemon) == "synced"
    assert daemon.syncer is not None and daemon.syncer.store is not None
    assert daemon.syncer.store.location == str((tmp_path / "data" / "chroma").resolve())
    assert daemon.readiness is not None and daemon.readiness() == (True, [])
    assert daemon._query("billing", "purchase orders", 2)
    env.write_text(env.read_text().replace("path: ./chroma ", "path: chroma "))
    (git_registry / "knowledge" / "billing" / "new.md").write_text("# Vouchers\n\nVouchers.\n")
    commit(git_registry, "and back, with a new file")
    assert cycle(daemon) == "synced"  # the ingest writes through the swapped client
    assert daemon._query("billing", "vouchers", 1)[0]["path"] == "knowledge/billing/new.md"


# --- item 1: a stop is honoured in validation, diff and emit -----------------------------


def add_bots(repo: Path, count: int) -> None:
    """`count` more valid bots (copies of the billing assistant)."""
    text = (repo / "bots" / "billing-assistant.yaml").read_text()
    for n in range(count):
        (repo / "bots" / f"extra-{n:03}.yaml").write_text(
            text.replace("name: Billing Assistant", f"name: Extra {n}")
        )


class StopIn:
    """A `should_stop` that says True from the `after`-th question asked in `phase`."""

    def __init__(self, phase: str, after: int) -> None:
        self.phase, self.after, self.asked = phase, after, 0
        self.syncer: Syncer | None = None

    def __call__(self) -> bool:
        assert self.syncer is not None
        if self.syncer._phase != self.phase:
            return False
        self.asked += 1
        return self.asked > self.after


def harness(git_registry: Path, data: Path, stop: StopIn) -> SyncHarness:
    h = SyncHarness(git_registry.as_uri(), data)
    h.syncer.should_stop = stop
    stop.syncer = h.syncer
    return h


def test_a_stop_is_honoured_between_files_in_validation(git_registry: Path, tmp_path: Path) -> None:
    add_bots(git_registry, 40)
    commit(git_registry, "40 more bots")
    stop = StopIn("validate", after=5)
    h = harness(git_registry, tmp_path / "data", stop)
    try:
        result = h.sync()
        # before: validation ran to its end, the stop was seen in apply only
        assert (result.result, result.phase) == ("interrupted", "validate")
        assert len(h.syncer._validation_cache) == 5  # five files checked, then it stopped
        assert h.events == []  # nothing emitted, nothing applied
        assert h.syncer.ledger.get(APPLIED_KEY) == ""
        stop.after = 10**9  # the restart redoes the cycle (the cached five are not redone)
        assert h.sync().result == "synced"
    finally:
        h.close()


def test_a_stop_is_honoured_between_files_in_the_diff(git_registry: Path, tmp_path: Path) -> None:
    stop = StopIn("diff", after=3)
    h = harness(git_registry, tmp_path / "data", stop)
    try:
        result = h.sync()  # the initial commit: every file is a change
        # before: the diff never asked, the stop was seen in apply only
        assert (result.result, result.phase) == ("interrupted", "diff")
        assert stop.asked == 4  # asked before each file: the fourth said stop
        assert h.events == []
        assert h.syncer.ledger.get(APPLIED_KEY) == ""
    finally:
        h.close()


def test_a_stop_is_honoured_between_change_events_and_the_rerun_resends_the_same_ids(
    git_registry: Path, tmp_path: Path
) -> None:
    add_bots(git_registry, 20)
    commit(git_registry, "20 more bots")
    stop = StopIn("emit", after=4)
    h = harness(git_registry, tmp_path / "data", stop)
    try:
        result = h.sync()
        assert (result.result, result.phase) == ("interrupted", "emit")
        sent = [e.id for e in h.events]
        assert len(sent) == 4  # before: all 23 bots and the rest were emitted
        assert h.syncer.ledger.get(APPLIED_KEY) == ""  # nothing applied
        stop.after = 10**9
        done = h.sync()
        assert done.result == "synced"
        assert done.durations["emit"] >= 0  # the emit phase has its own duration now
        again = [e.id for e in h.events]
        assert again[:4] == sent  # consumers deduplicate the re-sent ones
        assert len(h.of("botreg.bot.created")) == 23
    finally:
        h.close()


# --- item 2: an interrupted cycle is not a failure ---------------------------------------


def test_an_interrupted_cycle_is_logged_at_info_not_as_a_failure(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    daemon.stop()  # the TERM came: the fetch is the first to see it
    with caplog.at_level(logging.DEBUG, logger="botreg.daemon"):
        assert cycle(daemon) == "interrupted"
    cycles = [r for r in caplog.records if r.getMessage().startswith("cycle ")]
    assert len(cycles) == 1
    record = cycles[0]
    # before: WARNING "cycle failed in phase fetch ...: stopped mid-cycle"
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("cycle interrupted")
    fields = record.__dict__["fields"]
    assert fields["result"] == "interrupted"
    assert "phase" not in fields and "error" not in fields


class StubHTTP:
    def stop(self) -> None:
        pass


def test_after_a_stop_the_read_model_is_not_warmed(
    daemon: Daemon, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cycle(daemon) == "synced"
    warmed: list[int] = []

    def warm() -> None:  # what a TERM to the process group does to git cat-file
        warmed.append(1)
        raise subprocess.CalledProcessError(-15, ["git", "cat-file", "--batch"])

    monkeypatch.setattr(daemon.read_model, "warm", warm)
    monkeypatch.setattr(daemon, "http", StubHTTP())  # warmed only when serving HTTP
    daemon.stop()
    with caplog.at_level(logging.WARNING, logger="botreg.daemon"):
        daemon._after_cycle(CycleResult("noop", "a", "a"))
        assert warmed == []  # before: warmed, and the dead cat-file logged a WARNING
        # a warm that was under way when the stop came fails quietly
        monkeypatch.setattr(daemon, "stopping", lambda: len(warmed) > 0)
        daemon._after_cycle(CycleResult("noop", "a", "a"))
    assert warmed == [1]
    assert [r.getMessage() for r in caplog.records] == []


# --- item 4: a corrupt ledger is the operator's to fix, not a bug ------------------------


def test_a_corrupt_ledger_is_exit_2_naming_the_file_and_the_way_out(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    sync = ["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]
    assert main(sync) == 0
    ledger = data / "ledger.sqlite"
    for extra in ledger.parent.glob("ledger.sqlite-*"):
        extra.unlink()
    ledger.write_text("garbage\n")
    capsys.readouterr()
    commands = [
        sync,
        ["ingest", "--repo", str(git_registry), "--data-dir", str(data)],
        ["query", "--repo", str(git_registry), "--data-dir", str(data), "--domain", "billing", "x"],
    ]
    for argv in commands:
        # before: "unexpected error: DatabaseError: file is not a database ... a bug", exit 3
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"cannot open the ledger {ledger}: file is not a database" in err
        assert "unexpected" not in err and "Traceback" not in err
        assert f"mv {ledger} " in err and f"mv {data / 'chroma'} " in err
    # the way out the message gives works: both moved away, the next sync rebuilds
    ledger.rename(tmp_path / "ledger.bad")
    (data / "chroma").rename(tmp_path / "chroma.bad")
    assert main(sync) == 0
    query = ["query", "--repo", str(git_registry), "--data-dir", str(data), "--domain", "billing"]
    assert main([*query, "--format", "json", "refunds"]) == 0
    assert "refunds.md" in capsys.readouterr().out


# --- item 5: the files a cycle could not ingest are named in the log --------------------


def test_sync_once_logs_each_refused_file_bounded_like_findings(
    git_registry: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import botreg.daemon.sync as sync_module

    # the operator's chunk ceiling lowered to 1: every file of two sections is refused
    monkeypatch.setattr(
        sync_module,
        "KnowledgeIngestionManager",
        functools.partial(sync_module.KnowledgeIngestionManager, max_chunks_per_file=1),
    )
    LONG = "It says what a customer asks about and what the answer is, in a few more words."  # noqa: N806
    for n in range(60):
        (git_registry / "knowledge" / "product" / f"too-big-{n:02}.md").write_text(
            # parts long enough not to be merged into one chunk: two chunks, over the ceiling
            f"# One {n}\n\nFirst part. {LONG * 2}\n\n# Two {n}\n\nSecond part. {LONG * 2}\n"
        )
    commit(git_registry, "60 files over the ceiling")
    data = tmp_path / "data"
    with caplog.at_level(logging.INFO, logger="botreg.daemon"):
        assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 1
    [summary] = [r for r in caplog.records if r.getMessage().startswith("cycle synced")]
    total = summary.__dict__["fields"]["counts"]["files_failed"]
    assert total > 60
    named = [r.getMessage() for r in caplog.records if r.getMessage().startswith("not ingested")]
    # before: only "cycle synced ... files_failed N", no file named
    assert len(named) == 51  # 50 files, then the count of the rest
    assert all(r.levelno == logging.WARNING for r in caplog.records if "not ingested" in r.msg)
    assert any("knowledge/product/too-big-00.md: " in line for line in named[:50])
    assert all(": " in line.split(": ", 1)[1] for line in named[:50])  # path: reason
    assert named[50].endswith(f"and {total - 50} more")


# --- item 3: readiness at a restart -----------------------------------------------------


def synced_once(git_registry: Path, data: Path) -> None:
    assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 0


def test_not_ready_until_the_read_model_of_the_applied_commit_is_loaded(
    git_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    synced_once(git_registry, data)
    d = Daemon(
        SyncOptions(git_registry.as_uri(), data_dir=data), DaemonOptions(listen="127.0.0.1:1")
    )
    monkeypatch.setattr(d, "_start_http", lambda status: None)  # the rule, not the socket
    release = threading.Event()
    real_warm = d.read_model.warm

    def slow_warm() -> None:  # 15,000 bots take seconds: here, until released
        assert release.wait(10)
        real_warm()

    monkeypatch.setattr(d.read_model, "warm", slow_warm)
    with d._running():  # start-up only: no cycle runs
        assert d.readiness is not None
        # before: ready at once, and the first GET /bots paid the whole load
        assert d.readiness() == (False, ["read model loading"])
        release.set()  # the background load finishes
        wait_for(lambda: d.readiness is not None and d.readiness() == (True, []))
        assert d.read_model.loaded_commit() == git(git_registry, "rev-parse", "HEAD").strip()


def age_saved_fetch(data: Path, seconds: float) -> float:
    """Make the saved status say the last fetch and success were `seconds` ago."""
    path = data / "status.json"
    doc = json.loads(path.read_text())
    when = datetime.now(UTC) - timedelta(seconds=seconds)
    doc["last_fetch"] = doc["last_success"] = when.isoformat(timespec="seconds")
    path.write_text(json.dumps(doc))
    return datetime.fromisoformat(doc["last_fetch"]).timestamp()


def test_the_staleness_clock_survives_a_restart(git_registry: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    synced_once(git_registry, data)
    age_saved_fetch(data, 3600)  # last fetched an hour ago; stale after 300 s
    gone = git_registry.rename(tmp_path / "gone")  # and the remote is gone
    d = Daemon(SyncOptions(git_registry.as_uri(), data_dir=data), DaemonOptions(listen=None))
    with d._running():
        assert d.readiness is not None
        ready, reasons = d.readiness()
        # before: Ready for another --stale-after, the clock restarted with the process
        assert not ready and reasons[0].startswith("last successful fetch 3")
        assert cycle(d) == "failed"  # the fetch fails: still stale
        assert not d.readiness()[0]
        gone.rename(git_registry)
        assert cycle(d) == "noop"  # a fetch succeeded: fresh again
        assert d.readiness() == (True, [])


def test_a_recent_saved_fetch_keeps_a_restarted_daemon_ready(
    git_registry: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    synced_once(git_registry, data)
    age_saved_fetch(data, 60)
    d = Daemon(SyncOptions(git_registry.as_uri(), data_dir=data), DaemonOptions(listen=None))
    with d._running():
        assert d.readiness is not None and d.readiness() == (True, [])


def gauge(d: Daemon, name: str) -> float | None:
    for family in text_string_to_metric_families(d.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def test_the_timestamp_gauges_are_restored_at_start_up_and_set_by_each_fetch(
    git_registry: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    synced_once(git_registry, data)
    saved = age_saved_fetch(data, 600)
    (git_registry / "bots" / "broken.yaml").write_text("name: [\n")
    commit(git_registry, "a head that stays rejected")
    d = Daemon(SyncOptions(git_registry.as_uri(), data_dir=data), DaemonOptions(listen=None))
    with d._running():
        # before: absent after a restart, and never set while the head stays rejected
        assert gauge(d, "botreg_last_success_timestamp_seconds") == saved
        assert gauge(d, "botreg_last_fetch_timestamp_seconds") == saved
        assert cycle(d) == "rejected"
        assert gauge(d, "botreg_last_success_timestamp_seconds") == saved
        fetched = gauge(d, "botreg_last_fetch_timestamp_seconds")
        assert fetched is not None and fetched > saved + 500  # this fetch, not the saved one
    families = {f.name: f for f in text_string_to_metric_families(d.metrics.render().decode())}
    assert families["botreg_last_fetch_timestamp_seconds"].type == "gauge"
    assert families["botreg_last_fetch_timestamp_seconds"].documentation


def test_a_commit_that_moves_the_store_ingests_everything_into_the_new_one(
    git_registry: Path, tmp_path: Path
) -> None:
    """Before: the ledger's records (of the old store) skipped every file as
    unchanged, so the new store stayed empty while the daemon said ready."""
    from sync_helpers import SyncHarness, commit

    data = tmp_path / "data"
    harness = SyncHarness(git_registry.as_uri(), data)
    try:
        assert harness.sync().result == "synced"
        before = harness.stored("billing")
        assert before
        env = git_registry / "environments/development.yaml"
        env.write_text(env.read_text().replace("path: chroma ", "path: chroma-moved "))
        commit(git_registry, "move the store")
        result = harness.sync()
        assert result.result == "synced", result.error
        assert result.counts["chunks_embedded"] > 0
        assert harness.stored("billing") == before  # the same chunks, in the new store
        assert (data / "chroma-moved").is_dir()
        again = harness.sync()
        assert again.result == "noop"
    finally:
        harness.close()


def test_a_store_moved_away_and_back_drops_what_was_deleted_meanwhile(
    git_registry: Path, tmp_path: Path
) -> None:
    """Observed: store A, then B, a knowledge file deleted, then A again: A kept the
    deleted file's chunks for good (queries returned it), since the ledger forgot
    A's records when it moved to B. Now the ledger adopts what A holds: the stale
    chunks are deleted and nothing A holds is embedded again."""
    from sync_helpers import SyncHarness, commit

    data = tmp_path / "data"
    harness = SyncHarness(git_registry.as_uri(), data)
    env = git_registry / "environments/development.yaml"
    gone = git_registry / "knowledge/billing/plans.json"
    try:
        assert harness.sync().result == "synced"
        gone_path = next(p for p, _ in harness.stored("billing") if p.endswith("plans.json"))
        env.write_text(env.read_text().replace("path: chroma ", "path: chroma-b "))
        commit(git_registry, "to store B")
        assert harness.sync().result == "synced"
        gone.unlink()
        commit(git_registry, "delete a knowledge file")
        assert harness.sync().result == "synced"
        env.write_text(env.read_text().replace("path: chroma-b ", "path: chroma "))
        commit(git_registry, "back to store A")
        result = harness.sync()
        assert result.result == "synced", result.error
        back = harness.stored("billing")
        assert not any(path == gone_path for path, _ in back)
        assert result.counts["chunks_embedded"] == 0  # A held every chunk already
    finally:
        harness.close()
    fresh = SyncHarness(git_registry.as_uri(), tmp_path / "fresh")
    try:
        assert fresh.sync().result == "synced"
        assert fresh.stored("billing") == back
    finally:
        fresh.close()
