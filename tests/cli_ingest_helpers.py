"""Helpers for tests of `botreg ingest` as users run it: on a git registry's work tree."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from botreg.cli import main
from botreg.store.chroma import ChromaStore
from botreg.store.settings import StoreSettings
from knowledge_helpers import Harness

# The template's development environment: the offline hash embedding, 384 dimensions.
DIMENSIONS = 384


def ingest(
    capsys: pytest.CaptureFixture[str], repo: Path, data: Path, *extra: str
) -> dict[str, Any]:
    """`botreg ingest --format json` in this process: its document, exit code and stderr."""
    code = main(
        ["ingest", "--repo", str(repo), "--data-dir", str(data), "--format", "json", *extra]
    )
    out, err = capsys.readouterr()
    doc: dict[str, Any] = json.loads(out) if out.strip() else {}
    doc["code"], doc["stderr"] = code, err
    doc["by_domain"] = {r["domain_id"]: r for r in doc.get("results", [])}
    return doc


def totals(doc: dict[str, Any], key: str) -> int:
    """The sum of one count over every domain of an ingest's document."""
    return sum(int(r[key]) for r in doc["results"])


@contextmanager
def harness(repo: Path, data: Path, store: StoreSettings | None = None) -> Iterator[Harness]:
    """The data dir's store and ledger opened in this process (closed after: the CLI
    takes the store's lock)."""
    h = Harness(repo, data, store, dimensions=DIMENSIONS)
    try:
        yield h
    finally:
        h.store.close()
        h.ledger.close()


def thresholds(data: Path) -> dict[str, int]:
    """Each collection's index flush threshold (`hnsw.sync_threshold`), read by the full client."""
    store = ChromaStore(StoreSettings(), data)
    try:
        return {
            c.name: store.client.get_collection(c.name).configuration_json["hnsw"]["sync_threshold"]
            for c in store.client.list_collections()
        }
    finally:
        store.close()


def assert_exact(repo: Path, data: Path, *domains: str) -> None:
    """The store holds exactly the chunks of the work tree's files (none stale, none missing)."""
    with harness(repo, data) as h:
        for domain in domains or ("billing", "product"):
            h.assert_exact(domain)


_PROBE = """
import json, sys
from botreg.cli import main
code = main(sys.argv[1:])
loaded = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] == "chromadb"})
chunkers = "botreg.knowledge.chunkers" in sys.modules
print(json.dumps({"code": code, "chromadb": bool(loaded), "chunkers": chunkers}), file=sys.stderr)
"""


def ingest_process(repo: Path, data: Path) -> dict[str, Any]:
    """`botreg ingest` as a whole process: exit code, and whether it imported Chroma and the
    chunkers (the last stderr line)."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "ingest", "--repo", str(repo), "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    probe: dict[str, Any] = json.loads(done.stderr.strip().splitlines()[-1])
    probe["stdout"] = done.stdout
    return probe
