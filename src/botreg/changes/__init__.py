"""The diff engine: two registry trees -> typed changes (for the daemon and `botreg review`)."""

from botreg.changes.engine import (
    BotChange,
    ChangeSet,
    ConfigChange,
    FileChange,
    KnowledgeFileChange,
    compute_changes,
)
from botreg.changes.keydiff import KeyChange, diff_values

__all__ = [
    "BotChange",
    "ChangeSet",
    "ConfigChange",
    "FileChange",
    "KeyChange",
    "KnowledgeFileChange",
    "compute_changes",
    "diff_values",
]
