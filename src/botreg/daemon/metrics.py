"""The daemon's Prometheus metrics, on prometheus-client.

One `CollectorRegistry` per daemon (never the process-global one: tests and
embedders run several daemons in one process). Metrics are declared where they
are measured, through the get-or-create accessors below, so each module owns its
names and HELP text; asking twice for a name returns the same metric, and asking
for it with another type or label set is a programming error.

Naming follows Prometheus: counters end in `_total` (the client adds it),
durations are histograms in seconds, timestamps are gauges in seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

__all__ = ["CONTENT_TYPE", "DURATION_BUCKETS", "Metrics"]

# The classic text format: what every scraper reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds, from a 5 ms HTTP answer to a 30-minute first ingest.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, float("inf"),
)  # fmt: skip

_M = TypeVar("_M", bound=MetricWrapperBase)


class Metrics:
    """A daemon's metrics: its own registry with process metrics, and accessors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # RSS, fds, CPU, start time
        self._lock = threading.Lock()
        self._metrics: dict[str, tuple[MetricWrapperBase, tuple[str, ...]]] = {}

    def _get(
        self, kind: type[_M], name: str, documentation: str, labels: Sequence[str], **extra: object
    ) -> _M:
        key = name.removesuffix("_total") if kind is Counter else name
        with self._lock:
            found = self._metrics.get(key)
            if found is None:
                metric = kind(
                    name,
                    documentation,
                    labelnames=tuple(labels),
                    registry=self.registry,
                    **extra,  # type: ignore[arg-type]
                )
                self._metrics[key] = (metric, tuple(labels))
                return metric
        existing, known = found
        if not isinstance(existing, kind) or known != tuple(labels):
            raise ValueError(f"metric {name} was declared as another type or label set")
        return existing

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """The counter `name` (its exposed name ends in `_total`), created on first use."""
        return self._get(Counter, name, documentation, labels)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """The gauge `name`, created on first use."""
        return self._get(Gauge, name, documentation, labels)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> Histogram:
        """The histogram `name` (seconds unless the name says otherwise), created on first use."""
        return self._get(Histogram, name, documentation, labels, buckets=tuple(buckets))

    def render(self) -> bytes:
        """The exposition text of every metric (format 0.0.4)."""
        return generate_latest(self.registry)
