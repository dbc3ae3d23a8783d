"""A full ingest streams: files are planned and written a group at a time (issue 15,
item 4), so its memory does not grow with the domain, a crash in a later group keeps
the earlier groups, and a renamed folder spanning groups still embeds nothing."""

from __future__ import annotations

import shutil
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import botreg.knowledge.stream as stream_module
from helpers import write
from knowledge_helpers import Harness

# a section long enough to be a chunk of its own, not merged with the next
LONG = "It says what a customer asks about and what the answer is, in a few more words."
SECTIONS = 10  # chunks per bulk file


def bulk(repo: Path, files: int, folder: str = "bulk") -> None:
    """`files` files of `SECTIONS` chunks each, every chunk text distinct."""
    for i in range(files):
        write(repo, f"knowledge/product/{folder}/doc-{i:04d}.md", document(i))


def document(i: int, edited: str = "") -> str:
    return f"# Doc {i}\n\n" + "".join(
        f"## Part {j}\n\nText {i} {j} about refunds and plans, number {i * 1000 + j}. "
        f"{edited if j == 3 else ''}{LONG}\n\n"
        for j in range(SECTIONS)
    )


@pytest.fixture
def h(registry: Path, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(registry, tmp_path / "data")
    yield harness
    harness.ledger.close()


@pytest.fixture
def one_file_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bulk file is a group of its own."""
    monkeypatch.setattr(stream_module, "GROUP_CHUNKS", SECTIONS)


def store_ids(h: Harness, domain: str) -> set[str]:
    state = h.ledger.domain(domain)
    assert state is not None
    return set(h.store.collection(state.collection, h.function).get(include=[])["ids"])


def test_the_first_write_comes_before_the_last_file_is_chunked(
    h: Harness, one_file_groups: None
) -> None:
    bulk(h.repo, 12)
    calls: list[str] = []
    upsert = h.store.upsert

    def recording(*args: Any, **kwargs: Any) -> None:
        calls.append("upsert")
        upsert(*args, **kwargs)

    h.store.upsert = recording  # type: ignore[method-assign]

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "chunking":
            calls.append(f"chunked {done}/{total}")

    result = h.manager(progress=progress).ingest("product")
    assert result.success
    last = max(i for i, call in enumerate(calls) if call.startswith("chunked"))
    assert calls.index("upsert") < last  # written while files remain to be read
    assert calls.count("upsert") >= 12  # a write per group at least
    h.assert_exact("product")


def test_embedding_progress_counts_the_whole_run(h: Harness, one_file_groups: None) -> None:
    """Across groups, `embedding` reports the texts embedded so far in the run: it never
    goes back, and ends at the run's total."""
    bulk(h.repo, 4)
    seen: list[tuple[int, int]] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "embedding":
            seen.append((done, total))

    result = h.manager(progress=progress).ingest("product")
    done = [d for d, _ in seen]
    assert done == sorted(done) and all(d <= t for d, t in seen)
    assert seen[-1] == (result.chunks_embedded, result.chunks_embedded)


def test_a_text_repeated_in_a_later_group_is_embedded_once(
    h: Harness, one_file_groups: None
) -> None:
    bulk(h.repo, 6)
    shutil.copy(
        h.repo / "knowledge/product/bulk/doc-0000.md", h.repo / "knowledge/product/zz-copy.md"
    )
    product = len(h.expected_counts("product"))
    result = h.ingest("product")
    assert result.chunks_created == product
    # the copy is in the last group: its texts' vectors come from the store
    assert result.chunks_embedded == product - SECTIONS
    h.assert_exact("product")


def test_a_renamed_folder_spanning_groups_embeds_nothing(h: Harness, one_file_groups: None) -> None:
    bulk(h.repo, 12)
    h.ingest("product")
    (h.repo / "knowledge/product/bulk").rename(h.repo / "knowledge/product/moved")
    result = h.ingest("product")
    assert result.chunks_embedded == 0
    assert result.chunks_created == result.chunks_deleted == 12 * SECTIONS
    h.assert_exact("product")
    assert not any("/bulk/" in path for path, _ in h.stored("product"))


def _edit(repo: Path) -> int:
    """A paragraph edited in three files, a file renamed and one deleted; returns the
    number of new texts."""
    for i in (1, 4, 7):
        write(repo, f"knowledge/product/bulk/doc-{i:04d}.md", document(i, "Edited. "))
    folder = repo / "knowledge/product/bulk"
    (folder / "doc-0010.md").rename(folder / "moved-0010.md")
    (folder / "doc-0011.md").unlink()
    return 3


class CrashError(Exception):
    """Stands for the process dying."""


@pytest.mark.parametrize(
    ("method", "after", "recorded"),
    [
        ("upsert", 1, 1),  # the second group's new chunk: the first group's file is kept
        ("delete", 1, 1),  # the second group's stale chunk, after its new one was written
        ("delete", 3, 4),  # the removed files' chunks, after every group
    ],
)
def test_a_crash_in_a_later_group_converges(
    h: Harness, one_file_groups: None, method: str, after: int, recorded: int
) -> None:
    bulk(h.repo, 12)
    h.ingest("product")
    new_texts = _edit(h.repo)
    written: set[str] = set()  # the texts that reached the store
    upsert = h.store.upsert

    def recording(collection: Any, ids: Any, documents: Any, *rest: Any) -> None:
        upsert(collection, ids, documents, *rest)
        written.update(documents)

    h.store.upsert = recording  # type: ignore[method-assign]
    original = getattr(h.store, method)
    calls = {"n": 0}

    def crashing(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > after:
            raise CrashError(method)
        return original(*args)

    setattr(h.store, method, crashing)
    with pytest.raises(CrashError):
        h.manager().ingest("product")
    for name in ("upsert", "delete"):
        vars(h.store).pop(name, None)  # the store's own methods again
    state = h.ledger.domain("product")
    assert state is not None
    # whatever the store holds, the ledger knows (so it can be deleted later)
    assert store_ids(h, "product") <= h.ledger.all_chunk_ids(state.collection)

    rerun = h.ingest("product")
    assert rerun.success
    # the groups finished before the crash are recorded: not planned again
    changed = 4  # three edited files and the renamed one
    assert rerun.files_processed == changed - recorded
    # what reached the store is not embedded again
    edited = {text for _, text in h.expected("product") if "Edited." in text}
    assert len(edited) == new_texts
    assert rerun.chunks_embedded == len(edited - written)
    h.assert_exact("product")  # nothing stale served, nothing missing
    assert h.ingest("product").chunks_embedded == 0


def _peak_of_full_ingest(registry: Path, tmp: Path, files: int) -> int:
    repo = tmp / f"registry-{files}"
    shutil.copytree(registry, repo)
    bulk(repo, files)
    h = Harness(repo, tmp / f"data-{files}", dimensions=384)
    try:
        h.ingest("billing")  # the chunkers imported and the store opened before measuring
        tracemalloc.start()
        try:
            result = h.ingest("product")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.success and result.chunks_created >= files * SECTIONS
        return peak
    finally:
        h.ledger.close()
        h.store.close()


def test_peak_memory_of_a_full_ingest_does_not_grow_with_the_domain(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planned chunks and their vectors are held a group at a time: four times the
    chunks, about the same peak (holding the whole domain's gave 3.6 times the peak)."""
    monkeypatch.setattr(stream_module, "GROUP_CHUNKS", 100)
    small = _peak_of_full_ingest(registry, tmp_path, 50)  # 500 chunks
    large = _peak_of_full_ingest(registry, tmp_path, 200)  # 2,000 chunks
    assert large < 2 * small, (small, large)
