"""No secret leaves: every output surface is searched for planted secrets (issue #9, item 4).

A commit plants a PEM private key (with and without its END line), a key whose
name is a token, a secret `${VAR:default}` default under a password key, a URL
with userinfo and one with `?private_token=`; the daemon's environment holds a
secret it must never serve; the `--source` URL carries userinfo and a token
parameter. Then events.jsonl, the outbox, webhook bodies, status.json,
GET /status, GET /bots, the lock file, the logs and stderr of a refused command,
and review in every format are searched for the secret substrings.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from botreg.daemon.http import DaemonHTTP
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.status import DaemonStatus
from botreg.daemon.sync import SyncOptions
from botreg.events import CloudEvent
from botreg.resolve import allowed_environ, resolve_config
from botreg.secrets import (
    MASK,
    find_token,
    is_secret_key,
    looks_high_entropy,
    mask_config,
    mask_text,
    redact_url,
)
from helpers import codes, validate, wait_for
from sync_helpers import commit

PEM_LINES = ("MIIEowIBAAKCAQEAzQ7PemBodySecretLine1", "Kx9PemSecondLine4RtVb")
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(PEM_LINES) + "\n-----END RSA PRIVATE KEY-----\n"
)
UNTERMINATED = "NoEndPemSecret55Wq"  # a block whose END line is missing
TOKEN_KEY = "ghp_" + "Zx9Y" * 9
DEFAULT_SECRET = "plainhunter2"
QUERY_TOKEN = "Q7vN2xLp9RkT4wZs"
USERINFO_PASSWORD = "UserinfoPw77"
ENV_PEM_LINE = "EnvPemBodyOnlyInTheDaemonEnv42"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYAwsSecret"
ALLOWED_SECRET = "allowedForTheStoreOnly77"  # an allowed variable with a secret-like name
SECRETS = (
    *PEM_LINES,
    UNTERMINATED,
    TOKEN_KEY,
    DEFAULT_SECRET,
    QUERY_TOKEN,
    USERINFO_PASSWORD,
    ENV_PEM_LINE,
    AWS_SECRET,
    ALLOWED_SECRET,
)
BAD_SOURCE = (
    f"https://deploy:{USERINFO_PASSWORD}@127.0.0.1:9/registry.git?private_token={QUERY_TOKEN}"
)


def leaks(text: str) -> list[str]:
    """The planted secrets found in `text` (escaped forms too)."""
    escaped = json.dumps(text)
    return [s for s in SECRETS if s in text or s in escaped]


def plant(repo: Path) -> None:
    """Commit every kind of secret into a bot file (the ones validation refuses are ignored)."""
    pem = json.dumps(PEM)
    unterminated = json.dumps(f"-----BEGIN EC PRIVATE KEY-----\n{UNTERMINATED}\nmore")
    bot = repo / "bots/billing-assistant.yaml"
    bot.write_text(
        bot.read_text().replace(
            "metadata:\n  owner: billing-team\n",
            "metadata:\n  owner: billing-team\n"
            f"  pem_note: {pem}  # botreg: ignore[BR303]\n"
            f"  unterminated: {unterminated}  # botreg: ignore[BR303]\n"
            f"  {TOKEN_KEY}: true  # botreg: ignore[BR303]\n"
            f"  db_password: ${{DB_PW:{DEFAULT_SECRET}}}\n"
            f"  docs: https://gitlab.example.com/api/v4?private_token={QUERY_TOKEN}&ref=main\n"
            f"  mirror: https://deploy:{USERINFO_PASSWORD}@git.example.com/r.git"
            "  # botreg: ignore[BR303]\n"
            "  aws: ${AWS_SECRET_ACCESS_KEY:none}\n"
            "  from_env: ${BOTREG_NOTES}\n"
            "  header: Bearer ${BOTREG_AUTH_HEADER}\n",
        )
    )
    guide = repo / "bots/product-guide.yaml"
    guide.write_text(guide.read_text() + "  aws: ${AWS_SECRET_ACCESS_KEY}\n")
    commit(repo, "plant secrets")


class Receiver:
    """A webhook receiver on 127.0.0.1 that records every body and always answers 500."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(500)  # so the events also stay in the outbox
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def logged_types(data: Path) -> str:
    log = data / "events.jsonl"
    return log.read_text() if log.exists() else ""


class Running:
    """A daemon running in a thread, listening on a free loopback port."""

    def __init__(self, source: str, data: Path, **options: Any) -> None:
        self.daemon = Daemon(
            SyncOptions(source, data_dir=data, allow_env=options.pop("allow_env", ())),
            DaemonOptions(**{"listen": "127.0.0.1:0", "interval": 3600, **options}),
        )
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()

    def get(self, path: str) -> tuple[int, str]:
        http = wait_for(lambda: self.daemon.http)
        with urllib.request.urlopen(f"http://{http.address}{path}", timeout=10) as response:
            return response.status, response.read().decode()

    def stop(self) -> None:
        self.daemon.stop()
        self.thread.join(timeout=30)


@pytest.fixture
def run_daemon() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(source: str, data: Path, **options: Any) -> Running:
        started.append(Running(source, data, **options))
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()


def strict_json(text: str) -> Any:
    """Parse JSON, refusing NaN and Infinity (what strict consumers do)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"bare {name} in JSON")

    return json.loads(text, parse_constant=refuse)


# --- the daemon's surfaces -----------------------------------------------------------------


def test_no_planted_secret_reaches_events_webhook_outbox_status_or_bots(
    git_registry: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_daemon: Callable[..., Running],
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)  # the daemon's own secret
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-" + "a1B2" * 8)
    monkeypatch.setenv("BOTREG_NOTES", f"-----BEGIN PRIVATE KEY-----\n{ENV_PEM_LINE}\n")
    monkeypatch.setenv("BOTREG_AUTH_HEADER", ALLOWED_SECRET)
    plant(git_registry)
    data = tmp_path / "data"
    receiver = Receiver()
    try:
        d = run_daemon(
            git_registry.as_uri(),
            data,
            webhook=receiver.url,
            allow_env=("BOTREG_*", "ANTHROPIC_*"),
        )
        wait_for(lambda: "botreg.sync.completed" in logged_types(data))
        wait_for(lambda: receiver.bodies)
        code, bots = d.get("/bots")
        assert code == 200
        code, billing = d.get("/bots/billing-assistant")
        code, status = d.get("/status")
        assert code == 200
    finally:
        receiver.close()
    # the config was resolved (not just left unresolved): the AWS default applied
    metadata = json.loads(billing)["config"]["metadata"]
    assert metadata["aws"] == "none" and metadata["from_env"] == MASK
    assert metadata["db_password"] == MASK and metadata["pem_note"] == f"{MASK}\n"
    assert metadata["docs"].endswith(f"private_token={MASK}&ref=main")
    assert metadata["header"] == f"Bearer {MASK}"  # allowed for the store, not published
    guide = next(b for b in json.loads(bots) if b["bot_id"] == "product-guide")
    assert "AWS_SECRET_ACCESS_KEY" in guide["error"]  # not allowed: unset, never its value

    events = (data / "events.jsonl").read_text()
    assert "billing-assistant" in events  # the change was emitted ...
    outbox = sqlite3.connect(data / "outbox.sqlite")
    try:
        queued = [bytes(row[0]).decode() for row in outbox.execute("SELECT body FROM outbox")]
    finally:
        outbox.close()
    assert queued
    surfaces = {
        "events.jsonl": events,
        "outbox": "\n".join(queued),
        "webhook bodies": "\n".join(b.decode() for b in receiver.bodies),
        "status.json": (data / "status.json").read_text(),
        "GET /status": status,
        "GET /bots": bots,
        "GET /bots/billing-assistant": billing,
    }
    assert {name: leaks(text) for name, text in surfaces.items()} == {n: [] for n in surfaces}
    for line in events.splitlines():
        strict_json(line)


def test_source_url_credentials_never_shown(
    tmp_path: Path,
    run_daemon: Callable[..., Running],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    d = run_daemon(BAD_SOURCE, data)
    wait_for(lambda: "botreg.sync.failed" in logged_types(data))
    _, status = d.get("/status")
    lock = (data / "lock").read_text()
    assert "127.0.0.1:9" in lock and "127.0.0.1:9" in status  # the URL is shown ...
    # ... a second command on the same data dir is refused and names the holder
    assert main(["sync", "--source", BAD_SOURCE, "--once", "--data-dir", str(data)]) == 1
    refused = capsys.readouterr().err
    assert "in use by another botreg process" in refused
    surfaces = {
        "lock file": lock,
        "GET /status": status,
        "refused stderr": refused,
        "status.json": (data / "status.json").read_text(),
        "events.jsonl": logged_types(data),
    }
    assert {name: leaks(text) for name, text in surfaces.items()} == {n: [] for n in surfaces}


def test_daemon_logs_carry_no_source_credentials(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "botreg", "sync", "--source", BAD_SOURCE, "--once"]
    done = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "data")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 1
    assert "127.0.0.1:9" in done.stderr  # the failure is logged, with the URL redacted
    assert leaks(done.stderr) == [] and leaks(done.stdout) == []


def test_a_lock_file_left_by_an_older_botreg_is_redacted_when_shown(tmp_path: Path) -> None:
    import fcntl

    from botreg.datadir import DataDir, DataDirLockedError

    data = DataDir(tmp_path / "data")
    data.root.mkdir()
    data.lock_file.write_text(f"pid 1: botreg sync {BAD_SOURCE}\n")
    with open(data.lock_file) as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataDirLockedError) as refused, data.locked("botreg ingest"):
            pass
    assert "127.0.0.1:9" in str(refused.value) and leaks(str(refused.value)) == []


# --- review ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_review_shows_no_planted_secret(
    git_registry: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plant(git_registry)
    args = ["--base", "HEAD~1", "--head", "HEAD", "--format", fmt]
    code = main(["review", "--repo", str(git_registry), *args])
    out = capsys.readouterr().out
    assert code == 0
    assert "metadata.db_password" in out and "pem_note" in out  # the changes are shown ...
    assert leaks(out) == []  # ... masked


# --- the operator decides which variables ${VAR} may read --------------------------------


def test_allowed_environ_matches_patterns_only() -> None:
    environ = {"BOTREG_A": "1", "BOTREG_B": "2", "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "HOME": "/h"}
    assert allowed_environ([], environ) == {}
    assert allowed_environ(["BOTREG_*"], environ) == {"BOTREG_A": "1", "BOTREG_B": "2"}
    assert allowed_environ(["HOME", "botreg_*"], environ) == {"HOME": "/h"}  # case matters


def test_resolve_cli_allow_env_narrows_the_callers_environment(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-" + "a1B2" * 8)
    args = ["resolve", "billing-assistant", "--repo", str(registry), "--format", "json"]
    assert main([*args, "--env", "development"]) == 0  # a person's own shell: read as before
    assert json.loads(capsys.readouterr().out)["llm"]["endpoint"]["api_key"] == MASK
    # not allowed: unset, so development's default (empty) applies
    assert main([*args, "--env", "development", "--allow-env", "BOTREG_*"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["llm"]["endpoint"]["api_key"] == "" and "a1B2" not in out
    assert main([*args, "--env", "production", "--allow-env", "BOTREG_*"]) == 1  # no default
    err = capsys.readouterr().err
    assert "ANTHROPIC_API_KEY" in err and "a1B2" not in err


# --- the rules ---------------------------------------------------------------------------


def test_whole_pem_blocks_are_masked() -> None:
    assert mask_text(f"before\n{PEM}after") == f"before\n{MASK}\nafter"
    unterminated = f"x: -----BEGIN OPENSSH PRIVATE KEY-----\n{UNTERMINATED}\nrest"
    assert mask_text(unterminated) == f"x: {MASK}"
    folded = PEM.replace("\n", " ")  # a YAML plain scalar folds the lines
    assert leaks(mask_text(folded)) == []


def test_url_credentials_are_masked() -> None:
    for name in ("private_token", "access_token", "token", "key", "sig", "password", "api_key"):
        url = f"https://h.example/p?a=1&{name}={QUERY_TOKEN}&b=2"
        assert mask_text(url) == f"https://h.example/p?a=1&{name}={MASK}&b=2"
    assert (
        mask_text("https://h.example/p?ref=main&q=token") == "https://h.example/p?ref=main&q=token"
    )
    assert redact_url(f"https://oauth2:{USERINFO_PASSWORD}@h/r.git") == "https://***@h/r.git"
    assert redact_url(f"https://{TOKEN_KEY}@h/r.git") == "https://***@h/r.git"
    assert mask_text("postgres://${PG_USER}:${PG_PASSWORD}@db/x") == (
        "postgres://${PG_USER}:${PG_PASSWORD}@db/x"  # references are not secrets
    )


def test_secret_defaults_and_token_keys_are_masked() -> None:
    masked = mask_config(
        {
            "password": f"${{DB_PW:{DEFAULT_SECRET}}}",
            "url": "${SERVICE_URL:http://localhost:8080}",
            "token": "${API_TOKEN}",
            "note": f"${{PG_PASSWORD:{DEFAULT_SECRET}}}",
            TOKEN_KEY: True,
            "sk-ant-api03-" + "x1Y2" * 6: "x",
        }
    )
    assert masked == {
        "password": "${DB_PW:***}",
        "url": "${SERVICE_URL:http://localhost:8080}",
        "token": "${API_TOKEN}",
        "note": "${PG_PASSWORD:***}",  # the variable's name says it is a secret
        MASK: True,
        f"{MASK}#2": "x",
    }


def test_mask_config_survives_depth() -> None:
    deep: Any = PEM
    for _ in range(5000):
        deep = {"a": [deep]}
    masked = mask_config(deep)
    for _ in range(5000):
        masked = masked["a"][0]
    assert masked == f"{MASK}\n"


def test_false_positives_are_gone_and_true_positives_stay(registry: Path) -> None:
    bot = registry / "bots/billing-assistant.yaml"
    bot.write_text(
        bot.read_text().replace(
            "metadata:\n",
            "metadata:\n"
            "  cache_key: 3f2504e0-4f89-41d3-9a0c-0305e82c3301\n"
            "  api_key_id: 9b2c6f1e-8a4d-4c3b-b7e2-5d1f0a9c8e7b\n"
            "  token_url: https://auth.example.com/oauth2/token\n"
            "  secret_name: prod-billing-api-credentials-v2\n"
            "  key_vault_uri: https://billing-prod-kv.vault.azure.net/\n"
            "  sku: sk-enterprise-annual-plan-2025-eu\n",
        )
    )
    assert codes(validate(registry)) == []
    assert find_token("sk-enterprise-annual-plan-2025-eu") is None
    assert find_token("sk-proj-abcdefghijklmnopqrstuvwxyz0123") == "OpenAI API key"
    assert find_token("sk-" + "Ab3" * 16) == "OpenAI API key"
    for key in ("secret_name", "api_key_id", "token_url", "key_vault_uri", "private_key_file"):
        assert not is_secret_key(key), key
    for key in ("api_key", "client_secret", "password", "token", "cache_key", "auth_header"):
        assert is_secret_key(key), key
    assert looks_high_entropy("Zq8x7PkWm2Rt9LbV4nCs")
    assert looks_high_entropy("Hunter2-Literal-Secret9x")
    assert not looks_high_entropy("3f2504e0-4f89-41d3-9a0c-0305e82c3301")
    bot.write_text(bot.read_text() + "  auth_token: Zq8x7PkWm2Rt9LbV4nCs\n")  # still caught
    assert codes(validate(registry)) == ["BR304"]


# --- strict JSON -------------------------------------------------------------------------


def test_events_status_and_http_never_write_bare_nan(tmp_path: Path) -> None:
    event = CloudEvent("botreg.sync.failed", "src", "id1", data={"t": math.nan, "u": [math.inf]})
    assert strict_json(event.to_json())["data"] == {"t": None, "u": [None]}
    status = DaemonStatus(tmp_path / "status.json", source=BAD_SOURCE, branch="m", environment="e")
    status.update(last_error=f"oops at {BAD_SOURCE}", findings=[{"score": math.nan}])
    status.save()
    saved = (tmp_path / "status.json").read_text()
    assert strict_json(saved)["findings"] == [{"score": None}] and leaks(saved) == []

    http = DaemonHTTP(
        "127.0.0.1",
        0,
        status=lambda: {"v": math.nan, "password": "hunter2x", "pem": PEM},
        metrics=lambda: f"m 1\n# {BAD_SOURCE}\n",
        wake=lambda: None,
        query=lambda d, q, k: [],
        readiness=lambda: (True, []),
        hook_secret=lambda: None,
        branch="main",
    )
    http.start()
    try:
        with urllib.request.urlopen(f"http://{http.address}/status", timeout=10) as response:
            doc = strict_json(response.read().decode())
        with urllib.request.urlopen(f"http://{http.address}/metrics", timeout=10) as response:
            metrics = response.read().decode()
    finally:
        http.stop()
    assert doc == {"v": None, "password": MASK, "pem": f"{MASK}\n"}
    assert leaks(metrics) == [] and metrics.startswith("m 1\n")


def test_resolved_configs_are_not_in_reprs() -> None:
    from botreg.api.models import Registration, ResolvedConfig

    config = resolve_config({"api_key": "${K}"}, {}, {"K": AWS_SECRET})
    assert leaks(repr(ResolvedConfig("b", config, "v1"))) == []
    assert leaks(repr(Registration("b", config))) == []


def test_finding_messages_never_quote_a_token(registry: Path) -> None:
    bot = registry / "bots/billing-assistant.yaml"
    bot.write_text(f"{TOKEN_KEY}: 1\n" + bot.read_text())  # an unknown top-level key
    report = validate(registry)
    assert codes(report) == ["BR202", "BR303"]  # unknown, and a credential (issue #9)
    for finding in report.findings:
        assert MASK in finding.message and leaks(finding.message) == []


@pytest.mark.parametrize(("allow", "store"), [((), "chroma"), (("STORE_*",), "from-env")])
def test_knowledge_settings_read_only_allowed_variables(
    git_registry: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    allow: tuple[str, ...],
    store: str,
) -> None:
    from sync_helpers import SyncHarness

    monkeypatch.setenv("STORE_DIR", "from-env")  # in the daemon's environment
    env = git_registry / "environments/development.yaml"
    env.write_text(env.read_text().replace("path: chroma", "path: ${STORE_DIR:chroma}"))
    commit(git_registry)
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data", allow_env=allow)
    try:
        assert harness.sync().result == "synced"
    finally:
        harness.close()
    stores = {p.name for p in (tmp_path / "data").iterdir() if p.name in ("chroma", "from-env")}
    assert stores == {store}


def test_source_url_credentials_are_not_stored_in_the_mirror(tmp_path: Path) -> None:
    """Userinfo of an http(s) --source never lands in mirror.git/config; git still gets it."""
    import base64
    import http.server
    import threading

    from botreg.git.mirror import FetchError, GitMirror

    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        source = f"http://deploy:Sup3r%2FSecretPass@127.0.0.1:{port}/acme/registry.git"
        mirror = GitMirror(tmp_path / "mirror.git", source, "main", timeout=20)
        config = (tmp_path / "mirror.git" / "config").read_text()
        assert "Sup3r" not in config and "deploy" not in config
        assert f"http://127.0.0.1:{port}/acme/registry.git" in config
        with pytest.raises(FetchError) as caught:
            mirror.fetch()
        assert "Sup3r" not in str(caught.value)
    finally:
        server.shutdown()
        server.server_close()
    expected = "Basic " + base64.b64encode(b"deploy:Sup3r/SecretPass").decode()
    assert expected in seen  # the credential still reaches the git host, as a header


@pytest.mark.timeout(60)  # linear work finishes in about a second; quadratic would take hours
@pytest.mark.parametrize("prefix", ["a://", "http://", "sk-", "eyJ", "x:y@", "?token="])
def test_masking_a_long_hostile_value_is_linear(prefix: str) -> None:
    """A committer's 1 MB run of letters must not stall review or the daemon (issue #9)."""
    from botreg.secrets import find_token, mask_config, mask_text

    value = prefix + "d" * 1_000_000
    assert mask_text(value).endswith("d" * 1000) or prefix == "?token="
    assert find_token(value) is None or prefix in ("sk-",)
    assert mask_config({"password": value, value: 1})["password"] == "***"


def test_a_token_named_key_is_masked_in_finding_pointers(tmp_path: Path) -> None:
    """validate --format json/sarif print the pointer: a key that is a token is masked."""
    from botreg.validation.findings import Finding

    token = "ghp_" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3"
    finding = Finding("bots/x.yaml", "BR202", "unknown key", pointer=("metadata", token))
    assert token not in finding.json_pointer and finding.json_pointer == "/metadata/***"
    assert token not in finding.message


def test_cli_error_messages_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever a library error quotes, the CLI prints no credential (exit codes kept)."""
    from botreg import cli
    from botreg.errors import BotregError

    token = "sk-ant-api03-" + "Zq3Xv9Lm2Np8Rt4Ws6Yb1Kd7Hf5Jg0Tc"

    def fail(_args: object) -> int:
        raise BotregError(f"cannot use {token}")

    def crash(_args: object) -> int:
        raise RuntimeError(f"bug near https://u:{token}@git.example.com/r.git")

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the crash log
    for handler, expected in ((fail, 1), (crash, 3)):
        monkeypatch.setattr(cli.init_cmd, "run", handler)  # read when the parser is built
        assert cli.main(["init", str(tmp_path / "x")]) == expected
        err = capsys.readouterr().err
        assert "Zq3Xv9Lm2" not in err and "***" in err


@pytest.mark.timeout(60)  # linear work takes well under a second; quadratic took hours
def test_nested_var_defaults_are_read_in_linear_time() -> None:
    """`${A:${A:...}}` nested 200,000 deep (1 MB) in review, events, GET /bots (issue #9)."""
    from botreg.resolve import resolve_config
    from botreg.secrets import mask_config, mask_text
    from botreg.validation.portability import find_portability_issues

    value = "${A:" * 200_000 + "x" + "}" * 200_000
    assert mask_text(value).startswith("${A:")
    assert mask_config({"password": value, "note": value})["password"] == "***"
    find_portability_issues({"api_key": value, "note": value})
    resolved = resolve_config({"note": value}, {}, {})
    assert isinstance(resolved["note"], str)
    # one level of default is resolved; nested defaults are not a feature
    assert resolve_config({"a": "${X:${Y:z}}", "b": "${P:$5}"}, {}, {}) == {
        "a": "${X:z}",
        "b": "$5",
    }
