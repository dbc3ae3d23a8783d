"""Seed: "Complete Example / Knowledge Base with Hot Reload" (002), ported.

Changed: the imports (`dataknobs_bots.knowledge` and `dataknobs_common.events`
-> `botreg.knowledge` / `botreg.api`); `RAGKnowledgeBase` -> `KnowledgeStore`
(Chroma on disk under ./data/store, the built-in offline "hash" embedding
instead of the seed's "echo" provider and memory vector store); the store is
closed at the end.

Run: python examples/seed/complete_knowledge_hot_reload.py   (writes ./data)
"""

import asyncio

from botreg.api import Event, EventType, create_event_bus
from botreg.knowledge import (
    IngestionStatus,
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

    status = await kb_backend.get_ingestion_status("support")
    print(f"Status: {status.value} ({status is IngestionStatus.READY})")

    # Cleanup
    await event_bus.close()
    await kb_backend.close()
    rag_kb.close()


if __name__ == "__main__":
    asyncio.run(main())
