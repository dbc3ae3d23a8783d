"""Prometheus metrics of the daemon (text exposition format 0.0.4)."""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["Metrics"]


class Metrics:
    """Counters, gauges and duration summaries, rendered as Prometheus text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.sums: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[int, float]] = {}

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        """Add to a counter."""
        with self._lock:
            self.counters[(name, tuple(sorted(labels.items())))] += value

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        with self._lock:
            self.gauges[(name, tuple(sorted(labels.items())))] = value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """Record a duration (count and sum)."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            count, total = self.sums.get(key, (0, 0.0))
            self.sums[key] = (count + 1, total + seconds)

    @staticmethod
    def _labels(labels: tuple[tuple[str, str], ...]) -> str:
        if not labels:
            return ""
        inner = ",".join(
            f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
            for k, v in labels
        )
        return "{" + inner + "}"

    def render(self) -> str:
        """The exposition text."""
        lines: list[str] = []
        with self._lock:
            seen: set[str] = set()
            for (name, labels), value in sorted(self.counters.items()):
                if name not in seen:
                    lines.append(f"# TYPE {name} counter")
                    seen.add(name)
                lines.append(f"{name}{self._labels(labels)} {value:g}")
            for (name, labels), value in sorted(self.gauges.items()):
                if name not in seen:
                    lines.append(f"# TYPE {name} gauge")
                    seen.add(name)
                lines.append(f"{name}{self._labels(labels)} {value:.17g}")
            for (name, labels), (count, total) in sorted(self.sums.items()):
                if name not in seen:
                    lines.append(f"# TYPE {name} summary")
                    seen.add(name)
                lines.append(f"{name}_count{self._labels(labels)} {count}")
                lines.append(f"{name}_sum{self._labels(labels)} {total:.6f}")
        return "\n".join(lines) + "\n"
