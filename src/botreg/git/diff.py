"""Tree-to-tree diffs with rename detection (no merge base needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import git

__all__ = ["EMPTY_TREE", "tree_diff"]

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree


def tree_diff(repo: git.Repo, old: str, new: str) -> list[tuple[str, str, str, str, str]]:
    """The files that differ between two trees or commits.

    Args:
        repo: The repository.
        old: The old commit ('' for the empty tree).
        new: The new commit.

    Returns:
        (status, path, old_path, old_blob, new_blob) per changed file; status is
        A (added), M (modified), D (deleted) or R (renamed). A copy counts as
        an addition; a type change (file <-> link) as a modification.
    """
    out = repo.git.diff_tree("-r", "-z", "--raw", "--no-commit-id", "-M", old or EMPTY_TREE, new)
    fields = out.split("\0")
    changes = []
    i = 0
    while i < len(fields):
        meta = fields[i]
        if not meta.startswith(":"):
            i += 1
            continue
        _old_mode, _new_mode, old_blob, new_blob, status = meta[1:].split()
        kind = status[0]
        if kind in "RC":
            old_path, path = fields[i + 1], fields[i + 2]
            i += 3
            if kind == "C":
                changes.append(("A", path, "", "", new_blob))
            else:
                changes.append(("R", path, old_path, old_blob, new_blob))
            continue
        path = fields[i + 1]
        i += 2
        kind = "M" if kind == "T" else kind
        changes.append((kind, path, path if kind != "A" else "", old_blob, new_blob))
    return changes
