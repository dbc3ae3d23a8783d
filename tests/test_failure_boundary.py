"""One failure boundary per sync cycle, and crash logs instead of "rerun with BOTREG_DEBUG".

Whatever a phase raises (a hostile commit can make a parser raise RecursionError,
MemoryError, OverflowError...), the cycle ends as `failed` with a
`botreg.sync.failed` event naming the phase, a status condition and a crash log;
the daemon stays up and applies the next good commit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import Syncer, SyncOptions
from conftest import git
from helpers import write
from sync_helpers import SyncHarness, commit


@pytest.fixture(autouse=True)
def _state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


@pytest.fixture
def h(git_registry: Path, tmp_path: Path) -> Iterator[SyncHarness]:
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    yield harness
    harness.close()


def _raiser(exc: BaseException) -> Callable[..., None]:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise exc

    return boom


# (phase, the function of that phase that fails, what it raises, the condition it sets)
FAULTS = [
    ("fetch", "botreg.git.mirror.GitMirror.fetch", RuntimeError("no route"), "FetchFailed"),
    (
        "validate",
        "botreg.daemon.sync.validate_registry",
        RecursionError("maximum recursion depth exceeded"),
        "ValidationFailed",
    ),
    ("diff", "botreg.daemon.sync.compute_changes", ValueError("bad diff"), None),
    ("emit", "botreg.daemon.sync.Syncer._emit_changes", OverflowError("int too large"), None),
    (
        "apply",
        "botreg.knowledge.ingest.KnowledgeIngestionManager.ingest",
        MemoryError(),
        "IngestFailed",
    ),
    ("advance", "botreg.git.mirror.GitMirror.keep_applied", RuntimeError("disk"), None),
]


@pytest.mark.parametrize(
    ("phase", "target", "exc", "condition"), FAULTS, ids=[f[0] for f in FAULTS]
)
def test_a_fault_in_any_phase_ends_the_cycle_not_the_process(
    h: SyncHarness,
    git_registry: Path,
    monkeypatch: pytest.MonkeyPatch,
    _state_home: Path,
    phase: str,
    target: str,
    exc: BaseException,
    condition: str | None,
) -> None:
    assert h.sync().result == "synced"
    write(git_registry, "knowledge/product/new.md", "# New\n\nSomething new.\n")
    head = commit(git_registry, "a new page")

    with monkeypatch.context() as patch:
        patch.setattr(target, _raiser(exc))
        result = h.sync()

    assert (result.result, result.phase, result.exit_code) == ("failed", phase, 1)
    assert "botreg.sync.completed" not in h.types()
    [failed] = h.of("botreg.sync.failed")
    assert failed.data["phase"] == phase
    assert failed.data["error"].startswith(type(exc).__name__)
    if phase != "fetch":
        assert failed.data["to"] == head
    logged = [e for e in h.logged() if e["type"] == "botreg.sync.failed"]
    assert logged and "Traceback" not in json.dumps(logged)
    status = json.loads((h.data / "status.json").read_text())
    assert status["last_result"] == "failed"
    assert status["conditions"]["Reconciling"]["reason"] == "Failed"
    if condition is not None:
        assert status["conditions"][condition]["status"] == "True"
        assert status["conditions"][condition]["reason"] == "UnexpectedError"
    crash_log = Path(status["last_crash_log"])
    assert crash_log.parent == _state_home / "botreg"
    text = crash_log.read_text()
    assert "Traceback" in text and type(exc).__name__ in text and f"phase {phase}" in text

    # the fault is gone: the next cycle applies the commit
    again = h.sync()
    assert (again.result, again.to_commit) == ("synced", head)
    if condition is not None:
        assert h.status.snapshot()["conditions"][condition]["status"] == "False"
    assert "knowledge/product/new.md" in {path for path, _text in h.stored("product")}


def test_an_event_log_that_cannot_be_written_does_not_end_the_cycle(
    h: SyncHarness, git_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even reporting the failure fails (disk full): sync_once returns, the status tells."""
    assert h.sync().result == "synced"
    commit(git_registry, "empty")
    assert h.bus.log is not None
    monkeypatch.setattr(h.bus.log, "append", _raiser(OSError("no space left on device")))
    result = h.sync()
    assert (result.result, result.phase) == ("failed", "advance")  # sync.completed failed
    status = json.loads((h.data / "status.json").read_text())
    assert status["last_result"] == "failed"
    assert status["last_error"] == "OSError: no space left on device"


def test_the_loop_survives_what_escapes_sync_once(
    git_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Syncer, "sync_once", _raiser(RecursionError("deep")))
    daemon = Daemon(
        SyncOptions(git_registry.as_uri(), data_dir=tmp_path / "data"),
        DaemonOptions(listen=None),
    )
    assert daemon.run_once() == 1


# A real `botreg sync` whose validator raises RecursionError on commits holding
# knowledge/product/poison.md: the fault a hostile commit could trigger.
_POISONED_SYNC = textwrap.dedent(
    """
    import sys
    import botreg.daemon.sync as sync
    from botreg.cli import main

    real = sync.validate_registry

    def validate_registry(source, *args, **kwargs):
        # the daemon passes a Snapshot (its entries: a dict by path)
        paths = source.entries if isinstance(source.entries, dict) else [
            e.path for e in source.entries()
        ]
        if "knowledge/product/poison.md" in paths:
            raise RecursionError("maximum recursion depth exceeded")
        return real(source, *args, **kwargs)

    sync.validate_registry = validate_registry
    sys.exit(main(sys.argv[1:]))
    """
)


def _wait_for(
    log: Path, predicate: Callable[[dict[str, Any]], bool], proc: subprocess.Popen[bytes]
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the daemon exited"
        if log.exists():
            for line in log.read_text().splitlines():
                event = json.loads(line)
                if predicate(event):
                    return event
        time.sleep(0.05)
    raise AssertionError(f"no such event in {log}")


@pytest.mark.timeout(120)
def test_a_real_daemon_survives_a_crashing_commit_and_applies_the_next(
    git_registry: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    log = data / "events.jsonl"
    script = tmp_path / "poisoned_sync.py"
    script.write_text(_POISONED_SYNC)
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            "sync",
            "--source",
            str(git_registry),
            "--data-dir",
            str(data),
            "--watch",
            "--listen",
            "off",
            "--interval",
            "3600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        _wait_for(log, lambda e: e["type"] == "botreg.sync.completed", proc)
        write(git_registry, "knowledge/product/poison.md", "# Poison\n")
        poisoned = commit(git_registry, "poison")
        failed = _wait_for(
            log,
            lambda e: e["type"] == "botreg.sync.failed" and e["data"]["to"] == poisoned,
            proc,
        )
        assert failed["data"]["phase"] == "validate"
        assert failed["data"]["error"].startswith("RecursionError")

        (git_registry / "knowledge/product/poison.md").unlink()
        write(git_registry, "knowledge/product/antidote.md", "# Antidote\n\nAll good.\n")
        good = commit(git_registry, "antidote")
        _wait_for(
            log,
            lambda e: e["type"] == "botreg.sync.completed" and e["data"]["to"] == good,
            proc,
        )
        assert proc.poll() is None
        assert git(git_registry, "rev-parse", "HEAD").strip() == good
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    stderr = err.decode()
    assert "sync cycle failed in phase validate: RecursionError" in stderr
    assert "Traceback" not in stderr  # the traceback is in the crash log, at debug level
    [crash_log] = (tmp_path / "state" / "botreg").glob("crash-*.log")
    assert "RecursionError" in crash_log.read_text()


# --- exit 3 writes a crash log ---------------------------------------------------------------


def test_a_bug_writes_a_crash_log_with_a_redacted_argv(
    git_registry: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    _state_home: Path,
) -> None:
    monkeypatch.setattr(Daemon, "run_once", _raiser(RuntimeError("kaput\nsecond line")))
    source = "https://deploy:glpat-s3cr3t@git.example.com/r.git?private_token=tok123"
    code = main(["sync", "--source", source, "--once", "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 3
    assert "unexpected error: RuntimeError: kaput second line\n" in err
    assert "Traceback" not in err and "BOTREG_DEBUG" not in err
    [crash_log] = (_state_home / "botreg").glob("crash-*.log")
    assert str(crash_log) in err
    text = crash_log.read_text()
    assert "Traceback" in text and "RuntimeError: kaput" in text
    assert "botreg " in text.splitlines()[0] and text.splitlines()[1].startswith("python 3.")
    assert "https://***@git.example.com/r.git?private_token=***" in text
    assert "s3cr3t" not in text and "tok123" not in text
    assert crash_log.stat().st_mode & 0o077 == 0


def test_the_crash_log_falls_back_to_the_temp_dir(
    registry: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))  # a file: no folder can go there
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("botreg.validation.runner.validate_registry", _raiser(ValueError("x")))
    assert main(["validate", "--repo", str(registry)]) == 3
    [crash_log] = (tmp_path / "tmp" / "botreg").glob("crash-*.log")
    assert str(crash_log) in capsys.readouterr().err


@pytest.mark.parametrize(
    "status",
    [
        '{"conditions": "x", "domains": [1], "findings": 3, "rejected_commit": "abc"}',
        '{"conditions": {"Ready": "yes"}, "domains": {"billing": null}}',
        "[1, 2]",
        "{not json",
    ],
)
def test_status_of_a_damaged_status_file_is_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], status: str
) -> None:
    write(tmp_path / "data", "status.json", status)
    code = main(["status", "--data-dir", str(tmp_path / "data")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "conditions:" in out


@pytest.mark.parametrize(
    "log", [b"[1]\n", b'{"id": "a"}\n\xff\xfe\n', b'"text"\n{"id": "b"}\n'], ids=str
)
def test_events_of_a_damaged_log_is_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], log: bytes
) -> None:
    write(tmp_path / "data", "events.jsonl", log)
    for args in ([], ["--since", "a"]):
        code = main(["events", "--data-dir", str(tmp_path / "data"), *args])
        err = capsys.readouterr().err
        assert code in (0, 2), err  # 2: no event with id a in that log
        assert "unexpected error" not in err


def test_events_of_an_unreadable_log_is_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data" / "events.jsonl").mkdir(parents=True)
    assert main(["events", "--data-dir", str(tmp_path / "data")]) == 1
    assert "cannot read the event log" in capsys.readouterr().err


def test_the_same_failure_again_writes_no_new_crash_log(
    h: SyncHarness, git_registry: Path, monkeypatch: pytest.MonkeyPatch, _state_home: Path
) -> None:
    """A daemon retrying one broken commit for months must not fill the disk."""
    assert h.sync().result == "synced"
    commit(git_registry, "empty")
    monkeypatch.setattr("botreg.daemon.sync.compute_changes", _raiser(ValueError("bad")))
    for _ in range(3):
        assert h.sync().result == "failed"
    assert len(list((_state_home / "botreg").glob("crash-*.log"))) == 1
    monkeypatch.setattr("botreg.daemon.sync.compute_changes", _raiser(ValueError("other")))
    h.sync()
    assert len(list((_state_home / "botreg").glob("crash-*.log"))) == 2


def test_crash_logs_are_pruned(_state_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from botreg import errors

    monkeypatch.setattr(errors, "MAX_CRASH_LOGS", 3)
    paths = [errors.write_crash_log(RuntimeError(str(i)), ["botreg"]) for i in range(5)]
    kept = sorted((_state_home / "botreg").glob("crash-*.log"))
    assert kept == sorted(p for p in paths[-3:] if p is not None) and len(kept) == 3


def test_read_events_skips_damaged_lines(tmp_path: Path) -> None:
    """A damaged event log (a non-object line, invalid UTF-8) never stops a reader."""
    from botreg.events.log import read_events

    log = tmp_path / "events.jsonl"
    log.write_bytes(b'{"id": "a"}\n[1, 2]\n"text"\n\xff\xfe{\n{"id": "b"}\n')
    assert [e["id"] for e in read_events(log)] == ["a", "b"]
    assert [e["id"] for e in read_events(log, since="a")] == ["b"]
