"""Print a validation report: text, json, github (workflow commands) or sarif."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from botreg import __version__
from botreg.registry.layout import UNSAFE_CHARACTERS, escape_unsafe
from botreg.validation.findings import RULES, Finding, Severity
from botreg.validation.runner import Report

__all__ = [
    "FORMATS",
    "dump_json",
    "escape_github_data",
    "escape_github_property",
    "escape_text",
    "render",
]


# Output escaping: findings keep the raw path and message (data); each format
# escapes them when rendering, so a file name or a YAML value can neither split
# one finding over several lines nor forge a workflow command.
def escape_text(value: str) -> str:
    """`value` on one printable line (see `botreg.registry.layout.escape_unsafe`)."""
    return escape_unsafe(value)


def dump_json(doc: Any, *, sort_keys: bool = False) -> str:
    """`doc` as indented JSON in which no raw control character survives.

    ASCII output (`ensure_ascii`) escapes every character outside printable
    ASCII: C0 and C1 controls, DEL, line separators, bidi marks. Objects JSON
    does not know (dates) are written as strings.
    """
    return json.dumps(doc, indent=2, ensure_ascii=True, sort_keys=sort_keys, default=str) + "\n"


def _summary(report: Report) -> dict[str, Any]:
    invalid = len(report.invalid_files & set(report.files))
    return {
        "files": len(report.files),
        "valid": len(report.files) - invalid,
        "invalid": invalid,
        "errors": report.errors,
        "warnings": report.warnings,
        "duration_seconds": round(report.duration, 3),
    }


def _message(finding: Finding) -> str:
    prefix = "warning: " if finding.severity is Severity.WARNING else ""
    return prefix + finding.message


def render_text(report: Report, prefix: str = "") -> str:
    """`path:line:col: CODE message` per finding, then a summary line."""
    lines = [
        f"{escape_text(prefix + f.path)}:{f.line}:{f.column}: {f.code} {escape_text(_message(f))}"
        for f in report.findings
    ]
    lines.append(f"{_summary_line(report)} ({report.duration:.2f} s)")
    return "\n".join(lines) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _summary_line(report: Report) -> str:
    s = _summary(report)
    return (
        f"{_count(s['files'], 'file')}: {s['valid']} valid, {s['invalid']} invalid, "
        f"{_count(s['errors'], 'error')}, {_count(s['warnings'], 'warning')}"
    )


def render_json(report: Report, prefix: str = "") -> str:
    """`{"findings": [...], "summary": {...}}`."""
    findings = [
        {
            "path": prefix + f.path,
            "line": f.line,
            "column": f.column,
            "code": f.code,
            "severity": str(f.severity),
            "message": f.message,
            "pointer": f.json_pointer if f.pointer is not None else None,
        }
        for f in report.findings
    ]
    return dump_json({"findings": findings, "summary": _summary(report)})


def escape_github_data(value: str) -> str:
    """The message of a workflow command: `%`, CR and LF percent-encoded, other
    control characters as text escapes (a raw one could end the command)."""
    return (
        UNSAFE_CHARACTERS.sub(
            lambda m: m.group() if m.group() in "\r\n" else escape_unsafe(m.group()), value
        )
        .replace("%", "%25")
        .replace("\r", "%0D")
        .replace("\n", "%0A")
    )


def escape_github_property(value: str) -> str:
    """A property value of a workflow command (`file=`, `title=`): also `:` and `,`."""
    return escape_github_data(value).replace(":", "%3A").replace(",", "%2C")


def render_github(report: Report, prefix: str = "") -> str:
    """GitHub Actions workflow commands: one annotation per finding."""
    out = []
    for f in report.findings:
        level = "error" if f.severity is Severity.ERROR else "warning"
        props = ",".join(
            [
                f"file={escape_github_property(prefix + f.path)}",
                f"line={f.line}",
                f"col={f.column}",
                f"title={escape_github_property(f.code + ' ' + RULES[f.code].name)}",
            ]
        )
        out.append(f"::{level} {props}::{escape_github_data(f.message)}")
    out.append(f"botreg: {_summary_line(report)}")
    return "\n".join(out) + "\n"


def _fingerprint(f: Finding) -> str:
    # Stable across edits that only move lines: the node's pointer, not its line.
    anchor = f.json_pointer if f.pointer is not None else f.message
    # surrogatepass: a path with a byte that is not UTF-8 (surrogateescape) still hashes
    text = f"{f.path}\0{f.code}\0{anchor}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def render_sarif(report: Report, prefix: str = "") -> str:
    """SARIF 2.1.0 for code scanning."""
    codes = sorted(RULES)
    index = {code: i for i, code in enumerate(codes)}
    rules = [
        {
            "id": code,
            "name": RULES[code].name,
            "shortDescription": {"text": RULES[code].summary},
            "defaultConfiguration": {
                "level": "error" if RULES[code].severity is Severity.ERROR else "warning"
            },
            "helpUri": f"https://botreg.dev/checks#{code.lower()}",
        }
        for code in codes
    ]
    results = [
        {
            "ruleId": f.code,
            "ruleIndex": index[f.code],
            "level": "error" if f.severity is Severity.ERROR else "warning",
            "message": {"text": f.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": prefix + f.path, "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": max(f.line, 1), "startColumn": max(f.column, 1)},
                    }
                }
            ],
            "partialFingerprints": {"botregFinding/v1": _fingerprint(f)},
            **({"properties": {"jsonPointer": f.json_pointer}} if f.pointer is not None else {}),
        }
        for f in report.findings
    ]
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "botreg",
                        "version": __version__,
                        "informationUri": "https://botreg.dev",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return dump_json(doc)


FORMATS: dict[str, Callable[[Report, str], str]] = {
    "text": render_text,
    "json": render_json,
    "github": render_github,
    "sarif": render_sarif,
}


def render(report: Report, fmt: str, prefix: str = "") -> str:
    """Render a report in one of `FORMATS`; `prefix` is prepended to every path."""
    return FORMATS[fmt](report, prefix)
