"""The chunkers' version moves with their output.

The ledger's file key holds `CHUNKER_VERSION` (botreg.knowledge.scan), so an
upgraded botreg re-chunks every file once; a chunker change that forgets to bump
it would leave every file nobody edits on the old chunks while `botreg chunks`
and `review` show the new ones. This test pins a fingerprint of the chunks of a
fixed set of files to the version: when it fails, bump CHUNKER_VERSION and put
the new fingerprint here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from botreg.knowledge.chunkers import chunk_file
from botreg.knowledge.scan import CHUNKER_VERSION
from botreg.registry.settings import RegistrySettings

ROOT = Path(__file__).resolve().parent.parent
FINGERPRINTS = {2: "3166942df68bcb38"}


def fingerprint() -> str:
    settings = RegistrySettings()
    digest = hashlib.sha256()
    folders = ("registry-repo-template/knowledge", "bench/quality/corpus", "tests/data/languages")
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or path.name.startswith(("_", ".")):
                continue
            rel = path.relative_to(ROOT).as_posix()
            for chunk in chunk_file(rel, path.read_bytes(), settings.chunking, settings.limits):
                digest.update(f"{rel}\0{chunk.heading}\0{chunk.text}\0".encode())
    return digest.hexdigest()[:16]


def test_the_chunker_version_is_bumped_with_its_output() -> None:
    current = fingerprint()
    assert FINGERPRINTS.get(CHUNKER_VERSION) == current, (
        f"the chunkers' output changed (fingerprint {current}): bump CHUNKER_VERSION in "
        "src/botreg/knowledge/scan.py and record the fingerprint in this test"
    )


def test_the_deprecated_csv_rows_per_chunk_does_not_re_chunk() -> None:
    import dataclasses
    from types import SimpleNamespace
    from typing import Any

    from botreg.knowledge.scan import settings_key

    base = RegistrySettings()

    def key(**chunking: Any) -> str:
        settings = dataclasses.replace(
            base, chunking=dataclasses.replace(base.chunking, **chunking)
        )
        return settings_key(SimpleNamespace(settings=settings))  # type: ignore[arg-type]

    assert key(csv_rows_per_chunk=3) == key()
    assert key(max_tokens=150) != key()
