"""Benchmark incremental ingestion: botreg, LangChain's indexing API and a bare Chroma
upsert, each timed in-process and as whole processes.

Usage: python bench/ingest.py [--files 2000] [--repeat 5] [--no-langchain]
                              [--compare-src DIR]

The corpus (bench/corpus.py) is a git registry of `--files` Markdown documents of 1
to 40 chunks each (20,000 chunks at 2,000 files), embedded with botreg's offline
hash function (384 dimensions) everywhere: the times are everything but a model's.
Five steps run in order on each side: full ingest, no change, one paragraph
edited, one file renamed, one file deleted.

- botreg in-process: the manager `botreg ingest` drives, in this process, with
  Chroma imported and the store open across steps;
- botreg as a process: `botreg ingest` itself, one process per step (Python's
  start-up, imports, the store opened when a step writes);
- LangChain (bench/rivals.py): `index()` in incremental mode, in this process and
  as one process per step; every step chunks every file (it has no change
  detection of its own);
- bare Chroma: chunk, embed and upsert everything (full ingest only): the floor.

Then `botreg ingest` as a whole process, `--repeat` times each (min and median,
wall and CPU): with nothing changed (target under 0.3 s) and after a one-file
edit (target under 0.6 s). Processes run with Python's bytecode cache on (a
warm-up run fills it), as an installed botreg has it. On a shared machine the
wall time depends on the load printed beside the table; CPU time (user +
system of the process) much less.

`--compare-src DIR` also times `botreg ingest` of another checkout's `src`
(say, the main branch before a change) as whole processes, steps and repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpus import build_corpus, doc_path, sections_of
from machine import machine_line
from rivals import Counting, LangChainRun, bare_upsert

from botreg.knowledge.ledger import Ledger
from botreg.knowledge.manager import KnowledgeIngestionManager
from botreg.knowledge.worktree import IndexedWorkingTree
from botreg.resources import template_dir
from botreg.store.chroma import ChromaStore
from botreg.store.settings import EmbeddingSettings, StoreSettings

BENCH = Path(__file__).parent
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


@dataclass
class Run:
    """One timed step: wall and CPU seconds, texts embedded, chunks stored."""

    seconds: float
    cpu: float | None
    embedded: int
    stored: int


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, capture_output=True
    )


def make_registry(root: Path, files: int) -> Path:
    """The template with the corpus under knowledge/docs, committed."""
    shutil.copytree(template_dir(), root)
    build_corpus(root, files)
    (root / ".gitignore").write_text(".botreg/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "corpus")
    return root


def copy_registry(base: Path, root: Path) -> Path:
    """A copy whose git index is refreshed (a copy's files have new inodes and times)."""
    shutil.copytree(base, root, symlinks=True)
    git(root, "update-index", "-q", "--refresh")
    return root


def edit_paragraph(root: Path, i: int = 7, words: str = "An edited opening sentence.") -> None:
    path = root / doc_path(i)
    head = f"## Section 0 of document {i}\n\n"
    path.write_text(path.read_text().replace(head, f"{head}{words} ", 1))


def rename_one(root: Path) -> None:
    (root / doc_path(8)).rename((root / doc_path(8)).with_name("moved.md"))


def delete_one(root: Path) -> None:
    (root / doc_path(9)).unlink()


STEPS: list[tuple[str, Callable[[Path], None] | None]] = [
    ("full ingest", None),
    ("no change", None),
    ("one paragraph edited", edit_paragraph),
    ("one file renamed", rename_one),
    ("one file deleted", delete_one),
]


def process_env() -> dict[str, str]:
    """Child processes keep their bytecode (__pycache__), as an installed botreg has it."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a process: (wall seconds, CPU seconds of the process, its stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def stored_docs(data: Path) -> int:
    """Chunks of the docs domain the ledger records as stored (reading the store itself
    would open it: the next run would then check it)."""
    db = sqlite3.connect(f"{(data / 'ledger.sqlite').as_uri()}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT COUNT(*) FROM chunks c JOIN domains d ON c.collection = d.collection "
            "WHERE d.domain = 'docs' AND c.stored = 1"
        ).fetchone()
        return int(row[0])
    finally:
        db.close()


def botreg_in_process(root: Path, data: Path) -> list[Run]:
    function = Counting()
    store = ChromaStore(StoreSettings(path="chroma"), data)
    ledger = Ledger(data / "ledger.sqlite")
    out = []
    for _name, change in STEPS:
        if change:
            change(root)
        before = function.texts
        start, cpu = time.perf_counter(), time.process_time()
        manager = KnowledgeIngestionManager(
            IndexedWorkingTree(root),
            store,
            ledger=ledger,
            embedding=EmbeddingSettings("hash", {"dimensions": 384}),
            embedding_function=function,
        )
        for domain in manager.domains():
            manager.ingest_sync(domain)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        out.append(Run(seconds, cpu, function.texts - before, stored_docs(data)))
    ledger.close()
    store.close()
    return out


def botreg_command(root: Path, data: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "botreg",
        "ingest",
        "--repo",
        str(root),
        "--data-dir",
        str(data),
        "--format",
        "json",
    ]


def botreg_process(root: Path, data: Path, env: dict[str, str]) -> list[Run]:
    out = []
    for _name, change in STEPS:
        if change:
            change(root)
        wall, cpu, stdout = timed(botreg_command(root, data), env)
        embedded = sum(r["chunks_embedded"] for r in json.loads(stdout)["results"])
        out.append(Run(wall, cpu, embedded, stored_docs(data)))
    return out


def langchain_in_process(root: Path, data: Path) -> list[Run]:
    run = LangChainRun(data)
    out = []
    for _name, change in STEPS:
        if change:
            change(root)
        start, cpu = time.perf_counter(), time.process_time()
        embedded, stored = run.step(root)
        out.append(Run(time.perf_counter() - start, time.process_time() - cpu, embedded, stored))
    return out


def rival_process(kind: str, root: Path, data: Path, env: dict[str, str], steps: int) -> list[Run]:
    out = []
    for _name, change in STEPS[:steps]:
        if change:
            change(root)
        command = [sys.executable, str(BENCH / "rivals.py"), kind, str(root), str(data)]
        wall, cpu, stdout = timed(command, env)
        doc = json.loads(stdout)
        out.append(Run(wall, cpu, doc["embedded"], doc["stored"]))
    return out


def warm_up(env: dict[str, str]) -> None:
    """Fill the bytecode cache of what `botreg ingest` imports (Chroma included)."""
    code = "import chromadb, botreg.cli, botreg.knowledge.ingest, botreg.knowledge.chunkers"
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)


def compare_env(src: Path, cache: Path) -> dict[str, str]:
    """Processes that run the botreg of another checkout (its bytecode kept apart)."""
    return {**process_env(), "PYTHONPATH": str(src), "PYTHONPYCACHEPREFIX": str(cache)}


def repeated(
    root: Path, data: Path, env: dict[str, str], repeat: int, files: int
) -> dict[str, list[Run]]:
    """`botreg ingest` as a process, `repeat` times with no change and after one-file edits."""
    runs: dict[str, list[Run]] = {"no change": [], "one file edited": []}
    for _ in range(repeat):
        wall, cpu, stdout = timed(botreg_command(root, data), env)
        embedded = sum(r["chunks_embedded"] for r in json.loads(stdout)["results"])
        runs["no change"].append(Run(wall, cpu, embedded, 0))
    for k in range(repeat):
        edit_paragraph(root, (files // 2 + k) % files, f"Edit number {k} of the repeated runs.")
        wall, cpu, stdout = timed(botreg_command(root, data), env)
        embedded = sum(r["chunks_embedded"] for r in json.loads(stdout)["results"])
        runs["one file edited"].append(Run(wall, cpu, embedded, 0))
    return runs


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def print_tables(
    sides: dict[str, list[Run]], reps: dict[str, dict[str, list[Run]]], chunks: int, files: int
) -> None:
    names = list(sides)
    print(f"\n{machine_line()}")
    print(f"corpus: {files} Markdown files of 1 to 40 chunks ({chunks} chunks), hash embedding\n")
    print("seconds per step: wall (CPU: of the process, or of this one in-process)")
    print(_row(["step", *names]))
    print("|---|" + "---:|" * len(names))
    for i, (step, _) in enumerate(STEPS):
        runs = [sides[n][i] if i < len(sides[n]) else None for n in names]
        print(_row([step] + [_seconds(r) for r in runs]))
    print("\ntexts embedded / chunks of the corpus stored after the step")
    print(_row(["step", *names]))
    print("|---|" + "---:|" * len(names))
    for i, (step, _) in enumerate(STEPS):
        runs = [sides[n][i] if i < len(sides[n]) else None for n in names]
        print(_row([step] + [f"{r.embedded} / {r.stored}" if r else "n/a" for r in runs]))
    repeat = len(next(iter(reps.values()))["no change"])
    print(f"\n`botreg ingest` as a whole process, {repeat} runs each (seconds)")
    print(_row(["botreg", "run", "wall min", "wall median", "CPU min", "CPU median", "target"]))
    print("|---|---|---:|---:|---:|---:|---|")
    for who, runs_of in reps.items():
        for name, target in (("no change", "< 0.3"), ("one file edited", "< 0.6")):
            walls = [r.seconds for r in runs_of[name]]
            cpus = [r.cpu or 0.0 for r in runs_of[name]]
            print(
                _row(
                    [
                        who,
                        f"{name} ({'/'.join(str(r.embedded) for r in runs_of[name])} embedded)",
                        f"{min(walls):.3f}",
                        f"{statistics.median(walls):.3f}",
                        f"{min(cpus):.3f}",
                        f"{statistics.median(cpus):.3f}",
                        target,
                    ]
                )
            )
    print(f"\n{machine_line()}")


def _seconds(run: Run | None) -> str:
    if run is None:
        return "n/a"
    return f"{run.seconds:.2f}" + (f" ({run.cpu:.2f})" if run.cpu is not None else "")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-langchain", action="store_true")
    parser.add_argument("--compare-src", type=Path, metavar="DIR")
    args = parser.parse_args()
    try:
        import langchain_chroma  # noqa: F401
        import langchain_classic  # noqa: F401
    except ImportError as exc:
        print(f"LangChain comparison skipped ({exc})", file=sys.stderr)
        args.no_langchain = True
    print(machine_line(), file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="botreg-ingest-bench-"))
    try:
        env = process_env()
        base = make_registry(work / "base", args.files)
        chunks = sum(sections_of(i) for i in range(args.files))
        warm_up(env)
        sides: dict[str, list[Run]] = {}
        sides["botreg in-process"] = botreg_in_process(
            copy_registry(base, work / "a"), work / "data-a"
        )
        cli = copy_registry(base, work / "b")
        sides["botreg process"] = botreg_process(cli, work / "data-b", env)
        if not args.no_langchain:
            sides["LangChain in-process"] = langchain_in_process(
                copy_registry(base, work / "c"), work / "data-c"
            )
            sides["LangChain process"] = rival_process(
                "langchain", copy_registry(base, work / "d"), work / "data-d", env, len(STEPS)
            )
        start, cpu = time.perf_counter(), time.process_time()
        embedded, stored = bare_upsert(base, work / "data-e")
        sides["bare Chroma in-process"] = [
            Run(time.perf_counter() - start, time.process_time() - cpu, embedded, stored)
        ]
        sides["bare Chroma process"] = rival_process("bare", base, work / "data-f", env, 1)
        reps = {"this": repeated(cli, work / "data-b", env, args.repeat, args.files)}
        if args.compare_src:
            other = compare_env(args.compare_src.resolve(), work / "pycache-compare")
            warm_up(other)
            root = copy_registry(base, work / "g")
            sides[f"botreg process ({args.compare_src})"] = botreg_process(
                root, work / "data-g", other
            )
            reps[str(args.compare_src)] = repeated(
                root, work / "data-g", other, args.repeat, args.files
            )
        print_tables(sides, reps, chunks, args.files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
