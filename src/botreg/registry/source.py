"""Where the files of a registry come from.

The validator reads a registry through `RegistrySource`, so the same checks run
on a working tree (the hook, `botreg validate`) and on a git revision (the sync
daemon, `botreg review`).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from botreg.errors import RepositoryError

__all__ = [
    "SUBMODULE_MODE",
    "SYMLINK_MODE",
    "RegistrySource",
    "SourceEntry",
    "WorkingTreeSource",
    "git_blob_id",
]


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob with this content (`git hash-object`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"  # a gitlink: a commit of another repository

# A tracked entry of `git ls-files --stage`: mode, object id, stage, then the path.
_STAGED = re.compile(r"([0-7]{6}) [0-9a-f]{40,64} [0-3]\t")


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """One file of a registry: repository-relative POSIX path and its size in bytes.

    A symbolic link or a submodule (gitlink) is never read or followed: both
    have `is_symlink`, a submodule also `is_submodule` (for the message).
    """

    path: str
    size: int
    is_symlink: bool = False
    is_submodule: bool = False


class RegistrySource(Protocol):
    """A read-only view of the files of one registry tree."""

    @property
    def label(self) -> str:
        """A name for messages (a folder, or `repo@revision`)."""
        ...

    def entries(self) -> list[SourceEntry]:
        """Every file of the tree, sorted by path (symbolic links included, not followed)."""
        ...

    def read(self, path: str) -> bytes:
        """The bytes of a regular file. Raises OSError if it cannot be read."""
        ...

    def blob_id(self, path: str) -> str:
        """The git blob id of a file's content (what identifies a version of it)."""
        ...


class WorkingTreeSource:
    """The files of a folder on disk.

    In a git work tree the file list is what git would commit (tracked files and
    untracked ones that are not ignored), so a local `.venv/` or data dir is not
    mistaken for registry content. Elsewhere every file below the folder counts,
    hidden folders excepted.

    With `staged=True` the file list is git's index only (what the next commit
    holds: untracked files left out, staged deletions gone). Contents are read
    from disk: under pre-commit, which stashes unstaged changes, they are the
    staged contents.
    """

    fork_safe = True  # reads files by path: worker processes can share it

    def __init__(self, root: str | os.PathLike[str], *, staged: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise RepositoryError(f"{self.root}: not a directory; pass --repo DIR of a registry")
        self.staged = staged
        self._entries: list[SourceEntry] | None = None

    @property
    def label(self) -> str:
        return str(self.root)

    def entries(self) -> list[SourceEntry]:
        if self._entries is None:
            modes = self._git_paths()
            if modes is None:
                modes = dict.fromkeys(self._walk_paths(), "")
            result = []
            for rel, mode in modes.items():
                if mode == SUBMODULE_MODE:
                    # whatever the work tree holds there (nothing, an empty folder, a
                    # checkout): the same entry as GitTreeSource gives the daemon
                    result.append(SourceEntry(rel, 0, True, True))
                    continue
                try:
                    st = os.lstat(self.root / rel)
                except FileNotFoundError:
                    continue  # tracked but deleted in the work tree
                is_link = os.path.islink(self.root / rel) or (
                    self.staged and mode == SYMLINK_MODE  # what the commit will hold
                )
                result.append(SourceEntry(rel, st.st_size, is_link))
            self._entries = sorted(result, key=lambda e: e.path)
        return self._entries

    def read(self, path: str) -> bytes:
        # O_NOFOLLOW: a file swapped for a symlink after it was listed is refused
        # (ELOOP), never followed out of the registry
        fd = os.open(self.root / path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def blob_id(self, path: str) -> str:
        return git_blob_id(self.read(path))

    def _git_paths(self) -> dict[str, str] | None:
        """path -> git mode of every listed file ("" if untracked), or None outside git.

        One git call: `--stage` gives tracked entries with their mode (a
        submodule is a gitlink, 160000, whatever the work tree has there);
        untracked files (`--others`) come without one.
        """
        # staged: the registry may be a sub-folder of the work tree; git finds its top
        if not self.staged and not (self.root / ".git").exists():
            return None
        command = ["git", "ls-files", "-z", "--stage"]
        if not self.staged:
            command += ["--others", "--exclude-standard"]
        # A plain subprocess: importing GitPython would cost the hook ~60 ms of start-up.
        try:
            out = subprocess.run(
                command,
                cwd=self.root,
                capture_output=True,
                check=True,
                timeout=60,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            if self.staged:
                raise RepositoryError(f"{self.root}: cannot list git's index here") from None
            return None
        modes: dict[str, str] = {}
        for record in out.decode("utf-8", "surrogateescape").split("\0"):
            staged = _STAGED.match(record)
            if staged is not None:
                modes[record[staged.end() :]] = staged.group(1)  # a conflict lists it 3 times
            elif record:
                modes.setdefault(record, "")
        return modes

    def _walk_paths(self) -> list[str]:
        paths: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            # Symlinked folders appear in dirnames; report them as entries, never descend.
            keep = []
            for d in dirnames:
                if d.startswith("."):
                    continue
                if os.path.islink(os.path.join(dirpath, d)):
                    filenames.append(d)
                else:
                    keep.append(d)
            dirnames[:] = keep
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                paths.append(rel.replace(os.sep, "/"))
        return paths
