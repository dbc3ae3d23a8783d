"""Housekeeping for months of running: what the daemon does between cycles.

A daemon that runs for months must give back what it no longer needs:

- the git mirror is garbage-collected (`GitMirror.maintain`): every fetch adds
  loose objects and a force-push leaves unreachable ones;
- the Chroma store is compacted: a collection that lost most of its chunks is
  copied into a new generation and the old one dropped (see `Compactor`), then
  the store's client is reopened so the process gives back the dropped index's
  files, descriptors and memory at once, not at the next restart;
- the event log rotates by size on its own (`EventLog`); housekeeping reports
  its size and rotations.

`Housekeeper.run_due()` is called by the daemon's loop after a cycle, never
during one, so no task races a fetch or an ingest. Each task has an interval
(its next run time is kept in the ledger, so a daemon restarted every few
minutes still gets its weekly gc), is bounded (git is killed after a timeout;
compaction copies one collection per run; both stop within a fraction of a
second when the daemon stops: gc is killed, the copy stops between batches and
is dropped), and is failure-tolerant: a failing task is logged, counted and
flagged in the metrics, retried later, and never ends the daemon.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botreg.daemon.metrics import Metrics
from botreg.events.log import DEFAULT_KEEP, DEFAULT_MAX_BYTES
from botreg.events.model import CloudEvent
from botreg.git.mirror import MaintenanceInterrupted
from botreg.knowledge.ledger import IngestionStatus, Ledger
from botreg.store.chroma import ChromaStore, CopyStoppedError, next_generation

if TYPE_CHECKING:
    from botreg.daemon.sync import Syncer

__all__ = ["Compactor", "Housekeeper", "HousekeepingOptions", "Task"]

logger = logging.getLogger("botreg.daemon")

# A failed task is tried again after its interval, or after this long if sooner.
RETRY_AFTER = 3600.0


@dataclass(frozen=True)
class HousekeepingOptions:
    """How often each task runs and when the store is compacted (`botreg sync` flags).

    An interval of 0 or less turns a task off.
    """

    mirror_gc_interval: float = 24 * 3600.0
    mirror_gc_timeout: float = 600.0
    events_max_bytes: int = DEFAULT_MAX_BYTES
    events_keep: int = DEFAULT_KEEP
    compaction_interval: float = 3600.0
    compaction_min_dead: int = 1000  # chunks deleted since the collection was built
    compaction_dead_share: float = 0.5  # of deleted + live
    compaction_grace: float = 60.0  # seconds the old collection stays for queries under way
    disk_interval: float = 300.0  # disk use gauges


@dataclass
class Task:
    """One housekeeping task: a name (for metrics and the ledger), an interval, a body."""

    name: str
    interval: float
    run: Callable[[], None]
    retry_after: float = field(default=RETRY_AFTER)


class Housekeeper:
    """Runs the tasks that are due; never raises for a task's failure.

    Args:
        tasks: The tasks.
        ledger: Where each task's next run time is kept (None: in memory only).
        metrics: The daemon's metrics.
        stop: True once the daemon is stopping: no further task is started.
        clock: Wall-clock seconds (tests move it).
    """

    def __init__(
        self,
        tasks: list[Task],
        ledger: Ledger | None = None,
        metrics: Metrics | None = None,
        stop: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tasks = [t for t in tasks if t.interval > 0]
        self.ledger = ledger
        self.metrics = metrics or Metrics()
        self.stop = stop or (lambda: False)
        self.clock = clock
        self._next: dict[str, float] = {}

    @classmethod
    def for_syncer(
        cls,
        syncer: Syncer,
        options: HousekeepingOptions | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Housekeeper:
        """The daemon's housekeeping: mirror gc, store compaction, disk gauges."""
        options = options or HousekeepingOptions()
        metrics = syncer.metrics
        stopping = stop or (lambda: False)
        compactor = Compactor(
            lambda: syncer.store,
            syncer.ledger,
            metrics,
            min_dead=options.compaction_min_dead,
            dead_share=options.compaction_dead_share,
            grace=options.compaction_grace,
            stop=stop,
            reopen=syncer.reopen_store,
        )
        syncer.bus.subscribe(compactor.observe)

        def mirror_gc() -> None:
            started = time.monotonic()
            # a stop kills git at once: SIGTERM must not wait out a 10-minute gc
            result = syncer.mirror.maintain(timeout=options.mirror_gc_timeout, should_stop=stopping)
            metrics.histogram(
                "botreg_mirror_gc_duration_seconds", "Duration of a git gc of the mirror"
            ).observe(time.monotonic() - started)
            metrics.gauge(
                "botreg_mirror_gc_last_run_timestamp_seconds", "Unix time of the last mirror gc"
            ).set(time.time())
            metrics.counter(
                "botreg_mirror_reclaimed_bytes_total", "Bytes the mirror's gc gave back"
            ).inc(max(0, result.bytes_before - result.bytes_after))
            metrics.gauge("botreg_mirror_loose_objects", "Loose objects in the mirror").set(
                result.loose_after
            )
            logger.info(
                "mirror gc: %d -> %d bytes, %d -> %d loose objects",
                result.bytes_before,
                result.bytes_after,
                result.loose_before,
                result.loose_after,
            )

        rotations_seen = 0

        def disk() -> None:
            nonlocal rotations_seen
            gauge = metrics.gauge(
                "botreg_disk_bytes", "Bytes on disk of the daemon's state, by part", ["part"]
            )
            gauge.labels(part="mirror").set(syncer.mirror.disk_usage())
            store = syncer.store
            used = store.disk_usage() if store is not None else None
            if used is not None:
                gauge.labels(part="store").set(used)
            log = syncer.bus.log
            if log is not None:
                gauge.labels(part="events").set(log.size())
                metrics.counter(
                    "botreg_event_log_rotations_total", "Rotations of the event log by size"
                ).inc(log.rotations - rotations_seen)
                rotations_seen = log.rotations

        return cls(
            [
                Task("mirror-gc", options.mirror_gc_interval, mirror_gc),
                Task("store-compaction", options.compaction_interval, compactor.run),
                Task("disk", options.disk_interval, disk, retry_after=options.disk_interval),
            ],
            syncer.ledger,
            metrics,
            stop,
        )

    def _due_at(self, task: Task) -> float:
        if task.name not in self._next:
            stored = self.ledger.get(f"housekeeping.{task.name}.next_run") if self.ledger else ""
            try:
                self._next[task.name] = float(stored) if stored else 0.0
            except ValueError:  # a damaged value: run now, then it is rewritten
                self._next[task.name] = 0.0
        return self._next[task.name]

    def _schedule(self, task: Task, at: float) -> None:
        self._next[task.name] = at
        if self.ledger is not None:
            try:
                self.ledger.put(f"housekeeping.{task.name}.next_run", repr(at))
            except Exception as exc:  # a locked or full ledger: the in-memory time still holds
                logger.warning("could not record the next %s run: %s", task.name, exc)

    def run_due(self) -> dict[str, str]:
        """Run every task that is due, one after the other.

        Returns:
            task name -> "ok", "failed" or "stopped", for the tasks that ran.
        """
        ran: dict[str, str] = {}
        m = self.metrics
        for task in self.tasks:
            if self.stop():
                break
            now = self.clock()
            if now < self._due_at(task):
                continue
            started = time.monotonic()
            try:
                task.run()
            except (CopyStoppedError, MaintenanceInterrupted):
                ran[task.name] = "stopped"  # the daemon is stopping: again at the next start
                continue
            except Exception as exc:  # a task's failure is reported, never the daemon's end
                ran[task.name] = "failed"
                logger.warning("housekeeping task %s failed: %s", task.name, exc)
                logger.debug("traceback of the failed housekeeping task", exc_info=exc)
                self._schedule(task, now + min(task.interval, task.retry_after))
            else:
                ran[task.name] = "ok"
                self._schedule(task, now + task.interval)
                m.gauge(
                    "botreg_housekeeping_last_success_timestamp_seconds",
                    "Unix time a housekeeping task last succeeded",
                    ["task"],
                ).labels(task=task.name).set(time.time())
            m.histogram(
                "botreg_housekeeping_duration_seconds",
                "Duration of a housekeeping task",
                ["task"],
            ).labels(task=task.name).observe(time.monotonic() - started)
            m.counter(
                "botreg_housekeeping_runs_total",
                "Housekeeping task runs by task and result (ok, failed, stopped)",
                ["task", "result"],
            ).labels(task=task.name, result=ran[task.name]).inc()
            m.gauge(
                "botreg_housekeeping_failing",
                "1 if a housekeeping task's last run failed, else 0",
                ["task"],
            ).labels(task=task.name).set(1 if ran[task.name] == "failed" else 0)
        return ran


_DEAD_KEY = "store.dead_chunks."  # + collection: chunks deleted since it was built
_RETIRED_KEY = "store.retired_collections"  # JSON [[name, unix time], ...]


class Compactor:
    """Gives the store's space back after large deletions, without a window where
    queries fail.

    The dead share of a domain's collection is the chunks deleted from it since it
    was built (counted from the ingest results, kept in the ledger) against
    deleted + live. Above `dead_share` and `min_dead`, the collection is copied
    into its next generation (`ChromaStore.copy_collection`: no re-embedding),
    then one ledger transaction moves the domain, its files and its chunks to the
    copy: a query reads the ledger first, so it uses either the old collection or
    the complete copy. The old one is retired and dropped `grace` seconds later
    (a query that read the old name just before the switch still finds it), with
    the index folders the embedded store leaves behind; then `reopen` closes and
    reopens the store's client, since the embedded client keeps a dropped
    collection's loaded index (files, descriptors, memory) until it closes.

    Args:
        store: The store (a callable: the daemon opens it on its first apply).
        ledger: The ledger (the daemon's, used on the daemon's thread).
        metrics: The daemon's metrics.
        min_dead: Compact only when at least this many chunks were deleted.
        dead_share: ...and they are more than this share of deleted + live.
        grace: Seconds before a retired collection is dropped.
        stop: Checked between batches of a copy.
        clock: Wall-clock seconds.
        reopen: Closes and reopens the store's client after a drop (the daemon's
            `Syncer.reopen_store`, which holds queries off meanwhile); None: never.
    """

    def __init__(
        self,
        store: Callable[[], ChromaStore | None],
        ledger: Ledger,
        metrics: Metrics | None = None,
        *,
        min_dead: int = 1000,
        dead_share: float = 0.5,
        grace: float = 60.0,
        stop: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
        reopen: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        self.reopen = reopen
        self.ledger = ledger
        self.metrics = metrics or Metrics()
        self.min_dead = min_dead
        self.dead_share = dead_share
        self.grace = grace
        self.stop = stop
        self.clock = clock

    # --- counting -----------------------------------------------------------------------

    def observe(self, event: CloudEvent) -> None:
        """Count the chunks an ingest deleted (a bus subscriber)."""
        if event.type not in ("botreg.knowledge.ingested", "botreg.knowledge.ingest_failed"):
            return
        deleted = event.data.get("chunks_deleted")
        domain = event.data.get("domain_id")
        if not isinstance(deleted, int) or deleted <= 0 or not isinstance(domain, str):
            return
        state = self.ledger.domain(domain)
        if state is not None:
            self.add_dead(state.collection, deleted)

    def add_dead(self, collection: str, count: int) -> None:
        """Record `count` more chunks deleted from `collection`."""
        self.ledger.put(_DEAD_KEY + collection, str(self.dead(collection) + count))

    def dead(self, collection: str) -> int:
        """Chunks deleted from `collection` since it was built."""
        try:
            return max(0, int(self.ledger.get(_DEAD_KEY + collection, "0") or 0))
        except ValueError:
            return 0

    # --- the task -----------------------------------------------------------------------

    def run(self) -> None:
        """Drop retired collections whose grace has passed; compact at most one collection."""
        store = self.store()
        if store is None:
            return  # nothing applied yet: nothing to compact
        self.drop_retired(store)
        candidates = []
        dead_gauge = self.metrics.gauge(
            "botreg_store_dead_chunks",
            "Chunks deleted from a domain's collection since it was built (space not given back)",
            ["domain"],
        )
        for state in self.ledger.domains():
            if state.status is not IngestionStatus.READY:
                continue  # mid-ingest or failed: its records are in flux
            dead = self.dead(state.collection)
            dead_gauge.labels(domain=state.domain).set(dead)
            live = len(self.ledger.all_chunk_ids(state.collection))
            if dead >= self.min_dead and dead > self.dead_share * (dead + live):
                candidates.append((dead, state.domain, state.collection))
        if candidates:
            _dead, domain, collection = max(candidates)  # the worst first; one per run
            self.compact(store, domain, collection)
            if self.grace <= 0:
                self.drop_retired(store)

    def compact(self, store: ChromaStore, domain: str, collection: str) -> str:
        """Copy a domain's collection into its next generation and switch to it.

        Returns:
            The new collection's name.

        Raises:
            CopyStoppedError: if the daemon stopped meanwhile (nothing switched).
            BotregError: if the copy failed (nothing switched; the copy is dropped).
        """
        from botreg.store.embedding import create_embedding_function
        from botreg.store.settings import EmbeddingSettings

        state = self.ledger.domain(domain)
        if state is None or state.collection != collection:
            return collection
        target = next_generation(collection)
        # the function the collection records and queries pass (Chroma refuses another)
        function = create_embedding_function(EmbeddingSettings.from_description(state.embedding))
        copied = store.copy_collection(collection, target, function, self.stop)
        dead = self.dead(collection)
        with self.ledger.transaction() as db:
            row = db.execute("SELECT collection FROM domains WHERE domain = ?", (domain,))
            current = row.fetchone()
            if current is None or current[0] != collection:  # cannot happen between cycles
                raise RuntimeError(f"domain {domain} changed collection during compaction")
            db.execute(
                "UPDATE chunks SET collection = ? WHERE collection = ?", (target, collection)
            )
            db.execute("UPDATE files SET collection = ? WHERE collection = ?", (target, collection))
            db.execute("UPDATE domains SET collection = ? WHERE domain = ?", (target, domain))
            found = db.execute("SELECT value FROM meta WHERE key = ?", (_RETIRED_KEY,)).fetchone()
            retired = self._retired(found[0] if found else "")
            retired.append([collection, self.clock()])
            for key, value in (
                (_RETIRED_KEY, json.dumps(retired)),
                (_DEAD_KEY + collection, "0"),
                (_DEAD_KEY + target, "0"),
            ):
                db.execute(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "value=excluded.value",
                    (key, value),
                )
        m = self.metrics
        m.counter(
            "botreg_store_compactions_total",
            "Collections rebuilt to give back deleted chunks' space",
        ).inc()
        m.counter(
            "botreg_store_reclaimed_chunks_total", "Deleted chunks whose space compaction gave back"
        ).inc(dead)
        m.gauge(
            "botreg_store_last_compaction_timestamp_seconds", "Unix time of the last compaction"
        ).set(time.time())
        logger.info(
            "compacted %s: %d live chunks copied to %s, %d deleted ones left behind",
            collection,
            copied,
            target,
            dead,
        )
        return target

    @staticmethod
    def _retired(text: str) -> list[list[Any]]:
        """The retired collections recorded ([name, unix time] pairs; damage reads as none)."""
        try:
            value = json.loads(text) if text else []
        except ValueError:
            return []
        if not isinstance(value, list):
            return []
        return [
            item
            for item in value
            if isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], float | int)
        ]

    def drop_retired(self, store: ChromaStore) -> int:
        """Drop retired collections whose grace has passed; returns the bytes given back."""
        retired = self._retired(self.ledger.get(_RETIRED_KEY))
        if not retired:
            return 0
        now = self.clock()
        due = [item for item in retired if now - float(item[1]) >= self.grace]
        if not due:
            return 0
        before = store.disk_usage()
        for name, _at in due:
            store.drop_collection(str(name))
        reopen_error: Exception | None = None
        if self.reopen is not None:
            try:
                self.reopen()  # the dropped indexes' open files go: their space too
            except Exception as exc:  # recorded below, then reported as the task's failure
                reopen_error = exc
        freed = store.remove_orphan_segments()
        after = store.disk_usage()
        self.ledger.put(_RETIRED_KEY, json.dumps([item for item in retired if item not in due]))
        if reopen_error is not None:
            raise reopen_error
        reclaimed = max(0, before - after) if before is not None and after is not None else freed
        self.metrics.counter(
            "botreg_store_reclaimed_bytes_total", "Bytes of the store compaction gave back"
        ).inc(reclaimed)
        return reclaimed
