"""The errors of knowledge storage: botreg errors that are also the seed's built-ins.

Code written against the seed catches `KeyError` / `ValueError`; botreg's CLI and
daemon catch `BotregError`. Each error here is both, with a message that names
what is wrong and how to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botreg.errors import BotregError, UsageError

if TYPE_CHECKING:
    from botreg.validation.findings import Finding

__all__ = [
    "KnowledgeBaseExistsError",
    "KnowledgeBaseNotFoundError",
    "KnowledgePathError",
    "KnowledgeStorageError",
    "KnowledgeValidationError",
]


class KnowledgeStorageError(BotregError):
    """A knowledge storage operation failed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class KnowledgePathError(KnowledgeStorageError, UsageError, ValueError):
    """A domain id or file path that no backend accepts (`..`, absolute, controls...)."""


class KnowledgeBaseNotFoundError(KnowledgeStorageError, KeyError):
    """The knowledge base does not exist."""


class KnowledgeBaseExistsError(KnowledgeStorageError, ValueError):
    """`create_kb` for a knowledge base that exists already."""


class KnowledgeValidationError(KnowledgeStorageError):
    """A git write was refused: the registry would not validate (nothing was committed).

    Attributes:
        findings: The validation errors the write would have introduced.
    """

    def __init__(self, what: str, findings: list[Finding]) -> None:
        self.findings = findings
        detail = "; ".join(
            f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}" for f in findings[:5]
        )
        more = f" (+{len(findings) - 5} more)" if len(findings) > 5 else ""
        super().__init__(
            f"{what} refused, nothing committed: {detail}{more}; fix the content and retry"
        )
