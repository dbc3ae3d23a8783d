"""The seed's examples, ported in examples/seed/, run as scripts; the migration guide's names exist.

Each script runs in its own tmp dir as a subprocess (as a user would run it) and
must exit 0, print no traceback, and print the values the example produces
(ids, counts, versions, commits). Git examples get a registry made with
`botreg init`; the HTTP example gets a real `botreg sync` daemon with writes on.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from chroma_server import free_port
from conftest import git

PROJECT = Path(__file__).resolve().parent.parent
EXAMPLES = PROJECT / "examples" / "seed"
GUIDE = PROJECT / "docs" / "migrating-from-dataknobs.md"
TOKEN = "seed-example-token-0123456789"
SHA = "[0-9a-f]{40}"

Check = Callable[[str, Path], None]


def head(repo: Path, fmt: str = "%H") -> str:
    """A field of the repository's last commit."""
    return git(repo, "log", "-1", f"--format={fmt}").strip()


def check_adapter(out: str, repo: Path) -> None:
    found = re.search(f"Registered my-bot at commit ({SHA})", out)
    assert found, out
    assert git(repo, "log", "-1", "--format=%s", found[1]).strip() == "Register bot my-bot"
    assert head(repo) == found[1]  # the refused bot made no commit
    assert not (repo / "bots/broken-bot.yaml").exists()


def check_hot_reload(out: str, repo: Path) -> None:
    before = re.search(r"product-guide model: gpt-4o-mini at ([0-9a-f]{12})", out)
    assert before, out
    assert f"committed {head(repo)[:12]}" in out
    assert f"product-guide model: gpt-4o at {head(repo)[:12]}" in out
    assert head(repo, "%s") == "Update bot product-guide"


def check_knowledge_backends(out: str, repo: Path) -> None:
    page = b"# Guide\n\nOpen the command palette with Ctrl+K.\n"
    blob = (
        subprocess.run(
            ["git", "hash-object", "--stdin"], input=page, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    assert f"put guide.md, checksum {blob}" in out
    assert head(repo, "%s") == "Put knowledge/product/guide.md"
    tree = git(repo, "rev-parse", "HEAD:knowledge/product").strip()
    assert f"product: 5 files, version {tree}" in out


def check_streaming(out: str, repo: Path) -> None:
    assert head(repo, "%s") == "Put knowledge/product/large-file.bin"


def check_bot_registry_git(out: str, repo: Path) -> None:
    assert f"faq-bot committed as {head(repo)[:12]}" in out
    assert (repo / "bots/faq-bot.yaml").exists()
    assert head(repo, "%s") == "Register bot faq-bot"


# script -> (needs a registry repository, expected output patterns, extra check)
SCRIPTS: dict[str, tuple[bool, list[str], Check | None]] = {
    "registry_in_memory": (
        False,
        [
            r"Registered at: \d{4}-\d\d-\d\d \d\d:\d\d",
            r"Version: sha256:[0-9a-f]{16}\n",
            "Config model: claude-3-sonnet",
            r"Active: \['my-bot'\]",
            "After deactivate: active=0 all=1",
            "Unregistered: True; all=0",
        ],
        None,
    ),
    "registry_adapter": (
        True,
        [
            "postgres refused: registry backend 'postgres' is replaced by git",
            "Commit message: Register bot my-bot",
            r"broken-bot refused: 2 finding\(s\)",
            r"Active bots: \['billing-assistant', 'my-bot', 'product-guide'\]",
        ],
        check_adapter,
    ),
    "registry_factory": (
        True,
        [
            "memory: InMemoryBackend, 0 bots",
            r"postgres: refused \(registry backend 'postgres' is replaced by git",
            r"git: GitRegistryBackend, active bots \['billing-assistant', 'product-guide'\]",
            "http: HTTPRegistryBackend",
        ],
        None,
    ),
    "caching_manager": (
        False,
        [
            "get_or_create twice: same instance=True, built=1",
            "closed my-bot\nafter invalidate: built=2",
            r"closed my-bot\nafter invalidate_all: cached=\[\]",
            "no-such-bot: KeyError",
        ],
        None,
    ),
    "config_caching": (
        False,
        [
            r"Config: \{'llm': \{'provider': 'anthropic', 'model': 'claude-3-sonnet'\}\}",
            r"Version: sha256:[0-9a-f]{16}\n",
            "Refreshed model: claude-3-opus",
            "Version changed: True",
        ],
        None,
    ),
    "registry_poller": (
        False,
        [
            "Config changed for my-bot\nConfig changed for new-bot\nConfig changed for my-bot",
            r"Invalidated: \['my-bot', 'new-bot', 'my-bot'\]",
        ],
        None,
    ),
    "hot_reload": (True, [], check_hot_reload),
    "knowledge_quick_start": (
        False,
        [
            r"Created my-domain: \{'description': 'My KB'\}",
            r"Uploaded content/intro.md \(46 bytes, text/markdown\)",
            r"Files: \['content/intro.md'\]",
            r"Content: b'# Introduction\\n\\nWelcome to our knowledge base!'",
            "Changed since the upload started: True",
            "Changed since now: False",
            "Status: ready",
            "Bases left: 0",
        ],
        None,
    ),
    "knowledge_backends": (
        True,
        [
            r"InMemoryKnowledgeBackend: \['content/guide.md'\]",
            r"FileKnowledgeBackend: \['my-domain/_metadata.json', 'my-domain/content/guide.md'\]",
            r"s3: refused \(unknown knowledge backend type 's3'.*use 'git'",
        ],
        check_knowledge_backends,
    ),
    "knowledge_streaming": (
        True,
        [r"Streamed 3145728 bytes in \d+ chunks", "Largest chunk: 65536 bytes"],
        check_streaming,
    ),
    "knowledge_ingestion": (
        False,
        [
            "Processed 2 files",
            "Created 2 chunks",
            "Against abc123: 2 files skipped, 0 embedded",
            "No changes detected",
            "Top hit: knowledge/my-domain/intro.md",
            r"Events: \['UPDATED', 'UPDATED'\]",
        ],
        None,
    ),
    "complete_bot_manager": (
        False,
        [
            "Bot support-bot received: Hello!",
            "Model after update: claude-3-opus",
            "New instance: True",
        ],
        None,
    ),
    "complete_knowledge_hot_reload": (
        False,
        [
            r"Ingestion complete: \{'domain_id': 'support', 'files_processed': 1,",
            "Ingested 1 files, 1 chunks",
            r"- FAQ > How do I reset my password\?",
            r"Status: ready \(True\)",
        ],
        None,
    ),
    "bot_registry_module": (
        False,
        [
            "Environment: production",
            r"my-bot \(anthropic/claude-3-sonnet\) got 'Hello'",
            "Storage: db.internal",
        ],
        None,
    ),
    "bot_registry_docstrings": (
        False,
        [
            "client-123: anthropic: hi",
            "Registered at: True",
            "Updated at: True",
            "local-bot: PortabilityError",
            "client-123 built 2 times",
            r"Cached: \['client-123'\]; count 2",
            "test-bot: echo: ping",
            r"after clear: 0 bots, cached \[\]",
            r"development registry: InMemoryBotRegistry\(.*environment='development'\)",
            "create_memory_registry test-bot: echo: pong",
        ],
        None,
    ),
    "bot_registry_git": (
        True,
        [
            r"Active bots: \['billing-assistant', 'product-guide'\]",
            "billing-assistant conversations: sqlite",
            "faq-bot endpoint: http://localhost:11434",
        ],
        check_bot_registry_git,
    ),
}


def run_example(name: str, cwd: Path, extra_env: dict[str, str]) -> str:
    """Run examples/seed/<name>.py in `cwd`; assert it succeeded; return its stdout."""
    env = {**os.environ, **extra_env}
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_every_example_script_is_tested() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py")}
    assert scripts == {*SCRIPTS, "registry_http"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_seed_example_runs(name: str, tmp_path: Path) -> None:
    needs_repo, patterns, check = SCRIPTS[name]
    work = tmp_path / "work"
    work.mkdir()
    repo = tmp_path / "registry"
    extra: dict[str, str] = {}
    if needs_repo:
        subprocess.run(
            [sys.executable, "-m", "botreg", "init", str(repo)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        extra["BOTREG_EXAMPLE_REPO"] = str(repo)
    out = run_example(name, work, extra)
    for pattern in patterns:
        assert re.search(pattern, out), f"{name}: {pattern!r} not in\n{out}"
    if check is not None:
        check(out, repo)


def _wait_ready(url: str, daemon: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.poll() is None, "the daemon exited"
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"the daemon at {url} was not ready within {timeout} s")


@pytest.mark.timeout(180)
def test_seed_http_example_against_a_daemon(tmp_path: Path) -> None:
    repo = tmp_path / "registry"
    subprocess.run(
        [sys.executable, "-m", "botreg", "init", str(repo)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    source = tmp_path / "source.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(source))
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "botreg",
            "sync",
            "--source",
            source.as_uri(),
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{port}",
            "--api-token-file",
            str(token),
            "--allow-writes",
            "--interval",
            "3600",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(url, daemon)
        work = tmp_path / "work"
        work.mkdir()
        out = run_example(
            "registry_http", work, {"BOTREG_EXAMPLE_URL": url, "BOTREG_EXAMPLE_TOKEN": TOKEN}
        )
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=30)
        log.close()
    assert "product-guide model: gpt-4o-mini" in out
    assert (
        "All bots: [('billing-assistant', 'active'), ('internal-helpdesk', 'inactive'),"
        " ('product-guide', 'active')]" in out
    )
    registered = re.search(f"Registered echo at commit ({SHA})", out)
    assert registered, out
    assert git(source, "log", "-1", "--format=%s", registered[1]).strip() == "Register bot echo"
    assert "echo provider: echo" in out
    assert "Active count: 3" in out
    assert "Deactivated: True\nUnregistered: True" in out
    subjects = git(source, "log", "-3", "--format=%s", "main").split("\n")
    assert subjects[:3] == ["Unregister bot echo", "Update bot echo", "Register bot echo"]


# --- the guide's table names real botreg names ---------------------------------------------


def guide_names() -> list[str]:
    """Every `botreg....` name in the botreg column of the guide's name table."""
    text = GUIDE.read_text()
    section = text.split("## Every seed name", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or set(cells[0]) <= {"-", " ", ":"} or cells[0] == "Seed":
            continue
        names.extend(re.findall(r"`(botreg(?:\.\w+)+)`", cells[1]))
    return names


def resolve(dotted: str) -> object:
    """Import the longest module prefix of `dotted`, then get the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise AssertionError(f"no module in {dotted}")


def test_every_botreg_name_in_the_guide_exists() -> None:
    names = guide_names()
    assert len(names) >= 60, names  # the table covers every name the seed's docs use
    missing = []
    for dotted in names:
        try:
            resolve(dotted)
        except (AttributeError, AssertionError) as error:
            missing.append(f"{dotted}: {error}")
    assert not missing, missing


def test_the_guide_links_every_example_script() -> None:
    text = GUIDE.read_text()
    for script in EXAMPLES.glob("*.py"):
        assert f"examples/seed/{script.name}" in text, script.name
