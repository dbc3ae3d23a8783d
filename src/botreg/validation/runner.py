"""Run every check over a registry and collect the findings as data.

With `paths` (what pre-commit passes) findings are reported for those files,
but cross-file checks still see the whole repository: a bot file is checked
against every environment, and an environment file against every bot.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from botreg.registry.layout import (
    REGISTRY_FILE,
    STANDARD_FOLDERS,
    FileKind,
    is_identifier,
)
from botreg.registry.snapshot import Snapshot
from botreg.registry.source import RegistrySource
from botreg.registry.yamlio import load_roundtrip, position_of
from botreg.validation.confinement import store_path_findings
from botreg.validation.crossfile import (
    BotReferences,
    bot_references,
    check_references,
    resource_table,
)
from botreg.validation.deprecated import find_deprecated
from botreg.validation.findings import Finding, Severity
from botreg.validation.knowledge import check_knowledge_file
from botreg.validation.portability import find_portability_issues
from botreg.validation.schema import SCHEMA_FILES, check_schema, warm_up

__all__ = ["Report", "ValidationInterrupted", "validate_registry"]

_CHECKED_KINDS = frozenset(
    {
        FileKind.REGISTRY,
        FileKind.BOT,
        FileKind.ENVIRONMENT,
        FileKind.DOMAIN,
        FileKind.KNOWLEDGE,
        FileKind.MISPLACED,
    }
)
_PORTABLE_KINDS = frozenset({FileKind.BOT, FileKind.ENVIRONMENT})
_IGNORE_RE = re.compile(r"#\s*botreg:\s*ignore\[([A-Z0-9,\s]+)\]")


@dataclass
class Report:
    """The result of one validation: findings and what was checked."""

    source: str
    files: list[str]
    findings: list[Finding] = field(default_factory=list)
    duration: float = 0.0

    @property
    def errors(self) -> int:
        """Number of error findings."""
        return sum(f.severity is Severity.ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        """Number of warning findings."""
        return sum(f.severity is Severity.WARNING for f in self.findings)

    @property
    def invalid_files(self) -> set[str]:
        """Files with at least one error."""
        return {f.path for f in self.findings if f.severity is Severity.ERROR}

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return self.errors == 0


@dataclass(slots=True)
class _FileResult:
    """What checking one file yields: its own findings and its cross-file facts."""

    path: str
    findings: list[Finding]
    bot_refs: BotReferences | None = None
    resources: frozenset[tuple[str, str]] | None = None


# Below this many files a process pool costs more than it saves.
_PARALLEL_THRESHOLD = 400
_worker_snapshot: Snapshot | None = None


ResultCache = MutableMapping[tuple[str, str, bool, str], _FileResult]
StopCheck = Callable[[], bool]


class ValidationInterrupted(Exception):  # noqa: N818 - a stop asked for, not an error
    """`should_stop` said True between two files: the validation was abandoned."""


def _never() -> bool:
    return False


def validate_registry(
    source: RegistrySource | Snapshot,
    paths: Sequence[str] | None = None,
    *,
    cache: ResultCache | None = None,
    should_stop: StopCheck | None = None,
) -> Report:
    """Validate a registry.

    Args:
        source: The registry tree (a working tree or a git revision), or a
            `Snapshot` of it whose loaded documents the caller shares (the daemon
            validates, diffs and ingests one snapshot per commit).
        paths: Repository-relative paths to report on; None for the whole registry.
        cache: Per-file results from earlier runs, keyed by path and git blob id.
            A long-running caller (the daemon) passes the same mapping each time,
            so a commit that changes one file re-checks that file only; entries
            of files no longer in the tree are dropped.
        should_stop: Asked between files (the daemon's stop): True abandons the
            validation. Results of files checked so far stay in `cache`.

    Returns:
        A report whose findings are sorted by path, line and column.

    Raises:
        ValidationInterrupted: if `should_stop` said True.
    """
    started = time.perf_counter()
    snap = source if isinstance(source, Snapshot) else Snapshot(source)
    full = paths is None
    selected = set(snap.entries) if paths is None else {p for p in paths if p in snap.entries}
    checked = sorted(
        p for p in selected if snap.info[p].kind in _CHECKED_KINDS or snap.entries[p].is_symlink
    )
    # Cross-file checks need facts from files that were not asked about: every
    # environment always, and every bot when an environment is checked (an
    # environment change can break any bot).
    envs = snap.paths(FileKind.ENVIRONMENT)
    facts_only = [p for p in envs if p not in selected]
    env_checked = any(snap.info[p].kind is FileKind.ENVIRONMENT for p in checked)
    if env_checked:
        facts_only += [p for p in snap.paths(FileKind.BOT) if p not in selected]
    tasks = [(p, True) for p in checked] + [(p, False) for p in facts_only]

    stop = should_stop or _never
    results = {r.path: r for r in _run_cached(snap, tasks, cache, stop)}
    findings = _layout_findings(snap, full)
    for result in results.values():
        findings += result.findings
    tables = {p: t for p in envs if (t := results[p].resources) is not None}
    domains = snap.domains
    for result in results.values():
        if result.bot_refs is not None:
            own = result.path in selected
            if own or env_checked:
                findings += check_references(
                    result.path, result.bot_refs, tables, domains, check_domains=own
                )

    if not full:
        findings = [f for f in findings if f.path in selected or set(f.related) & selected]
    findings = _place_and_suppress(snap, findings)
    findings.sort(key=lambda f: (f.path, f.line, f.column, f.code, f.message))
    return Report(snap.source.label, checked, findings, time.perf_counter() - started)


def _run_cached(
    snap: Snapshot, tasks: list[tuple[str, bool]], cache: ResultCache | None, stop: StopCheck
) -> list[_FileResult]:
    if cache is None:
        return _run(snap, tasks, stop)
    settings = repr(snap.settings)
    keys: dict[tuple[str, bool], tuple[str, str, bool, str]] = {}
    for path, full in tasks:
        try:
            blob = snap.source.blob_id(path)
        except OSError:
            continue  # no content id (a submodule): always checked
        keys[(path, full)] = (path, blob, full, settings)
    todo = [task for task in tasks if keys.get(task) not in cache]

    def keep(task: tuple[str, bool], result: _FileResult) -> None:
        # as each file is done: a stopped run keeps what it checked for the next one
        if task in keys:
            cache[keys[task]] = result

    computed = _run(snap, todo, stop, keep)
    by_task = dict(zip(todo, computed, strict=True))
    results = [by_task[task] if task in by_task else cache[keys[task]] for task in tasks]
    current = set(keys.values())
    for key in [k for k in cache if k not in current]:
        del cache[key]
    return results


def _jobs(tasks: int) -> int:
    requested = os.environ.get("BOTREG_JOBS", "")
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    if tasks < _PARALLEL_THRESHOLD:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def _run(
    snap: Snapshot,
    tasks: list[tuple[str, bool]],
    stop: StopCheck = _never,
    keep: Callable[[tuple[str, bool], _FileResult], None] | None = None,
) -> list[_FileResult]:
    """Check files, in worker processes when there are many and cores to spare.

    `stop` is asked between files (a SIGTERM must not wait for 15,000 of them);
    `keep` gets each result as it comes.
    """
    results: list[_FileResult] = []

    def collect(task: tuple[str, bool], result: _FileResult) -> None:
        if keep is not None:
            keep(task, result)
        results.append(result)

    jobs = min(_jobs(len(tasks)), 8)
    # Forking is safe only for sources that share no live resources with the
    # parent (a git tree reads through one `git cat-file` process), and only
    # while no other thread runs (a forked child inherits their held locks).
    fork_safe = getattr(snap.source, "fork_safe", False) and threading.active_count() == 1
    if jobs <= 1 or not fork_safe or "fork" not in multiprocessing.get_all_start_methods():
        for task in tasks:
            if stop():
                raise ValidationInterrupted
            collect(task, _check_file(snap, *task))
        return results
    # fork: workers inherit the snapshot (file list, settings) and the compiled
    # schemas without pickling or compiling them again
    for kind in SCHEMA_FILES:
        warm_up(kind)
    context = multiprocessing.get_context("fork")
    with context.Pool(jobs, initializer=_init_worker, initargs=(snap,)) as pool:
        chunk = max(16, len(tasks) // (jobs * 8))
        for task, result in zip(
            tasks, pool.imap(_check_in_worker, tasks, chunksize=chunk), strict=True
        ):
            if stop():  # leaving the `with` terminates the workers
                raise ValidationInterrupted
            collect(task, result)
        return results


def _init_worker(snap: Snapshot) -> None:
    global _worker_snapshot  # noqa: PLW0603 - one snapshot per worker process
    _worker_snapshot = snap


def _check_in_worker(task: tuple[str, bool]) -> _FileResult:
    assert _worker_snapshot is not None
    return _check_file(_worker_snapshot, *task)


def _check_file(snap: Snapshot, path: str, full: bool) -> _FileResult:
    result = _FileResult(path, _file_findings(snap, path) if full else [])
    kind = snap.info[path].kind
    if kind in (FileKind.BOT, FileKind.ENVIRONMENT):
        doc = snap.document(path)
        if doc.ok:
            if kind is FileKind.BOT:
                result.bot_refs = bot_references(doc.data)
            else:
                result.resources = resource_table(doc.data)
    return result


def _layout_findings(snap: Snapshot, full: bool) -> list[Finding]:
    findings: list[Finding] = []
    allowed = STANDARD_FOLDERS | snap.settings.extra_folders
    unknown: dict[str, str] = {}
    for path in snap.entries:
        if snap.info[path].code == "BR403":
            continue  # an unsafe name is reported as such, on the file itself
        parts = PurePosixPath(path).parts
        if len(parts) > 1 and parts[0] not in allowed and not parts[0].startswith("."):
            unknown.setdefault(parts[0], path)
    for folder, first in sorted(unknown.items()):
        findings.append(
            Finding(
                first,
                "BR405",
                f"unknown top-level folder {folder}/: move its files under bots/, knowledge/ or "
                f"environments/, or allow it in registry.yaml layout.extra_folders",
                1,
                1,
            )
        )
    domains: dict[str, str] = {}
    for path, info in snap.info.items():
        if info.kind in (FileKind.KNOWLEDGE, FileKind.DOMAIN) and info.ident:
            domains.setdefault(info.ident, path)
    for domain, first in sorted(domains.items()):
        if not is_identifier(domain):
            findings.append(
                Finding(
                    first,
                    "BR403",
                    f"invalid domain name {domain!r}: rename knowledge/{domain}/ using lowercase "
                    "letters, digits, '_' and '-' (at most 63 characters)",
                    1,
                    1,
                )
            )
    if full:
        if REGISTRY_FILE not in snap.entries:
            findings.append(
                Finding(
                    REGISTRY_FILE,
                    "BR407",
                    "no registry.yaml: add one with `format_version: 1` (see `botreg init`)",
                    1,
                    1,
                )
            )
        if not snap.paths(FileKind.ENVIRONMENT):
            findings.append(
                Finding(
                    "environments/",
                    "BR408",
                    "no environment defined: add environments/<name>.yaml so bots can be resolved",
                    1,
                    1,
                )
            )
    return findings


def _file_findings(snap: Snapshot, path: str) -> list[Finding]:
    entry, info = snap.entries[path], snap.info[path]
    limits = snap.settings.limits
    if entry.is_submodule:  # the same finding from the hook (work tree) and the daemon (commit)
        return [
            Finding(
                path,
                "BR505",
                "submodule: a link to another repository, whose files are never read; "
                "remove it (git rm --cached) and commit the files themselves",
                1,
                1,
            )
        ]
    if entry.is_symlink:
        return [
            Finding(
                path,
                "BR505",
                "symbolic link: it can point outside the repository; "
                "replace it with the file itself",
                1,
                1,
            )
        ]
    if info.kind is FileKind.MISPLACED:
        if info.code == "BR403":  # an unsafe name: the reason says what and how to fix
            return [Finding(path, info.code, info.reason, 1, 1)]
        return [Finding(path, info.code, f"not read here: {info.reason}", 1, 1)]
    if entry.size > limits.max_file_bytes:
        return [
            Finding(
                path,
                "BR504",
                f"{entry.size} bytes, over the limit of {limits.max_file_bytes} "
                "(the lower of registry.yaml limits.max_file_bytes and the operator's "
                "--max-file-bytes); split the file",
                1,
                1,
            )
        ]
    if info.kind is FileKind.KNOWLEDGE:
        try:
            raw = snap.source.read(path)
        except OSError as exc:
            return [Finding(path, "BR100", f"cannot read the file: {exc.strerror or exc}", 1, 1)]
        return check_knowledge_file(path, raw, limits)

    doc = snap.document(path)
    identity = _identity_findings(path, info.kind, info.ident or "", doc.data)
    if doc.problems:
        return identity + [Finding(path, p.code, p.message, p.line, p.column) for p in doc.problems]
    # before the schema check: the compiled schema fills in defaults
    deprecated = [
        Finding(path, "BR204", message, pointer=pointer, at_key=True)
        for pointer, message in find_deprecated(info.kind, doc.data)
    ]
    findings = identity + [
        Finding(path, code, message, pointer=pointer, at_key=at_key)
        for code, message, pointer, at_key in check_schema(info.kind, doc.data)
    ]
    findings += deprecated
    if info.kind in _PORTABLE_KINDS:
        findings += [
            Finding(path, issue.code, issue.message, pointer=issue.path)
            for issue in find_portability_issues(doc.data)
        ]
    findings += store_path_findings(path, info.kind, doc.data)
    return findings


def _identity_findings(path: str, kind: FileKind, ident: str, data: object) -> list[Finding]:
    if kind not in (FileKind.BOT, FileKind.ENVIRONMENT):
        return []
    what = "bot id" if kind is FileKind.BOT else "environment name"
    if not is_identifier(ident):
        return [
            Finding(
                path,
                "BR403",
                f"invalid {what} {ident!r} (the file name): rename the "
                "file using lowercase letters, digits, '_' and '-' (at most 63 "
                "characters, starting with a letter or digit)",
                1,
                1,
            )
        ]
    field_name = "id" if kind is FileKind.BOT else "name"
    if isinstance(data, Mapping):
        value = data.get(field_name)
        if isinstance(value, str) and value != ident:
            return [
                Finding(
                    path,
                    "BR404",
                    f"{field_name} {value!r} differs from the file name "
                    f"{ident!r}: the {what} is the file name; rename the file or fix "
                    f"the {field_name}",
                    pointer=(field_name,),
                )
            ]
    return []


def _place_and_suppress(snap: Snapshot, findings: Iterable[Finding]) -> list[Finding]:
    """Give pointer findings their line and column; drop those an ignore comment silences."""
    kept: list[Finding] = []
    by_path: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_path[finding.path].append(finding)
    for path, group in by_path.items():
        text = snap.text(path)
        if any(f.line == 0 for f in group):
            tree = None
            if text is not None:
                try:
                    tree = load_roundtrip(text)
                except Exception:  # positions are best effort; the finding stands
                    tree = None
            for finding in group:
                if finding.line == 0:
                    finding.line, finding.column = (
                        position_of(tree, finding.pointer or (), at_key=finding.at_key)
                        if tree is not None
                        else (1, 1)
                    )
        lines = text.splitlines() if text is not None else []
        for finding in group:
            if 0 < finding.line <= len(lines):
                match = _IGNORE_RE.search(lines[finding.line - 1])
                if match and finding.code in {c.strip() for c in match.group(1).split(",")}:
                    continue
            kept.append(finding)
    return kept
