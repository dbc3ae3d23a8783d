"""Seed: "Knowledge Resource Storage / Quick Start" (002), ported to botreg.

Changed: the import (`dataknobs_bots.knowledge` -> `botreg.knowledge`);
`previous_checksum` (left undefined in the seed) is the checksum before the
upload. The "file" backend keeps the seed's layout under ./data/knowledge.

Run: python examples/seed/knowledge_quick_start.py   (writes ./data/knowledge)
"""

import asyncio

from botreg.knowledge import IngestionStatus, KnowledgeFile, create_knowledge_backend


async def main() -> None:
    # Create backend
    backend = create_knowledge_backend("file", {"path": "./data/knowledge"})
    await backend.initialize()

    # Create knowledge base
    info = await backend.create_kb("my-domain", metadata={"description": "My KB"})
    print(f"Created {info.domain_id}: {info.metadata}")
    previous_checksum = await backend.get_checksum("my-domain")

    # Upload files
    file_info = await backend.put_file(
        "my-domain",
        "content/intro.md",
        b"# Introduction\n\nWelcome to our knowledge base!",
        content_type="text/markdown",
    )
    assert isinstance(file_info, KnowledgeFile)
    print(f"Uploaded {file_info.path} ({file_info.size_bytes} bytes, {file_info.content_type})")

    # List files
    files = await backend.list_files("my-domain", prefix="content/")
    print(f"Files: {[f.path for f in files]}")

    # Get file content
    content = await backend.get_file("my-domain", "content/intro.md")
    print(f"Content: {content!r}")

    # Check for changes
    checksum = await backend.get_checksum("my-domain")
    has_changes = await backend.has_changes_since("my-domain", previous_checksum)
    print(f"Changed since the upload started: {has_changes}")
    print(f"Changed since now: {await backend.has_changes_since('my-domain', checksum)}")

    # Update ingestion status
    await backend.set_ingestion_status("my-domain", IngestionStatus.READY)
    print(f"Status: {(await backend.get_ingestion_status('my-domain')).value}")

    # Cleanup
    await backend.delete_file("my-domain", "content/intro.md")
    await backend.delete_kb("my-domain")
    print(f"Bases left: {len(await backend.list_kbs())}")
    await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
