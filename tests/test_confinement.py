"""Confinement (issue #9): the store stays in the store root, is locked, credentials go
only to hosts the operator named, and no command follows a symlink in the registry."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.registry.yamlio import load_fast
from botreg.store.chroma import ChromaStore
from botreg.store.settings import KnowledgeSettings, StoreSettings
from botreg.validation.confinement import (
    STORE_LOCK_FILE,
    ConfinementError,
    StoreLock,
    StorePolicy,
    read_registry_file,
    store_path_problem,
)
from conftest import git
from helpers import codes, validate, write
from sync_helpers import SyncHarness, commit

DEV_ENV = "environments/development.yaml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _line_of_store_path(repo: Path) -> int:
    lines = (repo / DEV_ENV).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.lstrip().startswith("path: '"))


def set_store_path(repo: Path, path: str) -> None:
    """Point the development environment's embedded store at `path`."""
    env = repo / DEV_ENV
    text = env.read_text(encoding="utf-8")
    assert "path: chroma" in text
    env.write_text(text.replace("path: chroma", f"path: {path!r}", 1), encoding="utf-8")


@pytest.fixture
def repo(registry: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(registry.parent)
    for name in ("BOTREG_STORE_ROOT", "BOTREG_STORE_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    return registry


# --- the store path: validation -------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../../escaped-store",
        "/run/botreg-escaped",
        "/dev/shm/botreg-escaped",
        "chroma/../../escaped",
        "~/escaped",
        "${STORE_DIR:../escaped}",
        "${STORE_DIR:/dev/shm/x}/chroma",
        ".",
        "C:\\stores\\x",
    ],
)
def test_escaping_store_path_is_br305(repo: Path, path: str) -> None:
    set_store_path(repo, path)
    report = validate(repo)
    # BR301 also flags some absolute paths; BR305 flags every escape
    assert "BR305" in codes(report, DEV_ENV), report.findings
    assert set(codes(report, DEV_ENV)) <= {"BR301", "BR305"}
    finding = next(f for f in report.findings if f.code == "BR305")
    assert finding.line == _line_of_store_path(repo)  # the `path:` line of development.yaml
    assert "inside the data dir" in finding.message and "\n" not in finding.message
    assert not report.ok


@pytest.mark.parametrize("fmt", ["text", "github", "sarif"])
def test_br305_in_every_output_format(
    repo: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    set_store_path(repo, "../../escaped-store")
    code, out, _ = run(capsys, "validate", "--repo", "registry", "--format", fmt)
    assert code == 1 and "BR305" in out


@pytest.mark.parametrize("path", ["chroma", "stores/dev", "${STORE_DIR}", "${STORE_DIR:chroma}"])
def test_store_path_inside_is_valid(repo: Path, path: str) -> None:
    set_store_path(repo, path)
    assert "BR305" not in codes(validate(repo))


def test_store_path_problem_judges_the_default() -> None:
    assert store_path_problem("${X:../up}") == "has a '..' segment"
    assert store_path_problem("${X}/chroma") is None  # the operator's value: checked at open
    assert store_path_problem("a\nb") == "contains a control character"


# --- the store path: at runtime (validation bypassed) ---------------------------------


@pytest.mark.parametrize("path", ["../../escaped-store", "chroma/../../escaped"])
def test_ingest_refuses_an_escaping_store_path(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    set_store_path(repo, path)
    code, _, err = run(capsys, "ingest", "--repo", "registry", "--data-dir", "a/b/data")
    assert code == 1
    assert "outside the store root" in err and "Traceback" not in err
    assert not (tmp_path / "escaped-store").exists() and not (tmp_path / "a/escaped").exists()


def test_ingest_refuses_an_absolute_store_path(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "shm-like" / "store"
    set_store_path(repo, str(outside))
    code, _, err = run(capsys, "ingest", "--repo", "registry")
    assert code == 1 and "outside the store root" in err
    assert not outside.exists()


def test_store_refuses_a_symlink_out_of_the_data_dir(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "chroma").symlink_to(outside)
    with pytest.raises(ConfinementError, match="outside the store root"):
        ChromaStore(StoreSettings(path="chroma"), data)
    assert list(outside.iterdir()) == []


def test_store_refuses_a_variable_that_points_out(tmp_path: Path) -> None:
    environment = load_fast("knowledge:\n  store: {type: persistent, path: '${STORE_DIR}'}\n")
    settings = KnowledgeSettings.from_environment(
        environment, {"STORE_DIR": str(tmp_path / "elsewhere")}
    )
    with pytest.raises(ConfinementError):
        ChromaStore(settings.store, tmp_path / "data")
    assert not (tmp_path / "elsewhere").exists()


def test_daemon_refuses_a_symlinked_store_and_creates_nothing_outside(
    git_registry: Path, tmp_path: Path
) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "chroma").symlink_to(outside)
    harness = SyncHarness(git_registry.as_uri(), data)
    try:
        result = harness.sync()
    finally:
        harness.close()
    assert (result.result, result.phase) == ("failed", "apply")
    assert "outside the store root" in result.error
    assert list(outside.iterdir()) == []


def test_store_root_names_where_stores_live(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stores = tmp_path / "stores"
    set_store_path(repo, "team-a")
    code, _, err = run(capsys, "ingest", "--repo", "registry", "--store-root", str(stores))
    assert code == 0, err
    assert (stores / "team-a" / "chroma.sqlite3").is_file()
    assert not (Path(".botreg") / "team-a").exists()


# --- the store lock -------------------------------------------------------------------

_HOLDER = """
import sys
from pathlib import Path
from botreg.store.chroma import ChromaStore
from botreg.store.settings import StoreSettings
from botreg.validation.confinement import StorePolicy

store = ChromaStore(StoreSettings(path="shared"), Path(sys.argv[1]), StorePolicy(Path(sys.argv[2])))
print("ready", flush=True)
sys.stdin.read()  # hold the store until the test closes stdin
store.close()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the embedded store `<tmp>/stores/shared` (data dir A)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "data-a"), str(tmp_path / "stores")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()


def test_two_data_dirs_cannot_write_one_store_at_once(
    repo: Path,
    tmp_path: Path,
    holder: subprocess.Popen[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_store_path(repo, "shared")
    args = ["ingest", "--repo", "registry", "--data-dir", str(tmp_path / "data-b")]
    code, _, err = run(capsys, *args, "--store-root", str(tmp_path / "stores"))
    assert code == 1
    assert f"pid {holder.pid}" in err and "data-a" in err and "in use" in err
    assert "Traceback" not in err
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=60)
    code, _, err = run(capsys, *args, "--store-root", str(tmp_path / "stores"))
    assert code == 0, err


def test_store_lock_is_shared_within_a_process_and_released(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    first = StoreLock(folder, "first")
    second = StoreLock(folder, "second")  # one process: Chroma shares the client
    assert (folder / STORE_LOCK_FILE).read_text() == f"pid {os.getpid()}: first\n"
    first.release()
    probe = [sys.executable, "-c", _PROBE, str(folder)]

    def other_process_sees() -> str:
        return subprocess.run(probe, check=True, capture_output=True, text=True).stdout.strip()

    assert other_process_sees() == "locked"
    second.release()
    assert other_process_sees() == "free"


_PROBE = """
import fcntl, sys
with open(sys.argv[1] + "/botreg-store.lock", "a") as f:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("free")
    except BlockingIOError:
        print("locked")
"""


# --- credentials go only to hosts the operator named ----------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def _answer(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = _answer  # noqa: N815 - http.server's method names

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A tiny HTTP server on 127.0.0.1 recording every request's headers."""
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


SECRET = "Bearer operator-secret-123"


def _http_env(repo: Path, port: int) -> None:
    write(
        repo,
        DEV_ENV,
        "knowledge:\n"
        "  store:\n"
        "    type: http\n"
        "    host: ${BOTREG_TEST_STORE_HOST:127.0.0.1}\n"
        f"    port: {port}\n"
        "    headers:\n"
        "      Authorization: ${CHROMA_AUTH_HEADER}\n"
        "  embedding: {provider: hash, dimensions: 64}\n",
    )


def test_committed_host_does_not_get_the_operator_header(
    repo: Path,
    recorder: tuple[int, list[dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, seen = recorder
    monkeypatch.setenv("CHROMA_AUTH_HEADER", SECRET)
    _http_env(repo, port)
    code, out, err = run(capsys, "ingest", "--repo", "registry")
    assert code == 1 and "--store-host" in err
    assert SECRET not in out + err
    assert seen == []  # not one request, so no header


def test_store_sends_headers_only_to_named_hosts(
    tmp_path: Path, recorder: tuple[int, list[dict[str, str]]]
) -> None:
    port, seen = recorder
    settings = StoreSettings(
        type="http", host="127.0.0.1", port=port, headers={"Authorization": SECRET}
    )
    with pytest.raises(ConfinementError, match="--store-host"):
        ChromaStore(settings, tmp_path, StorePolicy())
    with pytest.raises(ConfinementError):  # another port than the one named
        ChromaStore(settings, tmp_path, StorePolicy.build(None, [f"127.0.0.1:{port + 1}"]))
    assert seen == []
    # control: the operator names the host, and the header does go (the fake server
    # is no Chroma, so opening fails after the request)
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises
        ChromaStore(settings, tmp_path, StorePolicy.build(None, [f"127.0.0.1:{port}"]))
    assert seen and all(h.get("authorization") == SECRET for h in seen)


def test_chroma_client_credentials_from_the_environment_are_not_sent(
    tmp_path: Path,
    recorder: tuple[int, list[dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, seen = recorder
    monkeypatch.setenv(
        "CHROMA_CLIENT_AUTH_PROVIDER", "chromadb.auth.token_authn.TokenAuthClientProvider"
    )
    monkeypatch.setenv("CHROMA_CLIENT_AUTH_CREDENTIALS", "operator-token-456")
    settings = StoreSettings(type="http", host="127.0.0.1", port=port)  # no headers: allowed
    with pytest.raises(Exception):  # noqa: B017 - the fake server is no Chroma
        ChromaStore(settings, tmp_path, StorePolicy())
    assert seen  # it was contacted...
    assert not any("operator-token-456" in value for h in seen for value in h.values())


def test_store_host_flag_and_environment() -> None:
    policy = StorePolicy.build(None, ["Chroma.Example.com", "10.0.0.5:8000,[::1]:9000"])
    assert policy.allows_host("chroma.example.com.", 443)
    assert policy.allows_host("10.0.0.5", 8000) and not policy.allows_host("10.0.0.5", 8001)
    assert policy.allows_host("::1", 9000)
    assert not policy.allows_host("chroma.example.com@evil.example", 443)
    env = StorePolicy.from_env({"BOTREG_STORE_HOSTS": "a.example", "BOTREG_STORE_ROOT": "/srv/x"})
    assert env.allows_host("a.example", 1) and env.store_root == Path("/srv/x")
    with pytest.raises(ConfinementError, match="bad port"):
        StorePolicy.build(None, ["host:notaport"])


# --- no command follows a symlink in the registry -------------------------------------


def test_resolve_refuses_a_symlinked_bot_file(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "outside.yaml"
    secret.write_text("name: stolen\ndescription: SECRET-OUTSIDE-CONTENT\n")
    (repo / "bots" / "evil.yaml").symlink_to(secret)
    code, out, err = run(capsys, "resolve", "evil", "--env", "development", "--repo", "registry")
    assert code == 1
    assert "bots/evil.yaml" in err and "symbolic link" in err
    assert "SECRET-OUTSIDE-CONTENT" not in out + err


def test_resolve_refuses_a_symlinked_environment_folder(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside-envs"
    (repo / "environments").rename(outside)
    (repo / "environments").symlink_to(outside)
    bot = sorted((repo / "bots").glob("*.yaml"))[0].stem
    code, _, err = run(capsys, "resolve", bot, "--env", "development", "--repo", "registry")
    assert code == 1 and "environments is a symbolic link" in err


def test_resolve_refuses_a_path_as_a_name(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "resolve", "../../x", "--env", "development", "--repo", "registry")
    assert code == 2 and "not a valid name" in err


def test_ingest_refuses_a_symlinked_environment_file(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "env.yaml"
    outside.write_text((repo / DEV_ENV).read_text())
    (repo / DEV_ENV).unlink()
    (repo / DEV_ENV).symlink_to(outside)
    code, _, err = run(capsys, "ingest", "--repo", "registry")
    assert code == 1 and "symbolic link" in err
    assert not Path(".botreg/chroma").exists()


def test_read_registry_file(tmp_path: Path) -> None:
    write(tmp_path, "bots/a.yaml", "x: 1\n")
    assert read_registry_file(tmp_path, "bots/a.yaml") == b"x: 1\n"
    with pytest.raises(ConfinementError):
        read_registry_file(tmp_path, "bots/../bots/a.yaml")
    with pytest.raises(FileNotFoundError):
        read_registry_file(tmp_path, "bots/b.yaml")


def test_validate_still_reports_a_committed_symlink(git_registry: Path, tmp_path: Path) -> None:
    (git_registry / "bots" / "evil.yaml").symlink_to(tmp_path / "nowhere.yaml")
    git(git_registry, "add", "-A")
    commit(git_registry)
    assert "BR505" in codes(validate(git_registry), "bots/evil.yaml")


def test_the_working_tree_source_never_reads_through_a_symlink(tmp_path: Path) -> None:
    """Even a path listed as a regular file is not followed if it became a link."""
    from botreg.registry.source import WorkingTreeSource

    outside = tmp_path / "secret.txt"
    outside.write_text("outside the registry")
    root = tmp_path / "reg"
    (root / "bots").mkdir(parents=True)
    (root / "bots" / "a.yaml").symlink_to(outside)
    with pytest.raises(OSError):
        WorkingTreeSource(root).read("bots/a.yaml")


@pytest.mark.parametrize(
    "value", ["mirror.git/refs/heads", "mirror.git", "events.jsonl", "ledger.sqlite-wal", "lock"]
)
def test_a_store_path_on_the_data_dirs_own_files_is_br305(value: str) -> None:
    """A store inside mirror.git/refs broke every later fetch, even after a revert (issue #9)."""
    from botreg.validation.confinement import store_path_problem

    problem = store_path_problem(value)
    assert problem is not None and "data dir's own" in problem


def test_the_store_refuses_the_data_dirs_own_folders_at_runtime(tmp_path: Path) -> None:
    from botreg.validation.confinement import ConfinementError, resolve_store_path

    (tmp_path / "mirror.git" / "refs").mkdir(parents=True)
    with pytest.raises(ConfinementError, match=r"mirror\.git"):
        resolve_store_path("mirror.git/refs/heads", tmp_path)
    assert resolve_store_path("chroma", tmp_path) == tmp_path.resolve() / "chroma"
    assert not (tmp_path / "mirror.git" / "refs" / "heads").exists()
