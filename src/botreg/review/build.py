"""Build the review of base..head: the daemon's diff engine, the hook's validator,
the ingester's chunker. What a review shows is what the daemon will do."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from botreg.changes import ChangeSet, FileChange, KeyChange, compute_changes
from botreg.changes.clip import MAX_KEY, Budget, clip_change, clip_text, clip_value
from botreg.errors import BotregError, UsageError
from botreg.git.diff import tree_diff
from botreg.git.tree import GitTreeSource
from botreg.knowledge.chunkers import chunk_file
from botreg.registry.content import ContentError
from botreg.registry.layout import FileKind, classify
from botreg.registry.snapshot import Snapshot
from botreg.registry.view import RegistryView
from botreg.secrets import mask_config
from botreg.store.settings import EmbeddingSettings
from botreg.validation.crossfile import bot_references
from botreg.validation.runner import Report, validate_registry

__all__ = ["BotReview", "DomainReview", "EnvironmentReview", "Review", "build_review"]

_LONG_TEXT = 80
_MODEL_PATHS = ("llm.provider", "llm.model", "llm.deployment")

# A review shows what changes, never a file's content: every value and diff is
# an excerpt (see botreg.changes.clip: one file's values and diffs share one
# Budget); one diff at most _MAX_DIFF_LINES lines and _MAX_DIFF_CHARS.
_MAX_DIFF_LINES = 40
_MAX_DIFF_CHARS = 2000
_MAX_DIFF_LINE = 300
_MAX_DIFF_INPUT = 200_000  # characters per side; beyond, difflib gets slow
_MAX_MESSAGE = 1000
_MAX_RESOURCES = 100


@dataclass
class BotReview:
    """One bot's change."""

    bot_id: str
    path: str
    kind: str  # created, updated, deleted, activated, deactivated
    changes: list[dict[str, Any]]
    text_diffs: dict[str, str]  # key path -> unified diff of a long text
    flags: list[str]


@dataclass
class DomainReview:
    """What the store will do for one knowledge domain."""

    domain: str
    files: list[dict[str, str]]  # kind, path, old_path
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_kept: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)


@dataclass
class EnvironmentReview:
    """One environment file's change and who it affects."""

    name: str
    path: str
    kind: str
    changes: list[dict[str, Any]]
    resources: list[dict[str, Any]]  # changed resources: type, name, value in head (masked)
    affected_bots: list[dict[str, Any]]  # unchanged bots using a changed resource


@dataclass
class Review:
    """Everything a reviewer needs about base..head."""

    base: str
    head: str
    base_ref: str
    head_ref: str
    environment: str
    valid: bool
    errors: int
    warnings: int
    findings: list[dict[str, Any]]
    bots: list[BotReview]
    domains: list[DomainReview]
    environments: list[EnvironmentReview]
    registry: list[dict[str, Any]]
    notes: list[str]

    def summary(self) -> dict[str, Any]:
        """Counts for the summary table."""
        bots = Counter(b.kind for b in self.bots)
        return {
            "valid": self.valid,
            "errors": self.errors,
            "warnings": self.warnings,
            "new_findings": sum(1 for f in self.findings if f["new"]),
            "bots": {
                k: bots.get(k, 0)
                for k in ("created", "updated", "deleted", "activated", "deactivated")
            },
            "domains": {
                d.domain: {
                    **{
                        k: sum(1 for f in d.files if f["kind"] == k)
                        for k in ("added", "modified", "deleted", "renamed")
                    },
                    "chunks_added": d.chunks_added,
                    "chunks_removed": d.chunks_removed,
                    "chunks_kept": d.chunks_kept,
                    "reembed": bool(d.warnings),
                }
                for d in self.domains
            },
            "environments": [e.name for e in self.environments],
            "registry": [r["path"] for r in self.registry],
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the same content as the Markdown."""
        doc = asdict(self)
        doc["summary"] = self.summary()
        return doc


def _text_diff(path: str, old: str, new: str, budget: Budget) -> str:
    """A unified diff of two texts, at most `_MAX_DIFF_LINES` lines of the file's budget."""
    if max(len(old), len(new)) > _MAX_DIFF_INPUT:
        return (
            f"[not diffed: the texts have {len(old)} and {len(new)} characters, "
            f"over {_MAX_DIFF_INPUT}]"
        )
    limit = max(min(_MAX_DIFF_CHARS, budget.left), 0)
    label = clip_text(path, MAX_KEY)
    lines: list[str] = []
    used = 0
    diff: Iterable[str] = difflib.unified_diff(
        old.splitlines(), new.splitlines(), f"a/{label}", f"b/{label}", lineterm=""
    )
    for count, raw in enumerate(diff):
        line = clip_text(raw, _MAX_DIFF_LINE)
        if count >= _MAX_DIFF_LINES or used + len(line) + 1 > limit:
            lines.append(f"[diff truncated after {count} lines]")
            break
        lines.append(line)
        used += len(line) + 1
    budget.left -= used
    return "\n".join(lines)


def _resolve(repo: Any, rev: str) -> str:
    import git

    try:
        return str(repo.git.rev_parse("--verify", "-q", f"{rev}^{{commit}}"))
    except git.GitCommandError:
        raise UsageError(f"unknown revision {rev!r}") from None


def _over_limit(snapshot: Snapshot, path: str) -> str:
    """Why `path` is not loaded ('' if it may be): a file over the size limit."""
    entry = snapshot.entries.get(path)
    limit = snapshot.size_limit(path)  # the validator's bound
    if entry is None or entry.size <= limit:
        return ""
    return f"{entry.size} bytes, over the limit of {limit} bytes; not loaded"


def _loadable(
    files: list[FileChange], old: Snapshot, new: Snapshot
) -> tuple[list[FileChange], list[str]]:
    """The changes whose files may be loaded, and a note for each one that may not.

    Knowledge files pass (the chunker step bounds them); an oversize bot,
    environment or settings file is never parsed, as in the validator.
    """
    kept: list[FileChange] = []
    notes: list[str] = []
    for file in files:
        kinds = {classify(p).kind for p in (file.path, file.old_path) if p}
        if FileKind.KNOWLEDGE in kinds:
            kept.append(file)
            continue
        sides = []
        if file.status != "A":
            sides.append((old, file.old_path or file.path))
        if file.status != "D":
            sides.append((new, file.path))
        why = next(
            (f"{path}: {reason}" for snap, path in sides if (reason := _over_limit(snap, path))),
            "",
        )
        if why:
            notes.append(f"{why}; its changes are not shown (split the file)")
        else:
            kept.append(file)
    return kept, notes


def _data(snapshot: Snapshot, path: str) -> Any:
    """The loaded YAML at `path` (None if missing, oversize or broken)."""
    if path not in snapshot.entries:
        return None
    doc = snapshot.document(path)
    return doc.data if doc.ok else None


def _finding_key(finding: Any) -> tuple[str, str, str]:
    anchor = finding.json_pointer if finding.pointer is not None else finding.message
    return (finding.path, finding.code, anchor)


def _flags(kind: str, changes: list[KeyChange]) -> list[str]:
    flags: list[str] = []
    paths = [c.path for c in changes]
    if kind in ("activated", "deactivated") or "status" in paths:
        flags.append("status changed")
    if kind in ("created", "deleted"):
        return flags
    if any(p in _MODEL_PATHS for p in paths):
        flags.append("model or provider changed")
    if any(p.startswith("knowledge.domains") or p == "knowledge" for p in paths):
        flags.append("knowledge domains changed")
    if any(
        "$resource" in p
        or (isinstance(c.old, Mapping) and "$resource" in c.old)
        or (isinstance(c.new, Mapping) and "$resource" in c.new)
        for p, c in zip(paths, changes, strict=True)
    ):
        flags.append("$resource reference changed")
    return flags


def _bot_review(bot: Any) -> BotReview:
    changes: list[dict[str, Any]] = []
    diffs: dict[str, str] = {}
    budget = Budget()
    for change in bot.changes:
        old, new = change.old, change.new
        long_text = (
            isinstance(old, str)
            and isinstance(new, str)
            and ("\n" in old or "\n" in new or max(len(old), len(new)) > _LONG_TEXT)
        )
        if change.kind == "changed" and long_text:
            key = clip_text(change.path, MAX_KEY)
            diffs[key] = _text_diff(change.path, old, new, budget)
            changes.append(
                {
                    **change.to_dict(),
                    "path": key,
                    "old": "(text, see diff)",
                    "new": "(text, see diff)",
                }
            )
        else:
            changes.append(clip_change(change.to_dict(), budget))
    return BotReview(
        bot.bot_id, bot.path, bot.kind, changes, diffs, _flags(bot.kind, list(bot.changes))
    )


def _chunk_hashes(view: RegistryView, path: str) -> Counter[str]:
    # the validator's bounds: an oversize file is reported, never read
    # (a gzip bomb is stopped by the bounded decompression in chunk_file)
    if reason := _over_limit(view.snapshot, path):
        raise ContentError("BR504", reason)
    raw = view.source.read(path)
    chunks = chunk_file(path, raw, view.settings.chunking, view.settings.limits)
    return Counter(c.content_hash for c in chunks)


def _environment(view: RegistryView, name: str) -> dict[str, Any]:
    """An environment's data, or {} if it is missing or unusable (validation says why)."""
    try:
        return view.environment(name)
    except BotregError:
        return {}


def _embedding(view: RegistryView, environment: str) -> str:
    data = _environment(view, environment)
    section = data.get("knowledge")
    embedding = section.get("embedding") if isinstance(section, dict) else None
    if not isinstance(embedding, dict):
        return ""
    params = dict(embedding)
    return EmbeddingSettings(str(params.pop("provider", "default")), params).fingerprint


def _domains(
    changes: ChangeSet, old: RegistryView, new: RegistryView, environment: str
) -> tuple[list[DomainReview], list[str]]:
    notes: list[str] = []
    reembed = _embedding(old, environment) != _embedding(new, environment)
    rechunk = old.settings.chunking != new.settings.chunking
    if rechunk:
        notes.append(
            "registry.yaml chunking settings changed: every knowledge file is "
            "re-chunked (only texts that change are embedded)."
        )
    by_domain: dict[str, DomainReview] = {}
    for file in changes.knowledge:
        review = by_domain.setdefault(file.domain, DomainReview(file.domain, []))
        review.files.append({"kind": file.kind, "path": file.path, "old_path": file.old_path})
        before: Counter[str] = Counter()
        after: Counter[str] = Counter()
        try:
            if file.kind in ("modified", "deleted", "renamed"):
                before = _chunk_hashes(old, file.old_path or file.path)
            if file.kind in ("added", "modified", "renamed"):
                after = _chunk_hashes(new, file.path)
        except (ContentError, OSError) as exc:
            message = exc.message if isinstance(exc, ContentError) else str(exc)
            review.errors.append({"path": file.path, "message": clip_text(message, _MAX_MESSAGE)})
            continue
        review.chunks_added += sum((after - before).values())
        review.chunks_removed += sum((before - after).values())
        review.chunks_kept += sum((after & before).values())
    domains = sorted({*new.domains(), *old.domains()})
    if reembed:
        for domain in domains:
            review = by_domain.setdefault(domain, DomainReview(domain, []))
            review.warnings.append(
                f"the embedding settings of environment {environment!r} "
                "changed: the whole domain will be re-embedded"
            )
    return [by_domain[d] for d in sorted(by_domain)], notes


def _environments(
    changes: ChangeSet, new: RegistryView, changed_bots: set[str]
) -> list[EnvironmentReview]:
    reviews = []
    new_snap = new.snapshot
    bot_refs: dict[str, set[tuple[str, str]]] | None = None
    for env in changes.environments:
        touched: set[tuple[str, str]] = set()
        for change in env.changes:
            parts = change.path.split(".")
            if parts[0] == "resources" and len(parts) >= 3:
                touched.add((parts[1], parts[2]))
            elif parts[0] == "resources" and len(parts) == 2:  # a whole type group
                old = change.old if isinstance(change.old, Mapping) else {}
                new_group = change.new if isinstance(change.new, Mapping) else {}
                touched |= {(parts[1], str(n)) for n in {*old, *new_group}}
        budget = Budget()
        env_changes = [clip_change(c.to_dict(), budget) for c in env.changes]
        data = _environment(new, env.name) if env.kind != "deleted" else {}
        resources = data.get("resources", {})
        values = []
        for rtype, name in sorted(touched)[:_MAX_RESOURCES]:
            group = resources.get(rtype) if isinstance(resources, Mapping) else None
            value = group.get(name) if isinstance(group, Mapping) else None
            values.append(
                {
                    "type": rtype,
                    "name": name,
                    "value": clip_value(mask_config(value), budget) if value is not None else None,
                }
            )
        if bot_refs is None:  # load every bot once, only when an environment changed
            bot_refs = {}
            for path in new_snap.paths(FileKind.BOT):
                refs = bot_references(new_snap.document(path).data)
                bot_refs[classify(path).ident or path] = {(t, n) for _, t, n in refs.resources}
        affected = [
            {"bot_id": bot, "resources": sorted(f"{t}/{n}" for t, n in refs & touched)}
            for bot, refs in sorted(bot_refs.items())
            if refs & touched and bot not in changed_bots
        ]
        reviews.append(
            EnvironmentReview(env.name, env.path, env.kind, env_changes, values, affected)
        )
    return reviews


def build_review(
    repo_path: str,
    base: str,
    head: str = "HEAD",
    environment: str = "development",
    *,
    check_environment: bool = False,
) -> Review:
    """Compare two revisions of a registry repository.

    Args:
        repo_path: The repository.
        base: The base revision.
        head: The head revision.
        environment: Whose embedding settings decide re-embedding.
        check_environment: Refuse an `environment` that neither revision has
            (the operator named it; the default may be absent).

    Raises:
        UsageError: if the repository or a revision does not exist, or (with
            `check_environment`) the environment is in neither revision.
    """
    import git

    try:
        repo = git.Repo(repo_path, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise UsageError(f"{repo_path}: not a git repository") from None
    base_sha, head_sha = _resolve(repo, base), _resolve(repo, head)
    old = GitTreeSource(repo, base_sha, label=f"{base}@{base_sha[:12]}")
    new = GitTreeSource(repo, head_sha, label=f"{head}@{head_sha[:12]}")
    old_view, new_view = RegistryView(old), RegistryView(new)
    if check_environment:
        known = sorted({*old_view.environment_names(), *new_view.environment_names()})
        if environment not in known:
            raise UsageError(
                f"environment not found: {environment!r} (at neither {base} nor {head}; "
                f"available: {', '.join(known) or 'none'})"
            )
    files, size_notes = _loadable(
        [FileChange(*c) for c in tree_diff(repo, base_sha, head_sha)],
        old_view.snapshot,
        new_view.snapshot,
    )
    changes = compute_changes(old_view, new_view, files)

    head_report: Report = validate_registry(new)  # its own snapshot: the hook's exact check
    base_keys = {_finding_key(f) for f in validate_registry(old).findings}
    findings = [
        {
            "path": f.path,
            "line": f.line,
            "column": f.column,
            "code": f.code,
            "severity": str(f.severity),
            "message": clip_text(f.message, _MAX_MESSAGE),
            "new": _finding_key(f) not in base_keys,
        }
        for f in head_report.findings
    ]
    bots = [_bot_review(bot) for bot in changes.bots]
    domains, notes = _domains(changes, old_view, new_view, environment)
    environments = _environments(changes, new_view, {b.bot_id for b in bots})
    registry = []
    for r in changes.registry + changes.domains:
        budget = Budget()
        registry.append(
            {
                "path": r.path,
                "kind": r.kind,
                "changes": [clip_change(c.to_dict(), budget) for c in r.changes],
            }
        )
    return Review(
        base_sha,
        head_sha,
        base,
        head,
        environment,
        head_report.ok,
        head_report.errors,
        head_report.warnings,
        findings,
        bots,
        domains,
        environments,
        registry,
        size_notes + notes,
    )
