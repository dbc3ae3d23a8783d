"""A registry's work tree whose unchanged files have their git blob ids unread.

`botreg ingest` ingests the work tree (what is on disk, committed or not). A
file's version is its git blob id; `WorkingTreeSource` computes it by reading
and hashing the file, so every run paid for every file. Git already knows the
answer for most of them: its index holds the blob id of each tracked file, and
`git ls-files --modified` names the files whose content on disk differs from
the index (git compares the stat data it recorded, and the content itself for
a file changed too recently to tell: git's "racy" check). One `git ls-files`
call thus gives the blob id of every tracked file that is unchanged on disk.

The rest is read and hashed once per run (then remembered): untracked files,
files modified since `git add`, files marked assume-unchanged or
skip-worktree (git does not look at those on disk), unmerged ones, and every
file of a folder that is not a git work tree.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess

from botreg.registry.source import SUBMODULE_MODE, SourceEntry, WorkingTreeSource, git_blob_id

__all__ = ["IndexedWorkingTree"]

# `git ls-files -v --stage`: a tag, the mode, the object id, the stage, then the path.
_RECORD = re.compile(r"(\S) ([0-7]{6}) ([0-9a-f]{40,64}) ([0-3])\t")
_REGULAR = frozenset({"100644", "100755"})


class IndexedWorkingTree(WorkingTreeSource):
    """`WorkingTreeSource` (same files, same contents) with blob ids from git's index.

    The listing takes one `git ls-files` call, as `WorkingTreeSource`'s does, that
    also gives the index's blob ids and the files modified on disk; each file is
    stat'ed once.

    Args:
        root: The registry folder.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(root)
        self._indexed: dict[str, str] | None = None  # path -> blob id git vouches for
        self._hashed: dict[str, str] = {}

    def entries(self) -> list[SourceEntry]:
        if self._entries is None:
            modes = self._git_paths()
            if modes is None:
                modes = dict.fromkeys(self._walk_paths(), "")
            root = os.fspath(self.root)
            result = []
            for rel, mode in modes.items():
                if mode == SUBMODULE_MODE:  # never read, whatever the work tree holds there
                    result.append(SourceEntry(rel, 0, True, True))
                    continue
                try:
                    st = os.lstat(os.path.join(root, rel))
                except FileNotFoundError:
                    continue  # tracked but deleted in the work tree
                result.append(SourceEntry(rel, st.st_size, stat.S_ISLNK(st.st_mode)))
            self._entries = sorted(result, key=lambda e: e.path)
        return self._entries

    def blob_id(self, path: str) -> str:
        """The git blob id of the file's content on disk (read only if git cannot tell)."""
        known = self.indexed().get(path) or self._hashed.get(path)
        if known is None:
            known = self._hashed[path] = git_blob_id(self.read(path))
        return known

    def indexed(self) -> dict[str, str]:
        """path -> blob id of every file whose id comes from git's index (unread)."""
        if self._indexed is None:
            self.entries()  # a registry at the top of a work tree: listed with the ids
        if self._indexed is None:  # a folder inside a work tree, or no git
            self._indexed = self._parse(self._ls_files(others=False) or b"")[1]
        return self._indexed

    def _git_paths(self) -> dict[str, str] | None:
        """path -> git mode ("" if untracked), or None outside git; notes the blob ids."""
        if not (self.root / ".git").exists():
            return None
        out = self._ls_files(others=True)
        if out is None:
            return None
        modes, self._indexed = self._parse(out)
        return modes

    def _ls_files(self, *, others: bool) -> bytes | None:
        # -v: a tag per record (lowercase: assume-unchanged); --modified: a second record,
        # tagged "C", for a tracked file whose content on disk is not the index's
        command = ["git", "ls-files", "-z", "-v", "--stage", "--cached", "--modified"]
        if others:
            command += ["--others", "--exclude-standard"]
        try:
            return subprocess.run(
                command, cwd=self.root, capture_output=True, check=True, timeout=60
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    @staticmethod
    def _parse(out: bytes) -> tuple[dict[str, str], dict[str, str]]:
        """(path -> mode, "" if untracked; path -> blob id for files unchanged on disk)."""
        modes: dict[str, str] = {}
        clean: dict[str, str] = {}
        doubtful: set[str] = set()
        for record in out.decode("utf-8", "surrogateescape").split("\0"):
            found = _RECORD.match(record)
            if found is None:
                if record.startswith("? "):
                    modes.setdefault(record[2:], "")
                continue
            tag, mode, oid, stage = found.groups()
            path = record[found.end() :]
            modes[path] = mode  # a conflict lists a path up to 3 times
            # "H": cached, and unchanged on disk unless a "C" record follows. Lowercase:
            # assume-unchanged; "S": skip-worktree; "M": unmerged; stage 1-3: a conflict.
            if tag == "H" and stage == "0" and mode in _REGULAR:
                clean[path] = oid
            else:
                doubtful.add(path)
        return modes, {path: oid for path, oid in clean.items() if path not in doubtful}
