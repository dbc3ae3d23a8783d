"""Registry settings from registry.yaml, with the documented defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChunkingSettings", "Limits", "RegistrySettings"]


@dataclass(frozen=True, slots=True)
class ChunkingSettings:
    """How knowledge files are split (budgets fit all-MiniLM-L6-v2's 256 tokens)."""

    max_tokens: int = 200
    overlap_tokens: int = 32
    csv_rows_per_chunk: int = 25


@dataclass(frozen=True, slots=True)
class Limits:
    """Size bounds for files in the registry."""

    max_file_bytes: int = 5 * 1024 * 1024
    max_decompressed_bytes: int = 50 * 1024 * 1024
    max_compression_ratio: float = 100.0


_CHUNKING = ChunkingSettings()
_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """The parsed registry.yaml. Invalid or missing values fall back to defaults:
    the validator reports them, every other consumer keeps working."""

    format_version: int = 1
    name: str = ""
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    limits: Limits = field(default_factory=Limits)
    extra_folders: frozenset[str] = frozenset()

    @classmethod
    def from_data(cls, data: Any) -> RegistrySettings:
        """Build settings from loaded registry.yaml data (any shape)."""
        if not isinstance(data, Mapping):
            return cls()
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
            limits=Limits(
                max_file_bytes=_int(limits.get("max_file_bytes"), _LIMITS.max_file_bytes),
                max_decompressed_bytes=_int(
                    limits.get("max_decompressed_bytes"), _LIMITS.max_decompressed_bytes
                ),
                max_compression_ratio=_number(
                    limits.get("max_compression_ratio"), _LIMITS.max_compression_ratio
                ),
            ),
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
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    return float(value) if ok else default
