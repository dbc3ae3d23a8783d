"""One sync cycle: fetch, validate, diff into change events, apply, advance.

`sync_once()` is idempotent and safe to re-run after a crash at any point:

1. fetch the branch (force, prune);
2. nothing to do if its head is the applied commit (or the commit already rejected);
3. validate the head's tree with the hook's validator; on errors, keep serving
   the applied commit and emit `botreg.sync.rejected`;
4. diff applied -> head tree to tree (renames detected, no merge base needed);
   a non-ancestor head emits `botreg.sync.history_rewritten`;
5. emit the change events, then apply: every domain is brought in line with
   the head's tree by the ingester (unchanged files are skipped by blob id,
   changed files re-embed only new chunks), removed domains are dropped;
6. only then record the head as applied and emit `botreg.sync.completed`.

Event ids derive from (type, from, to, subject): a cycle re-run after a crash
re-sends the same ids, and consumers deduplicate.

`sync_once()` is the failure boundary of a cycle: whatever a commit makes any
phase raise (a RecursionError in a parser, a MemoryError, a store error), the
cycle ends with `botreg.sync.failed` naming the phase, a status condition and a
crash log with the traceback; the daemon backs off and runs the next cycle.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botreg.changes import ChangeSet, FileChange, KeyChange, compute_changes
from botreg.changes.clip import clip_changes
from botreg.changes.engine import DiffInterrupted
from botreg.daemon.lease import Fence, FencedError
from botreg.daemon.metrics import Metrics
from botreg.daemon.progress import Progress
from botreg.daemon.status import DaemonStatus
from botreg.daemon.summary import last_cycle
from botreg.datadir import DataDir
from botreg.errors import BotregError, UsageError, write_crash_log
from botreg.events import CloudEvent, EventBus, event_id
from botreg.git.mirror import (
    BranchNotFoundError,
    Credentials,
    FetchError,
    FetchInterrupted,
    GitMirror,
    redact_url,
)
from botreg.git.tree import GitTreeSource
from botreg.knowledge.adopt import follow_store
from botreg.knowledge.ingest import IngestInterrupted
from botreg.knowledge.ledger import Ledger
from botreg.knowledge.manager import KnowledgeIngestionManager
from botreg.registry.view import EnvironmentNotFoundError, RegistryView
from botreg.resolve import allowed_environ
from botreg.secrets import mask_text
from botreg.store.chroma import ChromaStore, ReadWriteLock, StoreUnavailableError
from botreg.store.settings import KnowledgeSettings, StoreSettings
from botreg.validation.runner import ResultCache, ValidationInterrupted, validate_registry

__all__ = ["CycleResult", "SyncOptions", "Syncer"]

logger = logging.getLogger("botreg.daemon")

APPLIED_KEY = "sync.applied_commit"
MAX_FINDINGS = 200  # findings kept in the status and the rejected event: bounded
MAX_FAILED_FILES = 200  # refused knowledge files a cycle result keeps (the log shows 50)
REJECTED_KEY = "sync.rejected_commit"


@dataclass(frozen=True)
class SyncOptions:
    """What to follow and where to keep state."""

    source: str
    branch: str = "main"
    environment: str = "development"
    data_dir: Path = Path(".botreg")
    token_file: Path | None = None
    ssh_key_file: Path | None = None
    fetch_timeout: float = 300
    allow_env: tuple[str, ...] = ()  # variables ${VAR} may read (fnmatch); none by default


@dataclass
class CycleResult:
    """What one cycle did: `result` is synced, noop, rejected, failed, interrupted
    (a stop asked for mid-cycle: nothing failed, the next run resumes) or fenced
    (an HA leader lost its lease mid-cycle: it stopped before its next write and
    the new leader finishes the commit)."""

    result: str
    from_commit: str = ""
    to_commit: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    error: str = ""
    phase: str = ""
    # A rejected commit's findings (at most MAX_FINDINGS; counts["findings"] has the total).
    findings: list[dict[str, Any]] = field(default_factory=list)
    # Knowledge files the apply refused, {"path", "message"} (at most MAX_FAILED_FILES;
    # counts["files_failed"] has the total): the log names them.
    failed_files: list[dict[str, str]] = field(default_factory=list)

    # The failure is the operator's mistake: the source has no --branch, or the commit
    # no --env (`sync --once` exits 2, as other commands do for an unknown name).
    usage_error: bool = False

    @property
    def exit_code(self) -> int:
        """0 for synced or nothing to do; 1 for a rejected commit, a failure, or a
        commit applied without some knowledge files (see `counts["files_failed"]`);
        2 for a failure that names a flag to fix (`usage_error`)."""
        if self.result in ("synced", "noop") and not self.counts.get("files_failed"):
            return 0
        return 2 if self.usage_error else 1


# The condition that says which part is broken when a phase raises unexpectedly.
_PHASE_CONDITIONS = {
    "fetch": "FetchFailed",
    "validate": "ValidationFailed",
    "apply": "IngestFailed",
}


def _short(exc: BaseException) -> str:
    """`Type: message` on one line, bounded: events and status carry no traceback."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _bounded_changes(changes: Sequence[KeyChange]) -> dict[str, Any]:
    """The `changes` of an event, bounded: a commit can change 100,000 values at once."""
    kept, left_out = clip_changes([c.to_dict() for c in changes])
    return {"changes": kept, **({"changes_truncated": left_out} if left_out else {})}


class _EmitInterrupted(Exception):  # noqa: N818 - a stop asked for, not an error
    """A stop between two change events: the rest are sent by the re-run (same ids)."""


# A stop asked for mid-cycle, whichever phase noticed it: nothing failed, nothing
# half-applied (the ledger makes a partial ingest safe), the next run resumes.
_INTERRUPTIONS = (
    FetchInterrupted,
    ValidationInterrupted,
    DiffInterrupted,
    _EmitInterrupted,
    IngestInterrupted,
)


class _PhaseError(Exception):
    def __init__(self, phase: str, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.phase = phase
        self.usage = usage  # the operator's flag names what is not there


class Syncer:
    """Keeps a store and an event stream in step with a branch."""

    def __init__(
        self,
        options: SyncOptions,
        bus: EventBus,
        status: DaemonStatus,
        metrics: Metrics | None = None,
        should_stop: Callable[[], bool] | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Open the mirror and the ledger (the store opens with `open_applied_store`
        or at the first apply).

        Args:
            options: What to follow and where to keep state.
            bus: Where the change events go.
            status: The status document.
            metrics: The daemon's metrics (a fresh registry if None).
            should_stop: Asked during the fetch, between files in validation and diff,
                between change events and between ingest batches: True ends the
                cycle as interrupted.
            progress: Told how the long work of a cycle goes (sending change events,
                chunking and embedding each domain); None reports nothing.
        """
        self.options = options
        self.bus = bus
        self.status = status
        self.metrics = metrics or Metrics()
        self.should_stop = should_stop or (lambda: False)
        self.progress = progress or Progress()
        self.data = DataDir(options.data_dir)
        self.mirror = GitMirror(
            self.data.mirror,
            options.source,
            options.branch,
            Credentials(options.token_file, options.ssh_key_file),
            options.fetch_timeout,
        )
        self.ledger = Ledger(self.data.ledger)
        self.event_source = redact_url(self.mirror.url)
        self._store: ChromaStore | None = None
        # HTTP threads read the store while this thread may reopen or replace it
        self._store_guard = ReadWriteLock()
        self.cycle_started: float | None = None
        self._validation_cache: ResultCache = {}  # per file and blob: one changed file, one check
        self._store_settings: StoreSettings | None = None
        self._phase = ""  # the phase the current cycle is in: a failure names it
        self._head = ""  # the head the current cycle fetched ("" before the fetch)
        self._last_crash: tuple[str, str, Path | None] | None = None  # phase, message, log
        self._store_metrics_done = False  # applied commit and chunk gauges set once
        self._applied_label = ""  # the commit botreg_applied_commit_info shows
        self._chunk_domains: set[str] = set()  # the domains botreg_chunks shows
        # called once a commit is applied, before `botreg.sync.completed` is published
        self.before_completed: Callable[[], None] | None = None
        # HA: checked before every store write and event publish (None: no HA)
        self.fence: Fence | None = None
        # HA: set by a takeover; the next apply rebuilds the ledger's records from the
        # store first (domain -> collection map and commit of the shared state)
        self.adopt_pending: tuple[dict[str, dict[str, Any]], str] | None = None
        # the applied commit's tree as the last cycle read it: the next cycle's "old"
        # side of the diff, so a commit reads each tree once (a 5,000-bot tree is
        # about 0.1 s per read)
        self._applied_view: tuple[str, RegistryView] | None = None
        # HA: set by a takeover; the store is brought in line with the applied commit
        # even if no new commit comes (an embedded store of a standby is empty, a
        # shared one may hold a dead leader's partial work): cleared by any apply
        self.reconcile_pending = False
        applied = self.ledger.get(APPLIED_KEY)
        self.status.update(applied_commit=applied, source=self.event_source)

    def close(self) -> None:
        """Release the ledger and the store."""
        self.ledger.close()
        with self._store_guard.writing():  # a query under way ends first
            if self._store is not None:
                self._store.close()
                self._store = None

    # --- helpers -----------------------------------------------------------------------

    def _check_fence(self) -> None:
        """Raise FencedError if this daemon may no longer write (HA; no-op otherwise)."""
        if self.fence is not None:
            self.fence.check()

    def _emit(self, type_: str, subject: str, data: dict[str, Any], *key: str) -> None:
        self._check_fence()  # a deposed leader publishes nothing
        self.bus.publish(
            CloudEvent(
                type=type_,
                source=self.event_source,
                id=event_id(type_, subject, *key),
                subject=subject,
                data=data,
            )
        )

    @property
    def store(self) -> ChromaStore | None:
        """The store of the applied commit (None until `open_applied_store` or an apply).

        For this thread's own use (ingest, housekeeping). Another thread (an HTTP
        request) uses `reading_store()`: the store may be reopened between cycles.
        """
        return self._store

    @contextmanager
    def reading_store(self, timeout: float | None = 30.0) -> Iterator[ChromaStore | None]:
        """The store for another thread's read: it is not reopened, replaced or closed
        until the `with` block ends (a reopen waits for the reads under way; reads
        wait for a reopen, which takes a fraction of a second).

        Args:
            timeout: Seconds to wait for a reopen to finish.

        Yields:
            The store, or None if none is open.

        Raises:
            StoreUnavailableError: if a reopen held the store past `timeout`.
        """
        if not self._store_guard.acquire_read(timeout):
            raise StoreUnavailableError("the store is being reopened; try again")
        try:
            yield self._store
        finally:
            self._store_guard.release_read()

    def reopen_store(self) -> bool:
        """Close and reopen the embedded store's client (between cycles).

        Gives back what Chroma holds for collections dropped since it was opened
        (their index files, descriptors and memory: see `ChromaStore.reopen`).
        Reads on other threads wait meanwhile rather than fail.

        Returns:
            True if the client was reopened (False: no store, or a server store).

        Raises:
            StoreUnavailableError: if it cannot be opened again; the store is then
                closed, `/readyz` says so and the next apply opens it again.
        """
        with self._store_guard.writing():
            if self._store is None:
                return False
            try:
                return self._store.reopen()
            except StoreUnavailableError:
                self._store.close()
                self._store = None
                raise

    def open_applied_store(self) -> ChromaStore | None:
        """Open the store the applied commit's environment names, as at its apply.

        Called at start-up, so a restarted daemon serves queries (and is ready) at once
        instead of after the next commit. None if nothing was applied yet.

        Raises:
            UsageError: if the applied commit has no environment `--env` names.
            BotregError: if the applied commit is gone from the mirror, its environment
                cannot be read, or the store cannot be opened (the next apply retries).
        """
        applied = self.ledger.get(APPLIED_KEY)
        if not applied:
            return None
        if not self.mirror.has_commit(applied):
            raise BotregError(f"the applied commit {applied[:12]} is not in the mirror")
        source = GitTreeSource(self.mirror.repo, applied, label=f"applied@{applied[:12]}")
        try:
            return self.store_for(self._knowledge_settings(RegistryView(source), applied).store)
        except _PhaseError as exc:  # the environment file of the applied commit
            if exc.usage:  # the operator's --env names an environment it lacks
                raise UsageError(str(exc)) from None
            raise BotregError(str(exc)) from None

    def store_for(self, settings: StoreSettings) -> ChromaStore:
        """The store an environment names (replaced only when its settings change).

        The new store is opened first and swapped in only once it opened: a commit
        naming a store that cannot open fails its apply while the old store keeps
        serving the last good commit (closing first left no store at all, and a
        half-released embedded client broke the next open of the same folder).

        Raises:
            BotregError: if the new store cannot be opened (the old one stays).
        """
        if self._store is not None and self._store_settings == settings:
            return self._store
        # The same embedded folder under other settings shares this process's store
        # lock and Chroma's per-path client system: both are reference-counted, so
        # opening the new one before closing the old one is safe.
        new = ChromaStore(settings, self.data.root)
        new.before_write = self._check_fence
        with self._store_guard.writing():  # no read is under way on the old one
            old, self._store, self._store_settings = self._store, new, settings
            if old is not None:
                old.close()
        return new

    def _knowledge_settings(self, view: RegistryView, commit: str) -> KnowledgeSettings:
        try:
            # only what the operator allows: a commit must not read the daemon's environment
            return view.knowledge_settings(
                self.options.environment, allowed_environ(self.options.allow_env)
            )
        except BotregError as exc:  # missing or unusable environment file
            missing = isinstance(exc, EnvironmentNotFoundError)
            raise _PhaseError("apply", f"{exc} (at {commit[:12]})", usage=missing) from None

    # --- the cycle ---------------------------------------------------------------------

    def sync_once(self) -> CycleResult:
        """Run one cycle (see the module docstring).

        Never raises but for KeyboardInterrupt and SystemExit: any exception of
        any phase ends the cycle as `failed`, with the phase it failed in.
        """
        started = time.monotonic()
        self.cycle_started = started  # read by the HTTP thread (Stalled)
        self._phase, self._head = "start", ""
        applied = ""
        durations: dict[str, float] = {}
        self._progress_call(self.progress.begin)
        try:
            now = datetime.now(UTC).isoformat(timespec="seconds")
            self.status.update(last_attempt=now)
            applied = self.ledger.get(APPLIED_KEY)
            try:
                result = self._cycle(applied, durations)
            finally:  # a bar goes before the cycle's summary is logged, whatever happened
                self._progress_call(self.progress.finish)
        except _INTERRUPTIONS:  # a stop: not a failure (no event, no failure log)
            result = CycleResult(
                "interrupted", applied, self._head, error="stopped mid-cycle", phase=self._phase
            )
        except FencedError as exc:  # deposed: not a failure of the commit (no crash log)
            result = CycleResult("fenced", applied, self._head, error=str(exc), phase=self._phase)
        except _PhaseError as exc:
            result = CycleResult(
                "failed",
                applied,
                self._head,
                error=str(exc),
                phase=exc.phase,
                usage_error=exc.usage,
            )
        except BotregError as exc:
            result = CycleResult("failed", applied, self._head, error=str(exc), phase=self._phase)
        except Exception as exc:  # the boundary: whatever a commit makes a phase raise
            result = self._crashed(exc, applied)
        durations["cycle"] = time.monotonic() - started
        result.durations = durations
        try:
            self._record(result)
        except Exception as exc:  # e.g. the event log's disk is full: still not fatal
            logger.error("could not record the cycle's result: %s", _short(exc))
            logger.debug("recording the cycle failed", exc_info=exc)
        finally:
            self.cycle_started = None
        return result

    def _progress_call(self, call: Callable[..., None], *args: Any) -> None:
        """Tell the progress reporter; one that fails is switched off, never the cycle."""
        try:
            call(*args)
        except Exception as exc:  # e.g. a terminal gone away under a rich bar
            logger.debug("progress reporting switched off: %s", _short(exc))
            self.progress = Progress()

    def _crashed(self, exc: Exception, applied: str) -> CycleResult:
        """A cycle that raised something unexpected: log it, keep a crash log, report it."""
        phase, message = self._phase, _short(exc)
        previous = self._last_crash
        if previous is not None and previous[:2] == (phase, message):
            crash_log = previous[2]  # the same failure again: one log, not one per retry
        else:
            try:
                crash_log = write_crash_log(exc, sys.argv, context=f"sync cycle, phase {phase}")
            except Exception:  # a crash log must never become a second crash
                crash_log = None
            self._last_crash = (phase, message, crash_log)
        logger.error(
            "sync cycle failed in phase %s: %s%s",
            phase,
            message,
            f" (traceback in {crash_log})" if crash_log else "",
        )
        logger.debug("traceback of the failed cycle", exc_info=exc)
        condition = _PHASE_CONDITIONS.get(phase)
        if condition is not None:
            self.status.set_condition(condition, True, "UnexpectedError", message)
        self.status.update(last_crash_log=str(crash_log or ""))
        return CycleResult("failed", applied, self._head, error=message, phase=phase)

    def _cycle(self, applied: str, durations: dict[str, float]) -> CycleResult:
        # 1. fetch
        self._phase = "fetch"
        t = time.monotonic()
        try:
            head = self.mirror.fetch(self.should_stop)
        except FetchError as exc:
            durations["fetch"] = time.monotonic() - t
            message = " ".join(str(exc).split())  # git's stderr: one line in events and status
            self.status.set_condition("FetchFailed", True, "FetchFailed", message)
            raise _PhaseError(
                "fetch", message, usage=isinstance(exc, BranchNotFoundError)
            ) from None
        durations["fetch"] = time.monotonic() - t
        self.status.set_condition("FetchFailed", False, "Fetched")
        self.status.update(last_fetch=datetime.now(UTC).isoformat(timespec="seconds"))
        self.metrics.gauge(
            "botreg_last_fetch_timestamp_seconds",
            "Unix time of the last successful fetch of the source",
        ).set(time.time())
        self.status.update(head_commit=head)
        self._head = head
        if not head:
            raise _PhaseError("fetch", f"branch {self.options.branch} not found")

        # 2. nothing to do?
        if head == applied:
            if self.reconcile_pending and applied:
                return self._reconcile(applied, durations)
            return CycleResult("noop", applied, head)
        if head == self.ledger.get(REJECTED_KEY):
            return CycleResult("rejected", applied, head, error="the head is still rejected")

        self.status.set_condition("Reconciling", True, "NewCommit", f"applying {head[:12]}")
        source = GitTreeSource(self.mirror.repo, head, label=f"{self.options.branch}@{head[:12]}")
        view = RegistryView(source)  # validate, diff and apply read this one snapshot

        # 3. validate
        self._phase = "validate"
        t = time.monotonic()
        report = validate_registry(
            view.snapshot, cache=self._validation_cache, should_stop=self.should_stop
        )
        durations["validate"] = time.monotonic() - t
        if not report.ok:
            findings = [
                {
                    "path": f.path,
                    "line": f.line,
                    "column": f.column,
                    "code": f.code,
                    "severity": str(f.severity),
                    "message": f.message,
                }
                for f in report.findings[:MAX_FINDINGS]
            ]
            self.ledger.put(REJECTED_KEY, head)
            self.status.update(
                rejected_commit=head, findings=findings, findings_total=len(report.findings)
            )
            self.status.set_condition(
                "ValidationFailed", True, "InvalidCommit", f"{report.errors} errors in {head[:12]}"
            )
            self._emit(
                "botreg.sync.rejected",
                "",
                {
                    "from": applied,
                    "to": head,
                    "errors": report.errors,
                    "warnings": report.warnings,
                    "findings": findings,
                },
                applied,
                head,
            )
            counts = {
                "errors": report.errors,
                "warnings": report.warnings,
                "findings": len(report.findings),
            }
            return CycleResult("rejected", applied, head, counts=counts, findings=findings)
        self.status.set_condition("ValidationFailed", False, "Valid")
        self.status.update(rejected_commit="", findings=[], findings_total=0)

        # 4. diff
        self._phase = "diff"
        t = time.monotonic()
        old_view: RegistryView | None = None
        if applied and self.mirror.has_commit(applied):
            last = self._applied_view
            old_view = (
                last[1]
                if last is not None and last[0] == applied
                else RegistryView(GitTreeSource(self.mirror.repo, applied))
            )
            if not self.mirror.is_ancestor(applied, head):
                self._emit(
                    "botreg.sync.history_rewritten",
                    "",
                    {"from": applied, "to": head, "reconciled": False},
                    applied,
                    head,
                )
        elif applied:  # the applied commit is gone: the ledger's record is the baseline
            self._emit(
                "botreg.sync.history_rewritten",
                "",
                {"from": applied, "to": head, "reconciled": True},
                applied,
                head,
            )
        files = [
            FileChange(*change)
            for change in self.mirror.diff(applied if old_view is not None else "", head)
        ]
        changes = compute_changes(old_view, view, files, self.should_stop)
        durations["diff"] = time.monotonic() - t

        # 5. events, then apply
        self._phase = "emit"
        t = time.monotonic()
        with self.bus.batch():  # one fsync for the cycle's change events, not one each
            self._emit_changes(changes, applied, head)
        # its own duration: one event per changed bot is seconds at 15,000 bots
        durations["emit"] = time.monotonic() - t
        self._phase = "apply"
        t = time.monotonic()
        failed_files: list[dict[str, str]] = []
        counts = self._apply(view, head, applied, failed_files)
        durations["ingest"] = time.monotonic() - t
        counts.update(changes.counts())

        # 6. advance
        self._phase = "advance"
        self.mirror.keep_applied(head)
        self.ledger.put(APPLIED_KEY, head)
        self.ledger.put(REJECTED_KEY, "")
        self._applied_view = (head, view)
        self.status.update(applied_commit=head)
        if self.before_completed is not None:
            try:  # e.g. the daemon's read model: a reader told "completed" gets the new commit
                self.before_completed()
            except Exception as exc:  # the read then loads it; the commit is applied
                # a stop also ends the git children the load uses: not a fault then
                level = logging.DEBUG if self.should_stop() else logging.WARNING
                logger.log(level, "could not prepare reads of %s: %s", head[:12], _short(exc))
        self._emit(
            "botreg.sync.completed",
            "",
            {
                "from": applied,
                "to": head,
                "counts": counts,
                "durations": {k: round(v, 4) for k, v in durations.items()},
            },
            applied,
            head,
        )
        return CycleResult("synced", applied, head, counts=counts, failed_files=failed_files)

    def _emit_changes(self, changes: ChangeSet, applied: str, head: str) -> None:
        """One event per change; a stop is honoured between events (15,000 bots are
        15,000 events): the re-run sends them all again with the same ids."""
        total = (
            len(changes.bots)
            + len(changes.knowledge)
            + len(changes.environments)
            + len(changes.registry)
            + len(changes.domains)
        )
        sent = 0

        def sending() -> None:
            nonlocal sent
            self._stop_point()
            sent += 1
            self._progress_call(self.progress.update, "emitting", "", sent, total, "events")

        for bot in changes.bots:
            sending()
            self._emit(
                bot.event_type,
                bot.path,
                {
                    "bot_id": bot.bot_id,
                    "path": bot.path,
                    "commit": head,
                    **_bounded_changes(bot.changes),
                },
                applied,
                head,
            )
        for file in changes.knowledge:
            sending()
            self._emit(
                file.event_type,
                file.path,
                {
                    "domain": file.domain,
                    "path": file.path,
                    "commit": head,
                    "old_path": file.old_path,
                },
                applied,
                head,
            )
        for env in changes.environments:
            sending()
            self._emit(
                "botreg.environment.changed",
                env.path,
                {
                    "environment": env.name,
                    "commit": head,
                    "path": env.path,
                    "kind": env.kind,
                    **_bounded_changes(env.changes),
                },
                applied,
                head,
            )
        for reg in changes.registry + changes.domains:
            sending()
            self._emit(
                "botreg.registry.changed",
                reg.path,
                {
                    "commit": head,
                    "path": reg.path,
                    "kind": reg.kind,
                    **_bounded_changes(reg.changes),
                },
                applied,
                head,
            )

    def _stop_point(self) -> None:
        if self.should_stop():
            raise _EmitInterrupted

    def _follow_store_move(self, store: ChromaStore) -> None:
        """A commit that points the environment at another store (a new path, host,
        tenant or database): the ledger adopts what that store holds, so every domain
        is brought in line there (`botreg.knowledge.adopt.follow_store`)."""
        moved = follow_store(store, self.ledger)
        if moved:
            logger.warning(
                "the store moved (%s -> %s): ingesting every domain into the new store",
                mask_text(moved),
                mask_text(store.settings.identity),
            )

    def _apply(
        self, view: RegistryView, head: str, applied: str, failed_files: list[dict[str, str]]
    ) -> dict[str, int]:
        """Bring every domain in line with `head`; the files refused go to `failed_files`."""
        try:
            settings = self._knowledge_settings(view, head)
            store = self.store_for(settings.store)
        except BotregError as exc:
            self.status.set_condition("IngestFailed", True, "StoreUnavailable", str(exc))
            raise _PhaseError("apply", str(exc)) from None
        if self.adopt_pending is None:  # a takeover adopts the store anyway
            self._follow_store_move(store)
        if self.adopt_pending is not None:
            self.adopt(store)
        current = [""]  # the domain being ingested, for the progress reports

        def progress(phase: str, done: int, total: int) -> None:
            unit = "files" if phase == "chunking" else "chunks"
            self._progress_call(
                self.progress.update, phase, f"knowledge/{current[0]}", done, total, unit
            )

        # the seed's manager over this commit's tree: the one code path that ingests
        manager = KnowledgeIngestionManager(
            view.snapshot,
            store,
            ledger=self.ledger,
            embedding=settings.embedding,
            commit=head,
            should_stop=self.should_stop,
            on_embed=self._embedded,
            progress=progress,
        )
        domains = manager.domains()
        totals = {
            "chunks_embedded": 0,
            "chunks_created": 0,
            "chunks_deleted": 0,
            "files_skipped": 0,
            "files_processed": 0,
        }
        failed: list[str] = []  # whole domains that could not be ingested: retried
        file_errors: list[str] = []  # files refused for their content: deterministic
        files_failed = 0
        statuses: dict[str, dict[str, str]] = {}
        for domain in domains:
            current[0] = domain
            try:
                result = manager.ingest_sync(domain)
            except FencedError:
                raise  # deposed mid-ingest: the cycle ends, the new leader finishes
            except BotregError as exc:
                failed.append(f"{domain}: {exc}")
                self._emit(
                    "botreg.knowledge.ingest_failed",
                    f"knowledge/{domain}",
                    {"domain": domain, "error": str(exc)},
                    applied,
                    head,
                )
                continue
            for key in totals:
                totals[key] += int(getattr(result, key))
            changed = result.files_processed or result.chunks_deleted or result.errors
            if result.errors:
                # A file refused for its content (over the chunk ceiling, say) fails the
                # same way on every retry: the commit is applied without it (its last
                # good chunks keep serving), so one file cannot hold back later commits.
                file_errors.append(f"{domain}: {len(result.errors)} file(s) failed")
                files_failed += len(result.errors)
                room = MAX_FAILED_FILES - len(failed_files)
                failed_files.extend(result.errors[: max(0, room)])
                self._emit(
                    "botreg.knowledge.ingest_failed",
                    f"knowledge/{domain}",
                    result.to_dict(),
                    applied,
                    head,
                )
            elif changed:
                self._emit(
                    "botreg.knowledge.ingested",
                    f"knowledge/{domain}",
                    result.to_dict(),
                    applied,
                    head,
                )
            m = self.metrics
            m.histogram(
                "botreg_ingest_duration_seconds",
                "Duration of the ingestion of one knowledge domain in a sync cycle",
                ["domain"],
            ).labels(domain=result.domain_id).observe(result.duration_seconds or 0.0)
            m.counter(
                "botreg_chunks_embedded_total", "Chunks embedded and written to the store"
            ).inc(result.chunks_embedded)
            m.counter("botreg_chunks_deleted_total", "Chunks deleted from the store").inc(
                result.chunks_deleted
            )
            m.counter(
                "botreg_files_skipped_total", "Knowledge files skipped as unchanged (by blob id)"
            ).inc(result.files_skipped)
        for state in self.ledger.domains():
            if state.domain not in domains:
                totals["chunks_deleted"] += manager.remove_domain(state.domain)
        for state in self.ledger.domains():
            statuses[state.domain] = {
                "status": str(state.status),
                "error": state.error,
                "collection": state.collection,
            }
        self.status.update(domains=statuses)
        if failed:
            message = "; ".join(failed + file_errors)
            self.status.set_condition("IngestFailed", True, "IngestFailed", message)
            raise _PhaseError("apply", message)
        if file_errors:
            message = "; ".join(file_errors)
            self.status.set_condition("IngestFailed", True, "FileErrors", message)
        else:
            self.status.set_condition("IngestFailed", False, "Ingested")
        totals["files_failed"] = files_failed
        self.reconcile_pending = False
        return totals

    def _reconcile(self, applied: str, durations: dict[str, float]) -> CycleResult:
        """After a takeover with no new commit: bring the store in line with the applied
        commit (re-plan every file; no change events, the commit's were sent)."""
        self._phase = "apply"
        t = time.monotonic()
        last = self._applied_view
        view = (
            last[1]
            if last is not None and last[0] == applied
            else RegistryView(GitTreeSource(self.mirror.repo, applied))
        )
        failed_files: list[dict[str, str]] = []
        counts = self._apply(view, applied, applied, failed_files)
        durations["ingest"] = time.monotonic() - t
        self._applied_view = (applied, view)
        logger.info(
            "brought the store in line with %s after the takeover: %d chunks embedded, %d deleted",
            applied[:12],
            counts.get("chunks_embedded", 0),
            counts.get("chunks_deleted", 0),
        )
        return CycleResult("synced", applied, applied, counts=counts, failed_files=failed_files)

    def adopt(self, store: ChromaStore) -> None:
        """A takeover: rebuild the ledger's records from the shared store (see
        `botreg.daemon.ha.adopt_store`) before the first write as leader.

        Uses and clears `adopt_pending` (nothing to do if it is None).
        """
        from botreg.daemon.ha import adopt_store

        if self.adopt_pending is None:
            return
        domains, commit = self.adopt_pending
        started = time.monotonic()
        chunks = adopt_store(store, self.ledger, domains, commit)
        self.adopt_pending = None
        logger.info(
            "adopted the store's %d chunks in %.2f s: every file is re-planned, stored "
            "chunks are not embedded again",
            chunks,
            time.monotonic() - started,
        )

    def follow_commit(self, commit: str, domains: dict[str, dict[str, Any]]) -> bool:
        """A standby: serve `commit` and the leader's collections (no ingest, no event).

        Fetches the mirror if the commit is not in it yet. Returns False if the
        commit is still not there (the leader fetched a newer head: retried later).
        """
        from botreg.daemon.ha import record_domains

        if not self.mirror.has_commit(commit):
            head = self.mirror.fetch(self.should_stop)
            now = datetime.now(UTC).isoformat(timespec="seconds")
            self.status.update(last_fetch=now, head_commit=head)
            if not self.mirror.has_commit(commit):
                return False
        self.mirror.keep_applied(commit)
        record_domains(self.ledger, domains, commit)
        self.ledger.put(APPLIED_KEY, commit)
        self.status.update(
            applied_commit=commit,
            domains={
                name: {"status": "ready", "error": "", "collection": str(entry.get("collection"))}
                for name, entry in domains.items()
            },
        )
        self.status.set_condition("Ready", True, "Following", f"serving {commit[:12]}")
        return True

    def _embedded(self, texts: int, seconds: float) -> None:
        """One batch went through the embedding function: its latency and its bill."""
        self.metrics.histogram(
            "botreg_embed_duration_seconds",
            "Duration of one batch sent to the embedding function",
        ).observe(seconds)
        self.metrics.counter(
            "botreg_embedded_texts_total", "Texts sent to the embedding function"
        ).inc(texts)

    def _store_metrics(self, result: CycleResult) -> None:
        """The applied commit and the chunks per domain, from the ledger.

        After an apply, and once after a start-up (the ledger already tells): a
        no-op poll changes neither, and counting chunks is not free.
        """
        if result.result != "synced" and self._store_metrics_done:
            return
        applied = self.ledger.get(APPLIED_KEY)
        info = self.metrics.gauge(
            "botreg_applied_commit_info",
            "The commit the store and events are at (value 1, the commit as a label)",
            ["commit"],
        )
        # one series: the new one first, then the old one goes (a scrape never sees none)
        if applied:
            info.labels(commit=applied).set(1)
        if self._applied_label and self._applied_label != applied:
            info.remove(self._applied_label)
        self._applied_label = applied
        chunks = self.metrics.gauge(
            "botreg_chunks", "Chunks stored per knowledge domain (from the ledger)", ["domain"]
        )
        domains = set()
        for state in self.ledger.domains():
            chunks.labels(domain=state.domain).set(len(self.ledger.all_chunk_ids(state.collection)))
            domains.add(state.domain)
        for gone in self._chunk_domains - domains:  # a removed domain's series goes
            chunks.remove(gone)
        self._chunk_domains = domains
        self._store_metrics_done = True

    def _record(self, result: CycleResult) -> None:
        m = self.metrics
        m.counter(
            "botreg_sync_cycles_total",
            "Sync cycles by result (synced, noop, rejected, failed, interrupted)",
            ["result"],
        ).labels(result=result.result).inc()
        phases = m.histogram(
            "botreg_sync_phase_duration_seconds",
            "Duration of each phase of a sync cycle",
            ["phase"],
        )
        for phase, seconds in result.durations.items():
            if phase != "cycle":  # the whole cycle has its own histogram
                phases.labels(phase=phase).observe(seconds)
        # durations["cycle"] is the whole: summing it with its phases counted them twice
        m.histogram("botreg_sync_cycle_duration_seconds", "Duration of a whole sync cycle").observe(
            result.durations.get("cycle", 0.0)
        )
        try:
            self._store_metrics(result)
        except Exception as exc:  # e.g. the ledger is locked: the status is saved all the same
            logger.warning("could not update the store metrics: %s", _short(exc))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        update: dict[str, Any] = {"last_result": result.result, "last_error": result.error}
        # what the last cycle that did something did (`botreg status` shows it): a poll
        # that found nothing new, or the same rejected head, leaves it as it was
        if result.result != "noop" and not (result.result == "rejected" and not result.findings):
            update["last_cycle"] = last_cycle(result, now)
        if result.result in ("synced", "noop"):
            update["last_success"] = now
            m.gauge(
                "botreg_last_success_timestamp_seconds", "Unix time of the last successful cycle"
            ).set(time.time())
            self.status.set_condition(
                "Ready", True, "Synced", f"applied {(result.to_commit or '')[:12]}"
            )
            self.status.set_condition("Reconciling", False, "UpToDate")
            self.status.set_condition("Stalled", False, "Progressing")
        elif result.result == "rejected":
            # keep serving the applied commit: still Ready if one was applied
            applied = bool(self.ledger.get(APPLIED_KEY))
            self.status.set_condition(
                "Ready", applied, "ServingLastGood" if applied else "NothingApplied", result.error
            )
            self.status.set_condition("Reconciling", False, "Rejected")
        elif result.result == "interrupted":
            self.status.set_condition(
                "Reconciling", False, "Interrupted", "resumes at the next run"
            )
        elif result.result == "fenced":
            self.status.set_condition(
                "Reconciling", False, "Fenced", "the lease was lost; another daemon leads"
            )
        else:
            self.status.set_condition("Reconciling", False, "Failed", result.error)
        # the status first: if the event log cannot be written, the status still tells
        self.status.update(**update)
        self.status.save()
        if result.result == "failed":
            self._emit(
                "botreg.sync.failed",
                "",
                {
                    "from": result.from_commit,
                    "to": result.to_commit,
                    "phase": result.phase,
                    "error": result.error,
                },
                result.from_commit,
                result.to_commit,
                result.phase,
                now,
            )  # each failure is news
