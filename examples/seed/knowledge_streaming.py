"""Seed: "Knowledge Resource Storage / Streaming Large Files" (002), ported to botreg.

Changed: the import; `backend` (left undefined in the seed) is the git backend on
a clone of the registry repository (stream_file reads the blob from git in
chunks); `process` counts bytes. The 3 MiB file is committed first.

Environment: BOTREG_EXAMPLE_REPO, a clone of a registry repository; the script
commits knowledge/product/large-file.bin.

Run: BOTREG_EXAMPLE_REPO=path/to/clone python examples/seed/knowledge_streaming.py
"""

import asyncio
import os

from botreg.knowledge import create_knowledge_backend

REPO = os.environ.get("BOTREG_EXAMPLE_REPO", "registry")
SIZE = 3 * 1024 * 1024

received = {"bytes": 0, "chunks": 0, "largest": 0}


def process(chunk: bytes) -> None:
    received["bytes"] += len(chunk)
    received["chunks"] += 1
    received["largest"] = max(received["largest"], len(chunk))


async def main() -> None:
    backend = create_knowledge_backend("git", {"repo": REPO})
    await backend.initialize()
    await backend.put_file("product", "large-file.bin", bytes(range(256)) * (SIZE // 256))

    stream = await backend.stream_file("product", "large-file.bin")
    assert stream is not None
    async for chunk in stream:
        process(chunk)
    print(f"Streamed {received['bytes']} bytes in {received['chunks']} chunks")
    print(f"Largest chunk: {received['largest']} bytes")
    await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
