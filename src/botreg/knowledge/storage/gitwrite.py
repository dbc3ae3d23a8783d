"""The write half of `GitKnowledgeBackend`: every write a validated commit.

Writes need a clone (`repo=`). Each `create_kb`, `put_file`, `delete_file` and
`delete_kb` is one commit made by `ValidatedCommitter`, or every write inside
`async with backend.batch(message=...)` is one. A write that would make the
registry invalid is refused with the findings (`KnowledgeValidationError`) and
the work tree is put back: nothing is committed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botreg.errors import BotregError
from botreg.knowledge.storage.errors import (
    KnowledgeBaseExistsError,
    KnowledgeBaseNotFoundError,
    KnowledgePathError,
)
from botreg.knowledge.storage.gitcommit import Change, ValidatedCommitter
from botreg.knowledge.storage.models import KnowledgeBaseInfo, KnowledgeFile
from botreg.knowledge.storage.paths import check_domain, registry_path
from botreg.knowledge.storage.status import StatusStore
from botreg.registry.layout import DOMAIN_FILE, KNOWLEDGE_DIR
from botreg.registry.source import git_blob_id

if TYPE_CHECKING:
    from botreg.validation.findings import Finding

__all__ = ["GitWrites"]

_HEADER = "# yaml-language-server: $schema=https://botreg.dev/schemas/v1/domain.schema.json\n"


@dataclass
class _Batch:
    owner: asyncio.Task[Any] | None
    baseline: list[Finding]
    before: dict[str, bytes | None] = field(default_factory=dict)


class GitWrites:
    """The writes of `GitKnowledgeBackend` (a mixin: reads live in the backend)."""

    _committer: ValidatedCommitter | None = None
    _write_lock: asyncio.Lock | None = None
    _batch: _Batch | None = None

    async def get_info(self, domain_id: str) -> KnowledgeBaseInfo | None:
        """Provided by the backend."""
        raise NotImplementedError

    def _statuses(self) -> StatusStore:
        raise NotImplementedError

    def _writer(self) -> ValidatedCommitter:
        if self._committer is None:
            raise BotregError(
                "writes need a clone: GitKnowledgeBackend(repo=...) (the daemon's mirror is "
                "read-only; commit to the registry's source instead)"
            )
        return self._committer

    def _work_exists(self, domain_id: str) -> bool:
        folder = self._writer().root / KNOWLEDGE_DIR / domain_id
        return folder.is_dir() and not folder.is_symlink() and any(folder.iterdir())

    async def _commit(self, changes: Change, message: str, what: str) -> str:
        writer = self._writer()
        batch = self._batch
        if batch is not None and batch.owner is asyncio.current_task():
            for rel, before in (await asyncio.to_thread(writer.write, changes)).items():
                batch.before.setdefault(rel, before)
            return ""
        async with self._lock():

            def run() -> str:
                with writer.lock:
                    baseline = writer.errors()
                    return writer.commit(writer.write(changes), baseline, message, what)

            return await asyncio.to_thread(run)

    def _lock(self) -> asyncio.Lock:
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    @asynccontextmanager
    async def batch(self, message: str = "Update knowledge") -> AsyncIterator[None]:
        """Make every write inside the block one validated commit.

        On an exception inside the block, or if the result does not validate,
        every file is put back and nothing is committed.

        Args:
            message: The commit message.
        """
        writer = self._writer()
        async with self._lock():
            baseline = await asyncio.to_thread(writer.errors)
            batch = self._batch = _Batch(asyncio.current_task(), baseline)
            try:
                yield
            except BaseException:
                await asyncio.to_thread(writer.restore, batch.before)
                raise
            finally:
                self._batch = None
            await asyncio.to_thread(writer.commit, batch.before, baseline, message, "batch")

    async def create_kb(
        self, domain_id: str, metadata: dict[str, Any] | None = None
    ) -> KnowledgeBaseInfo:
        """Commit `knowledge/<domain>/_domain.yaml` holding `metadata` (the domain schema)."""
        from botreg.registry.yamlio import dump_roundtrip, load_roundtrip

        check_domain(domain_id)
        if await asyncio.to_thread(self._work_exists, domain_id):
            raise KnowledgeBaseExistsError(f"knowledge base {domain_id!r} exists already")
        doc = load_roundtrip(_HEADER + "{}\n")
        doc.fa.set_block_style()
        doc.update(metadata or {})
        text = dump_roundtrip(doc) if metadata else _HEADER + "{}\n"
        rel = f"{KNOWLEDGE_DIR}/{domain_id}/{DOMAIN_FILE}"
        await self._commit({rel: text.encode()}, f"Create knowledge base {domain_id}", "create_kb")
        return await self._written_info(domain_id)

    async def _written_info(self, domain_id: str) -> KnowledgeBaseInfo:
        info = await self.get_info(domain_id)
        return info if info is not None else KnowledgeBaseInfo(domain_id)

    async def put_file(
        self,
        domain_id: str,
        path: str,
        content: bytes,
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> KnowledgeFile:
        """Commit a file (`content_type` and `metadata` are not kept: see the module)."""
        from botreg.knowledge.storage.models import content_type_for

        rel = registry_path(domain_id, path)
        if not await asyncio.to_thread(self._work_exists, domain_id):
            raise KnowledgeBaseNotFoundError(
                f"knowledge base {domain_id!r} not found: create it with create_kb() first"
            )
        data = bytes(content)
        await self._commit({rel: data}, f"Put {rel}", f"put_file {rel}")
        kind = content_type or content_type_for(path)
        return KnowledgeFile(path, kind, len(data), git_blob_id(data), datetime.now(UTC), {})

    async def delete_file(self, domain_id: str, path: str) -> bool:
        """Commit the removal of a file; False if absent."""
        rel = registry_path(domain_id, path)
        target = self._writer().root / rel
        if not (target.is_file() or target.is_symlink()):
            return False
        await self._commit({rel: None}, f"Delete {rel}", f"delete_file {rel}")
        return True

    async def delete_kb(self, domain_id: str) -> bool:
        """Commit the removal of the whole domain folder; False if absent."""
        folder = self._writer().root / KNOWLEDGE_DIR / check_domain(domain_id)
        if folder.is_symlink():
            raise KnowledgePathError(f"{folder} is a symbolic link: remove it by hand")
        if not folder.is_dir():
            return False
        root = self._writer().root
        paths: dict[str, bytes | None] = {}
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            for name in filenames + [d for d in dirnames if os.path.islink(Path(dirpath, d))]:
                paths[(Path(dirpath) / name).relative_to(root).as_posix()] = None
        if not paths:
            return False
        await self._commit(paths, f"Delete knowledge base {domain_id}", f"delete_kb {domain_id}")
        await asyncio.to_thread(self._statuses().forget, domain_id)
        return True
