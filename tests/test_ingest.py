"""Incremental ingestion, measured by counting the texts sent to the embedding function."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from botreg.knowledge.ledger import IngestionStatus
from botreg.store.embedding import EmbeddingUnavailableError
from botreg.store.settings import EmbeddingSettings
from helpers import write
from knowledge_helpers import Harness

REFUNDS = "knowledge/billing/policies/refunds.md"


@pytest.fixture
def h(registry: Path, tmp_path: Path) -> Harness:
    harness = Harness(registry, tmp_path / "data")
    yield harness  # type: ignore[misc]
    harness.ledger.close()


def test_first_ingest_then_nothing_to_do(h: Harness) -> None:
    first = h.ingest("billing")
    assert first.success and first.files_processed == 3 and first.chunks_embedded > 0
    assert first.chunks_created == first.chunks_embedded  # all texts distinct
    h.assert_exact("billing")
    again = h.ingest("billing")
    assert (
        again.files_processed,
        again.files_skipped,
        again.chunks_embedded,
        again.chunks_created,
        again.chunks_deleted,
    ) == (0, 3, 0, 0, 0)
    assert h.ledger.domain("billing").status is IngestionStatus.READY  # type: ignore[union-attr]


def test_editing_one_paragraph_embeds_one_chunk(h: Harness) -> None:
    h.ingest("billing")
    path = h.repo / REFUNDS
    path.write_text(
        path.read_text().replace("5 to 10\nbusiness days", "five to ten\nbusiness days")
    )
    result = h.ingest("billing")
    assert result.chunks_embedded == 1
    assert (result.chunks_created, result.chunks_deleted) == (1, 1)
    assert result.files_processed == 1 and result.files_skipped == 2
    h.assert_exact("billing")


def test_rename_embeds_nothing_and_leaves_nothing_behind(h: Harness) -> None:
    h.ingest("billing")
    (h.repo / REFUNDS).rename(h.repo / "knowledge/billing/refund-policy.md")
    result = h.ingest("billing")
    assert result.chunks_embedded == 0
    assert result.chunks_created == result.chunks_deleted == 7  # its 7 chunks, moved
    h.assert_exact("billing")
    assert all(path != REFUNDS for path, _ in h.stored("billing"))


def test_delete_removes_every_chunk_of_the_file(h: Harness) -> None:
    h.ingest("billing")
    (h.repo / REFUNDS).unlink()
    result = h.ingest("billing")
    assert result.chunks_embedded == 0 and result.chunks_deleted == 7
    h.assert_exact("billing")


def test_moved_chunk_updates_metadata_without_embedding(h: Harness) -> None:
    h.ingest("billing")
    path = h.repo / REFUNDS
    path.write_text(
        path.read_text().replace("# Refunds\n", "# Refunds\n\nA new first paragraph.\n")
    )
    result = h.ingest("billing")
    assert result.chunks_embedded == 1  # the section that gained the paragraph
    state = h.ledger.domain("billing")
    got = h.store.collection(state.collection, h.function).get(  # type: ignore[union-attr]
        where={"path": REFUNDS}, include=["metadatas"]
    )
    assert sorted(m["chunk_index"] for m in got["metadatas"]) == list(range(7))
    h.assert_exact("billing")


def test_repeated_text_is_embedded_once(h: Harness) -> None:
    write(
        h.repo, "knowledge/billing/twice.txt", "Same words.\n\n" + "x " * 300 + "\n\nSame words.\n"
    )
    write(h.repo, "knowledge/billing/copy.txt", "Same words.\n")
    result = h.ingest("billing")
    texts = [t for p, t in h.expected("billing")]
    assert result.chunks_embedded == len(set(texts))


def test_metadata_is_complete(h: Harness) -> None:
    h.ingest("billing")
    state = h.ledger.domain("billing")
    got = h.store.collection(state.collection, h.function).get(  # type: ignore[union-attr]
        where={"path": REFUNDS}, include=["metadatas"], limit=1
    )
    meta = got["metadatas"][0]
    assert set(meta) == {
        "domain",
        "path",
        "commit",
        "blob",
        "heading",
        "chunk_index",
        "content_hash",
        "file_type",
        "front_matter",
        "title",
    }
    assert meta["domain"] == "billing" and meta["file_type"] == "markdown"
    assert meta["title"] == "Refund policy" and len(meta["blob"]) == 40
    assert json.loads(meta["front_matter"])["audience"] == "customers"


def test_a_bad_file_is_reported_and_the_rest_ingest(h: Harness) -> None:
    h.ingest("billing")
    before = h.stored("billing")
    write(h.repo, "knowledge/billing/plans.json", '{"plans": [}')
    write(h.repo, "knowledge/billing/new.md", "# New\n\nFresh text.\n")
    result = h.ingest("billing")
    assert result.errors == [
        {"path": "knowledge/billing/plans.json", "message": "invalid JSON: Expecting value"}
    ]
    assert not result.success and result.files_processed == 1
    after = h.stored("billing")
    assert {p for p, _ in after - before} == {"knowledge/billing/new.md"}
    assert {p for p, _ in before - after} == set()  # the last good plans.json keeps serving
    state = h.ledger.domain("billing")
    assert state.status is IngestionStatus.ERROR and "plans.json" in state.error  # type: ignore[union-attr]


def test_embedding_switch_builds_a_new_collection(
    h: Harness, registry: Path, tmp_path: Path
) -> None:
    h.ingest("billing")
    old = h.ledger.domain("billing").collection  # type: ignore[union-attr]
    switched = Harness(registry, tmp_path / "data", dimensions=128)
    try:
        result = switched.ingest("billing")
        assert result.chunks_embedded == result.chunks_created > 0  # everything, new model
        new = switched.ledger.domain("billing").collection  # type: ignore[union-attr]
        assert new != old and not switched.store.has_collection(old)
        assert switched.ledger.domain("billing").embedding == {
            "provider": "hash",
            "dimensions": 128,
        }  # type: ignore[union-attr]
        switched.assert_exact("billing")
    finally:
        switched.ledger.close()


def test_switch_keeps_the_old_collection_while_files_fail(
    h: Harness, registry: Path, tmp_path: Path
) -> None:
    h.ingest("billing")
    old = h.ledger.domain("billing").collection  # type: ignore[union-attr]
    write(registry, "knowledge/billing/plans.json", "{")
    switched = Harness(registry, tmp_path / "data", dimensions=128)
    try:
        result = switched.ingest("billing")
        assert not result.success
        state = switched.ledger.domain("billing")
        assert state.collection == old and state.status is IngestionStatus.ERROR  # type: ignore[union-attr]
        assert switched.store.has_collection(old)
    finally:
        switched.ledger.close()


def test_clear_existing_embeds_everything_again(h: Harness) -> None:
    first = h.ingest("billing")
    result = h.ingest("billing", clear_existing=True)
    assert result.chunks_embedded == first.chunks_embedded
    h.assert_exact("billing")


def test_ingest_if_changed(h: Harness) -> None:
    manager = h.manager()
    assert manager.ingest_if_changed("billing", None) is not None
    version = manager.domain_version("billing")
    assert h.ledger.domain("billing").version == version  # type: ignore[union-attr]
    assert h.manager().ingest_if_changed("billing", version) is None
    write(h.repo, "knowledge/billing/new.md", "# New\n")
    assert h.manager().ingest_if_changed("billing", version) is not None


def test_domain_globs(h: Harness) -> None:
    write(h.repo, "knowledge/billing/drafts/wip.md", "# WIP\n\nNot yet.\n")
    write(h.repo, "knowledge/billing/notes.pdf", b"%PDF")
    files = h.manager().domain_files("billing")
    assert "knowledge/billing/drafts/wip.md" not in files  # exclude: drafts/**
    assert (
        "knowledge/billing/notes.pdf" not in files and "knowledge/billing/_domain.yaml" not in files
    )
    write(h.repo, "knowledge/product/_domain.yaml", "include: ['**/*.md']\n")
    assert h.manager().domain_files("product") == ["knowledge/product/getting-started.md"]


def test_remove_domain(h: Harness) -> None:
    h.ingest("product")
    collection = h.ledger.domain("product").collection  # type: ignore[union-attr]
    assert h.manager().remove_domain("product") > 0
    assert h.ledger.domain("product") is None and not h.store.has_collection(collection)


def test_query_ranks_chunks(h: Harness) -> None:
    h.ingest("billing")
    [hit, *_] = h.manager().query("billing", "Do you accept purchase orders?", 3)
    assert hit.path == "knowledge/billing/faq.md.gz"
    assert hit.heading == "Billing FAQ > Do you accept purchase orders?"


def test_default_model_missing_fails_before_writing(registry: Path, tmp_path: Path) -> None:
    harness = Harness(registry, tmp_path / "data")
    try:
        harness.embedding = EmbeddingSettings("default", {"model_dir": str(tmp_path / "empty")})
        harness.function = None  # type: ignore[assignment]
        from botreg.knowledge.ingest import KnowledgeIngestionManager
        from botreg.registry.source import WorkingTreeSource

        manager = KnowledgeIngestionManager(
            WorkingTreeSource(registry), harness.store, harness.ledger, harness.embedding
        )
        with pytest.raises(EmbeddingUnavailableError) as info:
            manager.ingest("billing")
        assert "model_dir" in str(info.value) and "provider: hash" in str(info.value)
        assert harness.store.client.list_collections() == []
        assert harness.ledger.all_chunk_ids("anything") == set()
    finally:
        harness.ledger.close()


def test_copied_registry_shares_nothing(h: Harness, tmp_path: Path) -> None:
    """Two data dirs are independent (ids are per collection, not global)."""
    other_repo = tmp_path / "other"
    shutil.copytree(h.repo, other_repo)
    other = Harness(other_repo, tmp_path / "data2")
    try:
        assert other.ingest("billing").chunks_embedded == h.ingest("billing").chunks_embedded
    finally:
        other.ledger.close()
