"""One exit code per kind of mistake, for every command.

0 success; 1 problems found (in the registry, the store or the data) or a failed
operation; 2 usage: an unknown flag, a bad value, an unknown name given on the
command line (bot, domain, environment, branch, revision, id) or a path that is
not what the command needs; 3 unexpected (a bug); 130 Ctrl-C. Observed before:
`query` through a running daemon on an unknown domain was 1 (`ingest`: 2),
`sync --once --env staging` was 1, `review --env staging` printed a review (0),
`events --since gone` and `status` on a wrong --data-dir were 1.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import (
    chunks_cmd,
    daemon_cmds,
    init_cmd,
    knowledge_cmds,
    main,
    resolve_cmd,
    review_cmd,
    validate_cmd,
)
from botreg.datadir import DataDir
from conftest import git
from helpers import write
from sync_helpers import commit


@pytest.fixture
def place(git_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path holds `registry` (the template, committed on main) and `data` (empty)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "notes.txt").write_text("not a registry\n")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    """The exit code and what was printed (stdout, then stderr)."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out + err


R = ["--repo", "registry"]

USAGE_MISTAKES = [
    # an unknown flag and a bad value: every command
    *[
        pytest.param([*argv, "--no-such-flag"], "unrecognized argument", id=f"{argv[0]}-flag")
        for argv in (
            ["validate"],
            ["init", "new"],
            ["resolve", "billing-assistant", "--env", "development"],
            ["ingest"],
            ["query", "--domain", "billing", "x"],
            ["sync", "--source", "registry", "--once"],
            ["status"],
            ["events"],
            ["review", "--base", "main"],
            ["chunks", "knowledge/billing/plans.json"],
        )
    ],
    pytest.param(["validate", *R, "--format", "xml"], "invalid choice", id="validate-format"),
    pytest.param(["validate", *R, "bots/nope.yaml"], "no such file", id="validate-path"),
    pytest.param(["validate", "--repo", "occupied"], "not a botreg registry", id="validate-repo"),
    pytest.param(["init", "occupied"], "occupied", id="init-not-empty"),
    pytest.param(
        ["resolve", "nope", "--env", "development", *R], "bot not found", id="resolve-bot"
    ),
    pytest.param(
        ["resolve", "billing-assistant", "--env", "staging", *R],
        "environment not found: 'staging'",
        id="resolve-env",
    ),
    pytest.param(
        ["resolve", "billing-assistant", "--env", "development", "--repo", "occupied"],
        "not a botreg registry",
        id="resolve-repo",
    ),
    pytest.param(
        ["ingest", *R, "--domain", "legal"], "unknown domain(s): legal", id="ingest-domain"
    ),
    pytest.param(
        ["ingest", *R, "--domain", "Bad/Name"], "invalid domain name", id="ingest-bad-domain"
    ),
    pytest.param(["ingest", *R, "--env", "staging"], "environment not found", id="ingest-env"),
    pytest.param(
        ["query", *R, "--domain", "legal", "x"], "unknown domain(s): legal", id="query-domain"
    ),
    pytest.param(
        ["query", *R, "--env", "staging", "--domain", "billing", "x"],
        "environment not found",
        id="query-env",
    ),
    pytest.param(["query", *R, "--domain", "billing", "-k", "0", "x"], "-k must be", id="query-k0"),
    pytest.param(
        ["query", *R, "--domain", "billing", "-k", "101", "x"], "1 to 100", id="query-k101"
    ),
    pytest.param(
        ["sync", "--source", "registry", "--data-dir", "data", "--once", "--env", "staging"],
        "environment not found: 'staging'",
        id="sync-env",
    ),
    pytest.param(
        ["sync", "--source", "registry", "--data-dir", "data", "--once", "--branch", "nope"],
        "couldn't find remote ref refs/heads/nope",
        id="sync-branch",
    ),
    pytest.param(
        ["sync", "--source", "no-such-clone", "--data-dir", "data", "--once"],
        "--source no-such-clone: no such file or directory",
        id="sync-source",
    ),
    pytest.param(
        ["sync", "--source", "registry", "--once", "--interval", "soon"],
        "invalid float value",
        id="sync-interval",
    ),
    pytest.param(["status", "--data-dir", "missing"], "no sync status here", id="status-data-dir"),
    pytest.param(["status", "--format", "yaml"], "invalid choice", id="status-format"),
    pytest.param(["events", "--data-dir", "missing"], "no such data directory", id="events-dir"),
    pytest.param(["events", "--data-dir", "data"], "no event log here", id="events-no-log"),
    pytest.param(
        ["events", "--data-dir", "logged", "--since", "gone"], "no event with id gone", id="since"
    ),
    pytest.param(["events", "--id", "x"], "--id goes with --replay", id="events-id"),
    pytest.param(["review", *R, "--base", "nope"], "unknown revision 'nope'", id="review-base"),
    pytest.param(
        ["review", *R, "--base", "main", "--env", "staging"],
        "environment not found: 'staging'",
        id="review-env",
    ),
    pytest.param(["review", *R, "--base", "main", "--max-chars", "10"], "at least", id="max-chars"),
    pytest.param(["review", "--repo", "occupied", "--base", "main"], "not a git", id="review-repo"),
    pytest.param(
        ["chunks", *R, "registry/knowledge/legal/x.md"], "no such file", id="chunks-missing"
    ),
    pytest.param(
        ["chunks", *R, "registry/bots/billing-assistant.yaml"],
        "not a knowledge file",
        id="chunks-not-knowledge",
    ),
]


@pytest.mark.parametrize(("argv", "message"), USAGE_MISTAKES)
def test_usage_mistakes_are_2(
    place: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    write(place, "logged/events.jsonl", json.dumps({"id": "e1", "type": "t"}) + "\n")
    code, err = run(capsys, argv)
    assert (code, message in err) == (2, True), err


def test_an_env_the_applied_head_lacks_is_2_with_nothing_new_too(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sync --once --env staging` after the head was applied warned and exited 0 (the
    environment was checked only when a commit was applied): it is the same mistake."""
    once = ["sync", "--source", "registry", "--data-dir", "data", "--once"]
    assert run(capsys, once)[0] == 0  # the head applied: nothing new from now on
    code, err = run(capsys, [*once, "--env", "staging"])
    assert code == 2 and "environment not found: 'staging'" in err, err
    assert run(capsys, once)[0] == 0  # the same run without the mistake


def _break_bot(repo: Path) -> None:
    bot = repo / "bots/product-guide.yaml"
    bot.write_text(bot.read_text().replace("status: active", "status: on"))


PROBLEMS = [
    pytest.param(["validate", *R], "BR", id="validate"),
    pytest.param(
        ["resolve", "billing-assistant", "--env", "production", *R],
        "ANTHROPIC_API_KEY",
        id="resolve",
    ),
    pytest.param(["ingest", *R], "invalid JSON", id="ingest"),
    pytest.param(["query", *R, "--domain", "billing", "x"], "has not been ingested", id="query"),
    pytest.param(["sync", "--source", "registry", "--data-dir", "data", "--once"], "", id="sync"),
    pytest.param(["events", "--data-dir", "damaged"], "cannot read the event log", id="events"),
    pytest.param(["review", *R, "--base", "main~1"], "", id="review"),
    pytest.param(["chunks", *R, "registry/knowledge/product/broken.json"], "invalid", id="chunks"),
]


@pytest.mark.parametrize(("argv", "message"), PROBLEMS)
def test_problems_found_are_1(
    place: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    for name in ("ANTHROPIC_API_KEY", "PG_HOST", "PG_USER", "PG_PASSWORD", "BILLING_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    repo = place / "registry"
    if argv[0] in ("validate", "sync", "review"):  # a commit the hook would stop
        _break_bot(repo)
        commit(repo, "an invalid status")
    if argv[0] in ("ingest", "chunks"):
        write(repo, "knowledge/product/broken.json", "{")
    (place / "damaged" / "events.jsonl").mkdir(parents=True)  # unreadable as a file
    code, err = run(capsys, argv)
    assert code == 1 and message in err, err


# --- 3 and 130: whatever the command -------------------------------------------------

HANDLERS: list[Any] = [
    pytest.param(validate_cmd, "run", ["validate"], id="validate"),
    pytest.param(init_cmd, "run", ["init", "new"], id="init"),
    pytest.param(resolve_cmd, "run", ["resolve", "b", "--env", "e"], id="resolve"),
    pytest.param(knowledge_cmds, "run_ingest", ["ingest"], id="ingest"),
    pytest.param(knowledge_cmds, "run_query", ["query", "--domain", "d", "t"], id="query"),
    pytest.param(daemon_cmds, "run_sync", ["sync", "--source", "s"], id="sync"),
    pytest.param(daemon_cmds, "run_status", ["status"], id="status"),
    pytest.param(daemon_cmds, "run_events", ["events"], id="events"),
    pytest.param(review_cmd, "run", ["review", "--base", "b"], id="review"),
    pytest.param(chunks_cmd, "run", ["chunks", "p"], id="chunks"),
]


@pytest.mark.parametrize(("module", "handler", "argv"), HANDLERS)
@pytest.mark.parametrize(
    ("raised", "code"), [(KeyboardInterrupt, 130), (RuntimeError, 3)], ids=["ctrl-c", "bug"]
)
def test_ctrl_c_is_130_and_a_bug_is_3(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    handler: str,
    argv: list[str],
    raised: type[BaseException],
    code: int,
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the crash log

    def boom(args: Any) -> int:
        raise raised("in the middle of it")

    monkeypatch.setattr(module, handler, boom)
    assert main(argv) == code
    err = capsys.readouterr().err
    assert ("interrupted" in err) == (code == 130)
    assert ("this is a bug" in err) == (code == 3)


# --- query through the daemon that holds the data dir ---------------------------------


class _Daemon(BaseHTTPRequestHandler):
    """Answers as the daemon's HTTP API does for a domain its store lacks."""

    def do_GET(self) -> None:
        body = json.dumps({"error": "domain 'x' has not been ingested"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def daemon_data(place: Path) -> Iterator[Path]:
    """`data`, locked as a running daemon holds it, with its daemon.json and HTTP API."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Daemon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    data = place / "data"
    (data / "daemon.json").write_text(json.dumps({"url": f"http://127.0.0.1:{server.server_port}"}))
    try:
        with DataDir(data).locked("test daemon"):
            yield data
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("domain", "expected", "message"),
    [
        ("legal", 2, "unknown domain(s): legal (available: billing, product)"),
        ("billing", 1, "the daemon answered 404"),  # in the registry, not in the store: 1
    ],
)
def test_query_through_the_daemon_tells_an_unknown_domain_as_without_it(
    daemon_data: Path,
    capsys: pytest.CaptureFixture[str],
    domain: str,
    expected: int,
    message: str,
) -> None:
    """A domain the registry lacks was exit 1 through the daemon, 2 without it."""
    argv = ["query", *R, "--data-dir", str(daemon_data), "--domain", domain, "refunds"]
    code, err = run(capsys, argv)
    assert code == expected and message in err, err


def test_the_same_commands_without_the_mistake_are_0(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cases above fail for their mistake alone."""
    git(place / "registry", "branch", "other")
    assert main(["sync", "--source", "registry", "--data-dir", "data", "--once"]) == 0
    argv = ["sync", "--source", "registry", "--data-dir", "data2", "--once", "--branch", "other"]
    assert main(argv) == 0
    assert main(["review", *R, "--base", "main", "--env", "production"]) == 0
    assert main(["events", "--data-dir", "data"]) == 0
    assert main(["status", "--data-dir", "data"]) == 0
    capsys.readouterr()
