"""`InMemoryKnowledgeBackend`: knowledge bases in a dict, for tests and development."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botreg.knowledge.storage.errors import KnowledgeBaseExistsError, KnowledgeBaseNotFoundError
from botreg.knowledge.storage.models import (
    IngestionStatus,
    KnowledgeBaseInfo,
    KnowledgeFile,
    content_type_for,
    digest_version,
)
from botreg.knowledge.storage.paths import check_domain, check_path
from botreg.knowledge.storage.protocol import DEFAULT_CHUNK_SIZE, VersionFromInfo
from botreg.registry.source import git_blob_id

__all__ = ["InMemoryKnowledgeBackend", "chunks_of"]


async def chunks_of(data: bytes, chunk_size: int) -> AsyncIterator[bytes]:
    """`data` in slices of at most `chunk_size` bytes.

    Args:
        data: The bytes.
        chunk_size: The largest slice (at least 1).
    """
    view = memoryview(data)
    for start in range(0, len(data), max(1, chunk_size)):
        yield bytes(view[start : start + chunk_size])
        await asyncio.sleep(0)


@dataclass
class _Base:
    metadata: dict[str, Any]
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    files: dict[str, tuple[bytes, KnowledgeFile]] = field(default_factory=dict)
    status: IngestionStatus = IngestionStatus.PENDING
    error: str | None = None


class InMemoryKnowledgeBackend(VersionFromInfo):
    """A `KnowledgeResourceBackend` in memory: nothing persists (the seed's test backend).

    Files and metadata handed out are copies: changing them changes nothing stored.
    """

    def __init__(self) -> None:
        self._bases: dict[str, _Base] = {}

    async def initialize(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to release (the contents stay until the object goes)."""

    def _base(self, domain_id: str) -> _Base:
        base = self._bases.get(check_domain(domain_id))
        if base is None:
            raise KnowledgeBaseNotFoundError(
                f"knowledge base {domain_id!r} not found: create it with create_kb() first"
            )
        return base

    def _info(self, domain_id: str, base: _Base) -> KnowledgeBaseInfo:
        files = [f for _data, f in base.files.values()]
        return KnowledgeBaseInfo(
            domain_id,
            len(files),
            sum(f.size_bytes for f in files),
            max((f.uploaded_at for f in files), default=base.created),
            digest_version(files),
            base.status,
            base.error,
            None,
            copy.deepcopy(base.metadata),
        )

    async def create_kb(
        self, domain_id: str, metadata: dict[str, Any] | None = None
    ) -> KnowledgeBaseInfo:
        """Create an empty knowledge base (see `KnowledgeResourceBackend`)."""
        if check_domain(domain_id) in self._bases:
            raise KnowledgeBaseExistsError(f"knowledge base {domain_id!r} exists already")
        base = self._bases[domain_id] = _Base(copy.deepcopy(metadata or {}))
        return self._info(domain_id, base)

    async def get_info(self, domain_id: str) -> KnowledgeBaseInfo | None:
        """The knowledge base's info, or None."""
        base = self._bases.get(check_domain(domain_id))
        return None if base is None else self._info(domain_id, base)

    async def list_kbs(self) -> list[KnowledgeBaseInfo]:
        """Every knowledge base, sorted."""
        return [self._info(d, self._bases[d]) for d in sorted(self._bases)]

    async def delete_kb(self, domain_id: str) -> bool:
        """Delete a knowledge base; False if absent."""
        return self._bases.pop(check_domain(domain_id), None) is not None

    async def put_file(
        self,
        domain_id: str,
        path: str,
        content: bytes,
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> KnowledgeFile:
        """Create or replace a file."""
        base = self._base(domain_id)
        data = bytes(content)
        info = KnowledgeFile(
            check_path(path),
            content_type or content_type_for(path),
            len(data),
            git_blob_id(data),
            datetime.now(UTC),
            copy.deepcopy(metadata or {}),
        )
        base.files[path] = (data, info)
        return copy.deepcopy(info)

    async def get_file(self, domain_id: str, path: str) -> bytes | None:
        """A file's content, or None."""
        base = self._bases.get(check_domain(domain_id))
        found = base.files.get(check_path(path)) if base else None
        return None if found is None else found[0]

    async def stream_file(
        self, domain_id: str, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes] | None:
        """A file's content in chunks, or None."""
        data = await self.get_file(domain_id, path)
        return None if data is None else chunks_of(data, chunk_size)

    async def list_files(self, domain_id: str, prefix: str | None = None) -> list[KnowledgeFile]:
        """The files (under `prefix`), sorted by path."""
        base = self._bases.get(check_domain(domain_id))
        if base is None:
            return []
        return [
            copy.deepcopy(info)
            for path, (_data, info) in sorted(base.files.items())
            if prefix is None or path.startswith(prefix)
        ]

    async def delete_file(self, domain_id: str, path: str) -> bool:
        """Delete a file; False if absent."""
        base = self._bases.get(check_domain(domain_id))
        return base is not None and base.files.pop(check_path(path), None) is not None

    async def get_ingestion_status(self, domain_id: str) -> IngestionStatus:
        """The recorded status (PENDING if the base is absent)."""
        base = self._bases.get(check_domain(domain_id))
        return base.status if base else IngestionStatus.PENDING

    async def set_ingestion_status(
        self, domain_id: str, status: IngestionStatus, error: str | None = None
    ) -> None:
        """Record the status."""
        base = self._base(domain_id)
        base.status = IngestionStatus(status)
        base.error = error if base.status is IngestionStatus.ERROR else None
