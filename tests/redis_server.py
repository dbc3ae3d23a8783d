"""Start a real redis-server (Debian's package) on 127.0.0.1 for tests, and stop it.

Each server gets a random port, no persistence and its own folder, so tests never
share state and nothing is left running: `redis_server()` terminates it on exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.chroma_server import free_port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # up, with a password
    except OSError:
        return False


@contextmanager
def redis_server(
    folder: Path, port: int | None = None, password: str | None = None
) -> Iterator[int]:
    """A redis-server on 127.0.0.1 persisting nothing; yields its port.

    Args:
        folder: Its working directory and log file's folder (created).
        port: The port (default: a free one). A restart on the same port keeps
            clients' URLs valid: the tests of a Redis outage use it.
        password: Set as `requirepass` (clients must AUTH with it).
    """
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = open(folder / "redis-server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            executable,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--protected-mode",
            "yes",
            *(["--requirepass", password] if password else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not start: {(folder / 'redis-server.log').read_text()}"
                )
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
