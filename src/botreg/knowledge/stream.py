"""Apply a domain's changes to the store group by group: memory bounded by a group, not the domain.

A full ingest of a 100,000-chunk domain must not hold 100,000 planned chunks
(texts, metadata, vectors) at once. The changed files are planned (read and
chunked, `botreg.knowledge.plan`) in file order, in groups of about
`GROUP_CHUNKS` chunks, and each group is applied before the next is read:

1. its files' prior ledger records are loaded (only theirs);
2. its new chunks are written: vectors the store already holds for the same
   text are reused (a renamed or copied file, a moved paragraph), then the
   rest are embedded `EMBED_BATCH` texts at a time, each batch stored and
   recorded before the next is embedded;
3. the metadata of chunks that only moved is updated, and the stale chunks of
   the group's changed files are deleted;
4. the group's files are recorded as ingested (blob key, chunk count, size).

The chunks of files gone from the tree are deleted last, after every group,
so a renamed file, or a renamed folder of many files spanning several groups,
finds the vectors of its old chunks still stored and embeds nothing.

Crash safety is the ledger's (see `botreg.knowledge.ledger`): ids are recorded
pending before a write, and a file is recorded only once all its chunks are in
and its stale ones are gone. A crash in any group leaves the earlier groups
recorded; the next run re-plans the rest and reuses whatever reached the store.
A stop asked for (`should_stop`) is checked between batches and groups and ends
the run with `IngestInterrupted`.

What grouping gives up: a paragraph moved between two changed files that fall
into different groups may be embedded again, when the file that loses it comes
in an earlier group than the file that gains it (the earlier group deletes its
stale chunk before the later group looks for the text). Keeping it would need
the stale chunks of every group kept until the end, so it is embedded once more
only when a change is larger than a group. A text repeated across groups is
embedded once: the later group finds the earlier one's vector in the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botreg.knowledge.ledger import Ledger
from botreg.knowledge.names import escape_controls
from botreg.knowledge.outcome import IngestInterrupted, IngestionResult
from botreg.knowledge.plan import PlannedChunk
from botreg.knowledge.scan import DomainScan
from botreg.registry.content import ContentError
from botreg.store.lean import AnyStore

__all__ = [
    "EMBED_BATCH",
    "GROUP_CHUNKS",
    "WRITE_BATCH",
    "EmbedObserver",
    "Progress",
    "StreamedApply",
]

Progress = Callable[[str, int, int], None]  # (phase, done, total)
EmbedObserver = Callable[[int, float], None]  # (texts in the batch, seconds it took)
GROUP_CHUNKS = 2048  # planned chunks (or files) per group: what a full ingest holds at a time
EMBED_BATCH = 256  # texts sent to the embedding function at a time
WRITE_BATCH = 1024  # chunks whose vectors are reused: written (and stop-checked) this many a time

_Add = tuple[str, PlannedChunk]  # (path, chunk)


@dataclass(slots=True)
class _Group:
    """Planned files of one group, in file order."""

    files: list[tuple[str, list[PlannedChunk]]] = field(default_factory=list)
    chunks: int = 0


class StreamedApply:
    """Brings one collection in line with a domain's scan, one group of files at a time.

    Args:
        ledger: The ledger beside the store.
        store: Opens the store (called when something is to be read or written).
        collection: Opens the domain's collection (called at most once).
        embedding_function: The embedding function, proven before its first use
            (called only when a text must be embedded).
        plan: A changed file's planned chunks (raises `ContentError` or `OSError`
            for a file that fails alone).
        progress: Called with (phase, done, total): `chunking` counts the domain's
            changed files, `embedding` the texts embedded so far in this run.
        on_embed: Called after each embedding batch with its texts and seconds.
        should_stop: Asked between batches and groups; True ends with `IngestInterrupted`.
    """

    def __init__(
        self,
        ledger: Ledger,
        store: Callable[[], AnyStore],
        collection: Callable[[], Any],
        embedding_function: Callable[[], Any],
        plan: Callable[[str], list[PlannedChunk]],
        *,
        progress: Progress | None = None,
        on_embed: EmbedObserver | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.ledger = ledger
        self._store = store
        self._open_collection = collection
        self._collection: Any = None
        self._embedding_function = embedding_function
        self._plan = plan
        self._progress = progress or (lambda _phase, _done, _total: None)
        self._on_embed = on_embed
        self._should_stop = should_stop or (lambda: False)
        self._embedded = 0  # texts embedded so far in this run (the progress count)

    def run(self, collection_id: str, scan: DomainScan, result: IngestionResult) -> None:
        """Write the scan's changes to `collection_id`, counting them in `result`.

        Raises:
            IngestInterrupted: if a stop was asked for (what was written is recorded).
        """
        for path in scan.refused:  # never stored (validation reports it as BR403): say so
            result.errors.append(
                {
                    "path": escape_controls(path),
                    "message": "file name with a control character: not ingested; rename the file",
                }
            )
        result.files_skipped = len(scan.files) - len(scan.changed)
        # a collection the ledger knows nothing of may still hold chunks (a ledger started
        # afresh beside a filled store, a store another data dir filled): ask for them all.
        # Decided once, before this run records anything of its own.
        unknown = not self.ledger.knows_collection(collection_id)
        for group in self._groups(scan, result):
            self._apply_group(collection_id, group, scan, unknown, result)
            del group  # gone before the next group is planned: one group held at a time
        self._remove(collection_id, scan.removed, result)

    # --- planning ----------------------------------------------------------------------

    def _groups(self, scan: DomainScan, result: IngestionResult) -> Iterator[_Group]:
        """The changed files, planned, in groups of about `GROUP_CHUNKS` chunks (or files)."""
        group = _Group()
        total = len(scan.changed)
        for number, path in enumerate(scan.changed, 1):
            self._progress("chunking", number, total)
            try:
                planned = self._plan(path)
            except (ContentError, OSError) as exc:
                message = exc.message if isinstance(exc, ContentError) else str(exc)
                result.errors.append({"path": path, "message": message})
                continue  # its previous chunks stay: the last good version keeps serving
            group.files.append((path, planned))
            group.chunks += len(planned)
            if group.chunks >= GROUP_CHUNKS or len(group.files) >= GROUP_CHUNKS:
                yield group
                group = _Group()
        if group.files:
            yield group

    # --- one group -----------------------------------------------------------------------

    def _apply_group(
        self,
        collection_id: str,
        group: _Group,
        scan: DomainScan,
        unknown: bool,
        result: IngestionResult,
    ) -> None:
        """Write a group's new chunks, update and delete, then record its files done."""
        prior = self.ledger.chunks_of(collection_id, [path for path, _ in group.files])
        adds: list[_Add] = []
        maybe_stored: set[str] = set()  # ids of adds that a crashed write may have stored
        updates: list[_Add] = []
        deletes: list[str] = []
        done_files: dict[str, tuple[str, int]] = {}
        for path, planned in group.files:
            old = {c.id: c for c in prior.get(path, [])}
            new_ids = {p.id for p in planned}
            for item in planned:
                before = old.get(item.id)
                if before is None or not before.stored:
                    adds.append((path, item))
                    if before is not None or unknown:
                        maybe_stored.add(item.id)
                elif before.meta_hash != item.meta_hash:
                    updates.append((path, item))
                else:
                    result.chunks_unchanged += 1
            deletes.extend(i for i in old if i not in new_ids)
            done_files[path] = (scan.keys[path], len(planned))
            result.files_processed += 1
        result.chunks_unchanged += len(updates)

        if adds:
            self._write_adds(collection_id, adds, maybe_stored, result)
        self._check_stop()
        if updates or deletes:  # the store is opened only when there is something to change
            collection = self._open()
            self.ledger.record_pending(collection_id, [], deletes)
            if updates:
                self._store().update_metadata(
                    collection, [i.id for _, i in updates], [i.metadata for _, i in updates]
                )
            if deletes:
                self._store().delete(collection, deletes)
        self.ledger.record_applied(
            collection_id,
            written=[item.record(path) for path, item in updates],
            deleted=deletes,
            files=done_files,
            removed_files=[],
            sizes={path: scan.sizes[path] for path in done_files},
        )
        result.chunks_created += len(adds)
        result.chunks_deleted += len(deletes)

    def _remove(self, collection_id: str, removed: list[str], result: IngestionResult) -> None:
        """Delete the chunks of files gone from the tree and forget the files, a group at a
        time (after every changed file: a renamed file reuses the vectors of its old chunks)."""
        paths: list[str] = []
        ids: list[str] = []
        for path in removed:
            paths.append(path)
            ids.extend(c.id for c in self.ledger.chunks_of(collection_id, [path])[path])
            if len(ids) >= GROUP_CHUNKS or len(paths) >= GROUP_CHUNKS:
                self._forget(collection_id, paths, ids, result)
                paths, ids = [], []
        if paths:
            self._forget(collection_id, paths, ids, result)

    def _forget(
        self, collection_id: str, paths: list[str], ids: list[str], result: IngestionResult
    ) -> None:
        self._check_stop()
        if ids:
            collection = self._open()
            self.ledger.record_pending(collection_id, [], ids)
            self._store().delete(collection, ids)
        self.ledger.record_applied(
            collection_id, written=[], deleted=ids, files={}, removed_files=paths
        )
        result.chunks_deleted += len(ids)

    # --- writes --------------------------------------------------------------------------

    def _open(self) -> Any:
        if self._collection is None:
            self._collection = self._open_collection()
        return self._collection

    def _check_stop(self) -> None:
        if self._should_stop():
            raise IngestInterrupted("ingestion interrupted by a stop")

    def _write(self, collection_id: str, items: list[_Add], vectors: dict[str, Any]) -> None:
        """Write new chunks whose vectors are known, recorded before and after (see ledger)."""
        self.ledger.record_pending(collection_id, [item.record(path) for path, item in items], [])
        self._store().upsert(
            self._open(),
            [item.id for _, item in items],
            [item.chunk.text for _, item in items],
            [item.metadata for _, item in items],
            [vectors[item.chunk.content_hash] for _, item in items],
        )
        self.ledger.record_applied(
            collection_id,
            written=[item.record(path) for path, item in items],
            deleted=[],
            files={},
            removed_files=[],
        )

    def _write_adds(
        self,
        collection_id: str,
        adds: list[_Add],
        maybe_stored: set[str],
        result: IngestionResult,
    ) -> None:
        """Write a group's new chunks: reused vectors first, then one embedding batch at a time.

        Each batch is stored and recorded before the next is embedded, and a stop is
        checked between batches: an interrupted run loses at most the batch under way.
        """
        by_hash: dict[str, list[_Add]] = {}
        for path, item in adds:
            by_hash.setdefault(item.chunk.content_hash, []).append((path, item))
        vectors = self._reusable(collection_id, [i for _, i in adds], maybe_stored)
        ready = [pair for h in by_hash if h in vectors for pair in by_hash[h]]
        for start in range(0, len(ready), WRITE_BATCH):
            self._check_stop()
            self._write(collection_id, ready[start : start + WRITE_BATCH], vectors)
        missing = [h for h in by_hash if h not in vectors]
        if not missing:
            return
        self._check_stop()
        function = self._embedding_function()
        total = self._embedded + len(missing)
        for start in range(0, len(missing), EMBED_BATCH):
            self._check_stop()
            self._progress("embedding", self._embedded, total)
            hashes = missing[start : start + EMBED_BATCH]
            started = time.monotonic()
            embedded = function([by_hash[h][0][1].chunk.text for h in hashes])
            if self._on_embed is not None:  # the bill and the latency, per batch
                self._on_embed(len(hashes), time.monotonic() - started)
            result.chunks_embedded += len(hashes)
            self._embedded += len(hashes)
            batch = dict(zip(hashes, embedded, strict=True))
            self._write(collection_id, [p for h in hashes for p in by_hash[h]], batch)
        self._progress("embedding", self._embedded, total)

    def _reusable(
        self, collection_id: str, adds: list[PlannedChunk], maybe_stored: set[str]
    ) -> dict[str, Any]:
        """Vectors for new chunks' texts that the store already holds (by content hash)."""
        needed = {item.chunk.content_hash for item in adds}
        # Candidates: recorded chunks with the same text, and the chunk's own id when it
        # may be stored: recorded as maybe stored (a write that a crash interrupted may
        # have landed), or in a collection the ledger knows nothing of. Otherwise an id
        # the ledger does not know is not in the store (see the ledger).
        # The store says which hold a vector; with no candidate it is not asked at all
        # (a read loads the collection's whole index: most of a one-file edit's time).
        candidates = self.ledger.ids_by_hash(collection_id, needed)
        for item in adds:
            if item.id in maybe_stored:
                candidates.setdefault(item.chunk.content_hash, []).append(item.id)
        wanted = sorted({ref for refs in candidates.values() for ref in refs})
        if not wanted:
            return {}
        found = self._store().embeddings(self._open(), wanted)
        vectors: dict[str, Any] = {}
        for content_hash, refs in candidates.items():
            for ref in refs:
                if found.get(ref) is not None:
                    vectors[content_hash] = found[ref]
                    break
        return vectors
