"""Benchmark `botreg validate` on a generated registry and compare with check-jsonschema.

Usage: python bench/validate.py [--bots 2000] [--knowledge 500] [--runs 5]

Prints a table. Targets (2-core machine): whole repository under 1.5 s, at least
1,000 files/s, a hook run on a 5-file commit under 300 ms including interpreter
start-up, and at least twice check-jsonschema's throughput on the bot files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpus import build_registry
from machine import machine_line

from botreg.resources import schema_dir


def timed(cmd: list[str], runs: int, cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    times = []
    proc = None
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
    assert proc is not None
    return statistics.median(times), proc


def bundled_bot_schema(target: Path) -> Path:
    """bot.schema.json with resource-ref inlined, so check-jsonschema needs no network."""
    bot = json.loads((schema_dir() / "bot.schema.json").read_text())
    ref = json.loads((schema_dir() / "resource-ref.schema.json").read_text())
    ref_defs = ref.pop("$defs")
    for key in ("$schema", "$id"):
        ref.pop(key)
    text = json.dumps(bot)
    text = text.replace('"resource-ref.schema.json#/$defs/', '"#/$defs/rr_')
    text = text.replace('"resource-ref.schema.json"', '"#/$defs/resourceRef"')
    bundled = json.loads(text)
    bundled["$defs"]["resourceRef"] = ref
    for name, schema in ref_defs.items():
        bundled["$defs"][f"rr_{name}"] = json.loads(
            json.dumps(schema)
            .replace('"#/$defs/', '"#/$defs/rr_')
            .replace('"#"', '"#/$defs/resourceRef"')
        )
    bundled.pop("$id")
    target.write_text(json.dumps(bundled))
    return target


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bots", type=int, default=2000)
    parser.add_argument("--knowledge", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="botreg-bench-"))
    try:
        repo = build_registry(work / "registry", args.bots, args.knowledge)
        botreg = [sys.executable, "-m", "botreg"]
        full, proc = timed([*botreg, "validate"], args.runs, repo)
        summary = proc.stdout.strip().splitlines()[-1]
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            raise SystemExit("the generated registry should be valid")
        files = int(summary.split()[0])
        five = [
            "bots/bot-0001.yaml",
            "bots/bot-0002.yaml",
            "bots/bot-0003.yaml",
            "knowledge/billing/part-0/doc-0000.json",
            "environments/production.yaml",
        ]
        five_bots = [f"bots/bot-{i:04d}.yaml" for i in range(10, 15)]
        hook_env, _ = timed([*botreg, "validate", *five], args.runs, repo)
        hook_bots, _ = timed([*botreg, "validate", *five_bots], args.runs, repo)
        bot_files = sorted(str(p) for p in (repo / "bots").glob("bot-*.yaml"))
        ours_bots, _ = timed([*botreg, "validate", *bot_files], args.runs, repo)

        cjs = shutil.which(
            "check-jsonschema", path=str(Path(sys.executable).parent)
        ) or shutil.which("check-jsonschema")
        cjs_time = None
        if cjs:
            schema = bundled_bot_schema(work / "bot.bundled.json")
            cjs_time, cproc = timed(
                [cjs, "--schemafile", str(schema), *bot_files], max(1, args.runs // 2), repo
            )
            if cproc.returncode != 0:
                print(cproc.stdout[-1000:], cproc.stderr[-1000:])
                raise SystemExit("check-jsonschema rejected the generated bots")

        rows = [
            ("botreg validate, whole repository", full, files, "< 1.5 s, >= 1000 files/s"),
            ("botreg validate, 5 bot files (hook)", hook_bots, 5, "< 0.3 s"),
            (
                "botreg validate, 5 files incl. an environment (hook)",
                hook_env,
                5,
                "(checks all bots' references)",
            ),
            (
                f"botreg validate, {len(bot_files)} bot files",
                ours_bots,
                len(bot_files),
                ">= 2x check-jsonschema",
            ),
        ]
        if cjs_time is not None:
            rows.append(
                (
                    f"check-jsonschema, {len(bot_files)} bot files",
                    cjs_time,
                    len(bot_files),
                    "schema only",
                )
            )
        print(machine_line())
        print(
            f"registry: {args.bots} bots, {args.knowledge} knowledge files "
            f"({files} files checked); median of {args.runs} runs\n"
        )
        print(
            f"| {'run':<55} | {'wall s':>7} | {'files':>5} | {'files/s':>8} | "
            f"{'ms/file':>7} | target"
        )
        print(f"|{'-' * 57}|{'-' * 9}|{'-' * 7}|{'-' * 10}|{'-' * 9}|--------")
        for name, seconds, count, target in rows:
            print(
                f"| {name:<55} | {seconds:7.3f} | {count:5d} | {count / seconds:8.0f} | "
                f"{seconds / count * 1000:7.3f} | {target}"
            )
        if cjs_time is not None:
            print(
                f"\nthroughput on bot files: botreg / check-jsonschema = "
                f"{cjs_time / ours_bots:.2f}x (target >= 2x)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
