"""The daemon's outer loop: triggers, backoff, the failure budget, a clean stop.

`Syncer.sync_once()` does one cycle; this loop decides when the next one runs:
after `--interval` seconds (with jitter), at once when a trigger fires (a
`--watch`ed local commit, a verified push webhook, SIGHUP), or after an
exponential backoff with jitter when the cycle failed. It never crash-loops:
failures are retried forever unless `--max-failures` opts into exiting, and
nothing a commit holds can end the loop (`_cycle` turns even a bug that
escapes `sync_once` into a failed cycle). A trigger cuts any wait short, the
backoff after a failure included.

SIGTERM and SIGINT stop promptly and exit 0: the ingest stops between embedding
batches (the cycle ends as interrupted, not failed: no failure event, no crash
log), and the next start resumes from what the ledger recorded. Signal handlers
only write a byte to a pipe; a relay thread acts on it (a handler that took a
lock the interrupted main thread holds, as `Event.set` does, would deadlock).

At start-up the store of the applied commit is opened from the ledger, so a
restarted daemon answers queries and `/readyz` without waiting for a commit.

Each cycle that did something logs one summary line (`botreg.daemon.summary`):
from..to, bots, knowledge files and chunks, duration; a rejected one then each
finding. Long work in between shows progress (`botreg.daemon.progress`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from botreg.api.git_backend import applied_commit
from botreg.daemon.ha import SharedState
from botreg.daemon.housekeeping import Housekeeper, HousekeepingOptions, rotation_counter
from botreg.daemon.http import DaemonHTTP, read_token_file
from botreg.daemon.lease import Lease, check_redis_url, lease_key
from botreg.daemon.metrics import Metrics
from botreg.daemon.progress import PROGRESS_MODES, make_progress
from botreg.daemon.readiness import Readiness, default_stale_after, status_timestamp
from botreg.daemon.status import FINDINGS_SHOWN, DaemonStatus, finding_lines
from botreg.daemon.summary import INITIAL, NO_HEAD, cycle_fields, cycle_line
from botreg.daemon.sync import APPLIED_KEY, REJECTED_KEY, CycleResult, Syncer, SyncOptions
from botreg.daemon.write_api import WriteAPI
from botreg.daemon.writes import DEFAULT_AUTHOR, GitOpsWriter, parse_author
from botreg.datadir import DataDir
from botreg.errors import UsageError
from botreg.events import CloudEvent, EventBus, event_id
from botreg.events.bus import stdout_sink
from botreg.events.log import EventLog
from botreg.events.redis_stream import DEFAULT_MAXLEN, DEFAULT_STREAM, RedisStreamSink
from botreg.events.webhook import DEAD_LETTER_AFTER, WebhookSink
from botreg.registry.index import ResolvedBots
from botreg.registry.layout import escape_unsafe
from botreg.secrets import mask_text

__all__ = ["Daemon", "DaemonOptions"]

logger = logging.getLogger("botreg.daemon")
# the HA calls whose failure means the HA Redis does not answer (see Daemon._ha_redis)
_REDIS_CALLS = frozenset({"acquire", "follow", "publish"})
MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class DaemonOptions:
    """Loop, trigger and sink settings (the `botreg sync` flags)."""

    interval: float = 30
    watch: bool = False
    listen: str | None = "127.0.0.1:8470"
    events_file: str | None = None  # a path, or "-" for stdout
    webhook: str | None = None
    webhook_secret_file: Path | None = None
    max_failures: int | None = None
    api_token_file: Path | None = None
    webhook_dead_letter_after: float = DEAD_LETTER_AFTER
    # seconds without a successful fetch before /readyz fails (None: default_stale_after)
    stale_after: float | None = None
    housekeeping: HousekeepingOptions = field(default_factory=HousekeepingOptions)
    # --events-redis: append every event to this Redis stream (None: no Redis sink)
    events_redis: str | None = None
    events_stream: str = DEFAULT_STREAM
    events_maxlen: int = DEFAULT_MAXLEN
    # high availability (see botreg.daemon.ha): the lease's Redis, its period, its group
    ha_redis: str | None = None
    lease_seconds: float = 15.0
    ha_group: str | None = None  # None: derived from the source, branch and environment
    # POST/PUT/DELETE /bots as commits pushed to the source (docs/http-writes.md)
    allow_writes: bool = False
    write_author: str = DEFAULT_AUTHOR  # `Name <email>` of the commits writes make
    # how a cycle's long work shows (botreg.daemon.progress): "bar" (a terminal with text
    # logs; the CLI chooses), "lines" every progress_interval seconds, or "off"
    progress: str = "lines"
    progress_interval: float | None = None  # None: progress.DEFAULT_INTERVAL


def _parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {listen!r}: expected HOST:PORT (for example 127.0.0.1:8470)")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_webhook_url(url: str) -> None:
    """A --webhook that cannot be delivered to is a usage error, not a warning per event."""
    from urllib.parse import urlsplit

    from botreg.secrets import redact_url

    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--webhook {redact_url(url)}: expected an http:// or https:// URL with a host "
            "(for example https://hooks.example.com/botreg)"
        )


def _check_events_redis(options: DaemonOptions) -> None:
    """--events-redis, --events-stream, --events-maxlen checked before anything opens."""
    from botreg.events.redis_stream import check_stream_name
    from botreg.redis_url import usage_checked

    assert options.events_redis is not None
    usage_checked(options.events_redis, "--events-redis")
    try:
        check_stream_name(options.events_stream)
    except ValueError as exc:
        raise UsageError(f"--events-stream: {exc}") from None
    if options.events_maxlen < 1:
        raise UsageError("--events-maxlen must be at least 1")


def _check_writes(options: DaemonOptions) -> None:
    """`--allow-writes` needs the HTTP surface and a token: writes are never open."""
    if not options.listen:
        raise UsageError("--allow-writes needs the HTTP surface: not with --once or --listen off")
    if options.api_token_file is None:
        raise UsageError(
            "--allow-writes needs --api-token-file: writes always require the API token"
        )
    parse_author(options.write_author)


def _watched_refs(source: str) -> list[Path]:
    """The ref files of a local repository (a work tree or a bare repo)."""
    root = Path(source.removeprefix("file://"))
    git_dir = root / ".git" if (root / ".git").is_dir() else root
    if not (git_dir / "refs").is_dir():
        raise UsageError(f"--watch needs a local repository; {source} is not one")
    return [git_dir]


def _saved_status(path: Path) -> dict[str, Any]:
    """The status document the previous run saved ({} if none or unreadable)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


class Daemon:
    """Runs sync cycles until stopped."""

    def __init__(
        self, sync: SyncOptions, options: DaemonOptions, stdout: TextIO | None = None
    ) -> None:
        self.sync_options = sync
        self.options = options
        self.stdout = stdout or sys.stdout
        self.data = DataDir(sync.data_dir)
        self.metrics = Metrics()
        self.read_model = ResolvedBots(
            self.data.root / "mirror.git",
            lambda: applied_commit(self.data.root),
            sync.environment,
            sync.allow_env,
            self.metrics,
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.http: DaemonHTTP | None = None
        self.syncer: Syncer | None = None
        self.webhook: WebhookSink | None = None
        self.redis_stream: RedisStreamSink | None = None
        self.bus: EventBus | None = None
        self.readiness: Readiness | None = None
        self.stale_after = (
            options.stale_after
            if options.stale_after is not None
            else default_stale_after(options.interval)
        )
        if options.listen:
            host, _port = _parse_listen(options.listen)  # a usage error before anything starts
            if not _is_loopback(host) and options.api_token_file is None:
                raise UsageError(
                    f"--listen {options.listen} is beyond loopback: give --api-token-file so "
                    "the API is not open to the network"
                )
        if options.watch:
            _watched_refs(sync.source)
        if options.progress not in PROGRESS_MODES:
            raise UsageError(f"progress {options.progress!r}: one of {', '.join(PROGRESS_MODES)}")
        if options.allow_writes:
            _check_writes(options)
        # HA: leader, standby, or single (no --ha-redis)
        self.role = "single"
        self.lease: Lease | None = None
        self.shared: SharedState | None = None
        self.ha_group = ""  # the lease's group (set with --ha-redis)
        self._published: tuple[str, dict[str, Any]] | None = None  # last shared state written
        self._followed: tuple[str, dict[str, Any]] | None = None  # last shared state served
        self._ha_warned: set[str] = set()  # HA warnings logged once each
        self._once = False  # run_once: every cycle result is logged at INFO or above
        if options.ha_redis is not None:
            check_redis_url(options.ha_redis)  # a usage error before anything starts
            if options.lease_seconds < 1:
                raise UsageError(
                    f"--lease-seconds {options.lease_seconds:g}: must be at least 1 "
                    "(the default is 15)"
                )

    # --- control -----------------------------------------------------------------------

    def wake(self) -> None:
        """Run a cycle now, cutting short an interval or a backoff (coalesced: many
        wakes during a cycle give one more cycle)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop promptly: the ingest stops at its next batch, the loop exits."""
        self._stop.set()
        self._wake.set()

    def stopping(self) -> bool:
        """True once a stop was asked for (the ingest asks between batches)."""
        return self._stop.is_set()

    # --- running -----------------------------------------------------------------------

    def run_once(self) -> int:
        """One cycle (`--once`): 0 synced or nothing to do, 1 rejected or failed.

        With `--ha-redis`: the lease is taken first (waiting up to one lease period),
        the cycle runs as leader and the lease is released; if another daemon holds
        it, a BotregError (exit 1) says so.
        """
        with self._running():
            assert self.syncer is not None
            if self.lease is not None:
                self._lead_once(self.lease)
            # no housekeeping runs in --once, but what it needs is recorded: the chunks
            # this cycle deletes count towards a later daemon's compaction
            Housekeeper.for_syncer(self.syncer, self.options.housekeeping, self._stop.is_set)
            self._once = True  # one cycle asked for by hand: it always says what happened
            result = self._cycle(self.syncer)
            if result.result == "noop" and self.syncer.store is None:
                self._check_environment(self.syncer)
            self._after_cycle(result)
            if self.lease is not None and result.result in ("synced", "noop"):
                self._publish_state()
            return result.exit_code

    @staticmethod
    def _check_environment(syncer: Syncer) -> None:
        """`--once` with nothing new: an `--env` the applied commit (the head) lacks is a
        usage error (exit 2), as it is when a commit is applied. Any other reason the
        store does not open is the warning `_after_cycle` logs."""
        from botreg.errors import UsageError

        try:
            syncer.open_applied_store()
        except UsageError:
            raise
        except Exception:  # reported by _after_cycle's attempt
            pass

    def _lead_once(self, lease: Lease) -> None:
        """`--once --ha-redis`: become the leader within one lease period, or fail."""
        from botreg.errors import BotregError

        deadline = time.monotonic() + lease.seconds
        while not self._try_lead():
            if self._stop.is_set() or time.monotonic() > deadline:
                try:
                    holder = lease.client.get(lease_key(lease.group, "lease")) or "unknown"
                except Exception:
                    holder = "unknown (Redis did not answer)"
                raise BotregError(
                    f"HA group {lease.group}: the lease is held by another daemon ({holder}) "
                    f"and was not released within {lease.seconds:g} s; nothing was synced. "
                    "The leader keeps the store in step: run --once when it is stopped"
                )
            self._wake.wait(min(0.5, lease.seconds / 10))

    def run(self) -> int:
        """Cycles until SIGTERM/SIGINT (0), or until `--max-failures` failures in a row (1)."""
        with self._running(), self._signals(), self._watching():
            assert self.syncer is not None
            if self.lease is not None:
                return self._run_ha(self.syncer, self.lease)
            failures = 0
            housekeeper = Housekeeper.for_syncer(
                self.syncer, self.options.housekeeping, self._stop.is_set
            )
            while not self._stop.is_set():
                # cleared before the cycle: a wake during the cycle gives one more cycle
                self._wake.clear()
                result = self._cycle(self.syncer)
                self._after_cycle(result)
                if self._stop.is_set():
                    break
                housekeeper.run_due()  # between cycles: never races a fetch or an ingest
                if result.result == "failed":
                    failures += 1
                    budget = self.options.max_failures
                    if budget and failures >= budget:
                        logger.error("stopping after %d failed cycles in a row", failures)
                        return 1
                    delay = min(MAX_BACKOFF, 2.0**failures) * random.uniform(0.5, 1.0)
                else:
                    failures = 0
                    delay = self.options.interval * random.uniform(0.9, 1.1)
                self.metrics.gauge(
                    "botreg_consecutive_failures", "Failed sync cycles in a row (0 after a success)"
                ).set(failures)
                self._wake.wait(timeout=delay)  # a wake (hook, SIGHUP, --watch) cuts it short
            return 0

    # --- high availability ---------------------------------------------------------------

    def _run_ha(self, syncer: Syncer, lease: Lease) -> int:
        """The HA loop: as leader, cycles as `run` does and records each applied commit
        in the shared state; as standby, follows the shared state and tries to take
        the lease every lease/3 (a dead leader's lease expires within one period)."""
        housekeeper = Housekeeper.for_syncer(syncer, self.options.housekeeping, self._stop.is_set)
        failures = 0
        next_try = 0.0
        poll = min(1.0, lease.seconds / 5)
        self._set_role("standby")
        while not self._stop.is_set():
            self._wake.clear()
            if not lease.held():
                self._set_role("standby")
                self._follow()
                if time.monotonic() >= next_try:
                    next_try = time.monotonic() + lease.seconds / 3
                    if self._try_lead():
                        continue
                self._wake.wait(timeout=poll)
                continue
            result = self._cycle(syncer)
            self._after_cycle(result)
            if self._stop.is_set():
                break
            if result.result == "fenced":
                lease.release()  # whatever is left of it: the other daemon leads
                self._set_role("standby")
                continue
            if result.result in ("synced", "noop", "rejected"):
                self._publish_state()
            housekeeper.run_due()
            self._publish_state()  # a compaction may have moved a domain's collection
            if result.result == "failed":
                failures += 1
                budget = self.options.max_failures
                if budget and failures >= budget:
                    logger.error("stopping after %d failed cycles in a row", failures)
                    return 1
                delay = min(MAX_BACKOFF, 2.0**failures) * random.uniform(0.5, 1.0)
            else:
                failures = 0
                delay = self.options.interval * random.uniform(0.9, 1.1)
            self.metrics.gauge(
                "botreg_consecutive_failures", "Failed sync cycles in a row (0 after a success)"
            ).set(failures)
            self._wake.wait(timeout=delay)  # a lost lease wakes it too
        return 0

    def _ha_warning(self, key: str, message: str, *args: Any) -> None:
        """Log an HA warning once per distinct key (a standby polls every second)."""
        if key in _REDIS_CALLS:  # Redis did not answer: /status and a gauge say so
            self._ha_redis(False, message % args)
        if key not in self._ha_warned:
            self._ha_warned.add(key)
            logger.warning(message, *args)

    def _ha_ok(self, key: str) -> None:
        """A call to the HA Redis answered: its warning may be logged again later."""
        self._ha_warned.discard(key)
        self._ha_redis(True, "")

    def _ha_redis(self, reachable: bool, error: str) -> None:
        """Record whether the HA Redis answers (status `ha.redis`, a gauge): during an
        outage nobody leads and commits wait; an operator must see that, not `Synced`."""
        self.metrics.gauge(
            "botreg_ha_redis_up", "1 while the HA Redis answers this daemon, else 0"
        ).set(1 if reachable else 0)
        if self.syncer is None:
            return
        ha = dict(self.syncer.status.doc.get("ha") or {})
        was = ha.get("redis")
        ha["redis"] = "reachable" if reachable else "unreachable"
        ha["redis_error"] = error
        if was != ha["redis"]:
            ha["redis_since"] = datetime.now(UTC).isoformat(timespec="seconds")
            self.syncer.status.update(ha=ha)
            self.syncer.status.save()
        elif ha.get("redis_error") != error:
            self.syncer.status.update(ha=ha)

    def _ha_shared(self, state: Any) -> None:
        """Show what the shared state says: the commit recorded as applied, and who wrote it."""
        if self.syncer is not None:
            ha = dict(self.syncer.status.doc.get("ha") or {})
            ha.update(shared_commit=state.commit, last_writer=state.writer)
            self.syncer.status.update(ha=ha)

    def _set_role(self, role: str, token: int = 0) -> None:
        """Record a role change: one log line (with the token), the gauge, the status."""
        if role == self.role:
            return
        previous, self.role = self.role, role
        self.metrics.gauge(
            "botreg_ha_leader", "1 while this daemon is the HA leader (writes), else 0"
        ).set(1 if role == "leader" else 0)
        if self.syncer is not None:
            ha = dict(self.syncer.status.doc.get("ha") or {})
            ha["fence"] = token if role == "leader" else 0
            self.syncer.status.update(role=role, ha=ha)
        if role == "leader":
            if previous == "standby":
                self.metrics.counter(
                    "botreg_ha_takeovers_total", "Times this daemon took the HA lease over"
                ).inc()
            logger.info("HA role: leader (fencing token %d)", token)
        else:
            logger.info("HA role: %s (was %s)", role, previous)

    def _try_lead(self) -> bool:
        """Take the lease if it is free; on success prepare the takeover and return True."""
        lease, shared, syncer = self.lease, self.shared, self.syncer
        assert lease is not None and shared is not None and syncer is not None
        try:
            token = lease.try_acquire()
            if not token:
                return False
            # read after acquiring: the previous leader cannot write it any more
            state = shared.read()
        except Exception as exc:  # Redis unreachable: stay standby, retry
            self._ha_warning(
                "acquire", "cannot reach the HA Redis at %s: %s", lease.where, type(exc).__name__
            )
            lease.release()
            return False
        self._ha_ok("acquire")
        self._ha_shared(state)
        # the lease is ours from here (renewed in its thread): say so now, not after
        # the adoption below, which reads the whole store (seconds at 100,000 chunks)
        self._published = (state.commit, state.domains)
        self._set_role("leader", token)
        if state.commit and state.commit != syncer.ledger.get(APPLIED_KEY):
            try:
                syncer.follow_commit(state.commit, state.domains)
            except Exception as exc:  # the cycle re-fetches; the events start from ours
                logger.warning("could not serve the leader's commit before leading: %s", exc)
        if state.writer != lease.holder:
            # the ledger may not describe the store: rebuild it now if the applied
            # commit's store opens (housekeeping must not act on stale records), else
            # at the first apply, once the commit names the store
            syncer.adopt_pending = (state.domains, state.commit)
            syncer.reconcile_pending = True
            if syncer.store is None and state.commit:
                self._open_applied_store(syncer, syncer.status)
            if syncer.store is not None:
                try:
                    syncer.adopt(syncer.store)
                except Exception as exc:  # retried at the first apply
                    logger.warning("could not adopt the store yet: %s: %s", type(exc).__name__, exc)
        return True

    def _publish_state(self) -> None:
        """Leader: record the applied commit and collections in the shared state, once
        its events are out (a Redis sink flushed: contract section 3)."""
        lease, shared, syncer = self.lease, self.shared, self.syncer
        if lease is None or shared is None or syncer is None or not lease.held():
            return
        from botreg.daemon.ha import domain_map
        from botreg.daemon.lease import FencedError

        applied = syncer.ledger.get(APPLIED_KEY)
        domains = domain_map(syncer.ledger)
        if not applied or self._published == (applied, domains):
            return
        sink = self.redis_stream
        if sink is not None and not sink.flush(timeout=lease.seconds):
            self._ha_warning(
                "flush",
                "the events of %s are not all in the stream yet: not recorded as applied "
                "in the HA state (retried after the next cycle)",
                applied[:12],
            )
            return
        self._ha_warned.discard("flush")
        try:
            shared.write(applied, domains)
        except FencedError as exc:
            logger.warning("not recorded as applied: %s", exc)
            lease.release()
            self._set_role("standby")
            return
        except Exception as exc:  # Redis down: the next cycle tries again
            self._ha_warning(
                "publish",
                "cannot record the applied commit at %s: %s",
                lease.where,
                type(exc).__name__,
            )
            return
        self._ha_ok("publish")
        self._published = (applied, domains)
        ha = dict(syncer.status.doc.get("ha") or {})
        syncer.status.update(ha={**ha, "shared_commit": applied, "last_writer": lease.holder})

    def _follow(self) -> None:
        """Standby: serve the commit the shared state names (fetch, record, warm)."""
        lease, shared, syncer = self.lease, self.shared, self.syncer
        assert lease is not None and shared is not None and syncer is not None
        try:
            state = shared.read()
        except Exception as exc:
            self._ha_warning(
                "follow", "cannot read the HA state at %s: %s", lease.where, type(exc).__name__
            )
            return
        self._ha_ok("follow")
        self._ha_shared(state)
        # the leader's state is this standby's source: reading it is its fetch
        syncer.status.update(last_fetch=datetime.now(UTC).isoformat(timespec="seconds"))
        if not state.commit or self._followed == (state.commit, state.domains):
            return
        try:
            if not syncer.follow_commit(state.commit, state.domains):
                return  # not fetchable yet: the next poll retries
        except Exception as exc:
            if not self.stopping():
                self._ha_warning(
                    f"follow:{state.commit}",
                    "cannot serve the leader's commit %s: %s",
                    state.commit[:12],
                    exc,
                )
            return
        self._followed = (state.commit, state.domains)
        self._open_applied_store(syncer, syncer.status)
        syncer.status.save()
        logger.info("following the leader: serving %s", state.commit[:12])
        if self.http is not None:
            try:
                self.read_model.warm()
            except Exception as exc:  # the next request loads it
                logger.warning("could not load the read model: %s: %s", type(exc).__name__, exc)

    def _warn_embedded_store(self) -> None:
        """HA needs one store both daemons share: an embedded one is each daemon's own."""
        store = self.syncer.store if self.syncer is not None else None
        if store is not None and store.settings.type != "http":
            self._ha_warning(
                "embedded",
                "--ha-redis with an embedded store (%s): each daemon keeps its own store, "
                "so a standby serves no knowledge and a takeover re-embeds everything; "
                "use a Chroma server (knowledge.store type: http) for HA",
                store.location,
            )

    def _after_cycle(self, result: CycleResult) -> None:
        """Report a rejected head as a metric: the daemon keeps serving its last good commit."""
        if result.result in ("rejected", "synced", "noop"):
            self._rejected_head().set(1 if result.result == "rejected" else 0)
        if self.stopping():  # nothing more to prepare for a daemon on its way out
            return
        syncer = self.syncer
        if result.result in ("rejected", "noop") and syncer is not None and syncer.store is None:
            # the store could not open at start-up, or a reopen after a compaction
            # failed: retry each cycle rather than wait for the next commit
            self._open_applied_store(syncer, syncer.status)
        if self.lease is not None and result.result == "synced":
            self._warn_embedded_store()
        if self.http is not None and result.result in ("synced", "noop"):
            try:  # the read model follows the applied commit here, not on the first request
                self.read_model.warm()
            except Exception as exc:  # a read that fails later says why; the loop goes on
                if self.stopping():
                    # a TERM to the process group also ends its git children
                    # (`cat-file --batch died`): that is the stop, not a fault
                    logger.debug("read model load ended by the stop: %r", exc)
                else:
                    logger.warning("could not load the read model: %s: %s", type(exc).__name__, exc)

    def _rejected_head(self) -> Any:
        return self.metrics.gauge(
            "botreg_rejected_head",
            "1 while the fetched head is rejected by validation and the last good commit "
            "is served, else 0",
        )

    def _open_applied_store(self, syncer: Syncer, status: DaemonStatus) -> None:
        """Open the applied commit's store now, so reads and `/readyz` work before any commit."""
        from botreg.errors import BotregError

        try:
            store = syncer.open_applied_store()
        except Exception as exc:  # the next apply opens it; meanwhile /readyz says why
            reason = str(exc) if isinstance(exc, BotregError) else f"{type(exc).__name__}: {exc}"
            logger.warning("could not open the store of the applied commit: %s", reason)
            return
        if store is not None:  # debug: `sync --once` stays quiet when nothing changed
            logger.debug("serving the applied commit's store at %s", store.location)
            if self.lease is not None:  # a standby too: it would serve nothing from it
                self._warn_embedded_store()
        rejected = syncer.ledger.get(REJECTED_KEY)
        self._rejected_head().set(
            1 if rejected and rejected == status.doc.get("head_commit") else 0
        )

    def _cycle(self, syncer: Syncer) -> CycleResult:
        """One cycle and its log line; a failed cycle whatever escapes (the loop survives)."""
        try:
            result = syncer.sync_once()
        except Exception as exc:  # sync_once is the boundary; this is the belt and braces
            logger.error("sync cycle raised %s: %s", type(exc).__name__, exc)
            logger.debug("traceback of the failed cycle", exc_info=exc)
            result = CycleResult("failed", error=type(exc).__name__, phase="cycle")
        try:
            self._report(result)
        except Exception as exc:  # a log handler that fails must not end the daemon
            with suppress(Exception):
                print(f"botreg: could not log a cycle: {exc!r}", file=sys.stderr)
        return result

    def _report(self, result: CycleResult) -> None:
        """Log a cycle: one summary record with its fields (`botreg.daemon.summary`),
        then each finding of a rejection or each file a synced cycle could not ingest.

        A poll that found nothing new (or the same rejected head) is DEBUG: a
        daemon polling every 30 s must not write 2,880 lines a day saying so.
        """
        fields = cycle_fields(result)
        extra = {"fields": fields}
        message = "cycle " + cycle_line(result)
        target = result.to_commit[:12] or NO_HEAD
        once = self._once
        if result.result == "noop":
            logger.debug("%s", message, extra=extra)
            if once:  # asked for by hand: say so (a polling daemon stays quiet)
                logger.info("nothing new: %s is applied", target)
        elif result.result == "synced":
            level = logging.WARNING if result.counts.get("files_failed") else logging.INFO
            logger.log(level, "%s", message, extra=extra)
            # which files, and why: bounded like findings, masked (messages may quote them)
            failed = result.failed_files
            total = max(result.counts.get("files_failed", 0), len(failed))
            for item in failed[:FINDINGS_SHOWN]:
                text = f"{item.get('path', '')}: {item.get('message', '')}"
                logger.warning("not ingested %s: %s", target, escape_unsafe(mask_text(text)))
            if total > min(len(failed), FINDINGS_SHOWN):
                shown = min(len(failed), FINDINGS_SHOWN)
                logger.warning("not ingested %s: and %d more", target, total - shown)
        elif result.result == "rejected" and not result.findings:  # the same head again
            source = result.from_commit[:12] or INITIAL
            logger.log(
                logging.WARNING if once else logging.DEBUG,
                "cycle rejected: %s is still rejected, serving %s (`botreg status` lists "
                "its findings)",
                target,
                source,
            )
        elif result.result == "rejected":
            logger.warning("%s", message, extra=extra)
            # path:line:col: CODE message, as `botreg validate` prints them (masked, bounded)
            for line in finding_lines(result.findings, result.counts.get("findings")):
                logger.warning("rejected %s: %s", target, line)
        elif result.result == "interrupted":
            # a stop asked for: nothing failed (no phase, no error), the next run resumes
            logger.info("%s", message, extra=extra)
        else:
            logger.warning("%s", message, extra=extra)

    @contextmanager
    def _running(self) -> Iterator[None]:
        if self.options.webhook:  # before anything is opened or locked
            _check_webhook_url(self.options.webhook)
        if self.options.events_redis:
            _check_events_redis(self.options)
        with self.data.locked(f"botreg sync {self.sync_options.source}"):
            # what the previous run saved: the staleness clock and the timestamp gauges
            # go on from there rather than from this start
            saved = _saved_status(self.data.root / "status.json")
            status = DaemonStatus(
                self.data.root / "status.json",
                source=self.sync_options.source,
                branch=self.sync_options.branch,
                environment=self.sync_options.environment,
            )
            hk = self.options.housekeeping
            self.bus = EventBus(
                EventLog(
                    self.data.events,
                    hk.events_max_bytes,
                    hk.events_keep,
                    rotation_counter(self.metrics),
                )
            )
            self.bus.subscribe(self._count)
            file_handle = None
            if self.options.events_file == "-":
                self.bus.subscribe(stdout_sink(self.stdout))
            elif self.options.events_file:
                try:
                    file_handle = open(self.options.events_file, "a")  # noqa: SIM115 - closed below
                except OSError as exc:
                    raise UsageError(
                        f"--events-file {self.options.events_file}: {exc.strerror or exc}"
                    ) from None
                self.bus.subscribe(stdout_sink(file_handle))
            if self.options.webhook:
                self.webhook = WebhookSink(
                    self.options.webhook,
                    self.data.root / "outbox.sqlite",
                    self.options.webhook_secret_file,
                    dead_letter_after=self.options.webhook_dead_letter_after,
                    metrics=self.metrics,
                    on_dead_letter=self._dead_lettered,
                )
                self.bus.subscribe(self.webhook)
            if self.options.ha_redis is not None:
                # before the stream sink: its first append already checks the fence
                self._make_lease(self.options.ha_redis)
            if self.options.events_redis:
                # never connects here: a Redis down at start-up only delays the events
                try:
                    self.redis_stream = RedisStreamSink(
                        self.options.events_redis,
                        self.data.root / "outbox.sqlite",
                        stream=self.options.events_stream,
                        maxlen=self.options.events_maxlen,
                        fence=self.lease,
                        metrics=self.metrics,
                    )
                except ValueError as exc:  # the message is redacted
                    raise UsageError(f"--events-redis {exc}") from None
                self.bus.subscribe(self.redis_stream)
            self.syncer = Syncer(
                self.sync_options,
                self.bus,
                status,
                self.metrics,
                should_stop=self.stopping,
                progress=make_progress(self.options.progress, self.options.progress_interval),
            )
            status.update(role=self.role)
            if self.options.listen:
                # /bots and /readyz are at the new commit before anyone hears it applied
                self.syncer.before_completed = self.read_model.warm
            if self.lease is not None:
                self._start_ha(self.lease, self.syncer)
            last_fetch = status_timestamp(saved.get("last_fetch"))
            self._restore_timestamps(last_fetch, status_timestamp(saved.get("last_success")))
            self.readiness = Readiness(
                lambda: self._conditions_view(status),
                self._store_ok,
                self.stale_after,
                last_fetch=last_fetch,
                # served only over HTTP: without it nobody waits for the read model
                read_model_loaded=self._read_model_loaded if self.options.listen else None,
            )
            try:
                self._open_applied_store(self.syncer, status)
                if self.lease is not None:
                    self._warn_embedded_store()
                if self.options.listen:
                    self._start_read_model()
                    self._start_http(status)
                yield
            finally:
                if self.lease is not None:  # first: a SIGTERM hands over at once
                    self.lease.close()
                    self._set_role("standby")
                if self.http is not None:
                    self.http.stop()
                    with suppress(OSError):
                        (self.data.root / "daemon.json").unlink()
                if self.webhook is not None:
                    self.webhook.close(drain=2)
                if self.redis_stream is not None:
                    self.redis_stream.close(drain=2)
                status.update(running=False)
                status.save()
                self.syncer.close()
                self.read_model.close()
                if file_handle is not None:
                    with suppress(OSError):  # a full disk: the events were reported per cycle
                        file_handle.close()

    def _make_lease(self, url: str) -> None:
        """Make the lease (not started: nothing is acquired yet) and the shared state."""
        from botreg.daemon.ha import default_group

        opts = self.sync_options
        self.ha_group = self.options.ha_group or default_group(
            opts.source, opts.branch, opts.environment
        )
        self.lease = Lease(url, self.ha_group, self.options.lease_seconds, on_lost=self.wake)
        self.shared = SharedState(self.lease)

    def _start_ha(self, lease: Lease, syncer: Syncer) -> None:
        """Fence the syncer with the lease and start renewing it in a thread."""
        syncer.fence = lease
        # at 0 from the start, so alerts on rate() and absent() cover a standby too
        self.metrics.counter(
            "botreg_ha_takeovers_total", "Times this daemon took the HA lease over"
        )
        syncer.status.update(
            ha={"group": self.ha_group, "holder": lease.holder, "lease_seconds": lease.seconds}
        )
        lease.start()
        logger.info(
            "HA: group %s, lease %g s, Redis %s, holder %s",
            self.ha_group,
            lease.seconds,
            lease.where,
            lease.holder,
        )

    def _restore_timestamps(self, last_fetch: float | None, last_success: float | None) -> None:
        """The last fetch and success gauges from the saved status: alerts on their age
        must not lose them at a restart (a rejected head never sets them again)."""
        if last_success is not None:
            self.metrics.gauge(
                "botreg_last_success_timestamp_seconds", "Unix time of the last successful cycle"
            ).set(last_success)
        if last_fetch is not None:
            self.metrics.gauge(
                "botreg_last_fetch_timestamp_seconds",
                "Unix time of the last successful fetch of the source",
            ).set(last_fetch)

    def _read_model_loaded(self) -> bool:
        # Loaded once since the start: after a commit, the cycle's warm moves it by the
        # changed bots (requests wait for that, they do not fail); going unready then
        # would take every replica out of service at each large commit.
        applied = self.syncer.status.doc.get("applied_commit") if self.syncer else ""
        return not applied or bool(self.read_model.loaded_commit())

    def _start_read_model(self) -> None:
        """Load the applied commit's read model in the background: `/readyz` says
        `read model loading` until it is (15,000 bots take seconds), and the first
        cycle does not wait for it."""

        def load() -> None:
            try:
                self.read_model.warm()
            except Exception as exc:  # the next cycle's warm tries again
                if self.stopping():
                    logger.debug("read model load ended by the stop: %r", exc)
                else:
                    logger.warning("could not load the read model: %s: %s", type(exc).__name__, exc)

        threading.Thread(target=load, name="botreg-read-model", daemon=True).start()

    def _count(self, event: CloudEvent) -> None:
        self.metrics.counter(
            "botreg_events_total", "Change events published, by CloudEvents type", ["type"]
        ).labels(type=event.type).inc()

    def _dead_lettered(self, event: CloudEvent) -> None:
        """Tell the log and stdout sinks a webhook event was given up on (the sink skips it)."""
        if self.bus is None:
            return
        kind = "botreg.webhook.dead_lettered"
        self.bus.publish(
            CloudEvent(
                type=kind,
                # the redacted source, as every other event: the URL may hold a token
                source=self.syncer.event_source if self.syncer else "",
                id=event_id(kind, event.id),
                subject=event.subject,
                data={"event_id": event.id, "event_type": event.type, "event_time": event.time},
            )
        )

    def _start_http(self, status: DaemonStatus) -> None:
        """Bind and serve the HTTP surface; an address or token that cannot be used is
        a usage error (exit 2) raised here, before the first cycle."""
        import errno
        import socket

        assert self.options.listen is not None
        assert self.readiness is not None  # made in _running, before the HTTP layer
        host, port = _parse_listen(self.options.listen)
        if self.options.api_token_file is not None and not self._api_token():
            raise UsageError(  # fail closed at start-up too, not only per request
                f"--api-token-file {self.options.api_token_file} is empty or unreadable: "
                "put the token the HTTP API requires in it (e.g. `openssl rand -hex 32 > FILE`)"
            )
        try:
            self.http = DaemonHTTP(
                host,
                port,
                status=lambda: self._status_view(status),
                metrics=lambda: self.metrics.render().decode(),
                wake=self.wake,
                query=self._query,
                readiness=self.readiness,
                hook_secret=self._hook_secret,
                branch=self.sync_options.branch,
                # pre-rendered, masked JSON: O(1) per bot, no mask pass per request
                bots=self.read_model.bots_json,
                bot=self.read_model.bot_json,
                domain_status=self._domain_status,
                api_token=self._api_token if self.options.api_token_file else None,
                telemetry=self.metrics,
                role=lambda: self.role,
                served_commit=self.read_model.loaded_commit,
                serves=self._serves,
                writes=self._writes() if self.options.allow_writes else None,
            )
        except OSError as exc:  # the operator's address (busy, not ours): usage, not a bug
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                reason = f"address already in use: {where}"
            elif exc.errno == errno.EADDRNOTAVAIL:
                reason = f"address not available on this machine: {where}"
            elif exc.errno == errno.EACCES:
                reason = f"permission denied: {where} (ports below 1024 need privileges)"
            elif isinstance(exc, socket.gaierror):
                reason = f"cannot resolve {host!r}"
            else:
                reason = f"{exc.strerror or exc}: {where}"
            raise UsageError(
                f"--listen {self.options.listen}: cannot listen there: {reason}; "
                "choose a free port, an address of this machine, or --listen off"
            ) from None
        self.http.start()
        info: dict[str, Any] = {"url": f"http://{self.http.address}", "pid": os.getpid()}
        if self.options.api_token_file is not None:  # where clients find it; never the token
            info["api_token_file"] = str(self.options.api_token_file.resolve())
        (self.data.root / "daemon.json").write_text(json.dumps(info))
        logger.info("listening on http://%s", self.http.address)

    def _writes(self) -> WriteAPI:
        """The write routes: commits made in `<data-dir>/worktree`, pushed to the source
        with the mirror's URL and credentials (read at each write, never logged)."""
        syncer = self.syncer
        assert syncer is not None
        mirror = syncer.mirror
        writer = GitOpsWriter(
            self.data.root / "worktree",
            mirror.url,
            self.sync_options.branch,
            # the fetch's own credentials environment: one place builds it
            environment=mirror._environment,
            author=self.options.write_author,
            timeout=self.sync_options.fetch_timeout,
            rejected=lambda: str(syncer.status.doc.get("rejected_commit") or ""),
        )
        return WriteAPI(writer, wake=self.wake, serves=self._serves, standby=self._standby)

    def _standby(self) -> str | None:
        """None when this daemon may write; on an HA standby, who leads (writes: 409)."""
        if self.lease is None or self.role == "leader":
            return None
        ha = self.syncer.status.doc.get("ha") if self.syncer is not None else None
        leader = (ha or {}).get("last_writer") or "unknown"
        return f"HA group {self.ha_group}, lease holder {leader}"

    def _status_view(self, status: DaemonStatus) -> dict[str, Any]:
        """The status, with `Ready` as `/readyz` decides it: the two always agree."""
        doc = self._conditions_view(status)
        if self.readiness is None:
            return doc
        ready, reasons = self.readiness.evaluate(doc)
        current = doc["conditions"]["Ready"]
        if ready and current["status"] == "True":
            return doc  # keep the cycle's reason (Synced, ServingLastGood)
        status.set_condition("Ready", ready, "Serving" if ready else "NotReady", "; ".join(reasons))
        doc["conditions"]["Ready"] = status.snapshot()["conditions"]["Ready"]
        return doc

    def _conditions_view(self, status: DaemonStatus) -> dict[str, Any]:
        """The status, with Stalled set while a cycle runs far longer than it should."""
        doc = status.snapshot()
        started = self.syncer.cycle_started if self.syncer else None
        stall_after = max(10 * self.options.interval, 600)
        if started is not None and time.monotonic() - started > stall_after:
            doc["conditions"]["Stalled"] = {
                "status": "True",
                "reason": "CycleTooLong",
                "message": f"the current cycle has run for over {int(stall_after)} s",
                "lastTransitionTime": doc["conditions"]["Stalled"].get("lastTransitionTime", ""),
            }
        return doc

    def _serves(self, commit: str) -> bool | None:
        """True if `commit` (a full or abbreviated id) is the applied commit or one of
        its ancestors (`?at=`); the read model follows the applied commit on request.
        None if it can never be: a tree, a blob, a tag, or a prefix of no commit (only a
        commit, or a full id not fetched yet, may become applied)."""
        import subprocess

        served = applied_commit(self.data.root)
        if served.startswith(commit) and served:
            return True
        kind = subprocess.run(
            ["git", "--git-dir", str(self.data.mirror), "cat-file", "-t", commit],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        if kind.returncode != 0:  # not in the mirror: a full id may be fetched later
            return False if len(commit) == 40 else None
        if kind.stdout.strip() != "commit":
            return None
        if not served:
            return False
        # its own git process: safe on an HTTP thread while a cycle uses the mirror
        done = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.data.mirror),
                "merge-base",
                "--is-ancestor",
                commit,
                served,
            ],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return done.returncode == 0

    def _api_token(self) -> bytes | None:
        """The API token: re-read when its file changes (rotation without restart),
        b"" when it is empty or unreadable (the API fails closed: 503)."""
        if self.options.api_token_file is None:
            return None
        return read_token_file(self.options.api_token_file)

    def _bots(self) -> list[dict[str, Any]]:
        """Every bot at the applied commit, resolved for the daemon's environment, masked.

        From the read model: O(1) per bot; a new commit costs O(changed bots).
        """
        return self.read_model.bots()

    def _bot(self, bot_id: str) -> dict[str, Any] | None:
        """One bot at the applied commit (resolved, masked), or None: O(1)."""
        return self.read_model.bot(bot_id)

    def _domain_status(self, domain: str) -> dict[str, Any] | None:
        from botreg.knowledge.ledger import Ledger

        ledger = Ledger(self.data.ledger)
        try:
            state = ledger.domain(domain)
        finally:
            ledger.close()
        if state is None:
            return None
        return {
            "domain": state.domain,
            "status": str(state.status),
            "error": state.error,
            "collection": state.collection,
            "embedding": state.embedding,
            "version": state.version,
            "commit": state.commit,
            "updated_at": state.updated_at,
        }

    def _hook_secret(self) -> bytes | None:
        if self.options.webhook_secret_file is None:
            return None
        try:
            return self.options.webhook_secret_file.read_bytes().strip()
        except OSError:
            return None

    def _store_ok(self) -> bool:
        if self.syncer is None:
            return False
        try:
            # a read share: a reopen between cycles is waited for, never seen half done
            with self.syncer.reading_store() as store:
                if store is None:
                    return False
                store.client.heartbeat()
        except Exception:
            return False
        return True

    def _query(self, domain: str, text: str, k: int) -> list[dict[str, Any]]:
        from botreg.errors import BotregError
        from botreg.knowledge.ingest import query_domain
        from botreg.knowledge.ledger import Ledger
        from botreg.store.chroma import StoreUnavailableError

        if self.syncer is None:
            raise LookupError("nothing has been ingested yet")
        ledger = Ledger(self.data.ledger)  # its own connection: this runs on an HTTP thread
        try:
            # the whole query under one read share: the store is not reopened under it
            with self.syncer.reading_store() as store:
                if store is None:
                    raise LookupError("nothing has been ingested yet")
                hits = query_domain(store, ledger, domain, text, k)
        except StoreUnavailableError:
            raise  # busy or unreachable: a 503, not "no such domain"
        except BotregError as exc:
            raise LookupError(str(exc)) from None
        finally:
            ledger.close()
        return [
            {
                "id": h.id,
                "path": h.path,
                "heading": h.heading,
                "text": h.text,
                "distance": h.distance,
                "metadata": h.metadata,
            }
            for h in hits
        ]

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT stop, SIGHUP wakes; relayed through a pipe to a thread.

        A Python handler runs on the main thread between two bytecodes, possibly
        inside `Event.wait` holding the event's lock: calling `wake()` there would
        deadlock. The handler only writes a byte (async-signal-safe, no lock).
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        codes = {signal.SIGTERM: b"T", signal.SIGINT: b"T", signal.SIGHUP: b"H"}

        def handler(signum: int, _frame: Any) -> None:
            with suppress(OSError):  # a full pipe already holds a byte to act on
                os.write(write_fd, codes.get(signal.Signals(signum), b"T"))

        def relay() -> None:
            while True:
                try:
                    data = os.read(read_fd, 64)
                except OSError:
                    return
                if b"T" in data:
                    self.stop()
                if b"H" in data:
                    self.wake()
                if not data or b"Q" in data:
                    return

        thread = threading.Thread(target=relay, name="botreg-signals", daemon=True)
        thread.start()
        previous = {sig: signal.getsignal(sig) for sig in codes}
        for sig in codes:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, previous_handler in previous.items():
                signal.signal(sig, previous_handler)
            with suppress(OSError):
                os.write(write_fd, b"Q")
            thread.join(timeout=5)
            for fd in (read_fd, write_fd):
                with suppress(OSError):
                    os.close(fd)

    @contextmanager
    def _watching(self) -> Iterator[None]:
        if not self.options.watch:
            yield
            return
        import watchfiles

        paths = _watched_refs(self.sync_options.source)
        stop = threading.Event()

        def is_ref(_change: Any, path: str) -> bool:
            return "/refs/" in path or path.endswith(("packed-refs", "HEAD"))

        def watch() -> None:
            # a small debounce: a commit shows up within a second, bursts still coalesce
            for _changes in watchfiles.watch(
                *paths,
                watch_filter=is_ref,
                debounce=100,
                step=20,
                stop_event=stop,
                raise_interrupt=False,
            ):
                self.wake()

        thread = threading.Thread(target=watch, name="botreg-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
