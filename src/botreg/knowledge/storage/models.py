"""The knowledge storage models (the seed's names): files, knowledge bases, status.

`IngestionStatus` is the ledger's own enum (one enum for the daemon, the API and
the storage backends). Checksums are git blob ids in every backend, so a file has
the same checksum in memory, on disk and in the registry repository.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from botreg.knowledge.ledger import IngestionStatus

__all__ = [
    "IngestionStatus",
    "KnowledgeBaseInfo",
    "KnowledgeFile",
    "content_type_for",
    "digest_version",
    "epoch",
]

# What each supported knowledge extension is served as; anything else: mimetypes.
_CONTENT_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".csv": "text/csv",
    ".txt": "text/plain",
}


def content_type_for(path: str) -> str:
    """The MIME type of a knowledge file, from its extension (`.gz`: application/gzip).

    Args:
        path: The file's path (only its name is looked at).

    Returns:
        A MIME type; `application/octet-stream` when the extension is unknown.
    """
    name = PurePosixPath(path).name.lower()
    if name.endswith(".gz"):
        return "application/gzip"
    suffix = PurePosixPath(name).suffix
    known = _CONTENT_TYPES.get(suffix)
    if known is not None:
        return known
    guessed, _encoding = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def epoch() -> datetime:
    """The time of a knowledge base with no file yet (1970-01-01 UTC)."""
    return datetime.fromtimestamp(0, UTC)


def digest_version(files: Iterable[KnowledgeFile]) -> str:
    """A version of a set of files: a digest of their paths and checksums.

    Args:
        files: The files (any order).

    Returns:
        A hex digest; equal for equal contents, whatever the upload times.
    """
    digest = hashlib.sha256()
    for path, checksum in sorted((f.path, f.checksum) for f in files):
        digest.update(f"{path}\0{checksum}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:40]


@dataclass
class KnowledgeFile:
    """One file of a knowledge base.

    Attributes:
        path: Relative path within the knowledge base (POSIX, no leading `/`).
        content_type: MIME type (from the extension unless given at upload).
        size_bytes: Size in bytes.
        checksum: The git blob id of the content (`git hash-object`): in the git
            backend the blob itself, elsewhere computed the same way.
        uploaded_at: When the file was last written (git: the date of the last
            commit that touched it).
        metadata: Custom metadata (not kept by the git backend: a commit carries
            only the file).
    """

    path: str
    content_type: str
    size_bytes: int
    checksum: str
    uploaded_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "path": self.path,
            "content_type": self.content_type,
            "size_bytes": self.size_bytes,
            "checksum": self.checksum,
            "uploaded_at": self.uploaded_at.isoformat(),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KnowledgeFile:
        """The inverse of `to_dict`.

        Args:
            data: A mapping as `to_dict` returns it.
        """
        return cls(
            str(data["path"]),
            str(data["content_type"]),
            int(data["size_bytes"]),
            str(data["checksum"]),
            datetime.fromisoformat(str(data["uploaded_at"])),
            dict(data.get("metadata") or {}),
        )


@dataclass
class KnowledgeBaseInfo:
    """What a knowledge base (a domain) holds and where its ingestion stands.

    Attributes:
        domain_id: The domain (a folder name: lowercase letters, digits, `_`, `-`).
        file_count: Number of files.
        total_size_bytes: Their total size.
        last_updated: When a file last changed (git: the last commit touching the domain).
        version: Changes whenever a file does (git: the domain folder's tree id;
            elsewhere a digest of the paths and checksums).
        ingestion_status: Where ingestion stands.
        ingestion_error: The error when the status is ERROR.
        vector_store_path: Where the vectors are, when known (the Chroma collection).
        metadata: Custom metadata (git: the domain's `_domain.yaml`).
    """

    domain_id: str
    file_count: int = 0
    total_size_bytes: int = 0
    last_updated: datetime = field(default_factory=epoch)
    version: str = ""
    ingestion_status: IngestionStatus = IngestionStatus.PENDING
    ingestion_error: str | None = None
    vector_store_path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "domain_id": self.domain_id,
            "file_count": self.file_count,
            "total_size_bytes": self.total_size_bytes,
            "last_updated": self.last_updated.isoformat(),
            "version": self.version,
            "ingestion_status": self.ingestion_status.value,
            "ingestion_error": self.ingestion_error,
            "vector_store_path": self.vector_store_path,
            "metadata": dict(self.metadata),
        }
