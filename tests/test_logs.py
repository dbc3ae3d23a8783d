"""The daemon's logs: one record per line, text or JSON, quiet polls, findings (issue #10).

The observed cases: plain text only; an INFO line for every no-op poll;
multi-line records with git's output; an httpx INFO line for every Chroma
server call. Item 8: `--log-format json` with cycle fields, a rejected cycle
logs each finding (and `sync --once` prints them to stderr), `botreg status`
shows the findings of the last rejection.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from botreg.daemon.logs import JsonFormatter, TextFormatter, configured_logging
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.status import FINDINGS_SHOWN
from botreg.daemon.sync import SyncOptions
from conftest import git
from helpers import write
from sync_helpers import commit

TOKEN = "ghp_" + "a1B2" * 9  # a GitHub token shape the redaction knows
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 (DEBUG|INFO|WARNING|ERROR) ")


def sync(repo: Path, data: Path, *extra: str) -> int:
    return main(["sync", "--source", str(repo), "--data-dir", str(data), "--once", *extra])


def json_lines(err: str) -> list[dict[str, Any]]:
    """Every line of stderr, parsed: a line that is not one JSON object fails the test."""
    lines = err.splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]


def record(
    message: str, /, *, exc: BaseException | None = None, **fields: Any
) -> logging.LogRecord:
    rec = logging.LogRecord("botreg.daemon", logging.WARNING, __file__, 1, message, None, None)
    if exc is not None:
        rec.exc_info = (type(exc), exc, exc.__traceback__)
    if fields:
        rec.fields = fields
    return rec


def raised(message: str) -> BaseException:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


# --- formatters ----------------------------------------------------------------------


def test_json_record_is_one_line_with_time_level_logger_message_and_exception() -> None:
    git_output = "fetch failed: fatal: not a repository\nfatal: Could not read\n\nPlease check"
    line = JsonFormatter().format(record(git_output, exc=raised("boom\nsecond line")))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "WARNING" and doc["logger"] == "botreg.daemon"
    assert doc["message"] == git_output  # kept whole, escaped by JSON
    assert doc["exception"].startswith("Traceback") and "RuntimeError: boom" in doc["exception"]
    stamp = datetime.fromisoformat(doc["time"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)


def test_cycle_fields_become_json_fields_but_never_replace_the_core_ones() -> None:
    doc = json.loads(
        JsonFormatter().format(
            record("cycle", result="synced", counts={"files_added": 2}, message="forged", level=1)
        )
    )
    assert doc["result"] == "synced" and doc["counts"] == {"files_added": 2}
    assert doc["message"] == "cycle" and doc["level"] == "WARNING"
    # a failed cycle's error field goes through the same redaction as the message
    error = f"fetch of https://x:{TOKEN}@git.example.com/r.git failed"
    doc = json.loads(JsonFormatter().format(record("cycle failed", error=error, extra=[error])))
    assert TOKEN not in json.dumps(doc) and doc["error"].startswith("fetch of https://***@")


def test_text_record_is_one_line_even_with_git_output_and_a_traceback() -> None:
    text = TextFormatter().format(
        record("fetch failed: fatal: a\nfatal: b\r\nc", exc=raised("x\ny"))
    )
    assert "\n" not in text and "\r" not in text
    assert LINE.match(text)
    assert "fatal: a\\nfatal: b\\r\\nc" in text and "RuntimeError: x\\ny" in text


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_record_is_redacted_message_and_exception(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log = logging.getLogger("botreg.test")
    with configured_logging(fmt, "info"):
        log.warning("fetch of https://user:%s@example.com/r.git failed", TOKEN)
        log.error("failed", exc_info=raised(f"push to https://example.com/?token={TOKEN}"))
    err = capsys.readouterr().err
    assert TOKEN not in err and "***" in err
    assert len(err.splitlines()) == 2


def test_noisy_libraries_are_quiet_unless_debug(capsys: pytest.CaptureFixture[str]) -> None:
    before = {n: logging.getLogger(n).level for n in ("httpx", "chromadb", "urllib3")}
    with configured_logging("text", "info"):
        logging.getLogger("httpx").info('HTTP Request: GET http://chroma/api/v2 "HTTP/1.1 200"')
        logging.getLogger("chromadb.telemetry").info("a per-request line")
        logging.getLogger("urllib3.connectionpool").info("Starting new connection")
        logging.getLogger("httpx").warning("a real problem")
        logging.getLogger("botreg.daemon").info("ours")
    err = capsys.readouterr().err
    assert "HTTP Request" not in err and "per-request" not in err and "Starting" not in err
    assert "a real problem" in err and "ours" in err
    with configured_logging("json", "debug"):
        logging.getLogger("httpx").info("HTTP Request: seen when debugging")
    assert "seen when debugging" in capsys.readouterr().err
    # the run is over: the process's logging is as it was
    assert {n: logging.getLogger(n).level for n in before} == before
    logging.getLogger("botreg.daemon").warning("after the run")
    assert "after the run" not in capsys.readouterr().err


def test_an_unknown_log_format_is_a_usage_error(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sync(git_registry, tmp_path / "d", "--log-format", "xml") == 2
    assert "--log-format" in capsys.readouterr().err


# --- the daemon's records ------------------------------------------------------------


def test_sync_once_logs_json_with_cycle_fields(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = git(git_registry, "rev-parse", "HEAD").strip()
    assert sync(git_registry, tmp_path / "d", "--log-format", "json") == 0
    docs = json_lines(capsys.readouterr().err)  # every line is JSON: no library noise
    cycles = [d for d in docs if d.get("result")]
    assert len(cycles) == 1
    cycle = cycles[0]
    assert cycle["level"] == "INFO" and cycle["logger"] == "botreg.daemon"
    # never an empty "from": a first sync says so (issue #14: it said "(none)")
    assert cycle["from"] == "(initial)" and cycle["to"] == head
    assert cycle["result"] == "synced" and isinstance(cycle["duration"], float)
    assert cycle["counts"]["chunks_created"] > 0 and cycle["counts"]["bots_created"] == 3
    assert f"(initial)..{head[:12]}" in cycle["message"]
    # the summary's counts are fields of their own, integers a log pipeline can graph
    assert cycle["bots_created"] == 3 and cycle["files_added"] == 7
    assert cycle["chunks_embedded"] == cycle["counts"]["chunks_embedded"] > 0
    assert cycle["bots_updated"] == cycle["files_removed"] == cycle["chunks_deleted"] == 0


def test_a_no_op_poll_logs_at_debug(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sync(git_registry, tmp_path / "d") == 0
    capsys.readouterr()
    assert sync(git_registry, tmp_path / "d") == 0
    # nothing new: one line says so (the cycle record itself is debug)
    [said] = capsys.readouterr().err.splitlines()
    assert said.endswith(
        " INFO botreg.daemon: nothing new: "
        + git(git_registry, "rev-parse", "HEAD").strip()[:12]
        + " is applied"
    )
    assert sync(git_registry, tmp_path / "d", "--log-level", "debug", "--log-format", "json") == 0
    head = git(git_registry, "rev-parse", "HEAD").strip()
    noop = [d for d in json_lines(capsys.readouterr().err) if d.get("result") == "noop"]
    assert len(noop) == 1 and noop[0]["level"] == "DEBUG"
    assert noop[0]["from"] == head and noop[0]["to"] == head


def test_a_no_op_poll_record_is_debug_in_the_daemon(
    git_registry: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="botreg.daemon")
    options = SyncOptions(git_registry.as_uri(), data_dir=tmp_path / "d")
    assert Daemon(options, DaemonOptions(listen=None)).run_once() == 0
    caplog.clear()
    assert Daemon(options, DaemonOptions(listen=None)).run_once() == 0
    cycles = [r for r in caplog.records if r.getMessage().startswith("cycle")]
    assert [(r.levelno, r.getMessage().split(":")[0]) for r in cycles] == [
        (logging.DEBUG, "cycle noop")
    ]


def test_git_output_is_one_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not-a-repo").mkdir()
    assert sync(tmp_path / "not-a-repo", tmp_path / "d") == 1
    err = capsys.readouterr().err
    assert "does not appear to be a git repository" in err
    for line in err.splitlines():  # git's several lines stay in their record
        assert LINE.match(line), line
    # and in the event and the status: one line (the README promises it)
    failed = [
        json.loads(line)
        for line in (tmp_path / "d" / "events.jsonl").read_text().splitlines()
        if '"botreg.sync.failed"' in line
    ]
    assert failed and "\n" not in failed[-1]["data"]["error"]
    assert "does not appear to be a git repository" in failed[-1]["data"]["error"]
    status = json.loads((tmp_path / "d" / "status.json").read_text())
    assert "\n" not in status["conditions"]["FetchFailed"]["message"]


def test_a_rejected_commit_logs_each_finding_bounded_and_status_shows_them(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d"
    assert sync(git_registry, data) == 0
    bad = FINDINGS_SHOWN + 10
    for i in range(bad):  # one syntax error each: 60 findings, 10 past the bound
        write(git_registry, f"bots/bad-{i:03}.yaml", "a: [\n")
    rejected = commit(git_registry, "sixty broken bots")
    capsys.readouterr()
    assert sync(git_registry, data) == 1
    err = capsys.readouterr().err
    found = [line for line in err.splitlines() if f"rejected {rejected[:12]}: bots/" in line]
    assert len(found) == FINDINGS_SHOWN
    assert re.search(r"bots/bad-000\.yaml:\d+:\d+: BR101 invalid YAML", found[0])
    assert f"rejected {rejected[:12]}: and 10 more" in err
    summary = [line for line in err.splitlines() if "cycle rejected" in line]
    assert len(summary) == 1 and f"{bad} errors" in summary[0]

    assert main(["status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"rejected:    {rejected} ({bad} findings)" in out
    listed = [line for line in out.splitlines() if line.startswith("  bots/bad-")]
    assert len(listed) == FINDINGS_SHOWN and "BR101" in listed[0]
    assert "  and 10 more" in out

    # the same head again: one line says so, no second list of findings
    assert sync(git_registry, data) == 1
    [said] = capsys.readouterr().err.splitlines()
    assert f"cycle rejected: {rejected[:12]} is still rejected" in said
    assert "BR101" not in said

    # fixed: status no longer lists findings
    for i in range(bad):
        (git_registry / f"bots/bad-{i:03}.yaml").unlink()
    commit(git_registry, "fixed")
    assert sync(git_registry, data) == 0
    capsys.readouterr()
    assert main(["status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "rejected:" not in out and "BR101" not in out


def test_status_findings_are_masked_and_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a status file written by an older daemon, or a finding quoting a credential
    data = tmp_path / "d"
    data.mkdir()
    status = {
        "rejected_commit": "c" * 40,
        "findings": [
            {
                "path": "bots/evil\nforged: line.yaml",
                "line": 3,
                "column": 1,
                "code": "BR201",
                "severity": "error",
                "message": f"value {TOKEN} is not allowed",
            },
            "not a mapping",
        ],
        "findings_total": 2,
    }
    (data / "status.json").write_text(json.dumps(status))
    assert main(["status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out and "value *** is not allowed" in out
    assert "  bots/evil\\nforged: line.yaml:3:1: BR201" in out
    assert "\nforged" not in out


def test_cli_logging_leaves_no_handler_behind(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handlers = list(logging.getLogger().handlers)
    assert sync(git_registry, tmp_path / "d") == 0
    assert logging.getLogger().handlers == handlers


def test_a_damaged_findings_list_in_the_status_file_does_not_stop_the_daemon(
    git_registry: Path, tmp_path: Path
) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "status.json").write_text(json.dumps({"findings": 5, "findings_total": "x"}))
    assert sync(git_registry, data) == 0
    saved = json.loads((data / "status.json").read_text())
    assert saved["findings"] == [] and saved["findings_total"] == 0
