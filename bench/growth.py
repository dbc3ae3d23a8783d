"""Benchmark how botreg grows with a domain: 10,000 to 100,000 chunks, embedded store
and Chroma server.

Usage: python bench/growth.py [--sizes 10000,25000,50000,100000]
                              [--stores embedded,server] [--repeat 3]
                              [--queries 200] [--compare-src DIR]

For each size, a git registry (the template plus bench/corpus.py's Markdown
documents of 1 to 40 chunks, as many as make the size) is ingested with the
offline `hash` embedding (384 dimensions: the times are everything but a
model's) into each store: the embedded one (the data dir's `chroma` folder) and
a `chroma run` server on 127.0.0.1 that the bench starts and stops. Measured:

- full ingest: `botreg ingest` as a whole process: wall and CPU seconds and its
  peak RSS (its own: spawned from a small launcher that reads it with `wait4`,
  see `LAUNCHER`); for the server also the server's RSS once the ingest is done
  (the index lives there), and the peak RSS of a `botreg query` process (it
  loads an embedded store's index: what any reader of the store pays);
- one-file edit, whole process: a paragraph edited, `botreg ingest`
  (`--repeat` runs, each on another file: min / median wall);
- one-file edit, long-lived: as a daemon's cycle does it, the edit committed and
  ingested from that commit by a `DomainIngester` over a store and ledger kept
  open (min / median);
- query latency: `query_domain` in that long-lived process, p50 / p95 over
  `--queries` queries (one warm-up query before, not counted);
- the store's size on disk (the embedded store's folder, the server's).

Prints the machine line, one Markdown table (a row per store and size), and a
line per store saying how each column grows from the smallest size to the
largest. `--compare-src DIR` also runs the full ingest with another checkout's
`src` (say, main before a change) and adds its peak RSS as a column.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from corpus import WORDS, build_corpus, doc_path, sections_of  # noqa: E402
from machine import machine_line  # noqa: E402
from tests.chroma_server import chroma_server  # noqa: E402

from botreg.resources import template_dir  # noqa: E402

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
DOMAIN = "docs"
SERVER_ENV = "growth"  # the environment whose store is the Chroma server


@dataclass
class Row:
    """One store and size: what was measured (seconds, KiB, bytes)."""

    store: str
    chunks: int
    full_wall: float = 0.0
    full_cpu: float = 0.0
    full_rss: int = 0
    compare_rss: int | None = None
    server_rss: int | None = None
    query_rss: int = 0
    edit_process: list[float] = field(default_factory=list)
    edit_cycle: list[float] = field(default_factory=list)
    queries: list[float] = field(default_factory=list)
    disk: int = 0


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def files_for(chunks: int) -> int:
    """How many corpus documents make at least `chunks` chunks."""
    total, files = 0, 0
    while total < chunks:
        total += sections_of(files)
        files += 1
    return files


def make_registry(root: Path, files: int) -> int:
    """The template with `files` corpus documents under knowledge/docs, committed;
    returns the domain's chunks."""
    shutil.copytree(template_dir(), root)
    build_corpus(root, files)
    (root / ".gitignore").write_text(".botreg/\n")
    git(root, "init", "-q", "-b", "main")
    # no automatic gc: at 100,000 chunks a commit leaves enough loose objects for git to
    # pack them in the background, under a copy being made and the runs being timed
    git(root, "config", "gc.auto", "0")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "corpus")
    return sum(sections_of(i) for i in range(files))


def server_environment(root: Path, port: int) -> None:
    """environments/growth.yaml: development's, with the store on the server at `port`."""
    development = (root / "environments" / "development.yaml").read_text()
    resources = development[development.index("resources:") : development.index("knowledge:")]
    (root / "environments" / f"{SERVER_ENV}.yaml").write_text(
        f"name: {SERVER_ENV}\ndescription: the growth benchmark\n" + resources + "knowledge:\n"
        f"  store: {{type: http, host: 127.0.0.1, port: {port}}}\n"
        "  embedding: {provider: hash, dimensions: 384}\n"
    )


def process_env(src: Path | None = None, cache: Path | None = None) -> dict[str, str]:
    """Child processes keep their bytecode; `src`: run another checkout's botreg."""
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if src is not None:
        env["PYTHONPATH"] = str(src)
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def warm_up(env: dict[str, str]) -> None:
    """Fill the bytecode cache of what `botreg ingest` imports (Chroma included)."""
    code = "import chromadb, botreg.cli, botreg.knowledge.ingest, botreg.knowledge.chunkers"
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)


# Runs a command and writes its own peak RSS (KiB) and CPU seconds to the file argv[1].
# A child forked from this (large) process would count this process's RSS in its peak
# (`ru_maxrss` keeps the high-water mark of the memory it had before `exec`), so the
# command is spawned from this small launcher instead.
LAUNCHER = """
import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_process(command: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run a process: (wall seconds, its CPU seconds, its peak RSS in KiB, its stdout)."""
    with tempfile.TemporaryDirectory() as folder:
        figures = Path(folder) / "usage"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, str(figures), *command],
            env=env,
            capture_output=True,
            check=False,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr!r}")
        rss, cpu = figures.read_text().split()
        return wall, float(cpu), int(rss), done.stdout.decode()


def _botreg(command: str, repo: Path, data: Path, env_name: str, *tail: str) -> list[str]:
    """`botreg COMMAND` on the bench's domain, JSON out."""
    options = ["--repo", str(repo), "--data-dir", str(data), "--env", env_name]
    return [sys.executable, "-m", "botreg", command, *options, "--domain", DOMAIN,
            "--format", "json", *tail]  # fmt: skip


def ingest_command(repo: Path, data: Path, env_name: str) -> list[str]:
    return _botreg("ingest", repo, data, env_name)


def query_command(repo: Path, data: Path, env_name: str) -> list[str]:
    return _botreg("query", repo, data, env_name, "refund invoice for a workspace")


def embedded_of(stdout: str) -> int:
    return sum(int(r["chunks_embedded"]) for r in json.loads(stdout)["results"])


def edit_paragraph(repo: Path, i: int, words: str) -> None:
    path = repo / doc_path(i)
    head = f"## Section 0 of document {i}\n\n"
    path.write_text(path.read_text().replace(head, f"{head}{words} ", 1))


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def server_pid(path: Path) -> int | None:
    """The `chroma run` process serving `path` (found by its command line)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"run" in argv and str(path).encode() in argv:
            return int(proc.name)
    return None


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextmanager
def store_for(kind: str, work: Path, repo: Path) -> Iterator[tuple[str, Path]]:
    """(environment name, folder the store's data lives in) for `kind`; a server is
    started for the block and stopped after it."""
    if kind == "embedded":
        yield "development", work / "data" / "chroma"
        return
    folder = work / "server"
    with chroma_server(folder) as port:
        server_environment(repo, port)
        yield SERVER_ENV, folder


def long_lived(
    repo: Path, data: Path, env_name: str, row: Row, repeat: int, queries: int, first: int
) -> None:
    """One-file cycles and queries in one process, the store and ledger kept open."""
    import git as gitpython

    from botreg.git.tree import GitTreeSource
    from botreg.knowledge.ingest import DomainIngester, query_domain
    from botreg.knowledge.ledger import Ledger
    from botreg.registry.snapshot import Snapshot
    from botreg.registry.source import WorkingTreeSource
    from botreg.registry.view import RegistryView
    from botreg.store.chroma import ChromaStore
    from botreg.store.embedding import create_embedding_function
    from botreg.store.settings import EmbeddingSettings

    settings = RegistryView(WorkingTreeSource(repo)).knowledge_settings(env_name)
    store = ChromaStore(settings.store, data)
    ledger = Ledger(data / "ledger.sqlite")
    handle = gitpython.Repo(repo)
    try:
        for k in range(repeat):
            edit_paragraph(repo, first + k, f"Cycle edit number {k}.")
            git(repo, "commit", "-q", "-am", f"cycle edit {k}")
            sha = git(repo, "rev-parse", "HEAD")
            start = time.perf_counter()
            ingester = DomainIngester(
                Snapshot(GitTreeSource(handle, sha)),
                store,
                ledger,
                settings.embedding,
                commit=sha,
            )
            result = ingester.ingest(DOMAIN)
            row.edit_cycle.append(time.perf_counter() - start)
            if result.chunks_embedded != 1 or not result.success:
                raise SystemExit(f"a one-file cycle embedded {result.chunks_embedded}")
        state = ledger.domain(DOMAIN)
        assert state is not None
        function = create_embedding_function(EmbeddingSettings.from_description(state.embedding))
        query_domain(store, ledger, DOMAIN, "warm up the index", 5, function)
        rnd = random.Random(15)
        for _ in range(queries):
            text = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 8)))
            start = time.perf_counter()
            query_domain(store, ledger, DOMAIN, text, 5, function)
            row.queries.append(time.perf_counter() - start)
    finally:
        handle.close()
        ledger.close()
        store.close()


def measure(
    base: Path, work: Path, kind: str, chunks: int, files: int, args: argparse.Namespace
) -> Row:
    """Every figure of one store and size."""
    row = Row(kind, chunks)
    env = process_env()
    if args.compare_src:  # the other checkout's full ingest, in a store of its own
        other = work / "compare"
        repo = copy_registry(base, other / "registry")
        with store_for(kind, other, repo) as (env_name, _folder):
            cenv = process_env(args.compare_src.resolve(), work.parent / "pycache-compare")
            wall, cpu, row.compare_rss, _ = run_process(
                ingest_command(repo, other / "data", env_name), cenv
            )
            say(
                f"{kind}, {chunks} chunks, {args.compare_src}: full ingest {wall:.1f} s ({cpu:.1f})"
            )
        shutil.rmtree(other, ignore_errors=True)
    repo = copy_registry(base, work / "registry")
    data = work / "data"
    with store_for(kind, work, repo) as (env_name, folder):
        say(f"{kind}, {chunks} chunks: full ingest")
        row.full_wall, row.full_cpu, row.full_rss, out = run_process(
            ingest_command(repo, data, env_name), env
        )
        if embedded_of(out) != chunks:
            raise SystemExit(f"the full ingest embedded {embedded_of(out)} of {chunks}")
        pid = server_pid(folder) if kind == "server" else None
        row.server_rss = rss_kib(pid) if pid else None
        row.disk = disk_bytes(folder)
        # what reading the store costs a process: an embedded store's index is loaded in it
        _, _, row.query_rss, _ = run_process(query_command(repo, data, env_name), env)
        say(f"{kind}, {chunks} chunks: one-file edits")
        for k in range(args.repeat):
            edit_paragraph(repo, (files // 2 + k) % files, f"Process edit number {k}.")
            wall, _, _, out = run_process(ingest_command(repo, data, env_name), env)
            if embedded_of(out) != 1:
                raise SystemExit(f"a one-file edit embedded {embedded_of(out)}")
            row.edit_process.append(wall)
        git(repo, "commit", "-q", "-am", "the process edits")
        say(f"{kind}, {chunks} chunks: long-lived cycles and queries")
        first = (files // 3) % max(1, files - args.repeat)
        long_lived(repo, data, env_name, row, args.repeat, args.queries, first)
    return row


def copy_registry(base: Path, root: Path) -> Path:
    """A copy whose git index is refreshed (a copy's files have new inodes and times)."""
    shutil.copytree(base, root, symlinks=True)
    git(root, "update-index", "-q", "--refresh")
    return root


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.0f}"


def columns(row: Row) -> dict[str, float | None]:
    """The figures that the growth line compares (None: not measured)."""
    return {
        "full ingest": row.full_wall,
        "peak RSS": float(row.full_rss),
        "server RSS": float(row.server_rss) if row.server_rss else None,
        "query RSS": float(row.query_rss),
        "edit (process)": statistics.median(row.edit_process),
        "edit (long-lived)": statistics.median(row.edit_cycle),
        "query p50": percentile(row.queries, 0.5),
        "query p95": percentile(row.queries, 0.95),
        "disk": float(row.disk),
    }


def print_table(rows: list[Row], compare: Path | None) -> None:
    print(f"\n{machine_line()}")
    print("hash embedding (384 dimensions); times in seconds, memory and disk in MiB\n")
    head = ["store", "chunks", "full ingest: wall (CPU)", "peak RSS"]
    if compare is not None:
        head.append(f"peak RSS ({compare})")
    head += [
        "`botreg query` peak RSS",
        "server RSS",
        "one-file edit, process: min / median",
        "one-file edit, long-lived: min / median",
        "query p50 / p95 (ms)",
        "store on disk",
    ]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for row in rows:
        cells = [
            row.store,
            f"{row.chunks:,}",
            f"{row.full_wall:.1f} ({row.full_cpu:.1f})",
            mib(row.full_rss),
        ]
        if compare is not None:
            cells.append(mib(row.compare_rss))
        cells += [
            mib(row.query_rss),
            mib(row.server_rss),
            f"{min(row.edit_process):.2f} / {statistics.median(row.edit_process):.2f}",
            f"{min(row.edit_cycle):.2f} / {statistics.median(row.edit_cycle):.2f}",
            f"{1000 * percentile(row.queries, 0.5):.1f} / "
            f"{1000 * percentile(row.queries, 0.95):.1f}",
            f"{row.disk / 2**20:.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    for store in dict.fromkeys(r.store for r in rows):
        mine = sorted((r for r in rows if r.store == store), key=lambda r: r.chunks)
        if len(mine) < 2:
            continue
        small, large = columns(mine[0]), columns(mine[-1])
        ratios = [
            f"{name} {large[name] / value:.1f}x"  # type: ignore[operator]
            for name, value in small.items()
            if value and large[name]
        ]
        print(
            f"how each grows, {store}, {mine[-1].chunks:,} / {mine[0].chunks:,} chunks "
            f"({mine[-1].chunks / mine[0].chunks:.1f}x): " + ", ".join(ratios)
        )
    print(f"\n{machine_line()}")


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        size = part.strip().lower()
        sizes.append(int(float(size[:-1]) * 1000) if size.endswith("k") else int(size))
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[10_000, 25_000, 50_000, 100_000])
    parser.add_argument("--stores", default="embedded,server")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--compare-src", type=Path, metavar="DIR")
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not stores or set(stores) - {"embedded", "server"}:
        parser.error("--stores: embedded, server or both")
    print(machine_line(), file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="botreg-growth-"))
    rows: list[Row] = []
    try:
        env = process_env()
        warm_up(env)
        if args.compare_src:
            warm_up(process_env(args.compare_src.resolve(), work / "pycache-compare"))
        for size in args.sizes:
            files = files_for(size)
            say(f"building {files} files for {size} chunks")
            base = work / f"base-{size}"
            chunks = make_registry(base, files)
            for kind in stores:
                folder = work / f"{kind}-{size}"
                rows.append(measure(base, folder, kind, chunks, files, args))
                say(f"measured: {rows[-1]}")  # kept in the log should a later size fail
                shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(base, ignore_errors=True)
        rows.sort(key=lambda r: (stores.index(r.store), r.chunks))
        print_table(rows, args.compare_src)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
