"""Checks of knowledge files: each must parse as its type, within bounds."""

from __future__ import annotations

from botreg.registry.content import (
    ContentError,
    decode_utf8,
    decompress_bounded,
    load_json_bounded,
    parse_csv,
)
from botreg.registry.layout import KNOWLEDGE_TYPES, knowledge_type
from botreg.registry.settings import Limits
from botreg.registry.yamlio import YamlLoadError, load_fast
from botreg.validation.findings import Finding

__all__ = ["check_knowledge_file"]

_SUPPORTED = ", ".join(sorted(KNOWLEDGE_TYPES)) + " (and any of them + .gz)"


def check_knowledge_file(path: str, raw: bytes, limits: Limits) -> list[Finding]:
    """Findings for one knowledge file's content (size and links are checked elsewhere)."""
    ktype = knowledge_type(path)
    if ktype is None:
        return [
            Finding(
                path,
                "BR506",
                f"unsupported file type: it will not be ingested. Supported: {_SUPPORTED}",
                1,
                1,
            )
        ]
    where = " (in the decompressed content)" if ktype.compressed else ""
    try:
        if ktype.compressed:
            raw = decompress_bounded(raw, limits)
        text = decode_utf8(raw)
        if ktype.kind == "json":
            load_json_bounded(text, limits)
        elif ktype.kind == "yaml":
            try:
                load_fast(text, limits)
            except YamlLoadError as exc:
                return [
                    Finding(path, p.code, p.message + where, p.line, p.column) for p in exc.problems
                ]
        elif ktype.kind == "csv":
            if not parse_csv(text):
                return [Finding(path, "BR501", "empty CSV: add a header row and data", 1, 1)]
        elif not text.strip():
            return [
                Finding(path, "BR501", "empty file: nothing to ingest; add text or delete it", 1, 1)
            ]
    except ContentError as exc:
        return [Finding(path, exc.code, exc.message + where, exc.line, exc.column)]
    return []
