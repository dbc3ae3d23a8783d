"""Reading knowledge bases from a registry tree: files, times, versions, streams.

The read half of `GitKnowledgeBackend`: a `Snapshot` of the tree (at a commit or
of a work tree) answers which files a domain holds; git answers when each was
last committed and the domain folder's tree id; blobs stream from a dedicated
`git cat-file blob` process, one pipe-sized read at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botreg.knowledge.storage.models import KnowledgeFile, content_type_for, digest_version
from botreg.registry.layout import DOMAIN_FILE, KNOWLEDGE_DIR, FileKind
from botreg.registry.snapshot import Snapshot
from botreg.registry.source import SourceEntry

if TYPE_CHECKING:
    import git

__all__ = [
    "EmptySource",
    "domain_entries",
    "domain_exists",
    "domain_version",
    "knowledge_file",
    "last_commits",
    "stream_blob",
    "stream_path",
]


class EmptySource:
    """A tree with no file (the daemon has applied no commit yet)."""

    label = "(nothing applied yet)"

    def entries(self) -> list[SourceEntry]:
        """No file."""
        return []

    def read(self, path: str) -> bytes:
        """Nothing to read."""
        raise FileNotFoundError(path)

    def blob_id(self, path: str) -> str:
        """Nothing to identify."""
        raise FileNotFoundError(path)


def domain_entries(snap: Snapshot, domain_id: str) -> dict[str, SourceEntry]:
    """Domain-relative path -> entry of each regular knowledge file of a domain.

    Symbolic links and submodules are left out (never read or followed), as are
    `_domain.yaml`, hidden files and names with unsafe characters.
    """
    prefix = f"{KNOWLEDGE_DIR}/{domain_id}/"
    return {
        path[len(prefix) :]: entry
        for path, entry in snap.entries.items()
        if path.startswith(prefix)
        and snap.info[path].kind is FileKind.KNOWLEDGE
        and not entry.is_symlink
    }


def domain_exists(snap: Snapshot, domain_id: str) -> bool:
    """True if the tree holds anything under `knowledge/<domain>/`."""
    prefix = f"{KNOWLEDGE_DIR}/{domain_id}/"
    return any(path.startswith(prefix) for path in snap.entries)


def last_commits(repo: git.Repo, commit: str, folder: str) -> dict[str, datetime]:
    """Repository path -> commit date of the last commit at or before `commit` touching it.

    One `git log` over the folder: the first date seen for a path is its newest.
    """
    if not commit:
        return {}
    out = repo.git.log("--format=%x00%cI", "--name-only", "--no-renames", commit, "--", folder)
    times: dict[str, datetime] = {}
    for entry in out.split("\0")[1:]:
        stamp, *paths = entry.strip().splitlines()
        when = datetime.fromisoformat(stamp.strip()).astimezone(UTC)
        for path in filter(None, (p.strip() for p in paths)):
            times.setdefault(path, when)
    return times


def domain_version(repo: git.Repo | None, commit: str, snap: Snapshot, domain_id: str) -> str:
    """The domain folder's git tree id at `commit`; in a work tree a digest of its files."""
    folder = f"{KNOWLEDGE_DIR}/{domain_id}"
    if repo is not None and commit:
        return str(repo.git.rev_parse(f"{commit}:{folder}"))
    files = [
        KnowledgeFile(rel, "", entry.size, snap.source.blob_id(f"{folder}/{rel}"), _EPOCH)
        for rel, entry in domain_entries(snap, domain_id).items()
    ]
    settings = f"{folder}/{DOMAIN_FILE}"
    if settings in snap.entries:
        files.append(KnowledgeFile(DOMAIN_FILE, "", 0, snap.source.blob_id(settings), _EPOCH))
    return digest_version(files)


_EPOCH = datetime.fromtimestamp(0, UTC)


def knowledge_file(
    rel: str, entry: SourceEntry, blob: str, when: datetime | None, mtime: float | None = None
) -> KnowledgeFile:
    """The `KnowledgeFile` of a tree entry (never committed: its mtime, else now)."""
    if when is None:
        when = datetime.fromtimestamp(mtime, UTC) if mtime is not None else datetime.now(UTC)
    return KnowledgeFile(rel, content_type_for(rel), entry.size, blob, when, {})


async def stream_blob(git_dir: str, blob: str, chunk_size: int) -> AsyncIterator[bytes]:
    """A blob's bytes from its own `git cat-file blob` process, at most `chunk_size` a read.

    Memory stays bounded by the chunk size and the pipe: the blob is never held
    whole. Closing the iterator early ends the process.
    """
    # a plain Popen read from a worker thread, not asyncio's subprocess: on 3.11 its
    # child watcher races other code that waits for children (GitPython's) and
    # printed "Unknown child process pid N" about once in six streams
    process = subprocess.Popen(
        ["git", f"--git-dir={git_dir}", "cat-file", "blob", blob],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    size = max(1, chunk_size)
    try:
        while block := await asyncio.to_thread(process.stdout.read, size):
            yield block
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        process.stdout.close()
        await asyncio.to_thread(process.wait)


async def stream_path(path: str, chunk_size: int) -> AsyncIterator[bytes]:
    """A work-tree file's bytes, one read of at most `chunk_size` at a time (no link followed)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        while block := await asyncio.to_thread(handle.read, max(1, chunk_size)):
            yield block
