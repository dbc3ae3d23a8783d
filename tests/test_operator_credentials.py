"""Operator credentials (issue #9): a committer cannot make botreg send the daemon's
environment, store credentials or operator values to a host of their choosing, nor
send credentials in cleartext; an empty API token file never leaves the API open."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from botreg.daemon.http import DaemonHTTP
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import SyncOptions
from botreg.store.chroma import ChromaStore
from botreg.store.embedding import build_embedding_function, create_embedding_function
from botreg.store.settings import EmbeddingSettings, KnowledgeSettings, StoreSettings
from botreg.validation.confinement import ConfinementError, StorePolicy, is_loopback_host
from helpers import write
from sync_helpers import commit

DEV_ENV = "environments/development.yaml"
AWS_LEAK = "AWSENVLEAKVALUE"
CHROMA_LEAK = "Bearer CHROMAHDRLEAK"

Seen = list[tuple[str, str, dict[str, str]]]  # method, path, headers (lowercase names)


class _Recorder(BaseHTTPRequestHandler):
    """The attacker's host: records every request, answers 500."""

    seen: Seen

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = _answer  # noqa: N815 - http.server's method names

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[int, Seen]]:
    """A request-recording HTTP server on 127.0.0.1."""
    seen: Seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Recorder,), {"seen": seen}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BOTREG_STORE_ROOT", "BOTREG_STORE_HOSTS", "HUGGINGFACE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_LEAK)
    monkeypatch.setenv("CHROMA_AUTH_HEADER", CHROMA_LEAK)


def _set_knowledge(repo: Path, knowledge: str) -> None:
    """Replace the development environment's `knowledge` section and commit."""
    text = (repo / DEV_ENV).read_text(encoding="utf-8")
    head, _, rest = text.partition("knowledge:\n")
    _, _, tail = rest.partition("\nsettings:")
    write(repo, DEV_ENV, f"{head}knowledge:\n{knowledge}\nsettings:{tail}")
    commit(repo, "knowledge")


def _sync(
    capsys: pytest.CaptureFixture[str], repo: Path, data: Path, *flags: str
) -> tuple[int, str]:
    """One cycle; the exit code and all it said (output and event log)."""
    code = main(["sync", "--source", str(repo), "--data-dir", str(data), "--once", *flags])
    out, err = capsys.readouterr()
    events = data / "events.jsonl"
    return code, out + err + (events.read_text() if events.exists() else "")


def _leaked(seen: Seen, *secrets: str) -> bool:
    return any(s in path or any(s in v for v in headers.values()) for _, path, headers in seen
               for s in secrets)  # fmt: skip


# --- 1. embedding providers read only allowed variables, and send them only to named hosts


def test_daemon_does_not_send_an_unallowed_variable_to_a_committed_embedding_url(
    git_registry: Path,
    tmp_path: Path,
    recorder: tuple[int, Seen],
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, seen = recorder
    _set_knowledge(
        git_registry,
        "  store: {type: persistent, path: chroma}\n"
        "  embedding:\n"
        "    provider: huggingface_server\n"
        f"    url: ${{EMBEDDING_URL:http://127.0.0.1:{port}/emb}}\n"
        "    api_key_env_var: AWS_SECRET_ACCESS_KEY\n",
    )
    assert main(["validate", "--repo", str(git_registry)]) == 0  # valid: the gate is at runtime
    capsys.readouterr()
    code, output = _sync(capsys, git_registry, tmp_path / "d")
    assert code == 1
    assert "api_key_env_var" in output and "--allow-env" in output
    assert seen == []  # not one request, so no key
    assert AWS_LEAK not in output

    # allowed by the operator, but the committer's host is not one the operator named
    code, output = _sync(
        capsys, git_registry, tmp_path / "d", "--allow-env", "AWS_SECRET_ACCESS_KEY"
    )
    assert code == 1 and "--store-host" in output
    assert seen == []


def _hf(url: str, **params: Any) -> EmbeddingSettings:
    return EmbeddingSettings("huggingface_server", {"url": url, **params})


def test_embedding_variable_must_be_allowed(recorder: tuple[int, Seen]) -> None:
    port, seen = recorder
    url = f"http://127.0.0.1:{port}/emb"
    named = StorePolicy.build(None, [f"127.0.0.1:{port}"], allow_env=("CHROMA_*",))
    settings = _hf(url, api_key_env_var="AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfinementError, match=r"api_key_env_var.*--allow-env"):
        build_embedding_function(settings, named)
    # any setting that names a variable, not only api_key_env_var
    with pytest.raises(ConfinementError, match=r"token_env.*--allow-env"):
        build_embedding_function(_hf(url, token_env="AWS_SECRET_ACCESS_KEY"), named)
    assert seen == []
    # control: the operator allows it and names the host: the key does go there
    allowed = StorePolicy.build(None, [f"127.0.0.1:{port}"], allow_env=("AWS_SECRET_*",))
    with pytest.raises(Exception):  # noqa: B017 - the recorder is no embedding server
        create_embedding_function(settings, allowed)
    assert [h.get("authorization") for _, _, h in seen] == [f"Bearer {AWS_LEAK}"]


def test_a_variable_the_provider_reads_by_itself_must_be_allowed(
    recorder: tuple[int, Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    # huggingface_server reads HUGGINGFACE_API_KEY whenever it is set, whatever the settings
    port, seen = recorder
    monkeypatch.setenv("HUGGINGFACE_API_KEY", "hf-operator-key")
    policy = StorePolicy.build(None, [f"127.0.0.1:{port}"], allow_env=("CHROMA_*",))
    with pytest.raises(ConfinementError, match=r"HUGGINGFACE_API_KEY.*--allow-env"):
        build_embedding_function(_hf(f"http://127.0.0.1:{port}/emb"), policy)
    # allowed, but the url's host was not named
    policy = StorePolicy.build(None, [], allow_env=("HUGGINGFACE_*",))
    with pytest.raises(ConfinementError, match="--store-host"):
        build_embedding_function(_hf(f"http://127.0.0.1:{port}/emb"), policy)
    assert seen == []


def test_credentialed_embedding_endpoints_need_a_named_host_and_tls() -> None:
    policy = StorePolicy.build(None, ["emb.invalid"], allow_env=("EMB_KEY",))
    key = {"api_key_env_var": "EMB_KEY"}
    with pytest.raises(ConfinementError, match="--store-host"):
        build_embedding_function(_hf("https://attacker.invalid/emb", **key), policy)
    with pytest.raises(ConfinementError, match="plain HTTP"):
        build_embedding_function(_hf("http://emb.invalid/emb", **key), policy)
    # a userinfo trick does not make another host a named one
    with pytest.raises(ConfinementError, match=r"attacker\.invalid"):
        build_embedding_function(_hf("https://emb.invalid@attacker.invalid/", **key), policy)
    # a value of the operator's environment is a credential as well
    from_operator = EmbeddingSettings(
        "huggingface_server", {"url": "https://attacker.invalid/"}, ("CHROMA_AUTH_HEADER",)
    )
    with pytest.raises(ConfinementError, match="--store-host"):
        build_embedding_function(from_operator, policy)
    # control: over TLS to the named host, or without any credential, it builds
    build_embedding_function(_hf("https://emb.invalid:8443/emb", **key), policy)
    build_embedding_function(_hf("https://anywhere.invalid/emb"), StorePolicy())


def test_ingest_cli_keeps_the_shell_environment_but_not_the_hosts(
    git_registry: Path,
    recorder: tuple[int, Seen],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, seen = recorder
    monkeypatch.chdir(git_registry.parent)
    _set_knowledge(
        git_registry,
        "  store: {type: persistent, path: chroma}\n"
        "  embedding:\n"
        "    provider: huggingface_server\n"
        f"    url: http://127.0.0.1:{port}/emb\n"
        "    api_key_env_var: AWS_SECRET_ACCESS_KEY\n",
    )
    code = main(["ingest", "--repo", str(git_registry)])
    err = capsys.readouterr().err
    assert code == 1 and "--store-host" in err
    assert seen == [] and AWS_LEAK not in err


# --- 2. operator values reach an http store only on a host the operator named ---------


def test_operator_value_in_the_tenant_does_not_reach_a_committed_host(
    git_registry: Path,
    tmp_path: Path,
    recorder: tuple[int, Seen],
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, seen = recorder
    _set_knowledge(
        git_registry,
        "  store:\n"
        "    type: http\n"
        "    host: ${STORE_HOST:127.0.0.1}\n"
        f"    port: {port}\n"
        "    tenant: ${CHROMA_AUTH_HEADER}\n"
        "    database: x\n"
        "  embedding: {provider: hash, dimensions: 64}\n",
    )
    code, output = _sync(capsys, git_registry, tmp_path / "d", "--allow-env", "CHROMA_*")
    assert code == 1
    assert "${CHROMA_AUTH_HEADER}" in output and "--store-host" in output
    assert seen == []
    assert "CHROMAHDRLEAK" not in output


def test_store_settings_record_which_values_came_from_the_operator() -> None:
    environment = {
        "knowledge": {
            "store": {
                "type": "http",
                "host": "${STORE_HOST:127.0.0.1}",
                "tenant": "${CHROMA_TENANT}",
                "database": "$${CHROMA_DB}",
            },
            "embedding": {"provider": "hash", "note": "${EMPTY:x}"},
        }
    }
    env = {"CHROMA_TENANT": "t", "CHROMA_DB": "d", "EMPTY": ""}
    settings = KnowledgeSettings.from_environment(environment, env)
    # STORE_HOST unset (its committed default), CHROMA_DB escaped, EMPTY empty: not operator's
    assert settings.store.operator_vars == ("CHROMA_TENANT",)
    assert settings.embedding.operator_vars == ()
    assert settings.store.database == "${CHROMA_DB}"


def test_http_store_with_operator_values_needs_a_named_host(
    tmp_path: Path, recorder: tuple[int, Seen]
) -> None:
    port, seen = recorder
    settings = StoreSettings(
        type="http", host="127.0.0.1", port=port, tenant="x", operator_vars=("CHROMA_TENANT",)
    )
    with pytest.raises(ConfinementError, match=r"\$\{CHROMA_TENANT\}.*--store-host"):
        ChromaStore(settings, tmp_path, StorePolicy())
    assert seen == []
    # control: committed values only (no headers, nothing of the operator's) may go anywhere
    plain = StoreSettings(type="http", host="127.0.0.1", port=port)
    with pytest.raises(Exception):  # noqa: B017 - the recorder is no Chroma
        ChromaStore(plain, tmp_path, StorePolicy())
    assert seen


# --- 3. no credentials over plain HTTP beyond loopback --------------------------------


def test_credentials_over_plain_http_only_to_loopback(tmp_path: Path) -> None:
    policy = StorePolicy.build(None, ["chroma.invalid:8000"])
    headers = StoreSettings(
        type="http",
        host="chroma.invalid",
        port=8000,
        ssl=False,
        headers={"Authorization": CHROMA_LEAK},
        operator_vars=("CHROMA_AUTH_HEADER",),
    )
    with pytest.raises(ConfinementError, match=r"plain HTTP.*ssl: true"):
        ChromaStore(headers, tmp_path, policy)
    # a secret-like variable anywhere in the store is a credential too
    tenant = StoreSettings(
        type="http", host="chroma.invalid", port=8000, tenant="x", operator_vars=("CHROMA_TOKEN",)
    )
    with pytest.raises(ConfinementError, match="plain HTTP"):
        ChromaStore(tenant, tmp_path, policy)
    assert is_loopback_host("127.0.0.2") and is_loopback_host("[::1]")
    assert is_loopback_host("LocalHost.") and not is_loopback_host("chroma.invalid")
    assert not is_loopback_host("127.0.0.1.attacker.invalid")


def test_template_environments_work_with_the_documented_flags(
    git_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botreg.registry.source import WorkingTreeSource
    from botreg.registry.view import RegistryView
    from botreg.resolve import allowed_environ
    from botreg.validation.confinement import check_http_store

    monkeypatch.setenv("CHROMA_HOST", "chroma.internal")
    view = RegistryView(WorkingTreeSource(git_registry))
    policy = StorePolicy.build(None, ["chroma.internal:8000"], allow_env=("CHROMA_*",))
    production = view.knowledge_settings("production", allowed_environ(policy.allow_env or ()))
    store = production.store
    assert store.ssl and store.headers == {"Authorization": CHROMA_LEAK}
    check_http_store(
        store.host,
        store.port,
        ssl=store.ssl,
        has_headers=bool(store.headers),
        operator_vars=store.operator_vars,
        policy=policy,
    )  # raises if refused
    build_embedding_function(production.embedding, policy)
    development = view.knowledge_settings("development", allowed_environ(()))
    build_embedding_function(development.embedding, StorePolicy())


# --- 4. the HTTP API's token fails closed ---------------------------------------------


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_an_empty_api_token_file_is_a_usage_error(
    git_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
) -> None:
    token = tmp_path / "token"
    token.write_text(content)
    for listen in ("0.0.0.0:0", "127.0.0.1:0"):
        args = ["sync", "--source", str(git_registry), "--data-dir", str(tmp_path / "d")]
        code = main([*args, "--listen", listen, "--api-token-file", str(token)])
        assert code == 2
        assert "--api-token-file" in capsys.readouterr().err


def _request(url: str, authorization: str | None = None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


@pytest.fixture
def api() -> Iterator[tuple[str, list[bytes]]]:
    """DaemonHTTP on 127.0.0.1 whose token is the last item of the returned list."""
    tokens: list[bytes] = [b"let-me-in"]
    http = DaemonHTTP(
        "127.0.0.1",
        0,
        status=lambda: {"conditions": {}},
        metrics=lambda: "",
        wake=lambda: None,
        query=lambda domain, text, k: [],
        readiness=lambda: (True, []),
        hook_secret=lambda: None,
        branch="main",
        api_token=lambda: tokens[-1],
    )
    http.start()
    try:
        yield f"http://{http.address}", tokens
    finally:
        http.stop()


def test_bearer_scheme_in_any_case_and_an_empty_token_fails_closed(
    api: tuple[str, list[bytes]],
) -> None:
    url, tokens = api
    status = url + "/status"
    assert _request(status) == 401
    assert _request(status, "Bearer wrong") == 401
    assert _request(status, "Basic let-me-in") == 401
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert _request(status, f"{scheme} let-me-in") == 200
    tokens.append(b"")  # the file was emptied while the daemon runs
    assert _request(status) == 503
    assert _request(status, "Bearer ") == 503
    assert _request(url + "/healthz") == 200


def test_daemon_api_closes_when_its_token_file_empties_or_goes(
    git_registry: Path, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("let-me-in\n")
    daemon = Daemon(
        SyncOptions(git_registry.as_uri(), data_dir=tmp_path / "d"),
        DaemonOptions(interval=3600, listen="127.0.0.1:0", api_token_file=token),
    )
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        while daemon.http is None and thread.is_alive():
            thread.join(0.05)
        assert daemon.http is not None
        status = f"http://{daemon.http.address}/status"
        assert _request(status, "Bearer let-me-in") == 200
        token.write_text("")
        assert _request(status) == 503 and _request(status, "Bearer ") == 503
        token.unlink()
        assert _request(status) == 503
    finally:
        daemon.stop()
        thread.join(timeout=30)
