"""Findings and the catalogue of check codes.

Codes are a public contract: they appear in output, in `# botreg: ignore[CODE]`
comments and as SARIF rule ids, so a code never changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from botreg.secrets import mask_text

__all__ = ["RULES", "Finding", "Rule", "Severity"]


class Severity(StrEnum):
    """How bad a finding is: errors fail validation, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


MAX_MESSAGE = 1000  # characters of a finding's message


@dataclass(frozen=True, slots=True)
class Rule:
    """One check: its stable code, short name, default severity and what it means."""

    code: str
    name: str
    severity: Severity
    summary: str


@dataclass(slots=True)
class Finding:
    """One problem in one file.

    `pointer` is the JSON pointer of the node at fault; `line`/`column` are
    filled from it (lazily, only for files that have findings) unless the check
    knew them already (syntax errors). `related` names other files the finding
    depends on, so a hook run on those files reports it too.
    """

    path: str
    code: str
    message: str
    line: int = 0
    column: int = 0
    pointer: tuple[str | int, ...] | None = None
    at_key: bool = False
    related: tuple[str, ...] = ()
    severity: Severity = field(default=Severity.ERROR)

    def __post_init__(self) -> None:
        # messages quote keys and parser snippets from the repository: mask credentials,
        # and bound them (a 4.5 MB key made a 4.5 MB rejected event and status.json)
        message = mask_text(self.message)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + f"... [truncated: {len(message)} characters]"
        self.message = message
        rule = RULES.get(self.code)
        if rule is not None and self.severity is Severity.ERROR:
            self.severity = rule.severity

    @property
    def json_pointer(self) -> str:
        """The RFC 6901 pointer of the node at fault ('' for the whole document)."""
        if not self.pointer:
            return ""
        # a key can itself be a token (`sk-ant-...: x`): the pointer is masked like the message
        return "/" + "/".join(
            mask_text(str(p)).replace("~", "~0").replace("/", "~1") for p in self.pointer
        )


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.code: rule for rule in rules}


_E, _W = Severity.ERROR, Severity.WARNING

RULES: dict[str, Rule] = _rules(
    # syntax
    Rule("BR100", "unreadable-file", _E, "The file cannot be read."),
    Rule("BR101", "yaml-syntax", _E, "The file is not valid YAML (or has several documents)."),
    Rule("BR102", "duplicate-key", _E, "A mapping has the same key twice."),
    Rule("BR103", "not-utf8", _E, "A text file is not UTF-8."),
    Rule("BR104", "yaml-alias-bomb", _E, "YAML aliases expand beyond a safe bound."),
    Rule("BR105", "json-syntax", _E, "The file is not valid JSON."),
    Rule("BR106", "csv-syntax", _E, "The file is not a well-formed CSV table."),
    Rule("BR107", "number-out-of-range", _E, "An integer beyond 64 bits, or NaN or infinity."),
    Rule("BR108", "too-many-values", _E, "A YAML/JSON document beyond the ceiling max_values."),
    # schema
    Rule("BR201", "schema-violation", _E, "A value does not match the JSON Schema of its file."),
    Rule("BR202", "unknown-key", _E, "A key that the JSON Schema does not allow."),
    Rule("BR203", "missing-key", _E, "A key that the JSON Schema requires is missing."),
    Rule("BR204", "deprecated-key", _W, "A key that is still accepted but has no effect."),
    # portability
    Rule("BR301", "absolute-path", _E, "An absolute local path where a portable value belongs."),
    Rule("BR302", "loopback-url", _E, "A localhost/loopback address in a portable value."),
    Rule("BR303", "inline-credential", _E, "A credential written inline (known token shape)."),
    Rule("BR304", "secret-like-value", _E, "A high-entropy value under a secret-like key."),
    Rule("BR305", "store-path-escape", _E, "An embedded store path that leaves the data dir."),
    # cross-file
    Rule("BR401", "undefined-resource", _E, "A $resource that an environment does not define."),
    Rule("BR402", "unknown-domain", _E, "A knowledge domain that does not exist under knowledge/."),
    Rule("BR403", "invalid-identifier", _E, "A bot, domain or environment name breaks the rule."),
    Rule("BR404", "id-mismatch", _E, "An `id`/`name` field that differs from the file name."),
    Rule("BR405", "unknown-folder", _E, "A top-level folder the registry format does not know."),
    Rule("BR406", "misplaced-file", _E, "A file where the registry format does not read it."),
    Rule("BR407", "missing-registry-file", _E, "The repository has no registry.yaml."),
    Rule("BR408", "no-environments", _W, "The repository defines no environment."),
    # knowledge files
    Rule("BR501", "knowledge-empty", _W, "A knowledge file without any text."),
    Rule("BR502", "gzip-corrupt", _E, "A .gz file that does not decompress."),
    Rule("BR503", "gzip-bomb", _E, "A .gz file beyond the decompressed size or ratio bound."),
    Rule("BR504", "file-too-large", _E, "A file over the size limit of registry.yaml."),
    Rule("BR505", "symlink", _E, "A symbolic link (it can point outside the repository)."),
    Rule("BR506", "unsupported-extension", _W, "A knowledge file of a type that is not ingested."),
)
