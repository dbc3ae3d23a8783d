"""A sync cycle says what happened (issue #14, item 5).

The observed cases: `sync --once` logged `cycle synced ..c964c6be3c8b` (an empty
"from", the raw counts in no order) and nothing else for 11 s on 400 files; a
rejected cycle said only `cycle rejected a..b`; `botreg status` showed no
summary of the last cycle. Now: one summary line (from..to, bots, knowledge
files, chunks, duration) whose counts are JSON fields too, progress lines when
stderr is not a terminal (a bar when it is), the findings of a rejection, and
the last cycle in `botreg status`, with no secret anywhere.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

import botreg.daemon.progress as progress_module
from botreg.cli import main
from botreg.daemon.progress import LineProgress, Progress, choose_mode
from botreg.daemon.summary import cycle_fields, cycle_line, summary_text
from botreg.daemon.sync import CycleResult
from conftest import git
from helpers import write
from sync_helpers import SyncHarness, commit

TOKEN = "ghp_" + "a1B2" * 9  # a GitHub token shape the masking knows
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"


def sync(repo: Path, data: Path, *extra: str) -> int:
    return main(["sync", "--source", str(repo), "--data-dir", str(data), "--once", *extra])


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed: a line that is not one JSON object fails the test."""
    lines = text.splitlines()
    assert lines, "nothing was written"
    docs = [json.loads(line) for line in lines]
    assert all(isinstance(doc, dict) for doc in docs)
    return docs


def cycles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("result")]


def add_pages(repo: Path, count: int) -> None:
    for n in range(count):
        write(
            repo,
            f"knowledge/product/page-{n:03}.md",
            f"# Page {n}\n\nHow feature {n} works, step by step, for a new user of Acme.\n",
        )


# --- the summary line ------------------------------------------------------------------


def test_sync_once_summarises_a_first_sync_and_a_commit_of_every_kind_of_change(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d"
    first = head(git_registry)
    assert sync(git_registry, data) == 0
    [line] = [x for x in capsys.readouterr().err.splitlines() if "cycle synced" in x]
    # before: "cycle synced (none)..1a2b3c4d5e6f in 2.78 s: bots_created 3, chunks_created
    # 29, ..." (and an empty "from" before that)
    assert re.fullmatch(
        rf"{STAMP} INFO botreg\.daemon: cycle synced \(initial\)\.\.{first[:12]} in "
        r"\d+\.\d\d s: bots 3 created, 0 updated, 0 deleted; knowledge files 7 added, "
        r"0 changed, 0 removed; chunks \d+ embedded, 0 deleted; also changed: 2 environment "
        r"files, registry\.yaml",
        line,
    ), line

    # one commit: a bot updated, a bot deleted, a knowledge file added, changed, removed
    guide = git_registry / "bots" / "product-guide.yaml"
    guide.write_text(guide.read_text().replace("temperature: 0.5", "temperature: 0.4"))
    (git_registry / "bots" / "internal-helpdesk.yaml").unlink()
    write(git_registry, "knowledge/product/pricing.md", "# Pricing\n\nSeats are billed monthly.\n")
    notes = git_registry / "knowledge" / "product" / "release-notes.txt"
    notes.write_text(notes.read_text() + "\nRelease 4.3 (December 2026)\n\nDark mode.\n")
    (git_registry / "knowledge" / "product" / "shortcuts.csv").unlink()
    second = commit(git_registry, "one of each")
    assert sync(git_registry, data, "--log-format", "json") == 0
    [cycle] = cycles(json_lines(capsys.readouterr().err))
    assert (cycle["from"], cycle["to"], cycle["result"]) == (first, second, "synced")
    summary = {key: cycle[key] for key in cycle if key.startswith(("bots_", "files_", "chunks_"))}
    embedded, deleted = cycle["counts"]["chunks_embedded"], cycle["counts"]["chunks_deleted"]
    assert embedded > 0 and deleted > 0
    assert summary == {
        "bots_created": 0,
        "bots_updated": 1,
        "bots_deleted": 1,
        "files_added": 1,
        "files_changed": 1,
        "files_removed": 1,
        "chunks_embedded": embedded,
        "chunks_deleted": deleted,
    }
    assert re.fullmatch(
        rf"cycle synced {first[:12]}\.\.{second[:12]} in \d+\.\d\d s: bots 0 created, "
        rf"1 updated, 1 deleted; knowledge files 1 added, 1 changed, 1 removed; chunks "
        rf"{embedded} embedded, {deleted} deleted",
        cycle["message"],
    ), cycle["message"]


def test_the_summary_folds_kinds_and_names_what_else_happened() -> None:
    counts = {
        "bots_created": 1,
        "bots_updated": 1,
        "bots_activated": 1,
        "bots_deactivated": 1,
        "files_modified": 2,
        "files_renamed": 1,
        "files_deleted": 1,
        "chunks_created": 12,
        "chunks_embedded": 10,
        "chunks_deleted": 4,
        "environments_changed": 1,
        "files_failed": 2,
    }
    assert summary_text(counts) == (
        "bots 1 created, 3 updated, 0 deleted; knowledge files 0 added, 3 changed, 1 removed; "
        "chunks 10 embedded, 2 reused, 4 deleted; also changed: 1 environment file; "
        "2 knowledge files not ingested"
    )
    # a damaged count (from an old status file, say) is 0, not an error
    assert summary_text({"bots_created": "x", "chunks_embedded": True}).startswith("bots 0 created")


def test_every_result_has_its_line_and_its_fields() -> None:
    a, b = "a" * 40, "b" * 40
    failed = CycleResult("failed", "", "", error="fetch failed: no route", phase="fetch")
    failed.durations = {"cycle": 1.5}
    assert cycle_line(failed) == (
        "failed in phase fetch after 1.50 s ((initial)..(none)): fetch failed: no route"
    )
    assert cycle_fields(failed)["from"] == "(initial)"
    assert cycle_fields(failed)["phase"] == "fetch"
    rejected = CycleResult("rejected", a, b, counts={"errors": 2, "warnings": 1, "findings": 3})
    assert cycle_line(rejected) == (
        f"rejected {a[:12]}..{b[:12]} in 0.00 s: 2 errors, 1 warning; still serving {a[:12]}"
    )
    assert cycle_fields(rejected)["errors"] == 2
    assert "bots_created" not in cycle_fields(rejected)  # only a synced cycle has them
    assert cycle_line(CycleResult("noop", b, b)) == f"noop: {b[:12]} is applied (0.00 s)"
    interrupted = cycle_line(CycleResult("interrupted", a, b))
    assert interrupted.startswith("interrupted by a stop after 0.00 s")


# --- a rejected cycle ------------------------------------------------------------------


def test_a_rejected_cycle_logs_its_findings_and_status_shows_them_with_no_secret(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a file name that is a credential: findings quote paths
    write(git_registry, f"bots/{TOKEN}.yaml", "a: [\n")
    rejected = commit(git_registry, "a broken bot")
    data = tmp_path / "d"
    assert sync(git_registry, data) == 1
    err = capsys.readouterr().err
    assert TOKEN not in err
    lines = err.splitlines()
    # before: "cycle rejected a..b" and nothing to say why
    assert any(
        f"cycle rejected (initial)..{rejected[:12]} in " in x
        and "s: 2 errors, 0 warnings; still serving nothing (no commit applied yet)" in x
        for x in lines
    ), err
    found = [x.split(f"rejected {rejected[:12]}: ", 1)[1] for x in lines if ": bots/" in x]
    assert [re.sub(r":\d+:\d+:", ":L:C:", x).split(" ")[:2] for x in found] == [
        ["bots/***.yaml:L:C:", "BR403"],
        ["bots/***.yaml:L:C:", "BR101"],
    ]

    assert main(["status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out
    assert re.search(
        rf"^last cycle:  \S+ rejected \(initial\)\.\.{rejected[:12]} in \d+\.\d\d s: 2 errors",
        out,
        re.MULTILINE,
    ), out
    assert f"rejected:    {rejected} (2 findings)" in out
    assert "  bots/***.yaml:2:1: BR101 invalid YAML" in out
    assert TOKEN not in (data / "status.json").read_text()


# --- botreg status ---------------------------------------------------------------------


def test_status_shows_the_last_cycle_that_did_something(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d"
    first = head(git_registry)
    assert sync(git_registry, data) == 0
    assert sync(git_registry, data) == 0  # nothing new: the summary stays the first sync's
    capsys.readouterr()
    assert main(["status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    [line] = [x for x in out.splitlines() if x.startswith("last cycle:")]
    assert re.fullmatch(
        rf"last cycle:  \d{{4}}-\S+ synced \(initial\)\.\.{first[:12]} in \d+\.\d\d s: "
        r"bots 3 created, 0 updated, 0 deleted; knowledge files 7 added, .*",
        line,
    ), line
    assert main(["status", "--data-dir", str(data), "--format", "json"]) == 0
    last = json.loads(capsys.readouterr().out)["last_cycle"]
    assert last["result"] == "synced" and last["from"] == "(initial)" and last["to"] == first
    assert last["bots_created"] == 3 and last["files_added"] == 7
    assert last["summary"] in line and last["finished"]


def test_status_text_of_a_damaged_last_cycle_is_one_masked_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d"
    data.mkdir()
    summary = f"synced a..b in 1.00 s: fetched https://x:{TOKEN}@example.com\nforged: line"
    (data / "status.json").write_text(json.dumps({"last_cycle": {"summary": summary}}))
    assert main(["status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out and "\nforged" not in out and "\\nforged: line" in out
    (data / "status.json").write_text(json.dumps({"last_cycle": ["not", "a", "mapping"]}))
    assert main(["status", "--data-dir", str(data)]) == 0
    assert "last cycle:" not in capsys.readouterr().out


# --- progress --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_come_every_interval_and_never_for_short_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    lines = LineProgress(interval=5, clock=clock)
    lines.begin()
    with caplog.at_level(logging.INFO, logger="botreg.daemon.progress"):
        for t, done in ((1, 10), (4.9, 20)):
            clock.now = 100 + t
            lines.update("chunking", "knowledge/product", done, 400, "files")
        assert caplog.records == []  # under 5 s: nothing to say
        clock.now = 105.0
        lines.update("chunking", "knowledge/product", 30, 400, "files")
        clock.now = 107.0
        lines.update("embedding", "knowledge/product", 256, 2403, "chunks")  # 2 s later: no
        clock.now = 110.5
        lines.update("embedding", "knowledge/product", 1024, 2403, "chunks")
    assert [r.getMessage() for r in caplog.records] == [
        "chunking knowledge/product: 30/400 files (7%), 5 s into the cycle",
        "embedding knowledge/product: 1024/2403 chunks (42%), 10 s into the cycle",
    ]
    assert caplog.records[1].__dict__["fields"]["progress"] == {
        "phase": "embedding",
        "subject": "knowledge/product",
        "done": 1024,
        "total": 2403,
        "unit": "chunks",
        "elapsed": 10.5,
    }


def test_sync_once_not_on_a_terminal_logs_progress_lines_and_stdout_stays_events(
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_pages(git_registry, 30)
    commit(git_registry, "30 pages")
    # "long" is every update here: no test sleeps 5 s to see a line
    monkeypatch.setattr(progress_module, "DEFAULT_INTERVAL", 0.0)
    assert sync(git_registry, tmp_path / "d", "--log-format", "json", "--events-file", "-") == 0
    captured = capsys.readouterr()
    docs = json_lines(captured.err)  # progress included, every line is one JSON object
    progress = [d["progress"] for d in docs if "progress" in d]
    assert {p["phase"] for p in progress} == {"emitting", "chunking", "embedding"}
    chunking = [p for p in progress if p["phase"] == "chunking"]
    assert {p["subject"] for p in chunking} == {"knowledge/product", "knowledge/billing"}
    assert max(p["total"] for p in chunking) == 34  # the product domain's files
    assert all(0 <= p["done"] <= p["total"] for p in progress)
    assert all(d["logger"] == "botreg.daemon.progress" for d in docs if "progress" in d)
    assert cycles(docs)[-1]["result"] == "synced"  # the summary still comes last
    # stdout is the events, nothing else
    events = json_lines(captured.out)
    assert events and all(e["specversion"] == "1.0" and "progress" not in e for e in events)


def test_progress_lines_are_text_records_in_text_logs(
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress_module, "DEFAULT_INTERVAL", 0.0)
    assert sync(git_registry, tmp_path / "d") == 0
    err = capsys.readouterr().err
    assert re.search(
        rf"^{STAMP} INFO botreg\.daemon\.progress: embedding knowledge/billing: "
        r"\d+/\d+ chunks \(\d+%\), \d+ s into the cycle$",
        err,
        re.MULTILINE,
    ), err
    assert "\x1b[" not in err  # no bar: stderr is not a terminal


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_only_for_text_logs_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    assert choose_mode("text", Terminal()) == "bar"
    assert choose_mode("json", Terminal()) == "lines"  # never a bar in a JSON log
    assert choose_mode("text", io.StringIO()) == "lines"  # CI, systemd, a pipe
    closed = io.StringIO()
    closed.close()  # isatty() raises now
    assert choose_mode("text", closed) == "lines"
    monkeypatch.setenv("TERM", "dumb")
    assert choose_mode("text", Terminal()) == "lines"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_sync_once_on_a_terminal_draws_a_bar_on_stderr_only_with_text_logs(
    fmt: str,
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_pages(git_registry, 30)
    commit(git_registry, "30 pages")
    monkeypatch.setenv("TERM", "xterm")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    argv = ("--log-format", fmt, "--events-file", "-")
    assert sync(git_registry, tmp_path / "d", *argv) == 0
    err = terminal.getvalue()
    events = json_lines(capsys.readouterr().out)  # the bar never reaches stdout
    assert events and all(e["specversion"] == "1.0" for e in events)
    if fmt == "json":
        docs = json_lines(err)  # no bar: one JSON object per line, as without a terminal
        assert cycles(docs)[-1]["result"] == "synced"
        return
    assert "\x1b[" in err and "knowledge/product" in err and "━" in err  # the bar
    assert "cycle synced (initial).." in err  # the summary is printed once the bar is gone
    assert err.rstrip().splitlines()[-1].split("\x1b[2K")[-1].startswith("20")


class Broken(Progress):
    def update(self, phase: str, subject: str, done: int, total: int, unit: str) -> None:
        raise OSError("the terminal went away")


def test_a_failing_progress_reporter_never_fails_the_cycle(
    git_registry: Path, tmp_path: Path
) -> None:
    h = SyncHarness(str(git_registry), tmp_path / "d")
    try:
        h.syncer.progress = Broken()
        assert h.sync().result == "synced"
        assert type(h.syncer.progress) is Progress  # switched off, not retried per file
    finally:
        h.close()


def test_the_daemon_reports_progress_as_its_options_say(
    git_registry: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from botreg.daemon.run import Daemon, DaemonOptions
    from botreg.daemon.sync import SyncOptions
    from botreg.errors import UsageError

    def progress_records(mode: str, data: str) -> list[logging.LogRecord]:
        caplog.clear()
        options = SyncOptions(git_registry.as_uri(), data_dir=tmp_path / data)
        daemon = Daemon(options, DaemonOptions(listen=None, progress=mode, progress_interval=0))
        with caplog.at_level(logging.INFO, logger="botreg.daemon"):
            assert daemon.run_once() == 0
        return [r for r in caplog.records if r.name == "botreg.daemon.progress"]

    assert {r.__dict__["fields"]["progress"]["phase"] for r in progress_records("lines", "a")} == {
        "emitting",
        "chunking",
        "embedding",
    }
    assert progress_records("off", "b") == []
    with pytest.raises(UsageError, match="progress 'sparkles': one of bar, lines, off"):
        Daemon(SyncOptions(str(git_registry)), DaemonOptions(listen=None, progress="sparkles"))


def test_sync_once_always_says_what_happened(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second `--once` (the set-up run twice) and a head rejected before were silent."""
    data = tmp_path / "d"
    assert sync(git_registry, data) == 0
    applied = head(git_registry)
    capsys.readouterr()
    assert sync(git_registry, data) == 0
    assert f"INFO botreg.daemon: nothing new: {applied[:12]} is applied" in capsys.readouterr().err
    write(git_registry, "bots/broken.yaml", "a: [\n")
    rejected = commit(git_registry, "a broken bot")
    assert sync(git_registry, data) == 1
    capsys.readouterr()
    assert sync(git_registry, data) == 1  # the same rejected head again
    err = capsys.readouterr().err
    assert (
        f"WARNING botreg.daemon: cycle rejected: {rejected[:12]} is still rejected, "
        f"serving {applied[:12]} (`botreg status` lists its findings)"
    ) in err
