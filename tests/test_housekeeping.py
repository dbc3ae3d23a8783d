"""Housekeeping for months of running (issue #10, item 7): the event log rotates by
size and its followers survive a rotation; the git mirror is garbage-collected;
the Chroma store gives space back after large deletions; a failing task never
ends the daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from botreg.events import CloudEvent
from botreg.events.log import EventLog, EventLogReader, read_events, rotated_logs


def _event(n: int, padding: int = 200) -> CloudEvent:
    return CloudEvent(
        type="botreg.test", source="test", id=f"e{n}", subject="", data={"pad": "x" * padding}
    )


def _wait_for(condition: Any, timeout: float = 8.0) -> None:
    """Poll until `condition()` is true (a bound on waiting, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


# --- the event log --------------------------------------------------------------------


def test_event_log_rotates_by_size_and_keeps_n_files(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=2000, keep=2)
    for n in range(60):  # ~300 bytes each: about 6 per file, 10 rotations
        log.append(_event(n))
    assert path.stat().st_size <= 2000
    assert [p.name for p in rotated_logs(path)] == ["events.jsonl-2", "events.jsonl-1"]
    assert all(p.stat().st_size <= 2000 for p in rotated_logs(path))
    assert log.rotations >= 8
    # what is kept is the newest events, in order, none repeated
    ids = [e["id"] for e in read_events(path)]
    assert ids == [f"e{n}" for n in range(60 - len(ids), 60)]
    assert len(ids) >= 12


def test_event_log_rotation_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=1500, keep=3)
    for n in range(4):
        log.append(_event(n))
    # a new daemon (same file) knows the size already there
    log = EventLog(path, max_bytes=1500, keep=3)
    for n in range(4, 8):
        log.append(_event(n))
    assert path.stat().st_size <= 1500
    assert [e["id"] for e in read_events(path)] == [f"e{n}" for n in range(8)]


def test_since_finds_an_event_in_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=1000, keep=5)
    for n in range(10):
        log.append(_event(n))
    assert rotated_logs(path)
    assert [e["id"] for e in read_events(path, since="e1")] == [f"e{n}" for n in range(2, 10)]


def _follow_in_thread(path: Path) -> tuple[list[str], threading.Event, threading.Thread]:
    got: list[str] = []
    stop = threading.Event()

    def follow() -> None:
        for event in read_events(path, follow=True, poll=0.01, stop=stop.is_set):
            got.append(event["id"])

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return got, stop, thread


def test_a_follower_survives_rotations_without_loss_or_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=1200, keep=1)  # one kept file: the follower must keep up
    got, stop, thread = _follow_in_thread(path)
    try:
        for n in range(200):  # ~50 rotations while the follower reads
            log.append(_event(n))
            if n % 3 == 0:  # let it fall behind by a few events, never by two files
                _wait_for(lambda n=n: len(got) > n - 3)
        _wait_for(lambda: len(got) >= 200)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert log.rotations >= 40
    assert got == [f"e{n}" for n in range(200)]


def test_a_follower_drains_the_renamed_file_before_switching(tmp_path: Path) -> None:
    """Events appended just before a rotation (not yet read) are still delivered."""
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=10_000, keep=2)
    log.append(_event(0))
    reader = EventLogReader(path)
    assert [e["id"] for e in reader.read()] == ["e0"]
    log.append(_event(1))
    log.append(_event(2))  # unread when the log is renamed
    log.rotate()
    log.append(_event(3))
    assert [e["id"] for e in reader.read()] == ["e1", "e2", "e3"]
    assert list(reader.read()) == []
    reader.close()


def test_a_follower_restarts_on_a_log_truncated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    for n in range(3):
        log.append(_event(n))
    reader = EventLogReader(path)
    assert len(list(reader.read())) == 3
    with open(path, "r+b") as handle:  # an external copy-truncate
        handle.truncate(0)
    log = EventLog(path)
    log.append(_event(9, padding=1))
    assert [e["id"] for e in reader.read()] == ["e9"]
    reader.close()


def test_event_log_follower_survives_rotation(tmp_path: Path) -> None:
    from botreg.api.reload import EventLogFollower

    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=1500, keep=1)
    log.append(_event(-1))  # before start(): not delivered
    follower = EventLogFollower(path, poll=0.01)
    got: list[str] = []
    follower.subscribe(lambda e: got.append(e.id))
    follower.start()
    try:
        for n in range(60):
            log.append(_event(n))
            if n % 3 == 0:
                _wait_for(lambda n=n: len(got) > n - 3)
        _wait_for(lambda: len(got) >= 60)
    finally:
        follower.stop()
    assert log.rotations >= 10
    assert got == [f"e{n}" for n in range(60)]


def test_botreg_events_follow_survives_rotation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = data / "events.jsonl"
    log = EventLog(path, max_bytes=1500, keep=1)
    log.append(_event(0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "botreg", "events", "--data-dir", str(data), "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    got: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            got.append(json.loads(line)["id"])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _wait_for(lambda: got == ["e0"], timeout=9)
        for n in range(1, 31):
            log.append(_event(n))
            if n % 3 == 0:  # `--follow` polls every 0.5 s: pace the writer to its reads
                _wait_for(lambda n=n: len(got) > n - 3, timeout=9)
        _wait_for(lambda: len(got) >= 31, timeout=9)
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        reader.join(timeout=5)
        proc.stdout.close()
        assert proc.stderr is not None
        errors = proc.stderr.read()
        proc.stderr.close()
    assert "Traceback" not in errors
    assert log.rotations >= 5
    assert got == [f"e{n}" for n in range(31)]


def test_a_reader_follows_a_rename_by_another_tool(tmp_path: Path) -> None:
    """A reader by name and offset (main's) read the new log from the old file's
    offset and skipped its first events; the reader follows the file it has open."""
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=100_000)
    for n in range(5):
        log.append(_event(n))
    reader = EventLogReader(path)
    assert len(list(reader.read())) == 5
    os.replace(path, tmp_path / "events.jsonl-1")
    log = EventLog(path)
    log.append(_event(5))
    assert [e["id"] for e in reader.read()] == ["e5"]
    reader.close()


@pytest.mark.parametrize("max_bytes", [0, -1])
def test_event_log_refuses_a_nonsense_size(tmp_path: Path, max_bytes: int) -> None:
    with pytest.raises(ValueError):
        EventLog(tmp_path / "events.jsonl", max_bytes=max_bytes)


# --- the git mirror -------------------------------------------------------------------


def _source_repo(tmp_path: Path) -> Path:
    from conftest import git

    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q", "-b", "main")
    return src


def _commit_file(src: Path, n: int) -> str:
    from conftest import git

    (src / f"f{n % 7}.txt").write_text(f"content {n}\n" * 50)
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", f"c{n}")
    return git(src, "rev-parse", "HEAD").strip()


def test_mirror_maintenance_packs_loose_objects_and_keeps_the_applied_commit(
    tmp_path: Path,
) -> None:
    from botreg.git.mirror import GitMirror
    from conftest import git

    src = _source_repo(tmp_path)
    mirror = GitMirror(tmp_path / "mirror.git", str(src), "main")
    commits = []
    for n in range(25):  # one fetch per commit, as the daemon does: every one stays loose
        commits.append(_commit_file(src, n))
        mirror.fetch()
    applied = commits[20]
    mirror.keep_applied(applied)
    # a force-push: the branch is rewritten from commit 10; 21..24 are reachable from
    # nothing, 11..20 only from the applied ref
    git(src, "reset", "-q", "--hard", commits[10])
    rewritten = _commit_file(src, 99)
    assert mirror.fetch() == rewritten
    before = int(git(tmp_path / "mirror.git", "count-objects").split()[0])
    assert before >= 70  # what main left behind, for ever (gc.auto is 0)

    result = mirror.maintain()

    assert result.loose_before >= 70
    assert result.loose_after == 0
    assert result.bytes_after < result.bytes_before
    assert mirror.has_commit(applied)  # the next diff needs it
    assert mirror.has_commit(rewritten)
    assert mirror.diff(applied, rewritten)  # its trees are there too
    assert not mirror.has_commit(commits[24])  # unreachable: pruned
    git(tmp_path / "mirror.git", "fsck", "--connectivity-only")
    assert mirror.fetch() == rewritten  # and it keeps working
    assert mirror.head() == rewritten


def test_mirror_maintenance_failure_is_an_error_not_a_crash(tmp_path: Path) -> None:
    from botreg.git.mirror import GitMirror, MaintenanceError

    src = _source_repo(tmp_path)
    _commit_file(src, 0)
    mirror = GitMirror(tmp_path / "mirror.git", str(src), "main")
    mirror.fetch()
    # a ref to an object that is not there (a disk that lost a file): gc refuses to run
    broken = tmp_path / "mirror.git" / "refs" / "botreg" / "broken"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("1" * 40 + "\n")
    with pytest.raises(MaintenanceError, match="git gc of the mirror failed"):
        mirror.maintain()
    broken.unlink()
    assert mirror.has_commit(mirror.head())


# --- the Chroma store -----------------------------------------------------------------


def _bulk(sections: int, tag: str = "") -> str:
    return "\n".join(
        # long enough (over 1/8 of the budget) to be a chunk, not merged with its neighbours
        f"## Section {tag}{n}\n\nTopic {tag}{n}: " + " ".join(f"w{n}x{k}" for k in range(22)) + "\n"
        for n in range(sections)
    )


@pytest.fixture
def h(git_registry: Path, tmp_path: Path) -> Any:
    from sync_helpers import SyncHarness

    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    yield harness
    harness.close()


def _query_ids(h: Any, text: str) -> list[str]:
    from botreg.knowledge.ingest import query_domain

    store = h.syncer.store
    return [hit.id for hit in query_domain(store, h.syncer.ledger, "product", text, 5)]


def test_compaction_gives_space_back_without_reembedding_and_ingest_keeps_using_it(
    h: Any, git_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from botreg.daemon.housekeeping import Compactor
    from botreg.daemon.metrics import Metrics
    from helpers import write
    from knowledge_helpers import CountingHash
    from sync_helpers import commit

    metrics = Metrics()
    now = [1000.0]
    compactor = Compactor(
        lambda: h.syncer.store, h.syncer.ledger, metrics, min_dead=100, grace=60,
        clock=lambda: now[0],
    )  # fmt: skip
    h.bus.subscribe(compactor.observe)
    write(git_registry, "knowledge/product/bulk.md", _bulk(1200))  # past Chroma's 1,000-op flush
    commit(git_registry, "bulk")
    assert h.sync().result == "synced"
    ledger, store = h.syncer.ledger, h.syncer.store
    old = ledger.domain("product").collection
    live_before = store.count(store.collection(old))
    (git_registry / "knowledge/product/bulk.md").unlink()
    commit(git_registry, "drop bulk")
    assert h.sync().result == "synced"
    assert compactor.dead(old) >= 1200  # the deletions are counted
    live = store.count(store.collection(old))
    assert live == live_before - 1200 == len(ledger.all_chunk_ids(old))
    asked = "Getting started with the product"
    answer = _query_ids(h, asked)
    vectors = store.embeddings(store.collection(old), sorted(ledger.all_chunk_ids(old)))
    disk_before = store.disk_usage()
    functions: list[CountingHash] = []

    def counting(settings: Any) -> CountingHash:
        functions.append(CountingHash(settings.params["dimensions"]))
        return functions[-1]

    monkeypatch.setattr("botreg.store.embedding.create_embedding_function", counting)
    compactor.run()
    monkeypatch.undo()
    assert functions and sum(f.texts for f in functions) == 0  # nothing embedded again

    new = ledger.domain("product").collection
    assert new == f"{old}.g1"
    assert store.count(store.collection(new)) == live
    assert ledger.all_chunk_ids(old) == set() and len(ledger.all_chunk_ids(new)) == live
    assert _query_ids(h, asked) == answer  # the same answers from the copy
    copied = store.embeddings(store.collection(new), sorted(vectors))
    assert all(np.allclose(copied[i], vectors[i]) for i in vectors)
    assert store.has_collection(old)  # retired: queries under way still find it
    now[0] += 61
    compactor.run()
    assert not store.has_collection(old)
    assert store.disk_usage() < disk_before
    text = metrics.render().decode()
    assert "botreg_store_compactions_total 1.0" in text
    assert "botreg_store_reclaimed_chunks_total 1200.0" in text
    reclaimed = [
        ln for ln in text.splitlines() if ln.startswith("botreg_store_reclaimed_bytes_total")
    ]
    assert reclaimed and float(reclaimed[0].split()[1]) > 0
    assert "botreg_store_last_compaction_timestamp_seconds" in text

    # the next commit writes into the compacted collection: only the new file is embedded
    write(git_registry, "knowledge/product/more.md", _bulk(3, tag="m"))
    commit(git_registry, "more")
    result = h.sync()
    assert result.result == "synced"
    assert ledger.domain("product").collection == new
    assert result.counts["chunks_embedded"] == 3
    assert len(ledger.all_chunk_ids(new)) == live + 3
    assert store.count(store.collection(new)) == live + 3


def test_compaction_leaves_a_healthy_collection_alone(h: Any) -> None:
    from botreg.daemon.housekeeping import Compactor

    compactor = Compactor(lambda: h.syncer.store, h.syncer.ledger, min_dead=1, grace=0)
    h.bus.subscribe(compactor.observe)
    assert h.sync().result == "synced"
    before = {s.domain: s.collection for s in h.syncer.ledger.domains()}
    compactor.run()
    assert {s.domain: s.collection for s in h.syncer.ledger.domains()} == before


def test_queries_never_fail_while_a_collection_is_compacted(h: Any, git_registry: Path) -> None:
    """Nor while the store's client is reopened after the drop: queries wait for it."""
    from botreg.daemon.housekeeping import Compactor
    from botreg.knowledge.ingest import query_domain
    from botreg.knowledge.ledger import Ledger
    from helpers import write
    from sync_helpers import commit

    now = [0.0]
    reopened: list[bool] = []
    compactor = Compactor(
        lambda: h.syncer.store, h.syncer.ledger, min_dead=50, grace=30, clock=lambda: now[0],
        reopen=lambda: reopened.append(h.syncer.reopen_store()),
    )  # fmt: skip
    h.bus.subscribe(compactor.observe)
    write(git_registry, "knowledge/product/bulk.md", _bulk(300))
    commit(git_registry, "bulk")
    h.sync()
    (git_registry / "knowledge/product/bulk.md").unlink()
    commit(git_registry, "drop bulk")
    h.sync()
    store = h.syncer.store
    errors: list[str] = []
    answers: list[int] = []
    stop = threading.Event()

    def ask() -> None:  # as the HTTP API does: its own ledger connection, a read share
        ledger = Ledger(h.data / "ledger.sqlite")
        try:
            while not stop.is_set():
                try:
                    with h.syncer.reading_store() as current:
                        answers.append(
                            len(query_domain(current, ledger, "product", "shortcuts", 3))
                        )
                except Exception as exc:
                    errors.append(repr(exc))
        finally:
            ledger.close()

    def more_answers() -> None:
        seen = len(answers)
        _wait_for(lambda: len(answers) >= seen + 5)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(answers) >= 5)
        compactor.run()
        more_answers()
        client = store.client
        now[0] += 31
        compactor.run()  # the old collection goes, the client is reopened under the queries
        more_answers()
        assert reopened == [True] and store.client is not client
        for _ in range(5):  # again and again, each while queries are under way
            assert h.syncer.reopen_store()
            more_answers()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
    assert h.syncer.ledger.domain("product").collection.endswith(".g1")
    assert errors == []
    assert answers and min(answers) == 3


def test_the_daemons_reads_wait_for_a_reopen(h: Any, tmp_path: Path) -> None:
    """`Daemon._query` and `_store_ok` (on HTTP threads) take a read share: a reopen
    between cycles makes them wait, never fail or report the store unreachable."""
    from botreg.daemon.run import Daemon, DaemonOptions

    assert h.sync().result == "synced"
    daemon = Daemon(h.syncer.options, DaemonOptions(listen=None))
    daemon.syncer = h.syncer
    errors: list[str] = []
    answers: list[int] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            try:
                answers.append(len(daemon._query("product", "shortcuts", 3)))
                if not daemon._store_ok():
                    errors.append("store reported unreachable")
            except Exception as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(answers) >= 5)
        for _ in range(8):
            assert h.syncer.reopen_store()
            seen = len(answers)
            _wait_for(lambda seen=seen: len(answers) >= seen + 3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
    assert errors == []
    assert min(answers) == 3


def test_remove_orphan_segments_keeps_live_collections(h: Any) -> None:
    assert h.sync().result == "synced"
    store = h.syncer.store
    root = Path(store.location)
    orphan = root / "0f0e0d0c-0b0a-4909-8807-060504030201"
    orphan.mkdir()
    (orphan / "data_level0.bin").write_bytes(b"\0" * 8192)
    stranger = root / "not-a-segment"
    stranger.mkdir()
    live = [p.name for p in root.iterdir() if p.is_dir() and p not in (orphan, stranger)]
    assert store.remove_orphan_segments() >= 8192
    assert not orphan.exists() and stranger.exists()
    assert all((root / name).exists() for name in live)
    assert _query_ids(h, "shortcuts")


# --- the housekeeper ------------------------------------------------------------------


def test_a_failing_task_is_reported_and_retried_never_fatal(tmp_path: Path) -> None:
    from botreg.daemon.housekeeping import Housekeeper, Task
    from botreg.daemon.metrics import Metrics
    from botreg.knowledge.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.sqlite")
    metrics = Metrics()
    now = [1000.0]
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise OSError("disk full")

    def fine() -> None:
        calls.append("fine")

    tasks = [Task("broken", 7200, broken, retry_after=600), Task("fine", 100, fine)]
    keeper = Housekeeper(tasks, ledger, metrics, clock=lambda: now[0])
    assert keeper.run_due() == {"broken": "failed", "fine": "ok"}  # the next task still ran
    text = metrics.render().decode()
    assert 'botreg_housekeeping_runs_total{result="failed",task="broken"} 1.0' in text
    assert 'botreg_housekeeping_failing{task="broken"} 1.0' in text
    assert 'botreg_housekeeping_failing{task="fine"} 0.0' in text
    assert keeper.run_due() == {}  # nothing is due right after
    now[0] += 150
    assert keeper.run_due() == {"fine": "ok"}
    # due times outlive the process: a restarted daemon does not run them all again
    again = Housekeeper(tasks, ledger, Metrics(), clock=lambda: now[0])
    assert again.run_due() == {}
    now[0] += 500  # 650 s after the failure: retried, well before its 2-hour interval
    assert again.run_due() == {"broken": "failed", "fine": "ok"}
    assert calls == ["broken", "fine", "fine", "broken", "fine"]
    ledger.close()


def test_nothing_starts_once_the_daemon_is_stopping(tmp_path: Path) -> None:
    from botreg.daemon.housekeeping import Housekeeper, Task

    calls: list[str] = []
    keeper = Housekeeper([Task("t", 1, lambda: calls.append("t"))], stop=lambda: True)
    assert keeper.run_due() == {}
    assert calls == []


def test_the_daemon_runs_housekeeping_between_cycles(git_registry: Path, tmp_path: Path) -> None:
    from botreg.daemon.housekeeping import HousekeepingOptions
    from botreg.daemon.run import Daemon, DaemonOptions
    from botreg.daemon.sync import SyncOptions
    from sync_helpers import commit

    data = tmp_path / "data"
    options = DaemonOptions(
        interval=0.05,
        listen=None,
        housekeeping=HousekeepingOptions(
            mirror_gc_interval=3600, events_max_bytes=4096, events_keep=2, disk_interval=3600
        ),
    )
    daemon = Daemon(SyncOptions(git_registry.as_uri(), data_dir=data), options)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        # every series exists from the start (at 0): wait for the first run itself
        _wait_for(
            lambda: (
                'botreg_housekeeping_runs_total{result="ok",task="mirror-gc"} 1.0'
                in daemon.metrics.render().decode()
            )
        )
        for n in range(3):  # events past 4 KiB: the log rotates
            (git_registry / f"bots/extra-{n}.yaml").write_text(
                (git_registry / "bots/product-guide.yaml")
                .read_text()
                .replace("product-guide", f"extra-{n}")
            )
            commit(git_registry, f"extra {n}")
        _wait_for(lambda: "extra-2" in (data / "events.jsonl").read_text())
    finally:
        daemon.stop()
        thread.join(timeout=10)
    text = daemon.metrics.render().decode()
    assert 'botreg_housekeeping_runs_total{result="ok",task="mirror-gc"} 1.0' in text
    assert 'botreg_disk_bytes{part="mirror"}' in text
    assert "botreg_mirror_gc_last_run_timestamp_seconds" in text
    assert rotated_logs(data / "events.jsonl")
    assert int(subprocess.run(
        ["git", "count-objects"], cwd=data / "mirror.git", capture_output=True, text=True,
        check=True,
    ).stdout.split()[0]) < 50  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--events-max-bytes", "lots", "--events-max-bytes 'lots': give a size of at least 4K"),
        ("--events-max-bytes", "100", "--events-max-bytes '100': give a size of at least 4K"),
        ("--events-keep", "-1", "--events-keep must be 0 or more"),
        ("--gc-interval", "nan", "--gc-interval must be a number of seconds"),
        ("--compact-interval", "-5", "--compact-interval must be a number of seconds"),
    ],
)
def test_housekeeping_flags_are_checked(
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    value: str,
    message: str,
) -> None:
    from botreg.cli import main

    args = ["sync", "--source", str(git_registry), "--data-dir", str(tmp_path / "d"), "--once"]
    assert main([*args, flag, value]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()  # refused before anything started


def test_a_size_with_a_unit_is_accepted() -> None:
    from botreg.cli.daemon_cmds import _parse_size

    assert _parse_size("64M") == 64 * 1024 * 1024
    assert _parse_size("64MiB") == _parse_size("64mb") == 64 * 1024 * 1024
    assert _parse_size("4096") == 4096
    assert _parse_size("1.5G") is None


def test_a_reader_that_fell_files_behind_reads_them_in_order(tmp_path: Path) -> None:
    """Main's follower read by name: two rotations while it slept skipped a whole file."""
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=1000, keep=8)
    log.append(_event(0))
    reader = EventLogReader(path)
    assert [e["id"] for e in reader.read()] == ["e0"]
    for n in range(1, 10):  # two or three per file: several rotations before the next read
        log.append(_event(n))
    assert 3 <= log.rotations < 8
    assert [e["id"] for e in reader.read()] == [f"e{n}" for n in range(1, 10)]
    reader.close()


# --- giving back what Chroma holds for dropped collections (a reopen) ---------------


def _store_fds(root: Path) -> list[str]:
    """What this process holds open below the store folder (`(deleted)`: unlinked)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        if target.startswith(f"{root}{os.sep}"):
            held.append(target[len(str(root)) + 1 :])
    return sorted(held)


def test_compaction_gives_back_the_dropped_index_files_and_descriptors(
    h: Any, git_registry: Path
) -> None:
    """Chroma 1.5's embedded client kept a dropped collection's index open (4 files
    and its memory) until it closed: main's soak went from 30 to 136 descriptors,
    and the deleted files' space stayed in use until a restart."""
    from botreg.daemon.housekeeping import Housekeeper, HousekeepingOptions
    from helpers import write
    from sync_helpers import commit

    keeper = Housekeeper.for_syncer(  # the daemon's wiring: compaction, then a reopen
        h.syncer,
        HousekeepingOptions(
            mirror_gc_interval=0, disk_interval=0, compaction_min_dead=100, compaction_grace=0
        ),
    )
    write(git_registry, "knowledge/product/bulk.md", _bulk(1200))  # past Chroma's flush
    commit(git_registry, "bulk")
    assert h.sync().result == "synced"
    store = h.syncer.store
    root = Path(store.location)
    old = h.syncer.ledger.domain("product").collection
    assert _query_ids(h, "shortcuts")  # the collection's index is loaded
    baseline = _store_fds(root)
    (git_registry / "knowledge/product/bulk.md").unlink()
    commit(git_registry, "drop bulk")
    assert h.sync().result == "synced"
    client = store.client

    assert keeper.run_due() == {"store-compaction": "ok"}

    assert h.syncer.ledger.domain("product").collection == f"{old}.g1"
    assert not store.has_collection(old)
    assert _query_ids(h, "shortcuts")  # the copy's index is loaded now
    held = _store_fds(root)
    assert [name for name in held if name.endswith("(deleted)")] == []
    assert len(held) <= len(baseline)  # one collection loaded then, one now
    segments = {p.name for p in root.iterdir() if p.is_dir()}
    assert all(name.split(os.sep)[0] in segments for name in held if os.sep in name)
    assert h.syncer.store is store and store.client is not client  # reopened in place


# --- a stop during housekeeping -------------------------------------------------------


def _hanging_gc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """git as the mirror runs it, but a `gc` that hangs (a 10-minute gc of a large
    mirror): it leaves the lock a killed `git pack-refs` leaves, starts a child as
    repack does, and sleeps. Returns the file where it writes its pids when running."""
    import shutil

    import git as gitpython

    real = shutil.which("git")
    assert real is not None
    marker = tmp_path / "gc-running"
    wrapper = tmp_path / "hanging-git"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        '*" gc "*)\n'
        '  for arg in "$@"; do case "$arg" in --git-dir=*) dir="${arg#--git-dir=}";; esac; done\n'
        '  : > "$dir/packed-refs.lock"\n'
        "  sleep 600 &\n"
        f'  echo "$$ $!" > "{marker}.tmp" && mv "{marker}.tmp" "{marker}"\n'
        "  wait\n"
        "  ;;\n"
        f'*) exec "{real}" "$@";;\n'
        "esac\n"
    )
    wrapper.chmod(0o755)
    monkeypatch.setattr(gitpython.Git, "GIT_PYTHON_GIT_EXECUTABLE", str(wrapper))
    return marker


def _process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # killed, not yet reaped by whoever adopted it


def test_a_stop_kills_a_running_gc_and_the_mirror_stays_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main ran `git gc` for up to 600 s with no stop check: SIGTERM waited for it."""
    from botreg.git.mirror import GitMirror, MaintenanceInterrupted
    from conftest import git

    src = _source_repo(tmp_path)
    _commit_file(src, 0)
    marker = _hanging_gc(tmp_path, monkeypatch)
    mirror = GitMirror(tmp_path / "mirror.git", str(src), "main")
    mirror.fetch()
    stop = threading.Event()
    outcome: list[BaseException | None] = []

    def gc() -> None:
        try:
            mirror.maintain(timeout=600, should_stop=stop.is_set)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=gc)
    thread.start()
    _wait_for(marker.exists)
    stop.set()
    thread.join(timeout=8)  # bounded: without the kill it hangs for 600 s
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], MaintenanceInterrupted)
    pids = [int(p) for p in marker.read_text().split()]
    _wait_for(lambda: all(_process_gone(p) for p in pids))  # git and what it started
    # the killed gc's lock is gone and the mirror works: a new commit is fetched
    assert not (tmp_path / "mirror.git" / "packed-refs.lock").exists()
    head = _commit_file(src, 1)
    assert mirror.fetch() == head
    git(tmp_path / "mirror.git", "fsck", "--connectivity-only")


def test_a_gc_past_its_timeout_is_killed_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botreg.git.mirror import GitMirror, MaintenanceError

    src = _source_repo(tmp_path)
    head = _commit_file(src, 0)
    _hanging_gc(tmp_path, monkeypatch)
    mirror = GitMirror(tmp_path / "mirror.git", str(src), "main")
    mirror.fetch()
    with pytest.raises(MaintenanceError, match=r"timed out after 0\.5 s"):
        mirror.maintain(timeout=0.5)
    assert mirror.fetch() == head


def test_sigterm_during_a_gc_stops_the_daemon_promptly(
    git_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's stop (what SIGTERM does) reaches the housekeeper's gc; the gc
    is not marked done, so it runs again at the next start."""
    from botreg.daemon.housekeeping import HousekeepingOptions
    from botreg.daemon.run import Daemon, DaemonOptions
    from botreg.daemon.sync import SyncOptions
    from botreg.knowledge.ledger import Ledger

    marker = _hanging_gc(tmp_path, monkeypatch)
    data = tmp_path / "data"
    options = DaemonOptions(
        interval=30,
        listen=None,
        housekeeping=HousekeepingOptions(
            mirror_gc_interval=3600, compaction_interval=0, disk_interval=0
        ),
    )
    daemon = Daemon(SyncOptions(git_registry.as_uri(), data_dir=data), options)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        _wait_for(marker.exists)  # the first cycle is done, the gc hangs
    finally:
        daemon.stop()
        thread.join(timeout=8)  # bounded: the issue asks for a stop within 5 s
    assert not thread.is_alive()
    text = daemon.metrics.render().decode()
    assert 'botreg_sync_cycles_total{result="synced"} 1.0' in text
    # stopped: neither ok nor failed (the series exist from the start, at 0)
    assert 'botreg_housekeeping_runs_total{result="ok",task="mirror-gc"} 0.0' in text
    assert 'botreg_housekeeping_runs_total{result="failed",task="mirror-gc"} 0.0' in text
    assert 'botreg_housekeeping_runs_total{result="stopped",task="mirror-gc"} 1.0' in text
    assert 'botreg_housekeeping_failing{task="mirror-gc"} 0.0' in text
    ledger = Ledger(data / "ledger.sqlite")
    try:
        assert ledger.get("housekeeping.mirror-gc.next_run") == ""  # due at the next start
    finally:
        ledger.close()


def _orphan_segments(root: Path) -> set[str]:
    """Index folders in an embedded store that its catalogue does not name."""
    import re
    import sqlite3

    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    folders = {p.name for p in root.iterdir() if p.is_dir() and uuid.fullmatch(p.name)}
    db = sqlite3.connect(f"{(root / 'chroma.sqlite3').as_uri()}?mode=ro", uri=True)
    try:
        known = {str(r[0]) for r in db.execute("SELECT id FROM segments")}
    finally:
        db.close()
    return folders - known


def test_a_stop_during_compaction_returns_at_once_and_the_next_run_cleans_up(
    h: Any, git_registry: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The copy stops between batches; nothing is switched and the partial copy is
    left as it is (main dropped it there: 5 to 10 s for 19,222 chunks, and its index
    folder stayed until a later compaction). It is recorded in the ledger; the next
    run drops it, folder included; the domain keeps serving meanwhile and is
    compacted by a later run."""
    import logging

    from botreg.daemon.housekeeping import Compactor, Housekeeper, HousekeepingOptions
    from helpers import write
    from sync_helpers import commit

    def keeper(min_dead: int, stop: Any = None) -> Housekeeper:  # a daemon (re)start
        return Housekeeper.for_syncer(
            h.syncer,
            HousekeepingOptions(
                mirror_gc_interval=0,
                disk_interval=0,
                compaction_min_dead=min_dead,
                compaction_grace=0,
            ),
            stop=stop,
        )

    stop = threading.Event()
    stopping = keeper(50, stop.is_set)
    write(git_registry, "knowledge/product/bulk.md", _bulk(300))
    commit(git_registry, "bulk")
    h.sync()
    write(git_registry, "knowledge/product/more.md", _bulk(40, tag="m"))  # live chunks
    (git_registry / "knowledge/product/bulk.md").unlink()
    commit(git_registry, "drop bulk")
    h.sync()
    ledger, store = h.syncer.ledger, h.syncer.store
    old = ledger.domain("product").collection
    copy = f"{old}.g1"
    chunks = ledger.all_chunk_ids(old)
    files = ledger.files(old)
    counter = Compactor(lambda: store, ledger)  # reads the dead counts the keeper keeps
    dead = counter.dead(old)
    assert dead >= 300
    answer = _query_ids(h, "Topic m3")
    root = Path(store.location)
    assert not _orphan_segments(root)
    # batches of COPY_BATCH, whatever the client takes (5,461): a stop is noticed
    # within a batch's time. Scaled down here: 10 per batch, the stop in the third
    monkeypatch.setattr("botreg.store.chroma.COPY_BATCH", 10)
    assert store.batch_size > 1000
    batches = [0]
    real_get = store.client.get_collection

    def counting_get(*args: Any, **kwargs: Any) -> Any:
        origin = real_get(*args, **kwargs)
        get = origin.get

        def paged(*a: Any, **k: Any) -> Any:
            batches[0] += 1
            if batches[0] == 3:
                stop.set()  # SIGTERM arrives while the copy runs
            return get(*a, **k)

        origin.get = paged
        return origin

    drops: list[str] = []
    real_drop = store.drop_collection

    def recording_drop(name: str) -> None:
        if store.has_collection(name):  # a drop that costs something
            drops.append(name)
        real_drop(name)

    monkeypatch.setattr(store.client, "get_collection", counting_get)
    monkeypatch.setattr(store, "drop_collection", recording_drop)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="botreg.daemon"):
        assert stopping.run_due() == {"store-compaction": "stopped"}
    took = time.monotonic() - started
    monkeypatch.undo()
    assert batches[0] == 3  # stopped at the next batch, not after the whole copy
    assert drops == []  # the stop did not wait for a drop of the partial copy
    assert took < 5  # generous (the SIGTERM budget): no drop, no full copy
    assert any(
        r.levelno == logging.INFO
        and "compaction of" in r.getMessage()
        and "stopped" in r.getMessage()
        for r in caplog.records
    )
    assert ledger.domain("product").collection == old  # nothing switched
    assert ledger.all_chunk_ids(old) == chunks
    assert ledger.files(old) == files
    assert ledger.all_chunk_ids(copy) == set()
    assert store.has_collection(copy)  # left as it is...
    assert json.loads(ledger.get("store.partial_copies")) == [copy]  # ...and recorded
    assert counter.dead(old) == dead
    assert _query_ids(h, "Topic m3") == answer
    assert ledger.get("housekeeping.store-compaction.next_run") == ""  # due at the next start

    # the next start, with nothing to compact: the partial copy and its folder go
    assert keeper(10**9).run_due() == {"store-compaction": "ok"}
    assert not store.has_collection(copy)
    assert not _orphan_segments(root)
    assert json.loads(ledger.get("store.partial_copies")) == []
    assert ledger.domain("product").collection == old
    assert _query_ids(h, "Topic m3") == answer

    # a later run compacts to the end; the copy is in use, never dropped as partial
    Compactor(lambda: store, ledger, min_dead=50, grace=0, reopen=h.syncer.reopen_store).run()
    assert ledger.domain("product").collection == copy
    assert ledger.all_chunk_ids(copy) == chunks
    assert json.loads(ledger.get("store.partial_copies")) == []
    assert _query_ids(h, "Topic m3") == answer
    assert not _orphan_segments(root)


# --- testers' findings on the merged housekeeping ---------------------------------------


def test_a_lowered_interval_applies_after_a_restart(tmp_path: Path) -> None:
    """Main kept the next run time computed with the old interval: an operator who
    lowered --gc-interval from a day to an hour waited up to a day."""
    from botreg.daemon.housekeeping import Housekeeper, Task
    from botreg.knowledge.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.sqlite")
    now = [1000.0]
    calls: list[str] = []
    daily = Housekeeper(
        [Task("gc", 86400, lambda: calls.append("gc"))], ledger, clock=lambda: now[0]
    )
    assert daily.run_due() == {"gc": "ok"}
    now[0] += 3601  # restarted with --gc-interval 3600, an hour after the last gc
    hourly = Housekeeper(
        [Task("gc", 3600, lambda: calls.append("gc"))], ledger, clock=lambda: now[0]
    )
    assert hourly.run_due() == {"gc": "ok"}
    assert hourly.run_due() == {}  # and then hourly, not at once again
    # a raised interval does not make a task run early: the stored time still holds
    now[0] += 60
    assert (
        Housekeeper(
            [Task("gc", 7 * 86400, lambda: calls.append("gc"))], ledger, clock=lambda: now[0]
        ).run_due()
        == {}
    )
    assert calls == ["gc", "gc"]
    # a ledger written before the last run was kept: clamped to now + the interval
    ledger.put("housekeeping.old.next_run", repr(now[0] + 86400))
    old = Housekeeper(
        [Task("old", 3600, lambda: calls.append("old"))], ledger, clock=lambda: now[0]
    )
    assert old.run_due() == {}
    now[0] += 3601
    assert old.run_due() == {"old": "ok"}
    ledger.close()


def _samples(metrics: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed by prometheus-client: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }


def test_every_housekeeping_series_exists_from_the_start(h: Any) -> None:
    """Main created them at each task's first event (disk within 5 min, compaction
    within an hour, gc within a day): `rate()` and `absent()` alerts misfired after
    every restart, and the dead-chunk gauge was absent though the ledger held it."""
    from botreg.daemon.housekeeping import Compactor, Housekeeper, HousekeepingOptions

    assert h.sync().result == "synced"
    ledger = h.syncer.ledger
    collection = ledger.domain("product").collection
    Compactor(lambda: None, ledger).add_dead(collection, 1234)  # a previous run's count
    ledger.put("housekeeping.mirror-gc.last_result", "failed")  # and its last gc failed
    tasks = ("mirror-gc", "store-compaction", "disk")

    keeper = Housekeeper.for_syncer(h.syncer, HousekeepingOptions())  # a daemon's start

    got = _samples(h.syncer.metrics)
    assert got[("botreg_store_dead_chunks", (("domain", "product"),))] == 1234
    for name in (
        "botreg_store_compactions_total",
        "botreg_store_reclaimed_chunks_total",
        "botreg_store_reclaimed_bytes_total",
        "botreg_mirror_reclaimed_bytes_total",
        "botreg_event_log_rotations_total",
    ):
        assert got[(name, ())] == 0, name
    for task in tasks:
        for result in ("ok", "failed", "stopped"):
            ran = 1 if (task, result) == ("disk", "ok") else 0  # the cheap one ran at once
            labels = (("result", result), ("task", task))
            assert got[("botreg_housekeeping_runs_total", labels)] == ran, (task, result)
        failing = 1 if task == "mirror-gc" else 0  # as the ledger says, until it runs again
        assert got[("botreg_housekeeping_failing", (("task", task),))] == failing
    assert got[("botreg_disk_bytes", (("part", "mirror"),))] > 0
    assert got[("botreg_disk_bytes", (("part", "store"),))] > 0
    assert got[("botreg_disk_bytes", (("part", "events"),))] > 0
    assert keeper.run_due() == {"mirror-gc": "ok", "store-compaction": "ok"}  # disk: not due


def test_event_log_rotations_are_counted_when_they_happen(
    git_registry: Path, tmp_path: Path
) -> None:
    """Main counted them in the disk task only: the counter lagged up to 5 minutes."""
    from botreg.daemon.housekeeping import HousekeepingOptions
    from botreg.daemon.run import Daemon, DaemonOptions
    from botreg.daemon.sync import SyncOptions
    from sync_helpers import commit

    data = tmp_path / "data"
    options = DaemonOptions(
        interval=0.05,
        listen=None,
        housekeeping=HousekeepingOptions(
            mirror_gc_interval=0, compaction_interval=0, events_max_bytes=4096, events_keep=2,
            disk_interval=3600,
        ),
    )  # fmt: skip
    daemon = Daemon(SyncOptions(git_registry.as_uri(), data_dir=data), options)
    thread = threading.Thread(target=daemon.run)
    thread.start()

    def rotations() -> float:
        return _samples(daemon.metrics).get(("botreg_event_log_rotations_total", ()), -1)

    try:
        # the disk task ran at start and after the first cycle; not again for an hour
        _wait_for(lambda: 'task="disk"} 1.0' in daemon.metrics.render().decode())
        assert daemon.bus is not None and daemon.bus.log is not None
        log = daemon.bus.log
        before = log.rotations
        for n in range(3):  # events past 4 KiB: the log rotates
            (git_registry / f"bots/extra-{n}.yaml").write_text(
                (git_registry / "bots/product-guide.yaml")
                .read_text()
                .replace("product-guide", f"extra-{n}")
            )
            commit(git_registry, f"extra {n}")
        _wait_for(lambda: log.rotations > before)
        _wait_for(lambda: rotations() == log.rotations)  # main: stuck at the disk run's count
    finally:
        daemon.stop()
        thread.join(timeout=10)
    assert rotations() == log.rotations > before


def test_watch_notifications_stay_out_of_the_info_log(capsys: pytest.CaptureFixture[str]) -> None:
    """`--watch` logged `INFO watchfiles.main: 1 change detected` for every ref change."""
    import logging

    from botreg.daemon.logs import configured_logging

    with configured_logging("text", "info"):
        logging.getLogger("watchfiles.main").info("%d changes detected", 3)
        logging.getLogger("botreg.daemon").info("still here")
    err = capsys.readouterr().err
    assert "still here" in err and "changes detected" not in err
    with configured_logging("text", "debug"):  # wanted when debugging
        logging.getLogger("watchfiles.main").info("%d changes detected", 4)
    assert "4 changes detected" in capsys.readouterr().err
    assert logging.getLogger("watchfiles").level == logging.NOTSET  # restored


@pytest.mark.parametrize(
    ("before", "after", "reclaimed"), [(77824, 86016, 0), (27_900_000, 900_000, 27_000_000)]
)
def test_mirror_gc_logs_only_what_it_reclaimed(
    h: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    before: int,
    after: int,
    reclaimed: int,
) -> None:
    """A fresh mirror grows a little under gc: main logged `mirror gc: 77824 -> 86016
    bytes` at INFO for it."""
    import logging

    from botreg.daemon.housekeeping import Housekeeper, HousekeepingOptions
    from botreg.git.mirror import MaintenanceResult

    assert h.sync().result == "synced"
    result = MaintenanceResult(before, after, 3, 0)
    monkeypatch.setattr(h.syncer.mirror, "maintain", lambda **_kwargs: result)
    keeper = Housekeeper.for_syncer(
        h.syncer, HousekeepingOptions(compaction_interval=0, disk_interval=0)
    )
    with caplog.at_level(logging.DEBUG, logger="botreg.daemon"):
        assert keeper.run_due() == {"mirror-gc": "ok"}
    lines = [r for r in caplog.records if r.getMessage().startswith("mirror gc")]
    assert len(lines) == 1
    assert lines[0].levelno == (logging.INFO if reclaimed else logging.DEBUG)
    assert f"{reclaimed} bytes reclaimed" in lines[0].getMessage()
    got = _samples(h.syncer.metrics)
    assert got[("botreg_mirror_reclaimed_bytes_total", ())] == reclaimed


def test_a_batch_of_events_is_fsynced_once_and_durable_across_a_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle's change events: one fsync for the batch (was one per event), and a
    rotation inside the batch syncs what the renamed file holds first."""
    import os as os_module

    from botreg.events import CloudEvent
    from botreg.events.bus import EventBus
    from botreg.events.log import EventLog, read_events

    synced: list[int] = []
    real_fsync = os_module.fsync
    monkeypatch.setattr(
        "botreg.events.log.os.fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1]
    )
    log = EventLog(tmp_path / "events.jsonl", max_bytes=4096, keep=3)
    bus = EventBus(log)

    def event(n: int) -> CloudEvent:
        return CloudEvent(type="botreg.bot.updated", source="s", id=f"e{n}", subject=f"b{n}")

    with bus.batch():
        for n in range(10):
            bus.publish(event(n))
        assert synced == []  # nothing synced yet inside the batch
    assert len(synced) == 1
    synced.clear()
    with bus.batch():
        for n in range(10, 60):  # ~50 events of ~200 bytes: rotations at 4 KiB
            bus.publish(event(n))
    rotations = log.rotations
    # per rotation the file before its rename and the folder after it; then the end
    assert rotations >= 2 and len(synced) == 2 * rotations + 1
    ids = [e["id"] for e in read_events(tmp_path / "events.jsonl")]
    assert ids[-50:] == [f"e{n}" for n in range(10, 60)]
    synced.clear()
    bus.publish(event(99))  # outside a batch: durable at once, as before
    assert len(synced) == 1


def test_deletions_made_by_sync_once_count_towards_compaction(
    git_registry: Path, tmp_path: Path
) -> None:
    """`sync --once` deleted 9,000 chunks and the ledger recorded none: a daemon
    started afterwards saw a dead share of 0 and never compacted."""
    from botreg.cli import main
    from botreg.knowledge.ledger import Ledger
    from sync_helpers import commit

    data = tmp_path / "data"
    bulk = git_registry / "knowledge/billing/bulk.md"
    bulk.write_text("# Bulk\n\n" + _bulk(60))
    commit(git_registry, "bulk")
    once = ["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]
    assert main(once) == 0
    bulk.unlink()
    commit(git_registry, "drop bulk")
    assert main(once) == 0
    ledger = Ledger(data / "ledger.sqlite")
    try:
        state = ledger.domain("billing")
        assert state is not None
        dead = int(ledger.get("store.dead_chunks." + state.collection, "0") or 0)
    finally:
        ledger.close()
    assert dead >= 60
