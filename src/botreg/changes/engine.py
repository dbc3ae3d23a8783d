"""Two registry trees and the files that changed between them -> typed changes.

One module for the daemon's change events and `botreg review`, so that what a
review shows is exactly what the daemon will emit. Knowledge changes are about
the files the ingester stores (`RegistryView.domain_files`): a file a domain's
`_domain.yaml` excludes is no change, and an edit of `_domain.yaml` that newly
includes or excludes files adds or deletes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botreg.changes.keydiff import MISSING, KeyChange, diff_values
from botreg.registry.content import ContentError, decode_utf8
from botreg.registry.layout import FileKind, classify
from botreg.registry.snapshot import Snapshot
from botreg.registry.source import RegistrySource
from botreg.registry.view import DomainConfigError, DomainRules, RegistryView
from botreg.registry.yamlfast import YamlLoadError, load_fast

Tree = RegistryView | RegistrySource | Snapshot

__all__ = [
    "BotChange",
    "ChangeSet",
    "ConfigChange",
    "DiffInterrupted",
    "FileChange",
    "KnowledgeFileChange",
    "compute_changes",
]


@dataclass(frozen=True, slots=True)
class FileChange:
    """A changed file between two trees (from git's tree diff).

    `status` is A (added), M (modified), D (deleted) or R (renamed).
    """

    status: str
    path: str
    old_path: str = ""
    old_blob: str = ""
    new_blob: str = ""


@dataclass(frozen=True, slots=True)
class BotChange:
    """A bot created, updated, deleted, activated or deactivated."""

    bot_id: str
    path: str
    kind: str
    changes: tuple[KeyChange, ...] = ()

    @property
    def event_type(self) -> str:
        return f"botreg.bot.{self.kind}"


@dataclass(frozen=True, slots=True)
class KnowledgeFileChange:
    """A knowledge file added, modified, deleted or renamed."""

    domain: str
    path: str
    kind: str
    old_path: str = ""

    @property
    def event_type(self) -> str:
        return f"botreg.knowledge.file.{self.kind}"


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """An environment file or registry.yaml that changed: `kind` added, modified or deleted."""

    name: str
    path: str
    kind: str
    changes: tuple[KeyChange, ...] = ()


@dataclass
class ChangeSet:
    """Everything that changed between two registry trees."""

    bots: list[BotChange] = field(default_factory=list)
    knowledge: list[KnowledgeFileChange] = field(default_factory=list)
    environments: list[ConfigChange] = field(default_factory=list)
    registry: list[ConfigChange] = field(default_factory=list)
    domains: list[ConfigChange] = field(default_factory=list)  # _domain.yaml files

    def counts(self) -> dict[str, int]:
        """How many changes of each kind."""
        out: dict[str, int] = {}
        for change in self.bots:
            out[f"bots_{change.kind}"] = out.get(f"bots_{change.kind}", 0) + 1
        for file in self.knowledge:
            out[f"files_{file.kind}"] = out.get(f"files_{file.kind}", 0) + 1
        out["environments_changed"] = len(self.environments)
        out["registry_changed"] = len(self.registry)
        return out


def _load(source: RegistrySource | None, path: str) -> Any:
    if source is None or not path:
        return MISSING
    try:
        return load_fast(decode_utf8(source.read(path)))
    except (OSError, ContentError, YamlLoadError):
        return MISSING


def _status(data: Any) -> str:
    return str(data.get("status", "")) if isinstance(data, dict) else ""


class DiffInterrupted(Exception):  # noqa: N818 - a stop asked for, not an error
    """`should_stop` said True between two files: the diff was abandoned."""


def compute_changes(
    old: Tree | None,
    new: Tree,
    files: Sequence[FileChange],
    should_stop: Callable[[], bool] | None = None,
) -> ChangeSet:
    """Typed changes between two trees.

    Args:
        old: The old tree (None: everything in `files` is new).
        new: The new tree.
        files: The changed files (git's tree diff, renames detected).
        should_stop: Asked between files (the daemon's stop: a diff of 15,000 bots
            takes seconds); True abandons the diff.

    Raises:
        DiffInterrupted: if `should_stop` said True.
    """
    old_view = RegistryView.of(old) if old is not None else None
    new_view = RegistryView.of(new)
    changes = ChangeSet()
    touched: set[str] = set()
    rules_changed: set[str] = set()  # domains whose _domain.yaml changed
    for file in files:
        if should_stop is not None and should_stop():
            raise DiffInterrupted
        touched.update(p for p in (file.path, file.old_path) if p)
        for path in (file.path, file.old_path):
            info = classify(path) if path else None
            if info is not None and info.kind is FileKind.DOMAIN and info.ident:
                rules_changed.add(info.ident)
        _file(changes, old_view, new_view, file)
    for domain in sorted(rules_changed):
        # Files the diff does not list but the new rules select or drop.
        before = set(_domain_files(old_view, domain))
        after = set(_domain_files(new_view, domain))
        for path in sorted(after - before - touched):
            changes.knowledge.append(KnowledgeFileChange(domain, path, "added"))
        for path in sorted(before - after - touched):
            changes.knowledge.append(KnowledgeFileChange(domain, path, "deleted"))
    return changes


def _file(
    changes: ChangeSet, old: RegistryView | None, new: RegistryView, file: FileChange
) -> None:
    new_info = classify(file.path)
    old_info = classify(file.old_path) if file.old_path else new_info
    if file.status == "R" and old_info.kind is not new_info.kind:
        # renamed across kinds: the old one went, a new one came
        _file(changes, old, new, FileChange("D", file.old_path, file.old_path, file.old_blob))
        _file(changes, old, new, FileChange("A", file.path, "", "", file.new_blob))
        return
    if FileKind.KNOWLEDGE in (new_info.kind, old_info.kind):
        _knowledge(changes, old, new, file, new_info.ident or "", old_info.ident or "")
        return
    _config(changes, old.source if old else None, new.source, file)


def _ingested(view: RegistryView | None, path: str) -> bool:
    """True if the ingester stores the file at `path` of `view`."""
    if view is None or not path:
        return False
    try:
        return view.is_ingested(path)
    except DomainConfigError:
        # A _domain.yaml that does not load is a validation error (the daemon never
        # applies it); meanwhile review shows the files as if it had no globs.
        return view.ingestible(path)


def _domain_files(view: RegistryView | None, domain: str) -> list[str]:
    if view is None:
        return []
    try:
        return view.domain_files(domain)
    except DomainConfigError:
        return view.domain_files(domain, DomainRules())


def _knowledge(
    changes: ChangeSet,
    old: RegistryView | None,
    new: RegistryView,
    file: FileChange,
    domain: str,
    old_domain: str,
) -> None:
    was = file.status != "A" and _ingested(old, file.old_path or file.path)
    now = file.status != "D" and _ingested(new, file.path)
    if not was and not now:
        return  # excluded, unsupported or a link on both sides: the store never sees it
    if file.status == "R":
        if was and now and domain == old_domain:
            changes.knowledge.append(
                KnowledgeFileChange(domain, file.path, "renamed", file.old_path)
            )
            return
        if was:  # moved away, to another domain or out of the selection
            changes.knowledge.append(KnowledgeFileChange(old_domain, file.old_path, "deleted"))
        if now:
            changes.knowledge.append(KnowledgeFileChange(domain, file.path, "added"))
        return
    if was and now:
        changes.knowledge.append(KnowledgeFileChange(domain, file.path, "modified"))
    elif now:  # added, or newly selected (a link became a file, a type became supported)
        changes.knowledge.append(KnowledgeFileChange(domain, file.path, "added"))
    else:
        changes.knowledge.append(KnowledgeFileChange(old_domain, file.path, "deleted"))


def _config(
    changes: ChangeSet, old: RegistrySource | None, new: RegistrySource, file: FileChange
) -> None:
    before = _load(old, file.old_path) if file.status != "A" else MISSING
    after = _load(new, file.path) if file.status != "D" else MISSING
    info = classify(file.path)
    old_info = classify(file.old_path) if file.old_path else info
    if info.kind is FileKind.BOT or old_info.kind is FileKind.BOT:
        _bot(changes, file, info.ident or "", old_info.ident or "", before, after)
        return
    kind = {"A": "added", "D": "deleted"}.get(file.status, "modified")
    diff = tuple(
        diff_values(before if before is not MISSING else {}, after if after is not MISSING else {})
    )
    if info.kind is FileKind.ENVIRONMENT:
        changes.environments.append(ConfigChange(info.ident or "", file.path, kind, diff))
    elif info.kind is FileKind.REGISTRY:
        changes.registry.append(ConfigChange("registry", file.path, kind, diff))
    elif info.kind is FileKind.DOMAIN:
        changes.domains.append(ConfigChange(info.ident or "", file.path, kind, diff))


def _bot(
    changes: ChangeSet, file: FileChange, bot_id: str, old_id: str, before: Any, after: Any
) -> None:
    if file.status == "R" and bot_id != old_id:  # a new id: the old bot is gone
        changes.bots.append(
            BotChange(old_id, file.old_path, "deleted", tuple(diff_values(before, MISSING)))
        )
        changes.bots.append(
            BotChange(bot_id, file.path, "created", tuple(diff_values(MISSING, after)))
        )
        return
    if file.status == "A":
        changes.bots.append(
            BotChange(
                bot_id,
                file.path,
                "created",
                tuple(diff_values({}, after if after is not MISSING else {})),
            )
        )
        return
    if file.status == "D":
        changes.bots.append(
            BotChange(
                old_id,
                file.old_path or file.path,
                "deleted",
                tuple(diff_values(before if before is not MISSING else {}, {})),
            )
        )
        return
    diff = tuple(
        diff_values(before if before is not MISSING else {}, after if after is not MISSING else {})
    )
    if not diff:
        return  # only comments or formatting changed
    kind = "updated"
    was, now = _status(before), _status(after)
    if was != now and now == "active":
        kind = "activated"
    elif was != now and now == "inactive":
        kind = "deactivated"
    changes.bots.append(BotChange(bot_id, file.path, kind, diff))
