"""Checks of knowledge files: each must parse as its type, within bounds, and hold no credential."""

from __future__ import annotations

import re

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
from botreg.secrets import locate_token
from botreg.validation.findings import Finding

__all__ = ["check_knowledge_file"]

_SUPPORTED = ", ".join(sorted(KNOWLEDGE_TYPES)) + " (and any of them + .gz)"
# One pass over a file says whether a credential may be in it (most stop here).
# Only provider shapes and private keys: prose legitimately shows
# `Authorization: Bearer ...` or `postgres://user:pass@host` as examples.
_CREDENTIAL_HINT = re.compile(
    r"PRIVATE|sk-|sk_|rk_|AKIA|ASIA|AGPA|AIDA|AROA|gh[pousr]_|github_pat_|glpat-|xox|xapp-"
    r"|hf_|AIza|eyJ"
)


def _credential_findings(path: str, text: str) -> list[Finding]:
    """BR303 for a private key or a known token shape in a knowledge file.

    Knowledge is chunked and served to whoever can query the store, so a key
    committed there is published, piece by piece.
    """
    if not _CREDENTIAL_HINT.search(text):
        return []
    found = locate_token(text, generic=False)
    if found is None or found[0] == "password in URL":  # documentation examples
        return []
    label, offset = found
    line = text.count("\n", 0, offset) + 1
    return [
        Finding(
            path,
            "BR303",
            f"an inline credential ({label}) in a knowledge file: knowledge is served to "
            "whoever can query it; remove it from the file (and from git history), "
            "then rotate the exposed credential",
            line,
            1,
        )
    ]


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
    return _credential_findings(path, text)
