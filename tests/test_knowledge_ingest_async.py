"""The seed's async KnowledgeIngestionManager: events, incremental runs, one code path."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.conftest import git
from tests.knowledge_helpers import CountingHash

from botreg.api.events import Event, EventType, create_event_bus
from botreg.knowledge import (
    IngestionStatus,
    KnowledgeIngestionManager,
    KnowledgeStore,
    create_knowledge_backend,
)
from botreg.knowledge.ingest import DomainIngester
from botreg.knowledge.storage import GitKnowledgeBackend, KnowledgeBaseNotFoundError
from botreg.store.settings import EmbeddingSettings, KnowledgeSettings, StoreSettings

T = TypeVar("T")

FAQ = b"# FAQ\n\n## How do I reset my password?\n\nGo to settings and choose reset.\n"


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, 120)

    return asyncio.run(main())


def open_store(data: Path, function: Any = None) -> KnowledgeStore:
    settings = KnowledgeSettings(StoreSettings(), EmbeddingSettings("hash", {"dimensions": 64}))
    return KnowledgeStore.open(data, settings, embedding_function=function)


@pytest.mark.parametrize("kind", ["memory", "file", "git"])
def test_ingest_publishes_events_and_a_second_run_embeds_nothing(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    function = CountingHash(64)
    store = open_store(tmp_path / "data", function)
    config: dict[str, Any] = {}
    if kind == "file":
        config = {"path": str(tmp_path / "kb")}
    elif kind == "git":
        config = {"repo": str(request.getfixturevalue("git_registry"))}

    async def scenario() -> list[Event]:
        bus = create_event_bus({"backend": "memory"})
        await bus.connect()
        seen: list[Event] = []

        async def on_ingestion(event: Event) -> None:  # an async handler: awaited
            seen.append(event)

        await bus.subscribe("knowledge:ingestion", on_ingestion)
        backend = create_knowledge_backend(kind, config)
        await backend.initialize()
        await backend.create_kb("support", metadata={"description": "Support docs"})
        await backend.put_file("support", "faq.md", FAQ, content_type="text/markdown")
        manager = KnowledgeIngestionManager(source=backend, destination=store, event_bus=bus)
        first = await manager.ingest("support")
        assert first.success and first.files_processed == 1 and first.chunks_created >= 1
        assert first.chunks_embedded == function.texts > 0
        assert await backend.get_ingestion_status("support") is IngestionStatus.READY
        assert first.version == await backend.get_checksum("support")
        embedded = function.texts
        second = await manager.ingest("support")  # nothing changed: nothing embedded
        assert function.texts == embedded and second.chunks_embedded == 0
        assert second.files_skipped == 1 and second.files_processed == 0
        assert await manager.ingest_if_changed("support", last_version=first.version) is None
        assert await manager.ingest_if_changed("support") is None  # against the ledger
        await backend.put_file("support", "more.md", b"# More\n\nAnother page.\n")
        third = await manager.ingest_if_changed("support", last_version=first.version)
        assert third is not None and third.files_processed == 1 and third.files_skipped == 1
        assert function.texts == embedded + third.chunks_embedded  # only the new page
        hits = await store.search("reset password", k=3)
        assert hits and "reset" in hits[0].content.lower()
        await backend.close()
        await bus.close()
        return seen

    try:
        seen = run(scenario())
    finally:
        store.close()
    assert [e.type for e in seen] == [EventType.UPDATED] * 3
    assert all(e.topic == "knowledge:ingestion" for e in seen)
    assert seen[0].payload["domain_id"] == "support" and seen[0].payload["success"] is True
    assert seen[0].payload["chunks_created"] >= 1


def test_failures_publish_failed_and_mark_the_base(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data", CountingHash(64))

    async def scenario() -> list[Event]:
        bus = create_event_bus({"backend": "memory"})
        await bus.connect()
        seen: list[Event] = []
        bus.subscribe("knowledge:ingestion", seen.append)  # a sync handler
        backend = create_knowledge_backend("memory", {})
        await backend.create_kb("docs")
        await backend.put_file("docs", "good.md", b"# Good\n\nfine\n")
        await backend.put_file("docs", "bad.json", b"{not json")
        manager = KnowledgeIngestionManager(backend, store, bus)
        result = await manager.ingest("docs")
        assert not result.success and [e["path"] for e in result.errors] == [
            "knowledge/docs/bad.json"
        ]
        info = await backend.get_info("docs")
        assert info is not None and info.ingestion_status is IngestionStatus.ERROR
        assert info.ingestion_error and "bad.json" in info.ingestion_error
        with pytest.raises(KnowledgeBaseNotFoundError):
            await manager.ingest("absent")
        return seen

    try:
        seen = run(scenario())
    finally:
        store.close()
    [event] = seen
    assert event.type is EventType.FAILED and event.payload["errors"]


def test_chunk_ids_are_the_daemons_whoever_ingests(git_registry: Path, tmp_path: Path) -> None:
    """The git backend's async run and the tree run store the same ids: nothing twice."""
    function = CountingHash(64)
    store = open_store(tmp_path / "data", function)
    try:
        tree_manager = KnowledgeIngestionManager(
            GitKnowledgeBackend(repo=git_registry).registry_source(), store
        )
        first = tree_manager.ingest_sync("billing")
        assert first.success and first.chunks_embedded > 0
        embedded = function.texts
        manager = KnowledgeIngestionManager(GitKnowledgeBackend(repo=git_registry), store)
        again = run(manager.ingest("billing"))
        assert again.chunks_embedded == 0 and function.texts == embedded
        assert again.files_skipped == first.files_processed
        assert again.version == git(git_registry, "rev-parse", "HEAD:knowledge/billing").strip()
    finally:
        store.close()


def test_the_daemon_and_the_cli_drive_the_manager(
    git_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botreg.cli import main

    calls: list[str] = []
    original = KnowledgeIngestionManager.ingest_sync

    def spy(self: KnowledgeIngestionManager, domain_id: str, clear: bool = False) -> Any:
        calls.append(domain_id)
        return original(self, domain_id, clear)

    monkeypatch.setattr(KnowledgeIngestionManager, "ingest_sync", spy)
    data = tmp_path / "data"
    assert main(["sync", "--source", str(git_registry), "--data-dir", str(data), "--once"]) == 0
    assert calls == ["billing", "product"]
    calls.clear()
    cli_data = str(tmp_path / "cli")
    assert main(["ingest", "--repo", str(git_registry), "--data-dir", cli_data]) == 0
    assert calls == ["billing", "product"]
    assert isinstance(DomainIngester, type)  # the one core both reach


def test_destination_must_be_a_store(tmp_path: Path) -> None:
    from botreg.errors import UsageError

    with pytest.raises(UsageError, match="KnowledgeStore or a ChromaStore"):
        KnowledgeIngestionManager(create_knowledge_backend("memory"), object())  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="event loop"):
        KnowledgeIngestionManager(
            create_knowledge_backend("memory"), open_store(tmp_path / "d")
        ).ingest_sync("docs")


# --- the seed's "Knowledge Base with Hot Reload", imports changed only --------------------


def test_seed_knowledge_base_with_hot_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    from botreg.api import EventType, create_event_bus
    from botreg.knowledge import (
        KnowledgeIngestionManager,
        create_knowledge_backend,
    )
    from botreg.knowledge import KnowledgeStore as RAGKnowledgeBase

    async def main() -> None:
        # Setup
        event_bus = create_event_bus({"backend": "memory"})
        await event_bus.connect()

        kb_backend = create_knowledge_backend("file", {"path": "./data/kb"})
        await kb_backend.initialize()

        rag_kb = await RAGKnowledgeBase.from_config(
            {"data_dir": "./data/store", "embedding": {"provider": "hash", "dimensions": 384}}
        )

        # Create ingestion manager
        ingestion = KnowledgeIngestionManager(
            source=kb_backend,
            destination=rag_kb,
            event_bus=event_bus,
        )

        # Subscribe to ingestion events
        async def on_ingestion(event: Event) -> None:
            if event.type == EventType.UPDATED:
                print(f"Ingestion complete: {event.payload}")

        await event_bus.subscribe("knowledge:ingestion", on_ingestion)

        # Create knowledge base and upload files
        await kb_backend.create_kb("support", metadata={"description": "Support docs"})

        await kb_backend.put_file(
            "support",
            "faq.md",
            b"# FAQ\n\n## How do I reset my password?\n\nGo to settings...",
            content_type="text/markdown",
        )

        # Ingest
        result = await ingestion.ingest("support")
        print(f"Ingested {result.files_processed} files, {result.chunks_created} chunks")

        # Query
        results = await rag_kb.search("reset password", k=3)
        for r in results:
            print(f"- {r.content[:100]}...")

        # Cleanup
        await event_bus.close()
        await kb_backend.close()
        rag_kb.close()

    run(main())
    out = capsys.readouterr().out
    assert "Ingestion complete: {" in out
    assert "Ingested 1 files, 1 chunks" in out
    assert "- " in out and "reset my password" in out
