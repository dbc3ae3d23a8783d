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
(its last and next run times are kept in the ledger, so a daemon restarted
every few minutes still gets its weekly gc, and a lowered interval applies at
the next start), is bounded (git is killed after a timeout; compaction copies
one collection per run; both stop within a fraction of a second when the daemon
stops: gc is killed, the copy stops between batches and is left for the next
run to drop), and is failure-tolerant: a failing task is logged, counted and
flagged in the metrics, retried later, and never ends the daemon.

Every housekeeping series exists from the daemon's start (counters at 0, the
dead-chunk gauges from the ledger, the disk gauges measured at once), so
`rate()` and `absent()` alerts work before each task's first run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from botreg.daemon.metrics import Metrics
from botreg.events.log import DEFAULT_KEEP, DEFAULT_MAX_BYTES
from botreg.events.model import CloudEvent
from botreg.git.mirror import MaintenanceInterrupted
from botreg.knowledge.ledger import IngestionStatus, Ledger
from botreg.store.chroma import ChromaStore, CopyStoppedError, next_generation

if TYPE_CHECKING:
    from botreg.daemon.sync import Syncer

__all__ = ["Compactor", "Housekeeper", "HousekeepingOptions", "Task", "rotation_counter"]

logger = logging.getLogger("botreg.daemon")

# A failed task is tried again after its interval, or after this long if sooner.
RETRY_AFTER = 3600.0
# What a task's run can end in: the `result` label values, all declared at start.
RESULTS = ("ok", "failed", "stopped")


# --- the metrics, declared in one place so each HELP text is written once ------------


def _runs(m: Metrics) -> Counter:
    return m.counter(
        "botreg_housekeeping_runs_total",
        "Housekeeping task runs by task and result (ok, failed, stopped)",
        ["task", "result"],
    )


def _duration(m: Metrics) -> Histogram:
    return m.histogram(
        "botreg_housekeeping_duration_seconds", "Duration of a housekeeping task", ["task"]
    )


def _failing(m: Metrics) -> Gauge:
    return m.gauge(
        "botreg_housekeeping_failing",
        "1 if a housekeeping task's last run failed, else 0",
        ["task"],
    )


def _last_success(m: Metrics) -> Gauge:
    return m.gauge(
        "botreg_housekeeping_last_success_timestamp_seconds",
        "Unix time a housekeeping task last succeeded",
        ["task"],
    )


def _mirror_reclaimed(m: Metrics) -> Counter:
    return m.counter("botreg_mirror_reclaimed_bytes_total", "Bytes the mirror's gc gave back")


def _mirror_gc_duration(m: Metrics) -> Histogram:
    return m.histogram("botreg_mirror_gc_duration_seconds", "Duration of a git gc of the mirror")


def _rotations(m: Metrics) -> Counter:
    return m.counter("botreg_event_log_rotations_total", "Rotations of the event log by size")


def _compactions(m: Metrics) -> Counter:
    return m.counter(
        "botreg_store_compactions_total", "Collections rebuilt to give back deleted chunks' space"
    )


def _reclaimed_chunks(m: Metrics) -> Counter:
    return m.counter(
        "botreg_store_reclaimed_chunks_total", "Deleted chunks whose space compaction gave back"
    )


def _reclaimed_bytes(m: Metrics) -> Counter:
    return m.counter(
        "botreg_store_reclaimed_bytes_total", "Bytes of the store compaction gave back"
    )


def _dead_chunks(m: Metrics) -> Gauge:
    return m.gauge(
        "botreg_store_dead_chunks",
        "Chunks deleted from a domain's collection since it was built (space not given back)",
        ["domain"],
    )


def rotation_counter(metrics: Metrics) -> Callable[[], None]:
    """An `EventLog(on_rotate=...)` callback counting rotations as they happen.

    The counter is declared (at 0) here, when the daemon builds its event log.
    """
    counter = _rotations(metrics)
    return counter.inc


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
    at_start: bool = False  # cheap: also run when the daemon starts (`run_at_start`)


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
        self._declare()

    def _declare(self) -> None:
        """Create every task's series now (counters at 0, the last outcome from the
        ledger): a series that appears only at a task's first run breaks `rate()`
        and `absent()` alerts for up to a day after each restart."""
        m = self.metrics
        for task in self.tasks:
            for result in RESULTS:
                _runs(m).labels(task=task.name, result=result)
            _duration(m).labels(task=task.name)
            _failing(m).labels(task=task.name).set(
                1 if self._stored(task, "last_result") == "failed" else 0
            )
            succeeded = self._stored_time(task, "last_success")
            if succeeded is not None:
                _last_success(m).labels(task=task.name).set(succeeded)

    @classmethod
    def for_syncer(
        cls,
        syncer: Syncer,
        options: HousekeepingOptions | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Housekeeper:
        """The daemon's housekeeping: mirror gc, store compaction, disk gauges.

        Every series is declared here and the disk gauges are measured at once
        (`run_at_start`), so they exist from the daemon's start.
        """
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
        compactor.publish_dead()  # the counts the ledger holds, before the first run
        # counted when the log rotates (`rotation_counter`, given to the EventLog)
        _rotations(metrics)
        _mirror_gc_duration(metrics)
        _mirror_reclaimed(metrics)

        def mirror_gc() -> None:
            started = time.monotonic()
            # a stop kills git at once: SIGTERM must not wait out a 10-minute gc
            result = syncer.mirror.maintain(timeout=options.mirror_gc_timeout, should_stop=stopping)
            _mirror_gc_duration(metrics).observe(time.monotonic() - started)
            metrics.gauge(
                "botreg_mirror_gc_last_run_timestamp_seconds", "Unix time of the last mirror gc"
            ).set(time.time())
            metrics.gauge("botreg_mirror_loose_objects", "Loose objects in the mirror").set(
                result.loose_after
            )
            reclaimed = result.bytes_before - result.bytes_after
            # a fresh or packed mirror can grow a little (a new pack, a commit-graph):
            # that is no news, and a counter never goes down
            _mirror_reclaimed(metrics).inc(max(0, reclaimed))
            logger.log(
                logging.INFO if reclaimed > 0 else logging.DEBUG,
                "mirror gc: %d bytes reclaimed (%d -> %d), %d -> %d loose objects",
                max(0, reclaimed),
                result.bytes_before,
                result.bytes_after,
                result.loose_before,
                result.loose_after,
            )

        def disk() -> None:
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

        keeper = cls(
            [
                Task("mirror-gc", options.mirror_gc_interval, mirror_gc),
                Task("store-compaction", options.compaction_interval, compactor.run),
                Task(
                    "disk",
                    options.disk_interval,
                    disk,
                    retry_after=options.disk_interval,
                    at_start=True,
                ),
            ],
            syncer.ledger,
            metrics,
            stop,
        )
        keeper.run_at_start()
        return keeper

    def _stored(self, task: Task, what: str) -> str:
        return self.ledger.get(f"housekeeping.{task.name}.{what}") if self.ledger else ""

    def _stored_time(self, task: Task, what: str) -> float | None:
        """A time kept in the ledger; None if absent or damaged (then it is rewritten)."""
        try:
            value = float(self._stored(task, what))
        except ValueError:
            return None
        return value if math.isfinite(value) else None  # nan or inf: rewritten too

    def _due_at(self, task: Task) -> float:
        if task.name not in self._next:
            stored = self._stored_time(task, "next_run")
            last = self._stored_time(task, "last_run")
            due = 0.0 if stored is None else stored
            # the stored time was computed with the interval of its day: an operator
            # who lowers --gc-interval must not wait out the old one after a restart
            if last is not None:
                due = min(due, last + task.interval)
            elif stored is not None:  # a ledger from before last_run was kept
                due = min(due, self.clock() + task.interval)
            self._next[task.name] = due
        return self._next[task.name]

    def _record(self, task: Task, now: float, result: str, at: float) -> None:
        """Keep a finished run (ok or failed) and the next run time, in memory and the ledger."""
        self._next[task.name] = at
        if self.ledger is None:
            return
        values = {"next_run": repr(at), "last_run": repr(now), "last_result": result}
        if result == "ok":
            values["last_success"] = repr(time.time())  # wall clock: a gauge's value
        try:
            for what, value in values.items():
                self.ledger.put(f"housekeeping.{task.name}.{what}", value)
        except Exception as exc:  # a locked or full ledger: the in-memory time still holds
            logger.warning("could not record the next %s run: %s", task.name, exc)

    def run_due(self) -> dict[str, str]:
        """Run every task that is due, one after the other.

        Returns:
            task name -> "ok", "failed" or "stopped", for the tasks that ran.
        """
        ran: dict[str, str] = {}
        for task in self.tasks:
            if self.stop():
                break
            now = self.clock()
            if now < self._due_at(task):
                continue
            ran[task.name] = self._run(task, now)
        return ran

    def run_at_start(self) -> dict[str, str]:
        """Run the cheap tasks marked `at_start` now, due or not (the disk gauges:
        they would be absent until the task's first interval passed).

        Returns:
            task name -> result, as `run_due`.
        """
        return self._run_each(lambda task: task.at_start)

    def run_all(self) -> dict[str, str]:
        """Run every task now, due or not (what months of running would have done by
        now: bench/soak.py calls it before its last measure).

        Returns:
            task name -> result, as `run_due`.
        """
        return self._run_each(lambda _task: True)

    def _run_each(self, chosen: Callable[[Task], bool]) -> dict[str, str]:
        ran: dict[str, str] = {}
        for task in self.tasks:
            if self.stop():
                break
            if chosen(task):
                ran[task.name] = self._run(task, self.clock())
        return ran

    def _run(self, task: Task, now: float) -> str:
        """Run one task, record and measure it; its result (never raises)."""
        m = self.metrics
        started = time.monotonic()
        try:
            task.run()
        except (CopyStoppedError, MaintenanceInterrupted):
            result = "stopped"  # the daemon is stopping: again at the next start
        except Exception as exc:  # a task's failure is reported, never the daemon's end
            result = "failed"
            logger.warning("housekeeping task %s failed: %s", task.name, exc)
            logger.debug("traceback of the failed housekeeping task", exc_info=exc)
            self._record(task, now, result, now + min(task.interval, task.retry_after))
        else:
            result = "ok"
            self._record(task, now, result, now + task.interval)
            _last_success(m).labels(task=task.name).set(time.time())
        _runs(m).labels(task=task.name, result=result).inc()
        if result == "stopped":
            return result  # neither a failure nor a measure of the task's cost
        _duration(m).labels(task=task.name).observe(time.monotonic() - started)
        _failing(m).labels(task=task.name).set(1 if result == "failed" else 0)
        return result


_DEAD_KEY = "store.dead_chunks."  # + collection: chunks deleted since it was built
_RETIRED_KEY = "store.retired_collections"  # JSON [[name, unix time], ...]
# JSON [name, ...]: copies begun and not switched to (stopped, crashed): the next
# run drops them; dropping one at the stop would take seconds the stop has not got
_PARTIAL_KEY = "store.partial_copies"


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

    A copy is recorded in the ledger before it starts: one a stop (or a crash)
    interrupts is left as it is, so the stop returns within a batch, and the
    next run drops it with the retired ones (its index folder too).

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
        for declare in (_compactions, _reclaimed_chunks, _reclaimed_bytes):
            declare(self.metrics)  # at 0 from the start, not from the first compaction

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

    def publish_dead(self) -> None:
        """Set the dead-chunks gauge of every domain from the ledger (at start and each run)."""
        gauge = _dead_chunks(self.metrics)
        for state in self.ledger.domains():
            gauge.labels(domain=state.domain).set(self.dead(state.collection))

    # --- the task -----------------------------------------------------------------------

    def run(self) -> None:
        """Drop retired collections whose grace has passed and copies a stop left;
        compact at most one collection."""
        store = self.store()
        if store is None:
            return  # nothing applied yet: nothing to compact
        self.drop_retired(store)
        self.publish_dead()
        candidates = []
        for state in self.ledger.domains():
            if state.status is not IngestionStatus.READY:
                continue  # mid-ingest or failed: its records are in flux
            dead = self.dead(state.collection)
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
            CopyStoppedError: if the daemon stopped meanwhile (nothing switched; the
                partial copy stays, recorded for the next run to drop).
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
        partial = self._names(self.ledger.get(_PARTIAL_KEY))
        if target not in partial:  # before the copy: a crash midway is recorded too
            self.ledger.put(_PARTIAL_KEY, json.dumps([*partial, target]))
        try:
            copied = store.copy_collection(collection, target, function, self.stop)
        except CopyStoppedError:
            logger.info(
                "compaction of %s stopped (the daemon is stopping): the partial copy %s "
                "is dropped by the next housekeeping run",
                collection,
                target,
            )
            raise
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
            found = db.execute("SELECT value FROM meta WHERE key = ?", (_PARTIAL_KEY,)).fetchone()
            partial = [n for n in self._names(found[0] if found else "") if n != target]
            for key, value in (
                (_RETIRED_KEY, json.dumps(retired)),
                (_PARTIAL_KEY, json.dumps(partial)),  # in use from now on: never dropped
                (_DEAD_KEY + collection, "0"),
                (_DEAD_KEY + target, "0"),
            ):
                db.execute(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "value=excluded.value",
                    (key, value),
                )
        m = self.metrics
        _compactions(m).inc()
        _reclaimed_chunks(m).inc(dead)
        _dead_chunks(m).labels(domain=domain).set(0)
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

    @staticmethod
    def _names(text: str) -> list[str]:
        """The partial copies recorded (a JSON list of names; damage reads as none)."""
        try:
            value = json.loads(text) if text else []
        except ValueError:
            return []
        return [n for n in value if isinstance(n, str)] if isinstance(value, list) else []

    def drop_retired(self, store: ChromaStore) -> int:
        """Drop retired collections whose grace has passed, and the partial copies a
        stop or a crash left (no query ever used them: no grace); returns the bytes
        given back."""
        retired = self._retired(self.ledger.get(_RETIRED_KEY))
        partial = self._names(self.ledger.get(_PARTIAL_KEY))
        if not retired and not partial:
            return 0
        now = self.clock()
        due = [item for item in retired if now - float(item[1]) >= self.grace]
        if not due and not partial:
            return 0
        in_use = {state.collection for state in self.ledger.domains()}
        before = store.disk_usage()
        for name in [str(item[0]) for item in due] + partial:
            if name not in in_use:  # cannot happen: the switch forgets its copy; a guard
                store.drop_collection(name)
        reopen_error: Exception | None = None
        if self.reopen is not None:
            try:
                self.reopen()  # the dropped indexes' open files go: their space too
            except Exception as exc:  # recorded below, then reported as the task's failure
                reopen_error = exc
        freed = store.remove_orphan_segments()
        after = store.disk_usage()
        with self.ledger.transaction() as db:
            for key, value in (
                (_RETIRED_KEY, json.dumps([item for item in retired if item not in due])),
                (_PARTIAL_KEY, "[]"),
            ):
                db.execute(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "value=excluded.value",
                    (key, value),
                )
        if reopen_error is not None:
            raise reopen_error
        reclaimed = max(0, before - after) if before is not None and after is not None else freed
        _reclaimed_bytes(self.metrics).inc(reclaimed)
        if partial:
            logger.info(
                "dropped the partial copies of a stopped compaction: %s", ", ".join(partial)
            )
        return reclaimed
