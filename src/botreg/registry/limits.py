"""The operator's ceilings: bounds on the work any input can cause.

Whoever can commit to the registry controls registry.yaml, so registry.yaml
cannot be what protects the machine. The operator sets ceilings (defaults
below, environment variables, or `--max-...` flags); registry.yaml may only
lower the size limits (see `RegistrySettings.from_data`). Every command reads
the same ceilings, so the hook, review, ingest and the daemon give the same
verdict on the same file.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from botreg.errors import UsageError

__all__ = [
    "Ceilings",
    "CeilingsError",
    "ParseBounds",
    "add_ceiling_arguments",
    "apply_ceiling_arguments",
    "current_ceilings",
    "set_ceilings",
]


class CeilingsError(UsageError):
    """An invalid ceiling in the environment or on the command line (exit code 2)."""


class ParseBounds(Protocol):
    """What a parser needs to know: nesting, value count and integer width."""

    @property
    def max_depth(self) -> int: ...

    @property
    def max_values(self) -> int: ...

    @property
    def max_int_bits(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Ceilings:
    """Bounds set by the operator; the repository can lower some, never raise them.

    Attributes:
        max_file_bytes: Size of one file in the repository.
        max_decompressed_bytes: Size of a `.gz` knowledge file once decompressed.
        max_compression_ratio: Decompressed size / compressed size of a `.gz` file.
        max_depth: Nesting of a YAML or JSON document (once aliases are expanded).
        max_int_bits: Width of an integer, sign included (64: the signed 64-bit range).
        max_values: Values in one YAML or JSON document (once aliases and merges
            are expanded).
        max_expanded_bytes: Text in one YAML document once aliases and merges are
            expanded: the UTF-8 bytes of every scalar and key. Without aliases a
            document holds at most its file's size; a few aliases of a long
            string must not multiply what validate, resolve and events handle.
    """

    max_file_bytes: int = 5 * 1024 * 1024
    max_decompressed_bytes: int = 50 * 1024 * 1024
    max_compression_ratio: float = 100.0
    max_depth: int = 200
    max_int_bits: int = 64
    max_values: int = 100_000
    max_expanded_bytes: int = 10 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Ceilings:
        """The defaults, overridden by `BOTREG_MAX_*` environment variables.

        Raises:
            CeilingsError: If a variable is set to an invalid value.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in _SPECS:
            raw = env.get(spec.env)
            if raw is not None and raw.strip():
                values[spec.name] = spec.parse(raw, f"environment variable {spec.env}")
        return replace(_DEFAULT, **values) if values else _DEFAULT

    def int_range(self) -> tuple[int, int]:
        """The smallest and largest integer allowed (two's complement range)."""
        half = 1 << (self.max_int_bits - 1)
        return -half, half - 1


_DEFAULT = Ceilings()


@dataclass(frozen=True, slots=True)
class _Spec:
    """How one ceiling is named and checked."""

    name: str
    env: str
    flag: str
    low: float
    high: float
    is_float: bool = False

    def parse(self, raw: str, where: str) -> int | float:
        text = raw.strip().replace("_", "")
        try:
            value: int | float = float(text) if self.is_float else int(text)
        except ValueError:
            kind = "a number" if self.is_float else "a whole number"
            raise CeilingsError(f"{where}: {raw!r} is not {kind}") from None
        # NaN fails both comparisons; infinity fails the upper bound.
        if not (self.low <= value <= self.high) or not math.isfinite(value):
            raise CeilingsError(
                f"{where}: {raw!r} is out of range; use a value from {self.low:,} to {self.high:,}"
            )
        return value


# Upper bounds keep even a generous operator's ceiling meaningful (and int()
# of a many-digit string cheap).
_SPECS = (
    _Spec("max_file_bytes", "BOTREG_MAX_FILE_BYTES", "--max-file-bytes", 1, 1 << 40),
    _Spec(
        "max_decompressed_bytes",
        "BOTREG_MAX_DECOMPRESSED_BYTES",
        "--max-decompressed-bytes",
        1,
        1 << 40,
    ),
    _Spec(
        "max_compression_ratio",
        "BOTREG_MAX_COMPRESSION_RATIO",
        "--max-compression-ratio",
        1,
        1e6,
        is_float=True,
    ),
    _Spec("max_depth", "BOTREG_MAX_DEPTH", "--max-depth", 1, 10_000),
    _Spec("max_int_bits", "BOTREG_MAX_INT_BITS", "--max-int-bits", 8, 1024),
    _Spec("max_values", "BOTREG_MAX_VALUES", "--max-values", 1, 1 << 32),
    _Spec("max_expanded_bytes", "BOTREG_MAX_EXPANDED_BYTES", "--max-expanded-bytes", 1, 1 << 40),
)
assert [s.name for s in _SPECS] == [f.name for f in fields(Ceilings)]

_override: Ceilings | None = None
_cache: tuple[tuple[str | None, ...], Ceilings] | None = None


def current_ceilings() -> Ceilings:
    """The ceilings in force: set by `set_ceilings` (CLI flags), else from the environment.

    Raises:
        CeilingsError: If a `BOTREG_MAX_*` variable is invalid.
    """
    global _cache  # noqa: PLW0603 - a tiny cache keyed on the variables' values
    if _override is not None:
        return _override
    key = tuple(os.environ.get(spec.env) for spec in _SPECS)
    if _cache is None or _cache[0] != key:
        _cache = (key, Ceilings.from_env())
    return _cache[1]


def set_ceilings(ceilings: Ceilings | None) -> None:
    """Fix the ceilings for this process (None: back to the environment)."""
    global _override  # noqa: PLW0603 - one operator configuration per process
    _override = ceilings


_CEILING_HELP = {
    "max_file_bytes": "largest file read from the repository, in bytes",
    "max_decompressed_bytes": "largest .gz knowledge file once decompressed, in bytes",
    "max_compression_ratio": "largest decompressed / compressed size of a .gz file",
    "max_depth": "deepest nesting of a YAML or JSON document",
    "max_int_bits": "widest integer, in bits, sign included",
    "max_values": "most values in one YAML or JSON document (aliases expanded)",
    "max_expanded_bytes": "most text in one YAML document once aliases are expanded, in bytes",
}


def add_ceiling_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--max-file-bytes`, `--max-depth`, ... (each overrides its environment variable)."""
    group = parser.add_argument_group(
        "operator ceilings",
        "Bounds on the work any input can cause; registry.yaml can only lower them.",
    )
    for spec in _SPECS:
        default = getattr(_DEFAULT, spec.name)
        group.add_argument(
            spec.flag,
            dest=f"ceiling_{spec.name}",
            metavar="N",
            default=None,
            help=f"{_CEILING_HELP[spec.name]} (default: ${spec.env}, else {default:,})",
        )


def apply_ceiling_arguments(args: argparse.Namespace) -> Ceilings:
    """Combine the `--max-...` flags with the environment and put the result in force.

    Raises:
        CeilingsError: If a flag or a variable has an invalid value.
    """
    ceilings = Ceilings.from_env()
    values: dict[str, Any] = {}
    for spec in _SPECS:
        raw = getattr(args, f"ceiling_{spec.name}", None)
        if raw is not None:
            values[spec.name] = spec.parse(str(raw), spec.flag)
    ceilings = replace(ceilings, **values) if values else ceilings
    set_ceilings(ceilings)
    return ceilings
