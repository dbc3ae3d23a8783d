"""`botreg events`: a missing log is said, a closed stdout is quiet, --since names its files.

Found by testers on the merged issue #10. The event logs here are written as the
daemon writes them (one CloudEvent JSON object per line, rotated files
`events.jsonl-N` beside the log, the oldest with the highest N).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

from botreg.cli import main


def write_log(path: Path, first: int, count: int) -> None:
    """Append events `e<first>` ... to a log file (created if missing)."""
    with path.open("a", encoding="utf-8") as out:
        for n in range(first, first + count):
            out.write(json.dumps({"id": f"e{n}", "type": "botreg.bot.updated", "data": {}}))
            out.write("\n")


def readline(stream: IO[bytes], timeout: float = 10) -> bytes:
    """A line of a child's output, or b"" if none comes in time (never hangs the test)."""
    lines: list[bytes] = []
    thread = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    thread.start()
    thread.join(timeout)
    return lines[0] if lines else b""


def botreg(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "botreg", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("follow", [False, True])
def test_a_data_dir_that_does_not_exist_is_an_error_even_with_follow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], follow: bool
) -> None:
    """`--data-dir /tmp/nonexist` printed nothing and exited 0; `--follow` hung silently."""
    missing = tmp_path / "nonexist"
    codes: list[int] = []
    args = ["events", "--data-dir", str(missing), *(["--follow"] if follow else [])]
    # in a thread: on the old code --follow never returns, and that must fail, not hang
    thread = threading.Thread(target=lambda: codes.append(main(args)), daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert codes == [2]  # a --data-dir that is not the daemon's: a usage error
    err = capsys.readouterr().err
    assert f"{missing}: no such data directory, so no event log" in err
    assert "--data-dir" in err and "Traceback" not in err
    assert not missing.exists()  # reading never creates a data dir


def test_a_data_dir_without_an_event_log_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["events", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'events.jsonl'}: no event log here" in err


def test_follow_waits_for_the_log_of_an_existing_data_dir_and_says_so(tmp_path: Path) -> None:
    """A daemon starting beside `events --follow` writes its log a moment later."""
    proc = botreg("events", "--data-dir", str(tmp_path), "--follow")
    try:
        assert proc.stderr is not None and proc.stdout is not None
        note = readline(proc.stderr).decode()
        assert "events.jsonl does not exist yet; waiting for the daemon to write it" in note
        write_log(tmp_path / "events.jsonl", 0, 2)
        assert json.loads(readline(proc.stdout))["id"] == "e0"
        assert json.loads(readline(proc.stdout))["id"] == "e1"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_a_closed_stdout_is_not_a_read_error(tmp_path: Path) -> None:
    """`botreg events | head -c 100` printed `cannot read the event log (Broken pipe)`."""
    write_log(tmp_path / "events.jsonl", 0, 20_000)  # ~1.4 MB: far beyond a pipe's buffer
    proc = botreg("events", "--data-dir", str(tmp_path))
    assert proc.stdout is not None and proc.stderr is not None
    with proc.stderr:
        assert len(proc.stdout.read(100)) == 100
        proc.stdout.close()  # what `head -c 100` does once it has its bytes
        err = proc.stderr.read().decode()
        proc.wait(timeout=10)
    assert err == ""  # no "cannot read the event log", no "Exception ignored"
    assert proc.returncode == 1  # as every botreg command on a closed stdout


def test_since_an_id_not_found_names_every_file_searched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error named only events.jsonl though the rotated files are read too."""
    write_log(tmp_path / "events.jsonl-2", 0, 3)
    write_log(tmp_path / "events.jsonl-1", 3, 3)
    write_log(tmp_path / "events.jsonl", 6, 3)
    assert main(["events", "--data-dir", str(tmp_path), "--since", "e1"]) == 0
    out = capsys.readouterr().out
    assert [json.loads(line)["id"] for line in out.splitlines()] == [f"e{n}" for n in range(2, 9)]

    assert main(["events", "--data-dir", str(tmp_path), "--since", "gone"]) == 2
    err = capsys.readouterr().err
    assert (
        f"no event with id gone in {tmp_path / 'events.jsonl'} or its rotated files "
        f"events.jsonl-2, events.jsonl-1 in {tmp_path}" in err
    )
    assert "rotated away" in err


def test_since_an_id_not_found_is_an_error_with_follow_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An id not in the log now never will be: --follow waited for it silently."""
    write_log(tmp_path / "events.jsonl", 0, 3)
    codes: list[int] = []
    args = ["events", "--data-dir", str(tmp_path), "--since", "gone", "--follow"]
    thread = threading.Thread(target=lambda: codes.append(main(args)), daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert codes == [2]
    err = capsys.readouterr().err
    assert "no event with id gone in" in err and "(no rotated files are kept beside it)" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_follow_stops_cleanly_on_sigint_or_sigterm_even_if_started_in_the_background(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Observed in CI: started by a script in the background (`cmd &`), the process
    inherits SIGINT ignored, so `kill -INT` left `events --follow` running; SIGTERM
    (systemd, docker stop) killed it without a clean stop."""
    write_log(tmp_path / "events.jsonl", 0, 1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "botreg", "events", "--data-dir", str(tmp_path), "--follow"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # what a non-interactive shell does to a background job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )
    try:
        assert proc.stdout is not None
        assert json.loads(readline(proc.stdout))["id"] == "e0"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0 and b"Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
