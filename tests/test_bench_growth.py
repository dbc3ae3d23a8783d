"""bench/growth.py end to end on small domains: both stores, every column, the growth lines."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _growth(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("growth")


def test_sizes_are_chunks_with_an_optional_k(monkeypatch: pytest.MonkeyPatch) -> None:
    growth = _growth(monkeypatch)
    assert growth.parse_sizes("10k, 2500,0.5k") == [10_000, 2_500, 500]
    corpus = importlib.import_module("corpus")
    files = growth.files_for(300)
    assert sum(corpus.sections_of(i) for i in range(files)) >= 300
    assert sum(corpus.sections_of(i) for i in range(files - 1)) < 300


def test_a_process_is_measured_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its own peak RSS: a 40 MiB string shows, and a large bench process does not (a
    child forked from it would count the bench's memory in its peak)."""
    growth = _growth(monkeypatch)
    ballast = bytearray(200 << 20)
    for i in range(0, len(ballast), 4096):  # resident, not just reserved
        ballast[i] = 1
    code = "import sys; data = 'x' * (40 << 20); sys.stdout.write('done')"
    wall, cpu, rss, out = growth.run_process([sys.executable, "-c", code], dict(os.environ))
    assert out == "done" and wall > 0 and cpu > 0
    assert 40 * 1024 < rss < 150 * 1024
    _, _, small, _ = growth.run_process([sys.executable, "-c", "pass"], dict(os.environ))
    assert small < 100 * 1024 < len(ballast) // 1024
    with pytest.raises(SystemExit, match="failed"):
        growth.run_process([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))


@pytest.mark.timeout(300)
def test_the_growth_bench_measures_both_stores(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    growth = _growth(monkeypatch)
    argv = ["growth.py", "--sizes", "150,300", "--repeat", "2", "--queries", "5"]
    monkeypatch.setattr(sys, "argv", argv)
    assert growth.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("machine: ") for line in lines) == 2  # beside the table
    head = next(line for line in lines if line.startswith("| store |"))
    assert [c.strip() for c in head.strip("|").split("|")] == [
        "store",
        "chunks",
        "full ingest: wall (CPU)",
        "peak RSS",
        "`botreg query` peak RSS",
        "server RSS",
        "one-file edit, process: min / median",
        "one-file edit, long-lived: min / median",
        "query p50 / p95 (ms)",
        "store on disk",
    ]
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in lines
        if line.startswith(("| embedded |", "| server |"))
    ]
    assert [(r[0], r[1]) for r in rows] == [
        ("embedded", f"{_chunks(growth, 150):,}"),
        ("embedded", f"{_chunks(growth, 300):,}"),
        ("server", f"{_chunks(growth, 150):,}"),
        ("server", f"{_chunks(growth, 300):,}"),
    ]
    for row in rows:
        assert int(row[3]) > 50 and int(row[4]) > 50  # Python with Chroma: tens of MiB
        assert (row[5] == "n/a") == (row[0] == "embedded")  # the server's own RSS
        for cell in row[6:9]:
            low, mid = (float(v) for v in cell.split(" / "))
            assert 0 < low <= mid
        assert float(row[9]) > 0
    growths = [line for line in lines if line.startswith("how each grows")]
    assert [g.split(",")[1].strip() for g in growths] == ["embedded", "server"]
    assert all("full ingest" in g and "peak RSS" in g and "disk" in g for g in growths)


def _chunks(growth: ModuleType, size: int) -> int:
    corpus = importlib.import_module("corpus")
    return sum(corpus.sections_of(i) for i in range(growth.files_for(size)))
