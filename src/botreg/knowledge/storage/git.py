"""`GitKnowledgeBackend`: the knowledge storage API on the registry repository.

Knowledge bases are the domain folders `knowledge/<domain>/` of the registry
(README "The registry repository"); git replaces the seed's S3 bucket or
database: a file is a blob, an upload a commit.

Reads come from a tree, as `GitRegistryBackend`'s do:

- `GitKnowledgeBackend(data_dir=".botreg")`: the sync daemon's applied commit
  (read-only, from its mirror);
- `GitKnowledgeBackend(repo="clone", revision="HEAD")`: a revision (re-resolved
  at every call, so the backend's own commits are read back);
- `GitKnowledgeBackend(repo="clone", revision=None)`: the work tree as it is.

Writes need `repo=`: each `put_file`, `delete_file`, `create_kb` and `delete_kb`
is one validated commit (`ValidatedCommitter`), or all writes inside
`async with backend.batch(message=...)` are one. A write that would make the
registry invalid is refused with the findings and nothing is committed.

What git gives: `checksum` is the blob id, `uploaded_at` the date of the last
commit touching the file, `version` the domain folder's tree id, the metadata
of a knowledge base its `_domain.yaml` (so `create_kb` metadata must follow the
domain schema: `description`, `owner`, `include`, `exclude`, `metadata`).
A file's own `content_type` and `metadata` are not kept (a commit holds only
bytes): listings give the type by extension. Ingestion status is runtime state,
kept outside git (`botreg.knowledge.storage.status`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botreg.errors import BotregError, UsageError
from botreg.knowledge.storage import gitread
from botreg.knowledge.storage.errors import (
    KnowledgeBaseNotFoundError,
)
from botreg.knowledge.storage.gitcommit import ValidatedCommitter
from botreg.knowledge.storage.gitwrite import GitWrites
from botreg.knowledge.storage.models import IngestionStatus, KnowledgeBaseInfo, KnowledgeFile
from botreg.knowledge.storage.paths import check_domain, is_domain, registry_path
from botreg.knowledge.storage.protocol import DEFAULT_CHUNK_SIZE, VersionFromInfo
from botreg.knowledge.storage.status import StatusStore
from botreg.registry.layout import DOMAIN_FILE, KNOWLEDGE_DIR
from botreg.registry.snapshot import Snapshot
from botreg.registry.source import RegistrySource

if TYPE_CHECKING:
    import git


__all__ = ["GitKnowledgeBackend"]


class GitKnowledgeBackend(GitWrites, VersionFromInfo):
    """A `KnowledgeResourceBackend` over the registry repository (see the module docstring).

    Args:
        data_dir: The sync daemon's data dir: read its applied commit (read-only).
        repo: A clone of the registry (reads and writes).
        revision: The revision to read in `repo` (None: its work tree).
        push: Push each commit to `remote`.
        remote: The remote to push to.
        status_dir: Where `set_ingestion_status` keeps status (default: the data dir,
            else the clone's `.git/botreg/`).
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        repo: str | os.PathLike[str] | None = None,
        revision: str | None = "HEAD",
        push: bool = False,
        remote: str = "origin",
        status_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if (data_dir is None) == (repo is None):
            raise UsageError("GitKnowledgeBackend needs exactly one of data_dir= or repo=")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.repo_path = Path(repo) if repo is not None else None
        self.revision = revision
        self._status_dir = Path(status_dir) if status_dir is not None else None
        self._repo: git.Repo | None = None
        self._committer = (
            ValidatedCommitter(self.repo_path, self._open, push=push, remote=remote)
            if self.repo_path is not None
            else None
        )
        self._status: StatusStore | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def initialize(self) -> None:
        """Open the repository (or the daemon's mirror)."""
        await asyncio.to_thread(self._open)

    async def close(self) -> None:
        """Close the repository."""
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def _open(self) -> git.Repo:
        import git

        if self._repo is None:
            path = self.data_dir / "mirror.git" if self.data_dir else self.repo_path
            assert path is not None
            try:
                self._repo = git.Repo(path)
            except (git.InvalidGitRepositoryError, git.NoSuchPathError):
                what = "the sync daemon's mirror" if self.data_dir else "a git repository"
                raise BotregError(f"{path}: not {what}; check the path") from None
        return self._repo

    def _statuses(self) -> StatusStore:
        if self._status is None:
            ledger = self.data_dir / "ledger.sqlite" if self.data_dir else None
            folder = self._status_dir or self.data_dir
            if folder is None:
                folder = Path(self._open().git_dir) / "botreg"
            self._status = StatusStore(folder, ledger)
        return self._status

    # --- the tree read -----------------------------------------------------------------

    def commit(self) -> str:
        """The commit reads come from ('' for a work tree, or nothing applied yet)."""
        import git

        if self.data_dir is not None:
            from botreg.api.git_backend import applied_commit

            return applied_commit(self.data_dir)
        if self.revision is None:
            return ""
        try:
            return str(self._open().git.rev_parse("--verify", "-q", f"{self.revision}^{{commit}}"))
        except git.GitCommandError:
            raise BotregError(f"unknown revision {self.revision!r} in {self.repo_path}") from None

    def registry_source(self, commit: str | None = None) -> RegistrySource:
        """The registry tree reads come from (for the ingester: blobs read directly).

        Args:
            commit: Read this commit instead of the current one.
        """
        from botreg.git.tree import GitTreeSource
        from botreg.registry.source import WorkingTreeSource

        if self.data_dir is None and self.revision is None and commit is None:
            assert self.repo_path is not None
            return WorkingTreeSource(self.repo_path)
        commit = self.commit() if commit is None else commit
        if not commit:
            return gitread.EmptySource()
        return GitTreeSource(self._open(), commit, label=commit[:12])

    def _view(self) -> tuple[str, Snapshot]:
        commit = self.commit()
        return commit, Snapshot(self.registry_source(commit if commit else None))

    def _files(self, domain_id: str) -> list[KnowledgeFile]:
        commit, snap = self._view()
        entries = gitread.domain_entries(snap, check_domain(domain_id))
        folder = f"{KNOWLEDGE_DIR}/{domain_id}"
        head = commit or self._head()
        times = gitread.last_commits(self._open(), head, folder) if entries and head else {}
        out = []
        for rel, entry in sorted(entries.items()):
            path = f"{folder}/{rel}"
            mtime = None
            if self.repo_path is not None and not commit:
                mtime = os.lstat(self.repo_path / path).st_mtime
                if snap.source.blob_id(path) != _blob_at(self._open(), head, path):
                    times.pop(path, None)  # changed since the last commit: its mtime
            blob = snap.source.blob_id(path)
            out.append(gitread.knowledge_file(rel, entry, blob, times.get(path), mtime))
        return out

    def _head(self) -> str:
        if self.data_dir is not None:
            return ""
        try:
            return str(self._open().git.rev_parse("--verify", "-q", "HEAD^{commit}"))
        except Exception:
            return ""

    def _info(self, domain_id: str) -> KnowledgeBaseInfo | None:
        commit, snap = self._view()
        if not gitread.domain_exists(snap, check_domain(domain_id)):
            return None
        files = self._files(domain_id)
        settings = f"{KNOWLEDGE_DIR}/{domain_id}/{DOMAIN_FILE}"
        metadata: dict[str, Any] = {}
        if settings in snap.entries:
            doc = snap.document(settings)
            metadata = dict(doc.data) if doc.ok and isinstance(doc.data, dict) else {}
        head = commit or self._head()
        folder = f"{KNOWLEDGE_DIR}/{domain_id}"
        touched = gitread.last_commits(self._open(), head, folder) if head else {}
        times = [f.uploaded_at for f in files] + list(touched.values())
        record = self._statuses().get(domain_id)
        return KnowledgeBaseInfo(
            domain_id,
            len(files),
            sum(f.size_bytes for f in files),
            max(times, default=datetime.now(UTC)),
            gitread.domain_version(self._open() if commit else None, commit, snap, domain_id),
            record.status,
            record.error,
            record.collection,
            metadata,
        )

    # --- reading -----------------------------------------------------------------------

    async def get_info(self, domain_id: str) -> KnowledgeBaseInfo | None:
        """The knowledge base's info, or None."""
        return await asyncio.to_thread(self._info, domain_id)

    async def list_kbs(self) -> list[KnowledgeBaseInfo]:
        """Every valid domain of the tree, sorted."""
        _commit, snap = await asyncio.to_thread(self._view)
        names = sorted(d for d in snap.domains if is_domain(d))
        found = [await self.get_info(d) for d in names]
        return [i for i in found if i is not None]

    async def list_files(self, domain_id: str, prefix: str | None = None) -> list[KnowledgeFile]:
        """The files (under `prefix`), sorted by path."""
        files = await asyncio.to_thread(self._files, domain_id)
        return [f for f in files if prefix is None or f.path.startswith(prefix)]

    def _locate(self, domain_id: str, path: str) -> tuple[RegistrySource, str] | None:
        rel = registry_path(domain_id, path)
        _commit, snap = self._view()
        entry = snap.entries.get(rel)
        if entry is None or entry.is_symlink:
            return None  # absent, or a link: never followed
        return snap.source, rel

    async def get_file(self, domain_id: str, path: str) -> bytes | None:
        """A file's content, or None (a symbolic link is never read)."""

        def read() -> bytes | None:
            found = self._locate(domain_id, path)
            return None if found is None else found[0].read(found[1])

        return await asyncio.to_thread(read)

    async def stream_file(
        self, domain_id: str, path: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes] | None:
        """A file in chunks of at most `chunk_size` bytes, never held whole, or None."""
        found = await asyncio.to_thread(self._locate, domain_id, path)
        if found is None:
            return None
        source, rel = found
        if self.repo_path is not None and self.data_dir is None and self.revision is None:
            return gitread.stream_path(str(self.repo_path / rel), chunk_size)
        git_dir = str(self._open().git_dir)
        return gitread.stream_blob(git_dir, source.blob_id(rel), chunk_size)

    async def get_ingestion_status(self, domain_id: str) -> IngestionStatus:
        """The newer of the daemon's ledger and `set_ingestion_status` (PENDING if neither)."""
        check_domain(domain_id)
        return (await asyncio.to_thread(self._statuses().get, domain_id)).status

    async def set_ingestion_status(
        self, domain_id: str, status: IngestionStatus, error: str | None = None
    ) -> None:
        """Record the status beside the data (never committed; see `status`)."""
        if await self.get_info(domain_id) is None:
            raise KnowledgeBaseNotFoundError(f"knowledge base {domain_id!r} not found")
        await asyncio.to_thread(self._statuses().set, domain_id, IngestionStatus(status), error)


def _blob_at(repo: git.Repo, commit: str, path: str) -> str:
    import git

    try:
        return str(repo.git.rev_parse("--verify", "-q", f"{commit}:{path}"))
    except git.GitCommandError:
        return ""
