"""bench/embed.py: its texts, its arithmetic and table, its refusal; a smoke run where the
model is (BOTREG_TEST_MODEL_DIR). No timed assertions: the bench reports, it does not judge."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
embed: ModuleType = importlib.import_module("embed")
quality: ModuleType = importlib.import_module("quality")

MODEL_DIR = os.environ.get("BOTREG_TEST_MODEL_DIR", "")
HAS_MODEL = bool(MODEL_DIR) and (Path(MODEL_DIR) / "onnx" / "model.onnx").is_file()


def test_the_texts_are_botreg_s_chunks_of_the_support_and_synthetic_corpora() -> None:
    sets = embed.text_sets(files=5)
    support = quality.load_corpus(quality.HERE / "corpus")
    assert sets["support corpus"] == [
        text for _, text in quality.chunk_corpus(support, quality.botreg_chunks)
    ]
    assert len(sets["synthetic"]) >= 5 and all(sets["synthetic"])
    assert sets["both"] == sets["support corpus"] + sets["synthetic"]
    limited = embed.text_sets(files=5, limit=3)
    assert [len(texts) for texts in limited.values()] == [3, 3, 6]


def test_the_table_s_arithmetic() -> None:
    row = embed.Row("x", chunks=100, tokens=6400, chroma_s=10.0, botreg_s=2.0, limit_s=3.0,
                    min_cosine=0.99999994, padded=6720)  # fmt: skip
    assert row.speedup == 5.0 and row.of_limit == 1.5
    header, rule, line = embed.format_table([row])
    assert header.count("|") == rule.count("|") == line.count("|") == 12
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells == ["x", "100", "64.0", "10.0", "50.0", "5.00x", "+300% / +5%", "3,200",
                     "2,133", "150%", "0.9999999"]  # fmt: skip


def test_the_machine_line_names_cores_cpu_and_load() -> None:
    line = embed.machine_line(2, (1.0, 0.5, 0.25))
    assert line.startswith(f"machine: {os.cpu_count()} cores (2 intra-op threads), ")
    assert "load average 1.00, 0.50, 0.25 before" in line and "after" in line


def test_the_bench_refuses_without_the_model_and_says_how_to_assemble_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert embed.main(["--model-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "bench/model.py --dest" in err and "onnx/model.onnx" in err


@pytest.mark.skipif(
    not HAS_MODEL,
    reason="all-MiniLM-L6-v2 ONNX model not provisioned (set BOTREG_TEST_MODEL_DIR)",
)
@pytest.mark.timeout(300)
def test_a_tiny_run_prints_the_machine_and_the_side_by_side_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--model-dir", MODEL_DIR, "--files", "2", "--limit", "4", "--repeat", "1"]
    assert embed.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model: all-MiniLM-L6-v2") and "best of 1" in lines[0]
    assert lines[1].startswith("machine: ") and "load average" in lines[1]
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| texts | chunks |") and "speed-up" in table[0]
    rows = {line.split("|")[1].strip(): line.split("|") for line in table[1:]}
    assert list(rows) == ["support corpus", "synthetic", "both"]
    assert [int(r[2]) for r in rows.values()] == [4, 4, 8]
    assert all(float(r[11]) >= 0.9999 for r in rows.values())  # the same vectors
