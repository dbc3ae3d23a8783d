"""`KnowledgeResourceBackend`: where raw knowledge files live before they are embedded.

The seed's protocol, every method async. botreg has three implementations:
`GitKnowledgeBackend` (the registry repository: files are commits),
`InMemoryKnowledgeBackend` (tests) and `FileKnowledgeBackend` (a local folder).
Semantics shared by all three (the contract tests run each one through them):

- a domain id is an identifier and a path a safe relative path
  (`botreg.knowledge.storage.paths`), else `KnowledgePathError` (a ValueError);
- `create_kb` of an existing domain raises `KnowledgeBaseExistsError`;
  `put_file` and `set_ingestion_status` on a missing one raise
  `KnowledgeBaseNotFoundError` (a KeyError);
- reads of what is not there answer None, `[]` or False, never raise;
- `get_checksum` is the domain's version: it changes whenever a file does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from botreg.knowledge.storage.models import IngestionStatus, KnowledgeBaseInfo, KnowledgeFile

__all__ = ["DEFAULT_CHUNK_SIZE", "KnowledgeResourceBackend", "VersionFromInfo"]

DEFAULT_CHUNK_SIZE = 64 * 1024  # bytes per chunk of `stream_file`


@runtime_checkable
class KnowledgeResourceBackend(Protocol):
    """Storage of knowledge bases and their raw files (the seed's protocol)."""

    async def initialize(self) -> None:
        """Open the backend (create folders, open the repository)."""
        ...

    async def close(self) -> None:
        """Release what `initialize` opened."""
        ...

    async def create_kb(
        self, domain_id: str, metadata: dict[str, Any] | None = None
    ) -> KnowledgeBaseInfo:
        """Create an empty knowledge base with custom metadata."""
        ...

    async def get_info(self, domain_id: str) -> KnowledgeBaseInfo | None:
        """What a knowledge base holds, or None if it does not exist."""
        ...

    async def list_kbs(self) -> list[KnowledgeBaseInfo]:
        """Every knowledge base, sorted by domain id."""
        ...

    async def delete_kb(self, domain_id: str) -> bool:
        """Delete a knowledge base and its files; False if it did not exist."""
        ...

    async def put_file(
        self,
        domain_id: str,
        path: str,
        content: bytes,
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> KnowledgeFile:
        """Create or replace a file."""
        ...

    async def get_file(self, domain_id: str, path: str) -> bytes | None:
        """A file's content, or None if it does not exist."""
        ...

    async def stream_file(
        self, domain_id: str, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes] | None:
        """A file's content in chunks of at most `chunk_size` bytes (None if absent).

        Memory stays bounded by the chunk size whatever the file's size.
        """
        ...

    async def list_files(self, domain_id: str, prefix: str | None = None) -> list[KnowledgeFile]:
        """The files of a knowledge base (those under `prefix` if given), sorted by path."""
        ...

    async def delete_file(self, domain_id: str, path: str) -> bool:
        """Delete a file; False if it did not exist."""
        ...

    async def get_checksum(self, domain_id: str) -> str:
        """The knowledge base's version ('' if it does not exist)."""
        ...

    async def has_changes_since(self, domain_id: str, since_checksum: str | None) -> bool:
        """True if the version differs from `since_checksum` (None: always True)."""
        ...

    async def get_ingestion_status(self, domain_id: str) -> IngestionStatus:
        """Where the knowledge base's ingestion stands (PENDING if never recorded)."""
        ...

    async def set_ingestion_status(
        self, domain_id: str, status: IngestionStatus, error: str | None = None
    ) -> None:
        """Record where the ingestion stands (with the error, for ERROR)."""
        ...


class VersionFromInfo:
    """`get_checksum` and `has_changes_since` from `get_info`'s version, shared by the
    backends (the version is what tells a change: a tree id, or a digest)."""

    async def get_info(self, domain_id: str) -> KnowledgeBaseInfo | None:  # pragma: no cover
        raise NotImplementedError

    async def get_checksum(self, domain_id: str) -> str:
        """The knowledge base's version ('' if absent)."""
        info = await self.get_info(domain_id)
        return info.version if info else ""

    async def has_changes_since(self, domain_id: str, since_checksum: str | None) -> bool:
        """True if the version is not `since_checksum` (None: always True)."""
        return since_checksum is None or await self.get_checksum(domain_id) != since_checksum
