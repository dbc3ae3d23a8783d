"""The daemon's outer loop: triggers, backoff, the failure budget, a clean stop.

`Syncer.sync_once()` does one cycle; this loop decides when the next one runs:
after `--interval` seconds (with jitter), at once when a trigger fires (a
`--watch`ed local commit, a verified push webhook, SIGHUP), or after an
exponential backoff with jitter when the cycle failed. It never crash-loops:
failures are retried forever unless `--max-failures` opts into exiting, and
nothing a commit holds can end the loop (`_cycle` turns even a bug that
escapes `sync_once` into a failed cycle).
SIGTERM and SIGINT finish the current step and exit 0.
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
from pathlib import Path
from typing import Any, TextIO

from botreg.daemon.housekeeping import Housekeeper, HousekeepingOptions
from botreg.daemon.http import DaemonHTTP
from botreg.daemon.metrics import Metrics
from botreg.daemon.readiness import Readiness
from botreg.daemon.status import DaemonStatus
from botreg.daemon.sync import CycleResult, Syncer, SyncOptions
from botreg.datadir import DataDir
from botreg.errors import UsageError
from botreg.events import CloudEvent, EventBus
from botreg.events.bus import stdout_sink
from botreg.events.log import EventLog
from botreg.events.webhook import WebhookSink

__all__ = ["Daemon", "DaemonOptions"]

logger = logging.getLogger("botreg.daemon")
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
    housekeeping: HousekeepingOptions = field(default_factory=HousekeepingOptions)


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


def _watched_refs(source: str) -> list[Path]:
    """The ref files of a local repository (a work tree or a bare repo)."""
    root = Path(source.removeprefix("file://"))
    git_dir = root / ".git" if (root / ".git").is_dir() else root
    if not (git_dir / "refs").is_dir():
        raise UsageError(f"--watch needs a local repository; {source} is not one")
    return [git_dir]


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
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.http: DaemonHTTP | None = None
        self.syncer: Syncer | None = None
        self.webhook: WebhookSink | None = None
        self.bus: EventBus | None = None
        if options.listen:
            host, _port = _parse_listen(options.listen)  # a usage error before anything starts
            if not _is_loopback(host) and options.api_token_file is None:
                raise UsageError(
                    f"--listen {options.listen} is beyond loopback: give --api-token-file so "
                    "the API is not open to the network"
                )
        if options.watch:
            _watched_refs(sync.source)

    # --- control -----------------------------------------------------------------------

    def wake(self) -> None:
        """Run a cycle now (coalesced: many wakes during a cycle give one more cycle)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the current step and exit."""
        self._stop.set()
        self._wake.set()

    # --- running -----------------------------------------------------------------------

    def run_once(self) -> int:
        """One cycle (`--once`): 0 synced or nothing to do, 1 rejected or failed."""
        with self._running():
            assert self.syncer is not None
            result = self._cycle(self.syncer)
            return result.exit_code

    def run(self) -> int:
        """Cycles until SIGTERM/SIGINT (0), or until `--max-failures` failures in a row (1)."""
        with self._running(), self._signals(), self._watching():
            assert self.syncer is not None
            failures = 0
            housekeeper = Housekeeper.for_syncer(
                self.syncer, self.options.housekeeping, self._stop.is_set
            )
            while not self._stop.is_set():
                self._wake.clear()
                result = self._cycle(self.syncer)
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
                self._wake.wait(timeout=delay)
            return 0

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
        level = logging.INFO if result.result in ("synced", "noop") else logging.WARNING
        logger.log(
            level,
            "cycle %s %s..%s %s",
            result.result,
            result.from_commit[:12],
            result.to_commit[:12],
            result.error,
        )

    @contextmanager
    def _running(self) -> Iterator[None]:
        with self.data.locked(f"botreg sync {self.sync_options.source}"):
            status = DaemonStatus(
                self.data.root / "status.json",
                source=self.sync_options.source,
                branch=self.sync_options.branch,
                environment=self.sync_options.environment,
            )
            hk = self.options.housekeeping
            self.bus = EventBus(EventLog(self.data.events, hk.events_max_bytes, hk.events_keep))
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
                )
                self.bus.subscribe(self.webhook)
            self.syncer = Syncer(self.sync_options, self.bus, status, self.metrics)
            try:
                if self.options.listen:
                    self._start_http(status)
                yield
            finally:
                if self.http is not None:
                    self.http.stop()
                    with suppress(OSError):
                        (self.data.root / "daemon.json").unlink()
                if self.webhook is not None:
                    self.webhook.close(drain=2)
                status.update(running=False)
                status.save()
                self.syncer.close()
                if file_handle is not None:
                    with suppress(OSError):  # a full disk: the events were reported per cycle
                        file_handle.close()

    def _count(self, event: CloudEvent) -> None:
        self.metrics.counter(
            "botreg_events_total", "Change events published, by CloudEvents type", ["type"]
        ).labels(type=event.type).inc()

    def _start_http(self, status: DaemonStatus) -> None:
        assert self.options.listen is not None
        host, port = _parse_listen(self.options.listen)
        try:
            self.http = DaemonHTTP(
                host,
                port,
                status=lambda: self._status_view(status),
                metrics=lambda: self.metrics.render().decode(),
                wake=self.wake,
                query=self._query,
                readiness=Readiness(
                    lambda: self._status_view(status),
                    self._store_ok,
                    stale_after=max(3 * self.options.interval, 300),
                ),
                hook_secret=self._hook_secret,
                branch=self.sync_options.branch,
                bots=self._bots,
                domain_status=self._domain_status,
                api_token=self._api_token if self.options.api_token_file else None,
            )
        except OSError as exc:  # the operator's address (busy, not ours): usage, not a bug
            raise UsageError(
                f"--listen {self.options.listen}: cannot listen there ({exc.strerror or exc}); "
                "choose a free port, an address of this machine, or --listen off"
            ) from None
        self.http.start()
        info: dict[str, Any] = {"url": f"http://{self.http.address}", "pid": os.getpid()}
        if self.options.api_token_file is not None:  # where clients find it; never the token
            info["api_token_file"] = str(self.options.api_token_file.resolve())
        (self.data.root / "daemon.json").write_text(json.dumps(info))
        logger.info("listening on http://%s", self.http.address)

    def _status_view(self, status: DaemonStatus) -> dict[str, Any]:
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

    def _api_token(self) -> bytes | None:
        if self.options.api_token_file is None:
            return None
        try:  # read at each request: a rotated token applies at once
            return self.options.api_token_file.read_bytes().strip()
        except OSError:
            return b""  # fail closed: the API answers 503

    def _bots(self) -> list[dict[str, Any]]:
        """Every bot at the applied commit, resolved for the daemon's environment, masked."""
        from botreg.api.git_backend import GitRegistryBackend
        from botreg.errors import BotregError
        from botreg.resolve import resolve_for_display
        from botreg.secrets import mask_config

        backend = GitRegistryBackend(data_dir=self.data.root)  # per request: per thread
        try:
            registrations = backend.registrations()
            try:
                environment = backend.environment(self.sync_options.environment)
            except BotregError:
                environment = {}
            out = []
            for r in registrations:
                item: dict[str, Any] = {"bot_id": r.bot_id, "status": r.status, "commit": r.commit}
                try:
                    # only the variables the operator allows, never all of ours; masked
                    allow = self.sync_options.allow_env
                    item["config"] = resolve_for_display(r.config, environment, allow)
                except BotregError as exc:  # e.g. a variable this daemon does not have
                    item["config"] = mask_config(r.config)
                    item["error"] = str(exc)
                out.append(item)
            return out
        finally:
            backend.close_now()

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
        store = self.syncer.store if self.syncer else None
        if store is None:
            return False
        try:
            store.client.heartbeat()
        except Exception:
            return False
        return True

    def _query(self, domain: str, text: str, k: int) -> list[dict[str, Any]]:
        from botreg.errors import BotregError
        from botreg.knowledge.ingest import query_domain
        from botreg.knowledge.ledger import Ledger

        store = self.syncer.store if self.syncer else None
        if store is None:
            raise LookupError("nothing has been ingested yet")
        ledger = Ledger(self.data.ledger)  # its own connection: this runs on an HTTP thread
        try:
            hits = query_domain(store, ledger, domain, text, k)
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
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.wake())
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

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
