"""`FileKnowledgeBackend`: knowledge bases in a local folder (the seed's layout).

    <path>/<domain>/_metadata.json   the base's metadata, status and per-file records
    <path>/<domain>/<file path>      the files

Nothing leaves the root: domain ids and paths are checked (`paths`), no symbolic
link is ever followed (every component is `lstat`-ed, files are opened with
`O_NOFOLLOW` and replaced atomically), and listings skip links. A file edited in
place on disk is noticed: its checksum is recomputed when its size or mtime moves.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import tempfile
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botreg.knowledge.storage.errors import (
    KnowledgeBaseExistsError,
    KnowledgeBaseNotFoundError,
    KnowledgePathError,
)
from botreg.knowledge.storage.models import (
    IngestionStatus,
    KnowledgeBaseInfo,
    KnowledgeFile,
    content_type_for,
    digest_version,
)
from botreg.knowledge.storage.paths import check_domain, check_path, is_domain
from botreg.knowledge.storage.protocol import DEFAULT_CHUNK_SIZE, VersionFromInfo
from botreg.registry.source import git_blob_id

__all__ = ["METADATA_FILE", "FileKnowledgeBackend"]

METADATA_FILE = "_metadata.json"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class FileKnowledgeBackend(VersionFromInfo):
    """A `KnowledgeResourceBackend` in a folder (see the module docstring).

    Args:
        path: The root folder (created by `initialize`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        self._lock = threading.Lock()

    async def initialize(self) -> None:
        """Create the root folder."""
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        self.root = self.root.resolve()

    async def close(self) -> None:
        """Nothing to release."""

    # --- confinement -------------------------------------------------------------------

    def _safe(self, *parts: str) -> Path:
        """root/parts, refusing any existing component that is a symbolic link."""
        current = self.root
        for part in "/".join(parts).split("/"):
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                break
            if stat.S_ISLNK(mode):
                raise KnowledgePathError(
                    f"{current.relative_to(self.root)} is a symbolic link: the file backend "
                    "never follows links; replace it with a regular file or folder"
                )
        return self.root.joinpath(*parts)

    def _domain_dir(self, domain_id: str) -> Path:
        return self._safe(check_domain(domain_id))

    def _read_meta(self, domain_id: str) -> dict[str, Any] | None:
        folder = self._domain_dir(domain_id)
        try:
            fd = os.open(self._safe(domain_id, METADATA_FILE), os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            return {"metadata": {}, "files": {}} if folder.is_dir() else None
        with os.fdopen(fd, "rb") as handle:
            try:
                data = json.loads(handle.read())
            except ValueError:
                data = None
        return data if isinstance(data, dict) else {"metadata": {}, "files": {}}

    def _write_atomic(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, target)  # replaces a link itself, never writes through it
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _write_meta(self, domain_id: str, meta: dict[str, Any]) -> None:
        text = json.dumps(meta, indent=2, sort_keys=True).encode()
        self._write_atomic(self._safe(domain_id, METADATA_FILE), text)

    # --- reading -----------------------------------------------------------------------

    def _scan(self, domain_id: str, meta: dict[str, Any]) -> list[KnowledgeFile]:
        """Every regular file of the domain (links skipped), checksums refreshed."""
        folder = self._domain_dir(domain_id)
        records: dict[str, Any] = meta.setdefault("files", {})
        found: list[KnowledgeFile] = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                full = Path(dirpath) / name
                rel = full.relative_to(folder).as_posix()
                if rel == METADATA_FILE or name.startswith("."):
                    continue
                st = os.lstat(full)
                if not stat.S_ISREG(st.st_mode):
                    continue  # a link or a special file: never read
                record = records.get(rel) or {}
                if record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
                    record = {**record, "checksum": git_blob_id(self._read(domain_id, rel))}
                    record.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
                    records[rel] = record
                found.append(
                    KnowledgeFile(
                        rel,
                        str(record.get("content_type") or content_type_for(rel)),
                        st.st_size,
                        str(record["checksum"]),
                        datetime.fromtimestamp(st.st_mtime, UTC),
                        dict(record.get("metadata") or {}),
                    )
                )
        return sorted(found, key=lambda f: f.path)

    def _read(self, domain_id: str, path: str) -> bytes:
        fd = os.open(self._safe(domain_id, path), os.O_RDONLY | _NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def _info(self, domain_id: str) -> KnowledgeBaseInfo | None:
        with self._lock:
            meta = self._read_meta(domain_id)
            if meta is None:
                return None
            files = self._scan(domain_id, meta)
        created = meta.get("created_at")
        start = datetime.fromisoformat(created) if isinstance(created, str) else None
        times = [f.uploaded_at for f in files] + ([start] if start else [])
        status = IngestionStatus(meta.get("ingestion_status", IngestionStatus.PENDING))
        return KnowledgeBaseInfo(
            domain_id,
            len(files),
            sum(f.size_bytes for f in files),
            max(times, default=datetime.now(UTC)),
            digest_version(files),
            status,
            meta.get("ingestion_error"),
            None,
            dict(meta.get("metadata") or {}),
        )

    async def get_info(self, domain_id: str) -> KnowledgeBaseInfo | None:
        """The knowledge base's info, or None."""
        return await asyncio.to_thread(self._info, domain_id)

    async def list_kbs(self) -> list[KnowledgeBaseInfo]:
        """Every knowledge base (folders named as domains; links skipped), sorted."""

        def names() -> list[str]:
            return sorted(
                e.name
                for e in os.scandir(self.root)
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
            )

        found = [await self.get_info(n) for n in await asyncio.to_thread(names) if is_domain(n)]
        return [i for i in found if i is not None]

    async def get_file(self, domain_id: str, path: str) -> bytes | None:
        """A file's content, or None."""
        check_domain(domain_id)
        check_path(path)
        try:
            return await asyncio.to_thread(self._read, domain_id, path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    async def stream_file(
        self, domain_id: str, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes] | None:
        """A file's content in chunks read one at a time, or None."""
        check_domain(domain_id)
        check_path(path)
        try:
            fd = os.open(self._safe(domain_id, path), os.O_RDONLY | _NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        handle = os.fdopen(fd, "rb")

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while block := await asyncio.to_thread(handle.read, max(1, chunk_size)):
                    yield block
            finally:
                handle.close()

        return chunks()

    async def list_files(self, domain_id: str, prefix: str | None = None) -> list[KnowledgeFile]:
        """The files (under `prefix`), sorted by path."""

        def run() -> list[KnowledgeFile]:
            with self._lock:
                meta = self._read_meta(domain_id)
                return [] if meta is None else self._scan(domain_id, meta)

        files = await asyncio.to_thread(run)
        return [f for f in files if prefix is None or f.path.startswith(prefix)]

    async def get_ingestion_status(self, domain_id: str) -> IngestionStatus:
        """The recorded status (PENDING if absent)."""
        info = await self.get_info(domain_id)
        return info.ingestion_status if info else IngestionStatus.PENDING

    # --- writing -----------------------------------------------------------------------

    def _update(self, domain_id: str, change: Any, *, create: bool = False) -> Any:
        with self._lock:
            meta = self._read_meta(domain_id)
            if create:
                if meta is not None:
                    raise KnowledgeBaseExistsError(f"knowledge base {domain_id!r} exists already")
                meta = {"metadata": {}, "files": {}}
            elif meta is None:
                raise KnowledgeBaseNotFoundError(
                    f"knowledge base {domain_id!r} not found under {self.root}: create_kb() first"
                )
            result = change(meta)
            self._write_meta(domain_id, meta)
            return result

    async def create_kb(
        self, domain_id: str, metadata: dict[str, Any] | None = None
    ) -> KnowledgeBaseInfo:
        """Create an empty knowledge base with `_metadata.json`."""

        def change(meta: dict[str, Any]) -> None:
            meta.update(metadata=dict(metadata or {}), created_at=datetime.now(UTC).isoformat())

        check_domain(domain_id)
        await asyncio.to_thread(self._update, domain_id, change, create=True)
        info = await self.get_info(domain_id)
        assert info is not None
        return info

    async def put_file(
        self,
        domain_id: str,
        path: str,
        content: bytes,
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> KnowledgeFile:
        """Create or replace a file (written atomically)."""
        check_domain(domain_id)
        check_path(path)
        data = bytes(content)

        def change(meta: dict[str, Any]) -> KnowledgeFile:
            target = self._safe(domain_id, path)
            self._write_atomic(target, data)
            self._safe(domain_id, path)  # a link raced into the path: refused before recording
            st = os.lstat(target)
            kind, blob = content_type or content_type_for(path), git_blob_id(data)
            meta.setdefault("files", {})[path] = {
                "checksum": blob,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "content_type": kind,
                "metadata": dict(metadata or {}),
            }
            when = datetime.fromtimestamp(st.st_mtime, UTC)
            return KnowledgeFile(path, kind, len(data), blob, when, dict(metadata or {}))

        result: KnowledgeFile = await asyncio.to_thread(self._update, domain_id, change)
        return result

    async def delete_file(self, domain_id: str, path: str) -> bool:
        """Delete a file; False if absent."""
        check_domain(domain_id)
        check_path(path)

        def change(meta: dict[str, Any]) -> bool:
            meta.get("files", {}).pop(path, None)
            target = self._safe(domain_id, path)
            if not target.is_file() or target.is_symlink():
                return False
            target.unlink()
            return True

        if await asyncio.to_thread(self._read_meta, domain_id) is None:
            return False
        return bool(await asyncio.to_thread(self._update, domain_id, change))

    async def delete_kb(self, domain_id: str) -> bool:
        """Delete a knowledge base folder (links inside are removed, never followed)."""
        import shutil

        folder = self._domain_dir(domain_id)
        if not folder.is_dir():
            return False
        await asyncio.to_thread(shutil.rmtree, folder)
        return True

    async def set_ingestion_status(
        self, domain_id: str, status: IngestionStatus, error: str | None = None
    ) -> None:
        """Record the status in `_metadata.json`."""
        value = IngestionStatus(status)

        def change(meta: dict[str, Any]) -> None:
            meta["ingestion_status"] = value.value
            meta["ingestion_error"] = error if value is IngestionStatus.ERROR else None

        check_domain(domain_id)
        await asyncio.to_thread(self._update, domain_id, change)
