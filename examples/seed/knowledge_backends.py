"""Seed: "Knowledge Resource Storage / Storage Backends" (002), ported to botreg.

Changed: the import; the seed's `S3KnowledgeBackend` (`"s3"`) -> the git backend
(`"git"`) on a clone of the registry repository: knowledge lives under
`knowledge/<domain>/` and each write is a validated commit. The "s3" call is
shown being refused. "memory" and "file" are the seed's.

Environment: BOTREG_EXAMPLE_REPO, a clone of a registry repository; the script
commits one file to knowledge/product/.

Run: BOTREG_EXAMPLE_REPO=path/to/clone python examples/seed/knowledge_backends.py
"""

import asyncio
import os

from botreg.errors import UsageError
from botreg.knowledge import create_knowledge_backend

REPO = os.environ.get("BOTREG_EXAMPLE_REPO", "registry")
PAGE = b"# Guide\n\nOpen the command palette with Ctrl+K.\n"


async def main() -> None:
    # InMemoryKnowledgeBackend: for testing
    backend = create_knowledge_backend("memory", {})
    await backend.initialize()
    await backend.create_kb("my-domain")
    await backend.put_file("my-domain", "content/guide.md", PAGE)
    print(f"{type(backend).__name__}: {[f.path for f in await backend.list_files('my-domain')]}")

    # FileKnowledgeBackend: local filesystem storage (the seed's directory structure)
    backend = create_knowledge_backend("file", {"path": "./data/knowledge"})
    await backend.initialize()
    await backend.create_kb("my-domain")
    await backend.put_file("my-domain", "content/guide.md", PAGE)
    layout = sorted(
        os.path.relpath(os.path.join(d, f), "./data/knowledge")
        for d, _, names in os.walk("./data/knowledge")
        for f in names
    )
    print(f"{type(backend).__name__}: {layout}")

    # S3KnowledgeBackend: refused; git replaces S3
    try:
        create_knowledge_backend("s3", {"bucket": "my-bucket", "prefix": "knowledge/"})
    except UsageError as error:
        print(f"s3: refused ({error})")

    # botreg: the registry repository, one commit per write
    backend = create_knowledge_backend("git", {"repo": REPO})
    await backend.initialize()
    put = await backend.put_file("product", "guide.md", PAGE)
    print(f"{type(backend).__name__}: put {put.path}, checksum {put.checksum}")
    info = await backend.get_info("product")
    assert info is not None
    print(f"product: {info.file_count} files, version {info.version}")
    await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
