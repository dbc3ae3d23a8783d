"""examples/hot_reload_app.py picks up a committed change without a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from chroma_server import free_port
from sync_helpers import commit, start_watching_daemon

PROJECT = Path(__file__).resolve().parent.parent


def chat(port: int, bot: str, message: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/bots/{bot}/chat", data=message.encode()
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["reply"])


@pytest.mark.timeout(180)
def test_the_example_app_reloads_a_committed_change(git_registry: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    daemon = start_watching_daemon(git_registry, data)
    port = free_port()
    app = None
    try:
        app = subprocess.Popen(
            [
                sys.executable,
                str(PROJECT / "examples/hot_reload_app.py"),
                "--data-dir",
                str(data),
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "OPENAI_API_KEY": "demo-key"},
        )
        assert app.stdout is not None
        assert app.stdout.readline().startswith("serving bots on")
        first = chat(port, "product-guide", "hello")
        assert "openai/gpt-4o-mini, temperature 0.5" in first
        guide = git_registry / "bots/product-guide.yaml"
        guide.write_text(guide.read_text().replace("model: gpt-4o-mini", "model: gpt-4o"))
        commit(git_registry, "use gpt-4o")
        deadline = time.monotonic() + 30
        while "openai/gpt-4o," not in (reply := chat(port, "product-guide", "hello again")):
            assert time.monotonic() < deadline, reply
            time.sleep(0.05)
        assert app.poll() is None  # the same process: no restart
    finally:
        if app is not None:
            app.terminate()
            app.communicate(timeout=30)
        daemon.terminate()
        daemon.wait(timeout=30)
