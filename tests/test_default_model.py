"""The `default` provider (all-MiniLM-L6-v2, ONNX) for real, where the model is present.

Models cannot be downloaded on the project's machines, so this runs only when a
copy is provisioned: BOTREG_TEST_MODEL_DIR, or Chroma's own cache under the
real home directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from botreg.knowledge.ingest import KnowledgeIngestionManager
from botreg.knowledge.ledger import Ledger
from botreg.registry.source import WorkingTreeSource
from botreg.store.chroma import ChromaStore
from botreg.store.settings import EmbeddingSettings, StoreSettings


def _model_dir() -> Path | None:
    candidates = [
        os.environ.get("BOTREG_TEST_MODEL_DIR", ""),
        str(Path.home() / ".cache/chroma/onnx_models/all-MiniLM-L6-v2"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "onnx" / "model.onnx").is_file():
            return Path(candidate)
    return None


MODEL_DIR = _model_dir()  # evaluated at import, before fixtures move HOME


@pytest.mark.skipif(
    MODEL_DIR is None,
    reason="all-MiniLM-L6-v2 ONNX model not provisioned (set BOTREG_TEST_MODEL_DIR)",
)
@pytest.mark.timeout(600)
def test_default_model_ingests_and_ranks_by_meaning(registry: Path, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        manager = KnowledgeIngestionManager(
            WorkingTreeSource(registry),
            ChromaStore(StoreSettings(), tmp_path),
            ledger,
            EmbeddingSettings("default", {"model_dir": str(MODEL_DIR)}),
        )
        result = manager.ingest("billing")
        assert result.success and result.chunks_embedded > 0
        [hit, *_] = manager.query("billing", "money back for a cancelled subscription", 3)
        assert hit.path == "knowledge/billing/policies/refunds.md"
    finally:
        ledger.close()
