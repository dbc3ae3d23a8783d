"""A registry tree at a git revision, read from a repository's object database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botreg.registry.source import SUBMODULE_MODE, SYMLINK_MODE, SourceEntry

if TYPE_CHECKING:
    import git

__all__ = ["GitTreeSource"]


class GitTreeSource:
    """The files of one commit: a `RegistrySource` the validator and the ingester read.

    Blob ids come from the tree, so unchanged files are known without reading them.
    """

    fork_safe = False  # reads through GitPython's persistent `git cat-file` process

    def __init__(self, repo: git.Repo, commit: str, label: str = "") -> None:
        self.repo = repo
        self.commit = commit
        self._label = label or f"{commit[:12]}"
        self._entries: list[SourceEntry] | None = None
        self._blobs: dict[str, str] = {}

    @property
    def label(self) -> str:
        return self._label

    def entries(self) -> list[SourceEntry]:
        if self._entries is None:
            out = self.repo.git.ls_tree("-r", "-l", "-z", "--full-tree", self.commit)
            entries = []
            for record in out.split("\0"):
                if not record:
                    continue
                meta, path = record.split("\t", 1)
                mode, _kind, sha, size = meta.split()
                if mode == SUBMODULE_MODE:
                    # a submodule is a link to another repository: never read, like a symlink
                    entries.append(SourceEntry(path, 0, True, True))
                    continue
                self._blobs[path] = sha
                entries.append(
                    SourceEntry(path, int(size) if size != "-" else 0, mode == SYMLINK_MODE)
                )
            self._entries = sorted(entries, key=lambda e: e.path)
        return self._entries

    def read(self, path: str) -> bytes:
        if self._entries is None:
            self.entries()
        sha = self._blobs.get(path)
        if sha is None:
            raise FileNotFoundError(path)
        data: bytes = self.repo.odb.stream(bytes.fromhex(sha)).read()
        return data

    def blob_id(self, path: str) -> str:
        if self._entries is None:
            self.entries()
        try:
            return self._blobs[path]
        except KeyError:
            raise FileNotFoundError(path) from None
