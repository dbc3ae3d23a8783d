"""Checks of knowledge files: each must parse as its type, within bounds."""

from __future__ import annotations

import json
from typing import Any

from botreg.registry.content import ContentError, decode_utf8, decompress_bounded, parse_csv
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
            _check_json(text)
        elif ktype.kind == "yaml":
            try:
                load_fast(text)
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


def _check_json(text: str) -> None:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(key)
            result[key] = value
        return result

    try:
        json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise ContentError("BR105", f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except ValueError as exc:
        line, column = _locate_json_key(text, str(exc))
        raise ContentError(
            "BR102", f"duplicate key {str(exc)!r}: remove one of them", line, column
        ) from None
    except RecursionError:
        raise ContentError("BR105", "invalid JSON: nested too deeply") from None


def _locate_json_key(text: str, key: str) -> tuple[int, int]:
    needle = json.dumps(key)
    first = text.find(needle)
    second = text.find(needle, first + 1) if first >= 0 else -1
    offset = second if second >= 0 else max(first, 0)
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1
