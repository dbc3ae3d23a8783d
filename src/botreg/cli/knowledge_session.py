"""The session of `botreg ingest` and `botreg query`: registry, data dir, ledger and store.

`open_manager` opens them in the order that keeps the data safe (the data dir's
lock, then the ledger, then the store only when first needed, see
`botreg.knowledge.gate`) and closes them so the next run can trust the ledger.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botreg.validation import confinement

if TYPE_CHECKING:
    from botreg.knowledge.ledger import Ledger
    from botreg.knowledge.manager import KnowledgeIngestionManager
    from botreg.store.chroma import ChromaStore

__all__ = ["open_manager"]


def _head_commit(repo: Path) -> str:
    """The commit checked out in `repo` ("" outside git or before the first commit)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _reconcile(store: ChromaStore, ledger: Ledger, identity: str) -> None:
    """Before an ingest the ledger cannot vouch for: make it describe the store."""
    from botreg.knowledge.adopt import follow_store, verify_store
    from botreg.secrets import mask_text

    moved = follow_store(store, ledger)  # another store than the records describe: adopt it
    if moved:
        print(
            f"botreg: the store moved ({mask_text(moved)} -> {mask_text(identity)}): "
            "ingesting every domain into it",
            file=sys.stderr,
        )
        return
    differs = verify_store(store, ledger)  # deleted, restored, or written by another process
    if differs:
        print(
            f"botreg: the store does not hold what the ledger records ({mask_text(differs)}): "
            "checking every file against it",
            file=sys.stderr,
        )


@contextmanager
def open_manager(
    args: argparse.Namespace, *, progress: Any = None, writing: bool = False
) -> Iterator[KnowledgeIngestionManager]:
    """The knowledge manager over the registry's work tree and the data dir's store.

    Args:
        args: The command's arguments (`--repo`, `--env`, `--data-dir`, the policy's).
        progress: Called with (phase, done, total) during long runs.
        writing: True for an ingest: a ledger it cannot trust is reconciled with the
            store first, the store may be written without importing Chroma, and the
            ledger is sealed as describing the store afterwards.
    """
    from botreg.datadir import DataDir
    from botreg.knowledge.gate import StoreGate
    from botreg.knowledge.ledger import Ledger
    from botreg.knowledge.manager import KnowledgeIngestionManager
    from botreg.knowledge.worktree import IndexedWorkingTree
    from botreg.registry.view import RegistryView

    repo = Path(args.repo)
    # the work tree, with the blob ids of files unchanged since `git add` from git's index
    view = RegistryView(IndexedWorkingTree(repo))
    settings = view.knowledge_settings(args.env)  # the daemon's loading: same errors
    data_dir = DataDir(args.data_dir)
    policy = confinement.StorePolicy.from_args(args)
    # the policy in force: the embedding function is built from it, deep in ingestion
    with confinement.use_store_policy(policy), data_dir.locked(f"botreg {args.command}"):
        ledger = Ledger(data_dir.ledger)  # first: a damaged ledger must not leave a store open
        gate: StoreGate | None = None
        in_line = False
        try:
            # the store is opened when first needed: an ingest with nothing to write, or a
            # query of an unknown domain, never imports Chroma
            gate = StoreGate(
                settings.store,
                data_dir.root,
                policy,
                ledger,
                # an ingest may write without importing Chroma (botreg.store.lean)
                embedding=settings.embedding if writing else None,
            )
            trusted = gate.trusted()
            if writing and not trusted:
                _reconcile(gate.open(), ledger, settings.store.identity)
            # the seed's manager, run synchronously: the daemon's code path
            yield KnowledgeIngestionManager(
                view.snapshot,
                gate,
                ledger=ledger,
                embedding=settings.embedding,
                commit=_head_commit(repo),
                progress=progress,
            )
            # an ingest leaves the ledger describing the store; a query (Chroma writes to
            # its database on every open) leaves it as it found it
            in_line = writing or trusted
        finally:
            if gate is not None:
                gate.close()
                if in_line:
                    gate.seal()
            ledger.close()
