"""Validated commits of work-tree changes: GitOps writes for knowledge storage.

The mechanism of `GitRegistryBackend`'s writes (`botreg.api.git_backend`), for any
set of paths: change the files in the clone's work tree, validate the registry as
the pre-commit hook would, and either commit exactly those paths (`git commit
--only`, other staged work untouched) and optionally push, or put every file back
as it was and raise with the findings. A write is refused only for errors it
introduces: the registry is validated before and after, so an unrelated problem
already in the clone does not block knowledge uploads (the hook reports it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botreg.knowledge.storage.errors import KnowledgePathError, KnowledgeValidationError

if TYPE_CHECKING:
    import git

    from botreg.validation.findings import Finding

__all__ = ["ValidatedCommitter"]

Change = Mapping[str, bytes | None]  # repository path -> new content (None: delete)


def _key(finding: Finding) -> tuple[str, str, str]:
    return (finding.path, finding.code, finding.message)


class ValidatedCommitter:
    """Commits changes to a clone's work tree once the registry validates.

    Args:
        root: The work tree.
        repo: Opens the repository (called under the lock).
        push: Push HEAD to `remote` after each commit.
        remote: The remote to push to.
    """

    def __init__(
        self,
        root: Path,
        repo: Callable[[], git.Repo],
        *,
        push: bool = False,
        remote: str = "origin",
    ) -> None:
        self.root = root
        self._repo = repo
        self.push = push
        self.remote = remote
        self.lock = threading.RLock()  # one writer at a time within this process
        self._cache: dict[Any, Any] = {}  # validation results by path and blob: incremental

    def errors(self) -> list[Finding]:
        """The validation errors of the work tree as it is now."""
        from botreg.registry.source import WorkingTreeSource
        from botreg.validation.runner import validate_registry

        report = validate_registry(WorkingTreeSource(self.root), cache=self._cache)
        return [f for f in report.findings if str(f.severity) == "error"]

    def write(self, changes: Change) -> dict[str, bytes | None]:
        """Apply `changes` to the work tree; return what each path held before."""
        before: dict[str, bytes | None] = {}
        for rel in changes:
            self._no_links(rel)
        for rel, data in changes.items():
            path = self.root / rel
            before.setdefault(rel, path.read_bytes() if path.is_file() else None)
            if data is None:
                path.unlink(missing_ok=True)
                _prune_empty(path.parent, self.root)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        return before

    def _no_links(self, rel: str) -> None:
        """Refuse a path with a symbolic link on the way: a write never leaves the clone."""
        current = self.root
        for part in rel.split("/")[:-1]:
            current = current / part
            if current.is_symlink():
                raise KnowledgePathError(
                    f"{current.relative_to(self.root)} is a symbolic link: knowledge is never "
                    "written through a link; replace it with a folder"
                )

    def restore(self, before: Mapping[str, bytes | None]) -> None:
        """Put every path back as `write` found it."""
        for rel, data in before.items():
            path = self.root / rel
            if data is None:
                path.unlink(missing_ok=True)
                _prune_empty(path.parent, self.root)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)

    def commit(
        self,
        before: Mapping[str, bytes | None],
        baseline: list[Finding],
        message: str,
        what: str,
    ) -> str:
        """Validate the changed work tree; commit the paths of `before`, or restore them.

        Args:
            before: What `write` returned (the paths to commit and their old bytes).
            baseline: `errors()` before the change.
            message: The commit message.
            what: The operation, for the refusal's message.

        Returns:
            The commit now at HEAD (unchanged when nothing differed from it).

        Raises:
            KnowledgeValidationError: with the errors the change introduced; the work
                tree is restored and nothing is committed.
        """
        known = {_key(f) for f in baseline}
        introduced = [f for f in self.errors() if _key(f) not in known]
        if introduced:
            self.restore(before)
            raise KnowledgeValidationError(what, introduced)
        repo = self._repo()
        paths = sorted(before)
        try:
            status = repo.git.status("--porcelain", "-z", "--untracked-files=all", "--", *paths)
            # only paths that differ from HEAD: a file put then deleted in one batch is
            # unknown to git, and `commit --only` refuses a pathspec git does not know
            listed = {record[3:] for record in status.split("\0") if len(record) > 3}
            changed = [p for p in paths if p in listed]
            if not changed:
                return str(repo.head.commit.hexsha)
            repo.git.add("-A", "--", *changed)
            repo.git.commit("--only", "-q", "-m", message, "--", *changed)
        except Exception:
            self.restore(before)
            repo.git.reset("-q", "--", *paths)
            raise
        sha = str(repo.head.commit.hexsha)
        if self.push:
            repo.git.push(self.remote, "HEAD")
        return sha


def _prune_empty(folder: Path, root: Path) -> None:
    """Remove folders left empty by a delete, up to (not including) the root."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
