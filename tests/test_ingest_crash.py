"""A crash at any point of an ingestion converges on the next run: exactly the
chunks of the tree, nothing stale, nothing duplicated, nothing embedded twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import write
from knowledge_helpers import Harness

REFUNDS = "knowledge/billing/policies/refunds.md"


class CrashError(Exception):
    """Stands for the process dying."""


def _edit(repo: Path) -> None:
    path = repo / REFUNDS
    path.write_text(
        path.read_text().replace("5 to 10\nbusiness days", "five to ten\nbusiness days")
    )
    (repo / "knowledge/billing/faq.md.gz").rename(repo / "knowledge/billing/questions.md.gz")
    (repo / "knowledge/billing/plans.json").unlink()
    write(repo, "knowledge/billing/new.md", "# New\n\n" + "Fresh words here. " * 40 + "\n")


def _crash_on(target: Any, name: str, after_calls: int = 0) -> Callable[[], None]:
    original = getattr(target, name)
    calls = {"n": 0}

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > after_calls:
            raise CrashError(name)
        return original(*args, **kwargs)

    setattr(target, name, crashing)
    return lambda: setattr(target, name, original)


@pytest.mark.parametrize(
    ("where", "after"),
    [
        ("store.upsert", 0),  # before any chunk is written
        ("store.update_metadata", 0),  # after new chunks were written
        ("store.delete", 0),  # after writes, before deletes
        ("ledger.record_applied", 0),  # after every store write, before the ledger knows
        ("ledger.record_pending", 0),  # before anything
    ],
)
def test_crash_then_rerun_converges(registry: Path, tmp_path: Path, where: str, after: int) -> None:
    h = Harness(registry, tmp_path / "data")
    try:
        h.ingest("billing")
        h.assert_exact("billing")
        _edit(registry)
        owner_name, method = where.split(".")
        owner = h.store if owner_name == "store" else h.ledger
        restore = _crash_on(owner, method, after)
        with pytest.raises(CrashError):
            h.manager().ingest("billing")
        restore()
        rerun = h.ingest("billing")
        assert rerun.success
        h.assert_exact("billing")
        # Nothing is embedded twice: the crashed run's embeddings were either
        # written (and are reused) or never paid for... at most the new texts once more.
        assert rerun.chunks_embedded <= 3
        assert h.ingest("billing").chunks_embedded == 0
    finally:
        h.ledger.close()


def test_crash_between_batches(registry: Path, tmp_path: Path) -> None:
    """The first batch of chunks reaches the store, then the process dies."""
    h = Harness(registry, tmp_path / "data")
    try:
        original_upsert = h.store.upsert

        def first_batch_then_crash(
            collection: Any, ids: Any, documents: Any, metadatas: Any, embeddings: Any
        ) -> None:
            original_upsert(collection, ids[:2], documents[:2], metadatas[:2], embeddings[:2])
            raise CrashError("mid-upsert")

        h.store.upsert = first_batch_then_crash  # type: ignore[method-assign]
        with pytest.raises(CrashError):
            h.manager().ingest("billing")
        h.store.upsert = original_upsert  # type: ignore[method-assign]
        state = h.ledger.domain("billing")
        assert h.store.count(h.store.collection(state.collection, h.function)) == 2  # type: ignore[union-attr]
        rerun = h.ingest("billing")
        h.assert_exact("billing")
        assert rerun.chunks_embedded == rerun.chunks_created - 2  # the two written are reused
    finally:
        h.ledger.close()
