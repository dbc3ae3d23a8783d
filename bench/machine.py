"""The machine a benchmark ran on, printed beside its table.

Timings mean little without it: how many cores, how busy they were (the load
average: on a shared machine other work competes with the benchmark), and
which CPU. Every bench prints `machine_line()` next to its table.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_model", "machine_line"]


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), or what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line() -> str:
    """`machine: N cores (CPU), load 1m 5m 15m, Python X.Y.Z` at the time of the call."""
    try:
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load = "unknown"
    return (
        f"machine: {os.cpu_count()} cores ({cpu_model()}), load {load}, "
        f"Python {platform.python_version()}"
    )
