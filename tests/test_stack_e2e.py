"""The deploy/ stack end to end (issue #11, items 4 and 5), as local processes.

deploy/docker-compose.yaml is translated (tests/compose_processes.py) and run:
its Redis (with a password), its Chroma server, daemon-a and daemon-b (one leader,
one standby, a 2 s lease) and FOUR copies of the example app following the
stream. Commits are pushed to the registry (bots changed, added, removed,
knowledge changed); the leader is SIGKILLed in the middle of a large knowledge
ingest and one more commit is pushed. Then: the standby leads; every app's last
line per bot is the config the survivor serves at the final commit (removed bots
reported removed); no app died; the Chroma server holds what a fresh
`botreg sync --once` of the final commit stores; every event id either daemon
logged is on the stream; no process printed a traceback or a secret.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.chroma_server import chroma_server
from tests.compose_processes import LocalService, started, translate
from tests.test_deploy import load_app

from botreg.events.log import read_events
from botreg.resources import template_dir
from conftest import git
from helpers import wait_for, write
from sync_helpers import commit

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
ENVIRONMENT = PROJECT / "deploy" / "environments" / "compose.yaml"
APPS = 4
LEASE = "2"
REDIS_PASSWORD = "a-redis-password-of-the-stack"
STREAM = "botreg:events"


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


def _with_password(url: str) -> str:
    assert url.startswith("redis://127.0.0.1:"), url
    return url.replace("redis://", f"redis://:{REDIS_PASSWORD}@", 1)


def _stack(folder: Path, registry: Path) -> dict[str, LocalService]:
    """The compose services, with a short lease, a 1 s poll and a Redis password."""
    services = translate(folder, {"BOTREG_SOURCE": str(registry), "BOTREG_INTERVAL": "1"})
    redis = services["redis"]
    services["redis"] = dataclasses.replace(
        redis, argv=[*redis.argv, "--requirepass", REDIS_PASSWORD]
    )
    for name in ("daemon-a", "daemon-b"):
        daemon = services[name]
        argv = _set_flag(daemon.argv, "--lease-seconds", LEASE)
        # the Redis URLs come by environment, as in compose (never in ps)
        env = dict(daemon.env)
        for variable in ("BOTREG_EVENTS_REDIS_URL", "BOTREG_HA_REDIS_URL"):
            env[variable] = _with_password(env[variable])
        services[name] = dataclasses.replace(daemon, argv=argv, env=env)
        assert REDIS_PASSWORD not in " ".join(argv)  # what ps would show
    app = services["app"]
    app_env = {**app.env, "BOTREG_REDIS_URL": _with_password(app.env["BOTREG_REDIS_URL"])}
    services["app"] = dataclasses.replace(app, env=app_env)
    return services


def _apps(app: LocalService, registry_url: str) -> list[LocalService]:
    """FOUR copies of the app service: own name, folder (log) and the survivor's API.

    On the compose network the apps reach `registry:8470`, both daemons' alias
    (DNS round robin); here each process has one address, so the apps are given
    the daemon that will survive (the standby): a dead daemon's address would
    leave them nothing to read from, which compose's DNS would not.
    """
    copies = []
    for i in range(1, APPS + 1):
        folder = app.folder.parent / f"app-{i}"
        folder.mkdir(exist_ok=True)
        env = {**app.env, "BOTREG_APP_NAME": f"app-{i}", "BOTREG_REGISTRY_URL": registry_url}
        copies.append(dataclasses.replace(app, name=f"app-{i}", folder=folder, env=env))
    return copies


def _get(url: str, token: str) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            body, status = response.read(), response.status
            headers = {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        with exc:
            body, status = exc.read(), exc.code
            headers = {k.lower(): v for k, v in exc.headers.items()}
    except OSError:
        return 0, None, {}
    try:
        return status, json.loads(body), headers
    except ValueError:
        return status, body.decode(errors="replace"), headers


def _role(service: LocalService, token: str) -> str:
    _, body, _ = _get(f"http://{service.address}/readyz", token)
    return str(body.get("role", "")) if isinstance(body, dict) else ""


def _served(service: LocalService, token: str) -> str:
    """The commit a daemon serves `/bots` from ('' if it does not answer)."""
    status, _, headers = _get(f"http://{service.address}/bots", token)
    return headers.get("x-botreg-commit", "") if status == 200 else ""


def _stored(data: Path) -> int:
    """Chunks a daemon's ledger records as stored (0 while it has none)."""
    ledger = data / "ledger.sqlite"
    if not ledger.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM chunks WHERE stored = 1").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _completed(data: Path) -> list[str]:
    log = data / "events.jsonl"
    if not log.exists():
        return []
    return [e["data"]["to"] for e in read_events(log) if e["type"] == "botreg.sync.completed"]


def _event_ids(data: Path) -> set[str]:
    log = data / "events.jsonl"
    return {str(e["id"]) for e in read_events(log)} if log.exists() else set()


def _lines(app: LocalService) -> list[dict[str, Any]]:
    """The app's JSON lines (its stdout; stderr shares the log file)."""
    out = []
    for line in (app.folder / "output.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("app") == app.name:
                out.append(record)
    return out


def _last_per_bot(app: LocalService) -> dict[str, dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for record in _lines(app):
        last[record["bot_id"]] = record
    return last


def _collections(port: int) -> dict[str, dict[str, Any]]:
    """Every botreg collection of a Chroma server: id -> (document, metadata but
    `commit`, embedding rounded)."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.HttpClient(
        host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False)
    )
    found: dict[str, dict[str, Any]] = {}
    for collection in client.list_collections():
        if not collection.name.startswith("botreg-"):
            continue
        got = collection.get(include=["documents", "metadatas", "embeddings"])
        found[collection.name] = {
            i: (d, {k: v for k, v in m.items() if k != "commit"}, [round(float(x), 5) for x in e])
            for i, d, m, e in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
            )
        }
    return found


def _bulk(registry: Path, files: int, sections: int, tag: str) -> None:
    """A large knowledge change: `files` Markdown files of `sections` chunks each."""
    for i in range(files):
        write(
            registry,
            f"knowledge/product/bulk/doc-{i:03d}.md",
            f"# Doc {i} ({tag})\n\n"
            + "".join(
                f"## Part {j}\n\n{tag} text {i} {j} about plans and features, "
                f"number {i * 1000 + j}.\n\n"
                for j in range(sections)
            ),
        )


def _bot(name: str, description: str) -> str:
    return (
        f"name: {name}\ndescription: {description}\nstatus: active\n"
        "llm:\n  provider: openai\n  model: gpt-4o-mini\n  temperature: 0.2\n"
        "system_prompt: You answer questions.\n"
        "knowledge:\n  domains: [product]\n"
    )


@pytest.mark.timeout(300)
def test_compose_stack_leader_killed_mid_ingest_apps_converge_store_equals_fresh_sync(
    tmp_path: Path,
) -> None:
    app_module = load_app()
    registry = tmp_path / "registry"
    shutil.copytree(template_dir(), registry)
    shutil.copy(ENVIRONMENT, registry / "environments" / "compose.yaml")
    git(registry, "init", "-q", "-b", "main")
    commit(registry, "initial")
    services = _stack(tmp_path / "stack", registry)
    redis, chroma, a, b = (services[n] for n in ("redis", "chroma", "daemon-a", "daemon-b"))
    token = Path(_flag(a.argv, "--api-token-file")).read_text().strip()
    daemons = {"daemon-a": a, "daemon-b": b}
    apps: list[LocalService] = []
    head = ""
    removed = {"internal-helpdesk"}

    with started([redis, chroma, a, b], ready_timeout=90) as procs:
        # exactly one leads; the other stands by
        roles = wait_for(
            lambda: (
                (r := {n: _role(d, token) for n, d in daemons.items()})
                and sorted(r.values()) == ["leader", "standby"]
                and r
            ),
            timeout=60,
            step=0.2,
        )
        leader_name = next(n for n, r in roles.items() if r == "leader")
        leader = daemons[leader_name]
        survivor = next(d for n, d in daemons.items() if n != leader_name)
        first = git(registry, "rev-parse", "HEAD").strip()
        wait_for(lambda: _served(survivor, token) == first, timeout=60, step=0.2)
        apps = _apps(services["app"], f"http://{survivor.address}")
        with started(apps, ready_timeout=30) as app_procs:
            # every app loaded every active bot once (list_ids: active bots only, as the
            # seed's; the inactive internal-helpdesk is not loaded)
            active = {"billing-assistant", "product-guide"}
            wait_for(
                lambda: all(set(_last_per_bot(x)) == active for x in apps), timeout=60, step=0.2
            )

            def push(message: str) -> str:
                sha = commit(registry, message)
                wait_for(lambda: _served(leader, token) == sha, timeout=60, step=0.1)
                return sha

            # bots changed and added, knowledge changed
            write(
                registry,
                "bots/billing-assistant.yaml",
                (registry / "bots/billing-assistant.yaml")
                .read_text()
                .replace("temperature: 0.", "temperature: 0.1"),
            )
            write(registry, "bots/sales-helper.yaml", _bot("Sales Helper", "Sells plans."))
            write(registry, "knowledge/product/getting-started.md", "# Start\n\nSign up first.\n")
            push("change billing, add sales-helper, rewrite getting-started")
            # a bot removed, another changed
            (registry / "bots/internal-helpdesk.yaml").unlink()
            write(registry, "bots/sales-helper.yaml", _bot("Sales Helper", "Sells plans well."))
            push("remove internal-helpdesk, change sales-helper")

            # a large knowledge change: the leader is killed while it ingests it
            before = _stored(leader.folder / "data")
            _bulk(registry, files=300, sections=12, tag="v1")
            big = commit(registry, "bulk knowledge")
            wait_for(
                lambda: _stored(leader.folder / "data") >= before + 256, timeout=120, step=0.02
            )
            procs[leader.name].kill()
            assert procs[leader.name].wait(timeout=30) == -signal.SIGKILL
            assert big not in _completed(leader.folder / "data"), "ingest ended before the kill"

            # one more commit: a bot changed (and a knowledge file) after the kill
            write(registry, "bots/sales-helper.yaml", _bot("Sales Helper", "Sells plans best."))
            write(registry, "knowledge/product/bulk/doc-000.md", "# Doc 0\n\nRewritten.\n")
            head = commit(registry, "after the failover")

            wait_for(lambda: _role(survivor, token) == "leader", timeout=60, step=0.1)
            wait_for(lambda: _served(survivor, token) == head, timeout=120, step=0.2)
            assert head in _completed(survivor.folder / "data")

            # the survivor's bots at the final commit, hashed as the apps hash them
            status, listed, headers = _get(f"http://{survivor.address}/bots", token)
            assert status == 200 and headers["x-botreg-commit"] == head
            final_ids = sorted(item["bot_id"] for item in listed)
            assert final_ids == ["billing-assistant", "product-guide", "sales-helper"]
            expected = {}
            for bot_id in final_ids:
                status, item, headers = _get(f"http://{survivor.address}/bots/{bot_id}", token)
                assert status == 200 and headers["x-botreg-commit"] == head
                expected[bot_id] = app_module.config_hash(item["config"])

            def converged(app: LocalService) -> bool:
                last = _last_per_bot(app)
                return all(
                    last.get(bot_id, {}).get("config_sha256") == digest
                    and last[bot_id]["status"] == "loaded"
                    for bot_id, digest in expected.items()
                ) and all(last.get(bot_id, {}).get("status") == "removed" for bot_id in removed)

            wait_for(lambda: all(converged(x) for x in apps), timeout=60, step=0.2)
            for app in apps:
                last = _last_per_bot(app)
                assert set(last) == set(expected) | removed, app.name
                assert last["sales-helper"]["commit"] == head, app.name
            # no app died along the way
            for name, proc in app_procs.items():
                assert proc.poll() is None, f"{name} exited with {proc.returncode}"
            assert procs[survivor.name].poll() is None

            # every event id either daemon logged is on the stream
            import redis as redis_py

            client = redis_py.Redis.from_url(
                f"redis://:{REDIS_PASSWORD}@{redis.address}/0", decode_responses=True
            )
            try:
                on_stream = {fields["id"] for _, fields in client.xrange(STREAM)}
            finally:
                client.close()
            logged = _event_ids(a.folder / "data") | _event_ids(b.folder / "data")
            assert logged and not logged - on_stream, sorted(logged - on_stream)[:5]
            stack_store = _collections(chroma.port)
            # the apps stop cleanly (SIGTERM, exit 0)
            for proc in app_procs.values():
                proc.send_signal(signal.SIGTERM)
            for name, proc in app_procs.items():
                assert proc.wait(timeout=30) == 0, name

    # the store equals a fresh sync of the final commit into a second Chroma server
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with chroma_server(fresh / "chroma") as port:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "botreg",
                "sync",
                "--once",
                "--source",
                str(registry),
                "--env",
                "compose",
                "--data-dir",
                str(fresh / "data"),
                "--listen",
                "off",
                "--allow-env",
                "CHROMA_*",
                "--store-host",
                f"127.0.0.1:{port}",
            ],
            env={**os.environ, "CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _completed(fresh / "data") == [head]
        fresh_store = _collections(port)
    assert fresh_store and stack_store == fresh_store

    # no traceback and no secret in any process's output
    for service in [redis, chroma, a, b, *apps]:
        output = (service.folder / "output.log").read_text(errors="replace")
        assert "Traceback" not in output, f"{service.name}: {output[-3000:]}"
        assert token not in output, service.name
        assert REDIS_PASSWORD not in output, service.name
