"""`botreg chunks PATH`: the chunks, token estimates and ids ingestion would store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.knowledge.chunkers import count_tokens
from helpers import write
from knowledge_helpers import Harness

REFUNDS = "knowledge/billing/policies/refunds.md"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_gives_the_ids_ingestion_stores(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "chunks", str(registry / REFUNDS), "--repo", str(registry), "--format", "json"
    )
    assert code == 0
    doc = json.loads(out)
    assert (doc["domain"], doc["path"]) == ("billing", REFUNDS)
    assert doc["chunks"] and all(c["tokens"] == count_tokens(c["text"]) for c in doc["chunks"])
    assert all(c["text"].startswith("Refund policy > Refunds") for c in doc["chunks"])
    h = Harness(registry, tmp_path / "data")
    try:
        h.ingest("billing")
        state = h.ledger.domain("billing")
        got = h.store.collection(state.collection, h.function).get(  # type: ignore[union-attr]
            where={"path": REFUNDS}, include=["documents"]
        )
        stored = dict(zip(got["ids"], got["documents"] or [], strict=True))
        assert {c["id"]: c["text"] for c in doc["chunks"]} == stored
    finally:
        h.ledger.close()


def test_text_output_from_inside_the_registry(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(registry)
    code, out, _ = run(capsys, "chunks", "knowledge/product/shortcuts.csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("knowledge/product/shortcuts.csv (domain product): ")
    assert lines[2].startswith("--- chunk 0 · ~") and " tokens · id " in lines[2]
    assert "action: " in out


def test_a_file_outside_a_registry_is_a_usage_error(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "faq.md"
    outside.write_text("# FAQ\n\nText.\n")
    code, _, err = run(capsys, "chunks", str(outside), "--repo", str(registry))
    assert code == 2 and "outside the registry" in err
    code, _, err = run(capsys, "chunks", str(outside), "--repo", str(tmp_path))
    assert code == 2 and "not a registry" in err
    code, _, err = run(capsys, "chunks", str(registry / "registry.yaml"), "--repo", str(registry))
    assert code == 2 and "not a knowledge file" in err
    code, _, err = run(
        capsys, "chunks", str(registry / "knowledge/billing/none.md"), "--repo", str(registry)
    )
    assert code == 2 and "no such file" in err


def test_a_file_that_cannot_be_chunked_exits_1(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(registry, "knowledge/billing/bad.json", "{oops")
    code, out, err = run(
        capsys, "chunks", str(registry / "knowledge/billing/bad.json"), "--repo", str(registry)
    )
    assert code == 1 and out == "" and "knowledge/billing/bad.json" in err
    assert "Traceback" not in err


def test_review_counts_what_chunks_shows(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # review and the preview share chunk_file: the same file, the same chunk count
    from botreg.review import build

    assert build.chunk_file is __import__("botreg.knowledge.chunkers", fromlist=["x"]).chunk_file
    code, out, _ = run(
        capsys, "chunks", str(registry / REFUNDS), "--repo", str(registry), "--format", "json"
    )
    assert code == 0 and len(json.loads(out)["chunks"]) == 7
