"""Seed: "Knowledge Ingestion Manager / Basic Usage" (002), ported to botreg.

Changed: the import; `RAGKnowledgeBase` -> `KnowledgeStore` (botreg's Chroma
store on disk, ./data/store, with the built-in offline "hash" embedding instead
of the seed's "echo" provider and memory vector store); `event_bus` (left
undefined in the seed) is a memory bus; two files are uploaded first so there
is something to ingest; the last call passes the version just ingested, so
"No changes detected" is printed.

Run: python examples/seed/knowledge_ingestion.py   (writes ./data)
"""

import asyncio

from botreg.api import create_event_bus
from botreg.knowledge import KnowledgeIngestionManager, create_knowledge_backend
from botreg.knowledge import KnowledgeStore as RAGKnowledgeBase


async def main() -> None:
    event_bus = create_event_bus({"backend": "memory"})
    await event_bus.connect()
    events: list[str] = []
    await event_bus.subscribe("knowledge:ingestion", lambda e: events.append(e.type.name))

    # Create components
    file_backend = create_knowledge_backend("file", {"path": "./data/kb"})
    await file_backend.initialize()
    await file_backend.create_kb("my-domain")
    await file_backend.put_file(
        "my-domain", "intro.md", b"# Intro\n\nReset your password in Settings > Security.\n"
    )
    await file_backend.put_file(
        "my-domain", "data/faq.json", b'{"question": "Refunds?", "answer": "Within 30 days."}'
    )

    rag_kb = await RAGKnowledgeBase.from_config(
        {"data_dir": "./data/store", "embedding": {"provider": "hash", "dimensions": 384}}
    )

    # Create ingestion manager
    manager = KnowledgeIngestionManager(
        source=file_backend,
        destination=rag_kb,
        event_bus=event_bus,  # Optional, publishes ingestion events
    )

    # Ingest all files
    result = await manager.ingest("my-domain", clear_existing=True)
    print(f"Processed {result.files_processed} files")
    print(f"Created {result.chunks_created} chunks")
    if result.errors:
        print(f"Errors: {result.errors}")

    # Ingest only if changed ("abc123" is not the domain's version: it ingests,
    # and every file is unchanged, so nothing is embedded again)
    again = await manager.ingest_if_changed("my-domain", last_version="abc123")
    assert again is not None
    print(f"Against abc123: {again.files_skipped} files skipped, {again.chunks_embedded} embedded")
    unchanged = await manager.ingest_if_changed("my-domain", last_version=again.version)
    if unchanged is None:
        print("No changes detected")

    hits = await rag_kb.search("reset password", k=1)
    print(f"Top hit: {hits[0].path}")
    await asyncio.sleep(0.1)
    print(f"Events: {events}")
    rag_kb.close()
    await file_backend.close()
    await event_bus.close()


if __name__ == "__main__":
    asyncio.run(main())
