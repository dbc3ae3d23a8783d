"""Registry settings from registry.yaml, with the documented defaults."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from botreg.registry.limits import Ceilings, current_ceilings

__all__ = ["ChunkingSettings", "Limits", "RegistrySettings", "effective_limits"]

_DEFAULT_CEILINGS = Ceilings()


@dataclass(frozen=True, slots=True)
class ChunkingSettings:
    """How knowledge files are split (budgets fit all-MiniLM-L6-v2's 256 tokens)."""

    max_tokens: int = 200
    overlap_tokens: int = 32
    csv_rows_per_chunk: int = 25  # deprecated, no effect (BR204): a CSV row is a chunk


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds in force for files in the registry (defaults: the default ceilings).

    The first three can be lowered in registry.yaml; the others are the
    operator's alone (see `botreg.registry.limits`).
    """

    # one source for the defaults: the default ceilings
    max_file_bytes: int = _DEFAULT_CEILINGS.max_file_bytes
    max_decompressed_bytes: int = _DEFAULT_CEILINGS.max_decompressed_bytes
    max_compression_ratio: float = _DEFAULT_CEILINGS.max_compression_ratio
    max_depth: int = _DEFAULT_CEILINGS.max_depth
    max_int_bits: int = _DEFAULT_CEILINGS.max_int_bits
    max_values: int = _DEFAULT_CEILINGS.max_values

    def clamped(self, ceilings: Ceilings) -> Limits:
        """These limits, none above the operator's ceilings."""
        return Limits(
            max_file_bytes=min(self.max_file_bytes, ceilings.max_file_bytes),
            max_decompressed_bytes=min(
                self.max_decompressed_bytes, ceilings.max_decompressed_bytes
            ),
            max_compression_ratio=_finite_min(
                self.max_compression_ratio, ceilings.max_compression_ratio
            ),
            max_depth=min(self.max_depth, ceilings.max_depth),
            max_int_bits=min(self.max_int_bits, ceilings.max_int_bits),
            max_values=min(self.max_values, ceilings.max_values),
        )

    @classmethod
    def from_ceilings(cls, ceilings: Ceilings) -> Limits:
        """The limits of a registry that sets none: the ceilings themselves."""
        return cls(
            max_file_bytes=ceilings.max_file_bytes,
            max_decompressed_bytes=ceilings.max_decompressed_bytes,
            max_compression_ratio=ceilings.max_compression_ratio,
            max_depth=ceilings.max_depth,
            max_int_bits=ceilings.max_int_bits,
            max_values=ceilings.max_values,
        )


def effective_limits(limits: Limits | None = None) -> Limits:
    """`limits` clamped to the current ceilings (the ceilings themselves for None).

    Bounded parsers call this, so a `Limits` built by hand (a library caller, a
    test) can never exceed what the operator allows.
    """
    ceilings = current_ceilings()
    return Limits.from_ceilings(ceilings) if limits is None else limits.clamped(ceilings)


def _finite_min(value: float, ceiling: float) -> float:
    return min(value, ceiling) if math.isfinite(value) and value > 0 else ceiling


_CHUNKING = ChunkingSettings()


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """The parsed registry.yaml. Invalid or missing values fall back to defaults:
    the validator reports them, every other consumer keeps working.

    `limits` are always within the operator's ceilings: registry.yaml can lower
    a limit, and a value above the ceiling is clamped to it (a commit cannot
    raise the bounds that protect the machine checking it).
    """

    format_version: int = 1
    name: str = ""
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    limits: Limits = field(default_factory=effective_limits)
    extra_folders: frozenset[str] = frozenset()

    @classmethod
    def from_data(cls, data: Any, ceilings: Ceilings | None = None) -> RegistrySettings:
        """Build settings from loaded registry.yaml data (any shape).

        Args:
            data: The loaded registry.yaml (None or anything else: defaults).
            ceilings: The operator's ceilings (default: those in force).
        """
        ceilings = current_ceilings() if ceilings is None else ceilings
        top = Limits.from_ceilings(ceilings)
        if not isinstance(data, Mapping):
            return cls(limits=top)
        chunking = _section(data, "chunking")
        limits = _section(data, "limits")
        layout = _section(data, "layout")
        folders = layout.get("extra_folders")
        return cls(
            format_version=_int(data.get("format_version"), 1),
            name=str(data.get("name") or ""),
            chunking=ChunkingSettings(
                max_tokens=_int(chunking.get("max_tokens"), _CHUNKING.max_tokens),
                overlap_tokens=_int(
                    chunking.get("overlap_tokens"), _CHUNKING.overlap_tokens, minimum=0
                ),
                csv_rows_per_chunk=_int(
                    chunking.get("csv_rows_per_chunk"), _CHUNKING.csv_rows_per_chunk
                ),
            ),
            limits=replace(
                top,
                max_file_bytes=_int(limits.get("max_file_bytes"), top.max_file_bytes),
                max_decompressed_bytes=_int(
                    limits.get("max_decompressed_bytes"), top.max_decompressed_bytes
                ),
                max_compression_ratio=_number(
                    limits.get("max_compression_ratio"), top.max_compression_ratio
                ),
            ).clamped(ceilings),
            extra_folders=frozenset(
                f for f in (folders if isinstance(folders, list) else []) if isinstance(f, str)
            ),
        )


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _int(value: Any, default: int, minimum: int = 1) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    return value if ok else default


def _number(value: Any, default: float) -> float:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
    return float(value) if ok else default
