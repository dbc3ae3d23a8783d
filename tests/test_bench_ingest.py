"""The benchmarks' own parts: the machine line, the uneven corpus, bench/sync.py's log
reader on a half-written line, and bench/ingest.py end to end on a small corpus."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from botreg.knowledge.chunkers import chunk_file
from botreg.registry.settings import ChunkingSettings, Limits

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module(name)


def test_the_machine_line_names_cores_cpu_and_load(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = _bench(monkeypatch, "machine")
    line = machine.machine_line()
    assert line.startswith(f"machine: {os.cpu_count()} cores (")
    assert machine.cpu_model() in line and machine.cpu_model()
    load = line.split("load ")[1].split(",")[0].split()
    assert len(load) == 3 and all(float(v) >= 0 for v in load)


def test_the_corpus_has_1_to_40_chunks_per_file(monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = _bench(monkeypatch, "corpus")
    sizes = [corpus.sections_of(i) for i in range(2000)]
    assert min(sizes) == 1 and max(sizes) == 40
    assert 15_000 < sum(sizes) < 25_000  # about 20,000 chunks at 2,000 files
    assert len({s % 100 for s in sizes}) > 30  # nothing lines up with a batch of 100
    for i in range(40):  # each section is one chunk, as the tables assume
        path = corpus.doc_path(i)
        chunks = chunk_file(path, corpus.document(i).encode(), ChunkingSettings(), Limits())
        assert len(chunks) == corpus.sections_of(i)


def test_the_sync_bench_reads_past_a_half_written_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sync = _bench(monkeypatch, "sync")
    log = tmp_path / "events.jsonl"
    assert sync.read_events(log) == []  # not written yet
    first = {"type": "botreg.sync.started", "data": {}}
    done = json.dumps({"type": "botreg.sync.completed", "data": {"to": "abc"}})
    log.write_text(json.dumps(first) + "\nnot json\n" + done[:25])  # the daemon mid-write
    assert sync.read_events(log) == [first]
    with pytest.raises(SystemExit, match=r"no sync\.completed for abc"):
        sync.completed_at(log, "abc", timeout=0.1)
    with log.open("a") as handle:
        handle.write(done[25:] + "\n")
    assert [e["type"] for e in sync.read_events(log)] == [first["type"], "botreg.sync.completed"]
    assert sync.completed_at(log, "abc", timeout=5) > 0


@pytest.mark.timeout(300)
def test_the_ingest_bench_times_every_side_in_and_out_of_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest = _bench(monkeypatch, "ingest")
    monkeypatch.setattr(
        sys, "argv", ["ingest.py", "--files", "12", "--repeat", "2", "--no-langchain"]
    )
    assert ingest.main() == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert sum(line.startswith("machine: ") for line in lines) == 2  # beside the tables
    head = next(line for line in lines if line.startswith("| step |"))
    assert head.split(" | ")[1:] == [
        "botreg in-process",
        "botreg process",
        "bare Chroma in-process",
        "bare Chroma process |",
    ]
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines if " / " in line}
    chunks = sum(_bench(monkeypatch, "corpus").sections_of(i) for i in range(12))
    # every side stores the corpus; botreg embeds nothing on no change, one text per edit
    assert rows["full ingest"][0].split(" / ")[1] == str(chunks)
    assert rows["full ingest"][2].split(" / ")[1].strip(" |") == str(chunks)
    assert rows["no change"][1] == f"0 / {chunks}"
    assert rows["one paragraph edited"][1] == f"1 / {chunks}"
    assert (
        rows["one file deleted"][1]
        == f"0 / {chunks - _bench(monkeypatch, 'corpus').sections_of(9)}"
    )
    timing = [line for line in lines if line.startswith("| this |")]
    assert [line.split(" | ")[1] for line in timing] == [
        "no change (0/0 embedded)",
        "one file edited (1/1 embedded)",
    ]
    seconds = next(line for line in lines if line.startswith("| no change |"))
    assert "(" in seconds.split(" | ")[2]  # a process's CPU time beside its wall time
