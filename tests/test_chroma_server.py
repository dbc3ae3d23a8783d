"""The server variant (HttpClient against `chroma run` on 127.0.0.1) behaves like the
embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest

from botreg.store.chroma import ChromaStore, StoreUnavailableError
from botreg.store.settings import StoreSettings
from chroma_server import chroma_server, free_port
from knowledge_helpers import Harness

REFUNDS = "knowledge/billing/policies/refunds.md"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ingest_and_query_against_a_chroma_server(registry: Path, tmp_path: Path) -> None:
    with chroma_server(tmp_path / "server") as port:
        h = Harness(
            registry,
            tmp_path / "data",
            store=StoreSettings(type="http", host="127.0.0.1", port=port),
        )
        try:
            first = h.ingest("billing")
            assert first.chunks_embedded > 0
            h.assert_exact("billing")
            path = registry / REFUNDS
            path.write_text(path.read_text().replace("5 to 10\nbusiness", "five to ten\nbusiness"))
            # moved, not renamed: a file without a title of its own is titled by its
            # name, so a new name is new text (re-embedded) and a move is not
            (registry / "knowledge/billing/pricing").mkdir()
            (registry / "knowledge/billing/plans.json").rename(
                registry / "knowledge/billing/pricing/plans.json"
            )
            result = h.ingest("billing")
            assert result.chunks_embedded == 1
            h.assert_exact("billing")
            [hit, *_] = h.manager().query("billing", "Do you accept purchase orders?", 2)
            assert hit.heading == "Billing FAQ > Do you accept purchase orders?"
        finally:
            h.ledger.close()
            h.store.close()
        assert not (tmp_path / "data" / "chroma").exists()  # nothing embedded locally


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    settings = StoreSettings(type="http", host="127.0.0.1", port=free_port())
    with pytest.raises(StoreUnavailableError) as info:
        ChromaStore(settings, tmp_path)
    assert f"127.0.0.1:{settings.port}" in str(info.value)
