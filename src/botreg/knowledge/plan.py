"""A changed file's new state: its chunks, each with a stable id and its full metadata.

Planning reads and chunks one file; nothing is written. Chunk ids are derived
from the domain, the file path and the chunk text (plus its occurrence, for a
text repeated within one file), so they are stable: an unchanged chunk keeps
its id, and `botreg.knowledge.stream` writes only what differs.

Planning applies the same bounds as validation (`snapshot.settings.limits`: file
size, decompressed size, ratio) plus the chunkers' bounds, and refuses a file
holding an inline credential: such a file fails alone with a `ContentError`
naming the limit or the credential's kind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botreg.knowledge.ledger import StoredChunk
from botreg.registry.content import ContentError
from botreg.registry.layout import knowledge_type
from botreg.registry.snapshot import Snapshot
from botreg.secrets import locate_token

if TYPE_CHECKING:  # the chunkers cost 0.1 s to import: only a changed file needs them
    from botreg.knowledge.chunkers import Chunk

__all__ = ["PlannedChunk", "chunk_id", "chunk_metadata", "plan_file"]


@dataclass(slots=True)
class PlannedChunk:
    """A chunk of the new state of a file, with its id and full metadata."""

    id: str
    chunk: Chunk
    metadata: dict[str, Any]

    @property
    def meta_hash(self) -> str:
        """The hash of the chunk's metadata, as the ledger records it."""
        return hashlib.sha256(json.dumps(self.metadata, sort_keys=True).encode()).hexdigest()

    def record(self, path: str) -> StoredChunk:
        """The ledger's record of this chunk of file `path`."""
        return StoredChunk(self.id, path, self.chunk.content_hash, self.meta_hash)


def chunk_id(domain: str, path: str, content_hash: str, occurrence: int) -> str:
    """The stable id of a chunk.

    Args:
        domain: The domain.
        path: The file's path in the registry.
        content_hash: The chunk text's hash.
        occurrence: 0 for the first chunk with this text in the file, 1 for the next...
    """
    key = f"{domain}\0{path}\0{content_hash}\0{occurrence}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def chunk_metadata(
    domain: str, path: str, blob: str, commit: str, chunk: Chunk, file_type: str
) -> dict[str, Any]:
    """The metadata stored with a chunk.

    Always the same keys: Chroma merges metadata on update, so a fixed key set is
    what makes each write replace the metadata whole.

    Args:
        domain: The domain.
        path: The file's path.
        blob: The file's git blob id.
        commit: The commit being ingested ("" if none).
        chunk: The chunk.
        file_type: The knowledge file's kind (`markdown`, `csv`...).
    """
    return {
        "domain": domain,
        "path": path,
        "commit": commit,
        "blob": blob,
        "heading": chunk.heading,
        "chunk_index": chunk.index,
        "content_hash": chunk.content_hash,
        "file_type": file_type,
        "front_matter": str(chunk.metadata.get("front_matter", "")),
        "title": str(chunk.metadata.get("title", "")),
    }


def plan_file(
    snapshot: Snapshot,
    domain: str,
    path: str,
    blob: str,
    *,
    commit: str = "",
    max_chunks: int | None = None,
) -> list[PlannedChunk]:
    """Read and chunk one file: its chunks, with ids and metadata, in order.

    Args:
        snapshot: The registry tree (its settings give the chunking and the limits).
        domain: The file's domain.
        path: The file's path.
        blob: Its git blob id.
        commit: The commit being ingested, recorded in each chunk's metadata.
        max_chunks: A file that needs more chunks fails (None: the chunkers'
            `MAX_CHUNKS_PER_FILE`).

    Raises:
        ContentError: if the file is over a limit or holds an inline credential.
        OSError: if the file cannot be read.
    """
    from botreg.knowledge.chunkers import chunk_file
    from botreg.knowledge.chunkers.base import MAX_CHUNKS_PER_FILE

    limits = snapshot.settings.limits
    size = snapshot.entries[path].size
    if size > limits.max_file_bytes:  # refused before it is read
        raise ContentError(
            "BR504",
            f"{size} bytes, over the limit of {limits.max_file_bytes} "
            "(limits.max_file_bytes); split the file",
        )
    raw = snapshot.source.read(path)
    ktype = knowledge_type(path)
    ftype = ktype.kind if ktype else "unknown"
    chunks = chunk_file(
        path,
        raw,
        snapshot.settings.chunking,
        limits,
        max_chunks=MAX_CHUNKS_PER_FILE if max_chunks is None else max_chunks,
    )
    # A credential in knowledge would be served to whoever can query: validation
    # reports it (BR303); `botreg ingest` runs without validation, so refuse it here
    # too. Checked on the joined texts: a key split over chunks is still one key.
    found = locate_token("\n".join(c.text for c in chunks), generic=False)
    if found is not None and found[0] != "password in URL":
        raise ContentError(
            "BR303",
            f"holds an inline credential ({found[0]}): not ingested; remove it from the "
            "file, then rotate the credential",
        )
    seen: dict[str, int] = {}
    planned = []
    for chunk in chunks:
        occurrence = seen.get(chunk.content_hash, 0)
        seen[chunk.content_hash] = occurrence + 1
        planned.append(
            PlannedChunk(
                chunk_id(domain, path, chunk.content_hash, occurrence),
                chunk,
                chunk_metadata(domain, path, blob, commit, chunk, ftype),
            )
        )
    return planned
