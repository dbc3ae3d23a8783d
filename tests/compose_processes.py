"""deploy/docker-compose.yaml's services started directly as local processes.

No container engine runs here, so the end-to-end tests run what the compose file
says with the same commands, as processes on 127.0.0.1 with random ports:

- `redis` (image redis:*): the compose command on the local `redis-server`,
  then `--bind 127.0.0.1 --port P --protected-mode yes` (later directives win);
- `chroma` (image chromadb/chroma:*): the compose command on the venv's `chroma`;
- botreg's image: the entrypoint `botreg` becomes `sys.executable -m botreg`, and
  the example app's `python /opt/botreg/example-app/app.py` the repository's
  deploy/example-app/app.py.

In every argument and environment value, `${VAR:-default}` is interpolated as
compose does; `host:port` of another service (its name, hostname or network
alias, at its exposed port) becomes `127.0.0.1:<its local port>`; a listen
address `0.0.0.0` becomes 127.0.0.1 (and the service's exposed port its local
one); `/data` becomes the service's own folder; `/run/secrets/NAME` a file
holding a fresh random value. `X_HOST: <service>` / `X_PORT: <exposed port>`
environment pairs are rewritten the same way.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from tests.chroma_server import free_port

PROJECT = Path(__file__).resolve().parent.parent
COMPOSE = PROJECT / "deploy" / "docker-compose.yaml"
APP = PROJECT / "deploy" / "example-app" / "app.py"
IMAGE_APP = "/opt/botreg/example-app/app.py"  # where the Dockerfile puts the app

_INTERPOLATION = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    """The compose file as data (YAML anchors and merge keys resolved)."""
    data = YAML(typ="safe", pure=True).load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ValueError(f"{path}: no `services` mapping")
    return data


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """`${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$` as compose reads them.

    Raises:
        KeyError: for `${VAR:?message}` or `${VAR?message}` with VAR unset.
    """

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if name is None:
            return "$"
        value = variables.get(name)
        unset = not value if operator in (":-", ":?") else value is None  # `:` counts empty
        if not unset:
            return str(value)
        if operator in (":?", "?"):
            raise KeyError(f"{name}: {argument}")
        return argument if operator in (":-", "-") else ""

    return _INTERPOLATION.sub(one, text)


def _exposed(service: Mapping[str, Any]) -> int | None:
    exposed = service.get("expose") or []
    return int(str(exposed[0]).split("/")[0]) if exposed else None


def _names(name: str, service: Mapping[str, Any]) -> list[str]:
    """The host names a service answers to on the compose network."""
    names = [name]
    if service.get("hostname"):
        names.append(str(service["hostname"]))
    networks = service.get("networks")
    if isinstance(networks, dict):  # a list of network names carries no aliases
        for network in networks.values():
            names.extend(str(a) for a in (network or {}).get("aliases", []))
    return names


def startup_order(compose: Mapping[str, Any]) -> list[str]:
    """The services in an order that honours `depends_on` (compose file order otherwise).

    Raises:
        ValueError: on a dependency cycle or a dependency on an unknown service.
    """
    services: Mapping[str, Any] = compose["services"]
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in services:
            raise ValueError(f"depends_on names an unknown service {name!r}")
        if name in visiting:
            raise ValueError(f"depends_on cycle through {name!r}")
        visiting.add(name)
        for dependency in services[name].get("depends_on") or []:
            visit(str(dependency))
        visiting.discard(name)
        order.append(name)

    for name in services:
        visit(name)
    return order


@dataclass
class LocalService:
    """One compose service as a local process."""

    name: str
    kind: str  # redis | chroma | botreg | app
    argv: list[str]
    env: dict[str, str]  # the service's environment (run on top of os.environ)
    folder: Path
    port: int | None  # the local port standing for its exposed port
    container_port: int | None
    depends_on: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`."""
        return f"127.0.0.1:{self.port}"

    def ready(self) -> bool:
        """True once the process answers as the compose health check would want."""
        if self.port is None:
            return True
        try:
            if self.kind == "redis":
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    # a server with `requirepass` answers NOAUTH: it is up all the same
                    return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
            path = "/api/v2/heartbeat" if self.kind == "chroma" else "/healthz"
            with urllib.request.urlopen(f"http://{self.address}{path}", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False


def _kind(service: Mapping[str, Any]) -> str:
    image = str(service.get("image", ""))
    if image.startswith("redis:"):
        return "redis"
    if image.startswith("chromadb/chroma"):
        return "chroma"
    entrypoint = [str(a) for a in service.get("entrypoint") or []]
    return "app" if IMAGE_APP in entrypoint else "botreg"


def translate(
    folder: Path,
    variables: Mapping[str, str] | None = None,
    compose: Mapping[str, Any] | None = None,
) -> dict[str, LocalService]:
    """Every service of the compose file as a LocalService (nothing started).

    Args:
        folder: Where the services' data, secrets and logs go (created).
        variables: The compose variables (e.g. BOTREG_SOURCE); unset ones take
            the file's defaults.
        compose: The compose data (default: deploy/docker-compose.yaml's).
    """
    compose = load_compose() if compose is None else compose
    variables = dict(variables or {})
    services: Mapping[str, Any] = compose["services"]
    folder.mkdir(parents=True, exist_ok=True)
    secrets_dir = folder / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    for name in compose.get("secrets") or {}:
        (secrets_dir / name).write_text(secrets.token_hex(32) + "\n")

    ports: dict[str, int] = {}
    hosts: dict[str, str] = {}  # host name on the compose network -> service
    for name, service in services.items():
        if _exposed(service) is not None:
            ports[name] = free_port()
        for host in _names(name, service):
            hosts.setdefault(host, name)  # a shared alias: the first service declaring it

    def to_local(match: re.Match[str]) -> str:
        host, port = match[1], int(match[2])
        target = hosts.get(host)
        if target is None or _exposed(services[target]) != port:
            return match[0]
        return f"127.0.0.1:{ports[target]}"

    host_port = re.compile(r"(?<![\w.-])([A-Za-z][\w.-]*):(\d+)\b")

    out: dict[str, LocalService] = {}
    for name, service in services.items():
        own = folder / name
        own.mkdir(exist_ok=True)
        exposed = _exposed(service)

        def rewrite(
            value: str,
            previous: str = "",
            *,
            name: str = name,
            own: Path = own,
            service: Mapping[str, Any] = service,
        ) -> str:
            """One argument or environment value, as it reads on 127.0.0.1."""
            exposed = _exposed(service)
            value = interpolate(value, variables)
            if value == IMAGE_APP:
                return str(APP)
            if value == "/data" or value.startswith("/data/"):
                return str(own / "data") + value[len("/data") :]
            if value.startswith("/run/secrets/"):
                return str(secrets_dir / value[len("/run/secrets/") :])
            if value == "0.0.0.0":
                return "127.0.0.1"
            if exposed is not None and value == f"0.0.0.0:{exposed}":
                return f"127.0.0.1:{ports[name]}"
            if previous == "--port" and exposed is not None and value == str(exposed):
                return str(ports[name])
            return host_port.sub(to_local, value)

        command = [str(a) for a in service.get("command") or []]
        args: list[str] = []
        for i, arg in enumerate(command):
            args.append(rewrite(arg, command[i - 1] if i else ""))
        env = {str(k): rewrite(str(v)) for k, v in (service.get("environment") or {}).items()}
        for key, value in list(env.items()):  # X_HOST: chroma / X_PORT: "8000"
            target = hosts.get(value)
            if key.endswith("_HOST") and target is not None:
                env[key] = "127.0.0.1"
                port_key = key[: -len("_HOST")] + "_PORT"
                if env.get(port_key) == str(_exposed(services[target])) and target in ports:
                    env[port_key] = str(ports[target])

        kind = _kind(service)
        if kind == "redis":
            executable = shutil.which("redis-server")
            if executable is None:
                raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
            if args and Path(args[0]).name == "redis-server":
                args = args[1:]
            argv = [executable, *args, "--bind", "127.0.0.1", "--protected-mode", "yes"]
            if exposed is not None and "--port" not in command:
                argv += ["--port", str(ports[name])]
        elif kind == "chroma":
            chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
            argv = [chroma, *args]
        else:
            entrypoint = [rewrite(str(a)) for a in service.get("entrypoint") or []]
            if entrypoint and entrypoint[0] == "python":
                argv = [sys.executable, *entrypoint[1:], *args]
            elif entrypoint:
                raise ValueError(f"service {name}: entrypoint {entrypoint} has no local form")
            else:  # the image's ENTRYPOINT ["botreg"]
                argv = [sys.executable, "-m", "botreg", *args]
        (own / "data").mkdir(exist_ok=True)
        out[name] = LocalService(
            name=name,
            kind=kind,
            argv=argv,
            env=env,
            folder=own,
            port=ports.get(name),
            container_port=exposed,
            depends_on=[str(d) for d in service.get("depends_on") or []],
        )
    return out


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def started(
    services: Sequence[LocalService], ready_timeout: float = 60
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Start `services` in the given order, each once it is ready; stop them all after.

    Each process's output goes to `<its folder>/output.log`; stopping is SIGTERM
    (then SIGKILL after 20 s), last started first.
    """
    running: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        for service in services:
            log = open(service.folder / "output.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            proc = subprocess.Popen(
                service.argv,
                env={**os.environ, "ANONYMIZED_TELEMETRY": "False", **service.env},
                cwd=service.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            running[service.name] = proc
            _wait(service, proc, ready_timeout)
        yield running
    finally:
        for proc in reversed(list(running.values())):
            _stop(proc)
        for log in logs:
            log.close()


def _wait(service: LocalService, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    check: Callable[[], bool] = service.ready
    while not check():
        if proc.poll() is not None or time.monotonic() > deadline:
            output = (service.folder / "output.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"service {service.name} did not start: {output}")
        time.sleep(0.1)
