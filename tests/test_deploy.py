"""deploy/: the image, the compose file, the Kubernetes manifests and the example app.

Issue #11, item 4 (a deployable stack). No container engine or image registry is
reachable here: the Dockerfile and the manifests are checked as files, and the
compose file's services are run directly as processes (tests/compose_processes.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ruamel.yaml import YAML
from tests.compose_processes import (
    APP,
    IMAGE_APP,
    PROJECT,
    interpolate,
    load_compose,
    started,
    startup_order,
    translate,
)

from botreg.cli import build_parser
from botreg.resources import template_dir
from botreg.store.settings import KnowledgeSettings
from helpers import codes, validate, wait_for

DEPLOY = PROJECT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
ENVIRONMENT = DEPLOY / "environments" / "compose.yaml"
DAEMONS = ("daemon-a", "daemon-b")


# Flags of issue #11's other parts (STREAM, HA), not on this branch yet: skipped
# by name, with their value, while botreg's parser does not know them. Once it
# does, they are parsed like every other flag (nothing to change here).
def _yaml_documents(path: Path) -> list[Any]:
    return [d for d in YAML(typ="safe", pure=True).load_all(path.read_text()) if d is not None]


def _sync_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices["sync"]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def _parse_sync(args: list[str]) -> argparse.Namespace:
    """`botreg sync` arguments through botreg's own parser."""
    return build_parser().parse_args(args)


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _defaults(text: str) -> str:
    return interpolate(text, {})


# --- the compose file ------------------------------------------------------------


def test_compose_has_every_service_the_issue_names() -> None:
    compose = load_compose()
    services = compose["services"]
    assert set(services) == {"redis", "chroma", "daemon-a", "daemon-b", "app"}
    assert str(services["redis"]["image"]).startswith("redis:7")
    assert str(services["chroma"]["image"]).startswith("chromadb/chroma:")
    chroma_command = [str(a) for a in services["chroma"]["command"]]
    assert chroma_command[0] == "run" and _flag(chroma_command, "--port") == "8000"
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
        if name != "app":  # the app has no HTTP surface; the others have a health check
            assert service["healthcheck"]["test"], name
    for name in DAEMONS:
        daemon = services[name]
        assert "botreg" in _defaults(daemon["image"])
        assert daemon["depends_on"]["redis"]["condition"] == "service_healthy"
        assert daemon["depends_on"]["chroma"]["condition"] == "service_healthy"
        assert "/readyz" in " ".join(daemon["healthcheck"]["test"])
        assert daemon["secrets"] == ["api_token"]
        assert any(str(v).endswith(":/data") for v in daemon["volumes"]), name
    # each daemon its own data dir: two daemons on one data dir refuse to run
    volumes = [{v for v in services[n]["volumes"] if str(v).endswith(":/data")} for n in DAEMONS]
    assert volumes[0].isdisjoint(volumes[1])
    app = services["app"]
    assert app["entrypoint"] == ["python", IMAGE_APP]
    assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    assert compose["secrets"]["api_token"]["file"] == "./secrets/api_token"
    assert startup_order(compose).index("app") > max(
        startup_order(compose).index(n) for n in ("redis", "chroma", *DAEMONS)
    )


@pytest.mark.parametrize("name", DAEMONS)
def test_daemon_commands_parse_with_botregs_own_parser(name: str) -> None:
    service = load_compose()["services"][name]
    command = [_defaults(str(a)) for a in service["command"]]
    args = _parse_sync(command)
    assert args.command == "sync"
    assert args.source == "/registry"
    assert args.env == "compose"
    assert args.data_dir == "/data"
    assert args.listen == "0.0.0.0:8470"
    assert args.api_token_file == Path("/run/secrets/api_token")
    assert args.allow_env == ["CHROMA_*"]
    assert args.interval == 30
    # one Redis for the stream and the lease, one stream: the one the app follows
    app_env = load_compose()["services"]["app"]["environment"]
    assert service["environment"]["BOTREG_EVENTS_REDIS_URL"] == app_env["BOTREG_REDIS_URL"]
    assert service["environment"]["BOTREG_HA_REDIS_URL"] == app_env["BOTREG_REDIS_URL"]
    assert _flag(command, "--events-stream") == app_env["BOTREG_EVENTS_STREAM"]
    assert float(_flag(command, "--lease-seconds")) > 0
    # the one host that may receive the operator's values is the stack's Chroma
    chroma = load_compose()["services"]["chroma"]
    assert args.store_host == [f"chroma:{chroma['expose'][0]}"]
    assert service["environment"]["CHROMA_HOST"] == "chroma"
    assert service["environment"]["CHROMA_PORT"] == str(chroma["expose"][0])


def test_daemon_command_usage_error_is_caught_by_the_parse() -> None:
    """The parse above can fail: a misspelt flag is a usage error."""
    from botreg.errors import UsageError

    command = [_defaults(str(a)) for a in load_compose()["services"]["daemon-a"]["command"]]
    command[command.index("--data-dir")] = "--data-folder"
    with pytest.raises(UsageError, match="--data-folder"):
        _parse_sync(command)


def test_the_stacks_environment_is_valid_and_names_the_chroma_service(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(template_dir(), registry)
    shutil.copy(ENVIRONMENT, registry / "environments" / "compose.yaml")
    report = validate(registry)
    assert codes(report) == [], [f"{f.path}:{f.line} {f.code} {f.message}" for f in report.findings]
    environment = YAML(typ="safe", pure=True).load(ENVIRONMENT.read_text())
    daemon_env = load_compose()["services"]["daemon-a"]["environment"]
    settings = KnowledgeSettings.from_environment(environment, dict(daemon_env))
    assert settings.store.type == "http"
    assert (settings.store.host, settings.store.port) == ("chroma", 8000)
    assert settings.embedding.provider == "hash"  # runs offline: no model to download
    assert set(settings.store.operator_vars) <= {"CHROMA_HOST", "CHROMA_PORT"}


def test_compose_interpolation_follows_compose() -> None:
    assert interpolate("${A:-x}/${B-y}/$${C}", {"A": "", "B": ""}) == "x//${C}"
    assert interpolate("${A:-x}-${B-y}", {"A": "a"}) == "a-y"
    with pytest.raises(KeyError, match="needed"):
        interpolate("${A:?needed}", {})


# --- the image -----------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_builds_a_non_root_image_with_a_readyz_health_check() -> None:
    instructions = _instructions(DOCKERFILE)
    froms = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert len(froms) >= 2, "a builder stage and a final stage"
    final = instructions[froms[-1] :]
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    assert _expand(instructions[froms[-1]][1], args) == "python:3.11-slim"
    assert "pip wheel" in " ".join(r for _, r in instructions[: froms[-1]])
    words = [word for word, _ in final]
    assert "ADD" not in [word for word, _ in instructions]  # COPY only: no remote fetch
    [user] = [rest for word, rest in final if word == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, user  # numeric: runAsNonRoot can verify it
    assert words.index("USER") < words.index("ENTRYPOINT")
    [health] = [rest for word, rest in final if word == "HEALTHCHECK"]
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "python" in health and "curl" not in health
    assert "BOTREG_HEALTH_URL" in health and "BOTREG_HEALTH_URL=http://127.0.0.1:8470/readyz" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["botreg"]
    assert json.loads(dict(final)["CMD"]) == ["sync", "--help"]
    assert dict(final)["EXPOSE"] == "8470"
    assert json.loads(dict(final)["VOLUME"]) == ["/data"]
    installs = " ".join(rest for word, rest in final if word == "RUN")
    for tool in ("build-essential", "gcc", "pytest", "ruff", "mypy", "[dev]"):
        assert tool not in installs, tool
    assert "botreg[daemon]" in installs and "--no-index" in installs


def _expand(text: str, args: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), text)


def test_dockerfile_bakes_in_no_secret_and_copies_only_what_the_context_sends() -> None:
    instructions = _instructions(DOCKERFILE)
    secret_words = re.compile(r"token|secret|password|passwd|api_key|credential", re.I)
    for word, rest in instructions:
        if word in ("ENV", "ARG", "COPY", "LABEL"):
            assert not secret_words.search(rest), f"{word} {rest}"
    ignore = [
        line.strip()
        for line in (PROJECT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"  # an allowlist: nothing reaches the context unless named
    included = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for word, rest in instructions:
        if word != "COPY" or "--from" in rest:
            continue
        *sources, _target = shlex.split(rest)
        for source in (s.rstrip("/") for s in sources):
            assert (PROJECT / source).exists(), source
            assert any(source == i or source.startswith(i + "/") for i in included), source
    # the wheel's own inputs (pyproject's force-include) are all sent
    for needed in ("pyproject.toml", "README.md", "src", "schemas", "registry-repo-template"):
        assert needed in included, needed


# --- Kubernetes ----------------------------------------------------------------------


def _manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        docs.extend(_yaml_documents(path))
    return docs


def _by(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_kubernetes_manifests_parse_and_have_the_kinds() -> None:
    docs = _manifests()
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Secret", "ConfigMap", "Kustomization"} <= kinds
    for doc in docs:
        assert "namespace" not in doc.get("metadata", {}), doc["metadata"]  # any namespace
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        [data] = _yaml_documents(kustomization)
        for resource in data["resources"]:
            assert (kustomization.parent / resource).exists(), resource
    secret = _by("Secret", "botreg-secrets")
    assert set(secret["stringData"]) == {"api-token", "webhook-secret", "git-token", "redis-url"}
    for value in secret["stringData"].values():
        assert value.startswith("REPLACE-"), "placeholders only, never a real value"


def _containers(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


def test_kubernetes_daemon_deployment_is_highly_available_and_confined() -> None:
    deployment = _by("Deployment", "botreg-daemon")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    [container] = _containers(deployment)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {"emptyDir", "persistentVolumeClaim"} & set(volumes[mounts["/data"]])
    assert "emptyDir" in volumes[mounts["/tmp"]]  # a read-only root: git and Python need /tmp
    args = [str(a) for a in container["args"]]
    lease = float(_flag(args, "--lease-seconds"))
    assert pod["terminationGracePeriodSeconds"] > max(30, 2 * lease)
    # the Service reaches these pods, on the port they listen on
    service = _by("Service", "botreg")
    labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["port"] == 8470
    assert _flag(args, "--listen") == "0.0.0.0:8470"
    # every secret file a flag names is mounted from the Secret
    secret_mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
    secret_keys = set(_by("Secret", "botreg-secrets")["stringData"])
    for flag in ("--api-token-file", "--webhook-secret-file", "--token-file"):
        path = Path(_flag(args, flag))
        assert path.parent == Path(secret_mount["mountPath"]) and path.name in secret_keys


def test_kubernetes_daemon_args_parse_and_match_compose() -> None:
    container = _containers(_by("Deployment", "botreg-daemon"))[0]
    config = _by("ConfigMap", "botreg-config")["data"]
    assert container["envFrom"][0]["configMapRef"]["name"] == "botreg-config"

    def expand(value: str) -> str:  # Kubernetes' $(VAR) from the container's environment
        return re.sub(r"\$\((\w+)\)", lambda m: str(config[m[1]]), value)

    args = [expand(str(a)) for a in container["args"]]
    parsed = _parse_sync(args)
    assert parsed.env == config["BOTREG_ENV"] == "compose"
    assert parsed.store_host == [config["BOTREG_STORE_HOST"]]
    assert config["BOTREG_STORE_HOST"] == f"{config['CHROMA_HOST']}:{config['CHROMA_PORT']}"
    flags = {a for a in args if a.startswith("--")}
    compose_flags = {
        str(a) for a in load_compose()["services"]["daemon-a"]["command"] if str(a).startswith("--")
    }
    assert compose_flags <= flags, compose_flags - flags


def test_kubernetes_every_container_is_limited_and_non_root() -> None:
    for doc in _manifests():
        if doc["kind"] != "Deployment":
            continue
        for container in _containers(doc):
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), container["name"]
        if doc["metadata"]["name"].startswith("botreg"):
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_kubernetes_example_app_is_configured_as_the_app_reads_it(tmp_path: Path) -> None:
    app = load_app()
    deployment = _by("Deployment", "botreg-example-app")
    [container] = _containers(deployment)
    assert container["command"] == ["python", IMAGE_APP]
    config = _by("ConfigMap", "botreg-config")["data"]
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = config[item["valueFrom"]["configMapKeyRef"]["key"]]
    token = tmp_path / "api-token"
    token.write_text("t" * 32)
    env["BOTREG_API_TOKEN_FILE"] = str(token)  # mounted from the Secret in the cluster
    settings = app.parse_settings([], env)
    assert settings.registry_url == f"http://{_by('Service', 'botreg')['metadata']['name']}:8470"
    assert settings.redis_url == config["BOTREG_REDIS_URL"]


# --- the example application ------------------------------------------------------


def load_app() -> ModuleType:
    """deploy/example-app/app.py as a module (its folder's name is no package name)."""
    spec = importlib.util.spec_from_file_location("botreg_example_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_example_app_reads_its_settings_from_the_environment(tmp_path: Path) -> None:
    app = load_app()
    token = tmp_path / "token"
    token.write_text("secret-token-value\n")
    env = {
        "BOTREG_REDIS_URL": "redis://:pw@redis:6379/0",
        "BOTREG_REGISTRY_URL": "http://registry:8470/",
        "BOTREG_API_TOKEN_FILE": str(token),
        "BOTREG_APP_NAME": "app-1",
        "BOTREG_APP_RETRY_SECONDS": "0.25",
    }
    settings = app.parse_settings([], env)
    assert settings.redis_url == "redis://:pw@redis:6379/0"
    assert settings.stream == "botreg:events"
    assert settings.registry_url == "http://registry:8470"
    assert settings.token_file == token
    assert settings.name == "app-1"
    assert settings.retry_seconds == 0.25
    assert settings.cursor_file is None
    flagged = app.parse_settings(["--stream", "other", "--name", "app-2"], env)
    assert (flagged.stream, flagged.name) == ("other", "app-2")  # flags override


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "BOTREG_REDIS_URL"),
        ({"BOTREG_REDIS_URL": "http://redis:6379"}, "redis://"),
        ({"BOTREG_REDIS_URL": "redis://r:6379/0"}, "BOTREG_REGISTRY_URL"),
        ({"BOTREG_REDIS_URL": "redis://r/0", "BOTREG_REGISTRY_URL": "ftp://x"}, "http://"),
        (
            {
                "BOTREG_REDIS_URL": "redis://r/0",
                "BOTREG_REGISTRY_URL": "http://x",
                "BOTREG_API_TOKEN_FILE": "/nonexistent/token",
            },
            "/nonexistent/token: no such file",
        ),
        (
            {
                "BOTREG_REDIS_URL": "redis://r/0",
                "BOTREG_REGISTRY_URL": "http://x",
                "BOTREG_APP_RETRY_SECONDS": "nan",
            },
            "BOTREG_APP_RETRY_SECONDS",
        ),
    ],
)
def test_example_app_bad_configuration_exits_2_with_the_variable_named(
    env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = load_app()
    with pytest.raises(app.ConfigError, match=re.escape(message)):
        app.parse_settings([], env)
    assert app.main([], env) == 2
    err = capsys.readouterr().err
    assert err.startswith("example-app: error: ") and message in err
    assert "Traceback" not in err


def test_example_app_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    app = load_app()
    assert app.main(["--no-such-flag"], {}) == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_example_app_config_hash_is_stable_and_sensitive() -> None:
    app = load_app()
    one = app.config_hash({"a": 1, "b": {"c": [1, 2]}})
    assert one == app.config_hash({"b": {"c": [1, 2]}, "a": 1})  # key order: same config
    assert one != app.config_hash({"a": 1, "b": {"c": [2, 1]}})
    assert re.fullmatch(r"[0-9a-f]{64}", one)


def test_example_app_is_lint_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "deploy"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the compose file's services as processes ----------------------------------


@pytest.fixture
def local(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield translate(tmp_path / "stack", {"BOTREG_SOURCE": str(tmp_path / "registry")})


def test_translation_rewrites_hosts_ports_paths_and_secrets(
    local: dict[str, Any], tmp_path: Path
) -> None:
    redis, chroma, daemon, app = (local[n] for n in ("redis", "chroma", "daemon-a", "app"))
    command = daemon.argv
    assert command[:3] == [sys.executable, "-m", "botreg"]
    assert _flag(command, "--source") == str(tmp_path / "registry")
    assert _flag(command, "--listen") == f"127.0.0.1:{daemon.port}"
    assert daemon.env["BOTREG_EVENTS_REDIS_URL"] == f"redis://127.0.0.1:{redis.port}/0"
    assert _flag(command, "--store-host") == f"127.0.0.1:{chroma.port}"
    assert Path(_flag(command, "--data-dir")) == daemon.folder / "data"
    token_file = Path(_flag(command, "--api-token-file"))
    assert len(token_file.read_text().strip()) == 64
    assert (daemon.env["CHROMA_HOST"], daemon.env["CHROMA_PORT"]) == (
        "127.0.0.1",
        str(chroma.port),
    )
    assert local["daemon-b"].port != daemon.port
    assert _flag(local["daemon-b"].argv, "--data-dir") != _flag(command, "--data-dir")
    # the app: the repository's file, the (first) daemon behind the `registry` alias
    assert app.argv == [sys.executable, str(APP)]
    assert app.env["BOTREG_REGISTRY_URL"] == f"http://127.0.0.1:{daemon.port}"
    assert app.env["BOTREG_REDIS_URL"] == f"redis://127.0.0.1:{redis.port}/0"
    assert load_app().parse_settings([], app.env).token_file == token_file
    parsed = _parse_sync(command[3:])
    assert parsed.listen == f"127.0.0.1:{daemon.port}"


def test_compose_redis_and_chroma_run_as_local_processes(local: dict[str, Any]) -> None:
    import redis as redis_py

    redis, chroma = local["redis"], local["chroma"]
    assert Path(redis.argv[0]).name == "redis-server"
    assert Path(chroma.argv[0]).name == "chroma" and chroma.argv[1] == "run"
    with started([redis, chroma]) as procs:
        client = redis_py.Redis.from_url(f"redis://{redis.address}/0")
        try:
            client.xadd("botreg:events", {"id": "1"})
            assert client.xlen("botreg:events") == 1
            # the compose file's own settings are in force (AOF in its /data)
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert Path(client.config_get("dir")["dir"]) == redis.folder / "data"
        finally:
            client.close()
        url = f"http://{chroma.address}/api/v2/heartbeat"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert "nanosecond heartbeat" in json.loads(response.read())
        assert (chroma.folder / "data").is_dir()
    for proc in procs.values():
        assert proc.returncode is not None  # stopped afterwards
    for service in (redis, chroma):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", service.port)) != 0


def test_compose_daemon_syncs_the_stack_environment_into_the_chroma_service(
    tmp_path: Path,
) -> None:
    """The compose file's redis, chroma and daemon-a, as processes: the committed compose
    environment reaches the Chroma service through CHROMA_HOST/PORT and --store-host,
    and the API answers with the secret's token (and not without it)."""
    registry = tmp_path / "registry"
    shutil.copytree(template_dir(), registry)
    shutil.copy(ENVIRONMENT, registry / "environments" / "compose.yaml")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "init")):
        subprocess.run(["git", *args], cwd=registry, check=True, capture_output=True)
    services = translate(tmp_path / "stack", {"BOTREG_SOURCE": str(registry)})
    redis, chroma, daemon = services["redis"], services["chroma"], services["daemon-a"]
    token = Path(_flag(daemon.argv, "--api-token-file")).read_text().strip()
    with started([redis, chroma, daemon]) as procs:

        def get(path: str, auth: bool = True) -> tuple[int, Any]:
            request = urllib.request.Request(f"http://{daemon.address}{path}")
            if auth:
                request.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                with exc:
                    return exc.code, exc.read()

        wait_for(lambda: get("/readyz", auth=False)[0] == 200, timeout=60, step=0.2)
        status, bots = get("/bots")
        assert status == 200
        assert sorted(b["bot_id"] for b in bots) == sorted(
            p.stem for p in (registry / "bots").glob("*.yaml")
        )
        assert get("/bots", auth=False)[0] == 401
        # the knowledge went to the compose chroma service, not an embedded store
        import chromadb
        from chromadb.config import Settings

        client = chromadb.HttpClient(
            host="127.0.0.1", port=chroma.port, settings=Settings(anonymized_telemetry=False)
        )
        assert client.list_collections(), "no collection in the Chroma service"
        assert not (daemon.folder / "data" / "chroma").exists()
        procs["daemon-a"].send_signal(signal.SIGTERM)
        assert procs["daemon-a"].wait(timeout=30) == 0
    log = (daemon.folder / "output.log").read_text()
    assert token not in log


# The example app's loop with stand-ins for the parts not on this branch yet
# (RedisEventFollower: the daemon's event log followed by EventLogFollower;
# HTTPRegistryBackend: a JSON file of the served configs). Everything between them
# (HotReloadManager, CachingRegistryManager, the Invalidator holding a commit's
# events until it completes) is botreg's real code.
_STAND_INS = """
import json, runpy, sys
from pathlib import Path

import botreg.api as api
from botreg.api import EventLogFollower
from botreg.api.models import Registration

STATE, LOG, APP = (Path(a) for a in sys.argv[1:4])


class Follower(EventLogFollower):
    def __init__(self, url, stream="botreg:events", *, cursor_file=None, **_):
        super().__init__(LOG, poll=0.05)
        self.applied_commit = ""
        self.subscribe(self._applied)  # first: set before the other subscribers run

    def _applied(self, event):
        if event.type == "botreg.sync.completed":
            self.applied_commit = event.data["to"]


class Backend:
    def __init__(self, url, token=None, *, consistent_with=None):
        assert token, "the API token file was not read"

    async def get(self, bot_id):
        state = json.loads(STATE.read_text())
        config = state["bots"].get(bot_id)
        return None if config is None else Registration(bot_id, config, commit=state["commit"])

    async def list_ids(self):
        return sorted(json.loads(STATE.read_text())["bots"])


api.RedisEventFollower, api.HTTPRegistryBackend = Follower, Backend
sys.argv = [str(APP), *sys.argv[4:]]
runpy.run_path(str(APP), run_name="__main__")
"""


def test_example_app_reloads_what_the_events_name_and_stops_on_sigterm(tmp_path: Path) -> None:
    from botreg.events.model import CloudEvent

    app = load_app()
    state, log, token = tmp_path / "state.json", tmp_path / "events.jsonl", tmp_path / "token"
    token.write_text("an-api-token-of-the-stack\n")
    log.touch()
    bots = {"a": {"name": "A", "v": 1}, "b": {"name": "B"}, "c": {"name": "C"}}
    state.write_text(json.dumps({"commit": "c1", "bots": bots}))
    script = tmp_path / "stand_ins.py"
    script.write_text(_STAND_INS)
    env = {
        "BOTREG_REDIS_URL": "redis://:a-redis-password@127.0.0.1:1/0",
        "BOTREG_REGISTRY_URL": "http://127.0.0.1:1",
        "BOTREG_API_TOKEN_FILE": str(token),
        "BOTREG_APP_NAME": "app-1",
    }
    out = tmp_path / "out.jsonl"
    with open(out, "wb") as stdout, open(tmp_path / "err.txt", "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(state), str(log), str(APP)],
            env={**os.environ, **env},
            stdout=stdout,
            stderr=stderr,
        )
    try:

        def lines() -> list[dict[str, Any]]:
            return [json.loads(x) for x in out.read_text().splitlines() if x.strip()]

        first = wait_for(lambda: len(lines()) >= 3 and lines())
        assert {(r["bot_id"], r["commit"], r["config_sha256"]) for r in first} == {
            (b, "c1", app.config_hash(c)) for b, c in bots.items()
        }
        assert all(r["app"] == "app-1" and r["status"] == "loaded" for r in first)

        def publish(*events: CloudEvent) -> None:
            with open(log, "a") as handle:
                for event in events:
                    handle.write(event.to_json() + "\n")

        # commit c2 changes a and removes c: the app reloads exactly those, at c2
        changed = {"a": {"name": "A", "v": 2}, "b": bots["b"]}
        publish(CloudEvent("botreg.bot.updated", "s", "e1", data={"bot_id": "a", "commit": "c2"}))
        publish(CloudEvent("botreg.bot.removed", "s", "e2", data={"bot_id": "c", "commit": "c2"}))
        state.write_text(json.dumps({"commit": "c2", "bots": changed}))  # the daemon applies
        publish(CloudEvent("botreg.sync.completed", "s", "e3", data={"to": "c2"}))
        after = wait_for(lambda: len(lines()) >= 5 and lines()[3:])
        assert sorted((r["bot_id"], r["status"], r["commit"]) for r in after) == [
            ("a", "loaded", "c2"),
            ("c", "removed", "c2"),
        ]
        assert next(r for r in after if r["bot_id"] == "a")["config_sha256"] == app.config_hash(
            changed["a"]
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in err
    assert "a-redis-password" not in err + out.read_text()
    assert "an-api-token-of-the-stack" not in err + out.read_text()
    assert len(lines()) == 5  # b was not reloaded: nothing named it
