"""`botreg validate [--repo DIR] [--staged] [--format text|json|github|sarif] [PATH ...]`.

Works from anywhere inside a registry: the root is the nearest folder, from
the working directory up, that holds registry.yaml (else the git top level,
if it has a registry's folders), and PATHs are relative to the working
directory. `--staged` is how the pre-commit hook runs: it also checks what
the commit's staged deletions break (a deleted domain that bots still use).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from botreg.cli.parser import examples
from botreg.errors import RepositoryError, UsageError
from botreg.registry.limits import add_ceiling_arguments

if TYPE_CHECKING:
    from botreg.registry.source import WorkingTreeSource
    from botreg.validation.runner import Report

__all__ = ["find_registry_root", "register", "repo_relative"]

_REGISTRY_FILE = "registry.yaml"  # layout.REGISTRY_FILE, without importing it before needed
_REGISTRY_FOLDERS = ("bots", "environments", "knowledge")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `validate` subcommand."""
    p = sub.add_parser(
        "validate",
        help="check a registry (syntax, schema, portability, cross-file, knowledge files)",
        usage="%(prog)s [--staged] [--format FORMAT] [options] [PATH ...]",
        description="Validate a registry repository. With PATHs (as pre-commit passes them) "
        "findings are reported for those files; cross-file checks still read the whole "
        "repository.",
        epilog=examples(
            [
                ("botreg validate", "the whole registry, from anywhere inside it"),
                (
                    "botreg validate bots/billing-assistant.yaml knowledge/billing",
                    "report on one bot and one domain's files (cross-file checks still run)",
                ),
                ("botreg validate --staged", "what git would commit: the pre-commit hook's mode"),
                ("botreg validate --repo demo-registry --format json", "findings as JSON"),
            ],
            {
                0: "no errors (warnings are printed but do not fail)",
                1: "errors found",
                2: "usage error, a PATH that is not in the registry, or not a registry",
            },
        ),
    )
    p.add_argument(
        "--repo",
        metavar="DIR",
        help="registry root (default: the nearest folder holding registry.yaml, from the "
        "working directory up; else the git top level)",
    )
    p.add_argument(
        "--staged",
        action="store_true",
        help="validate what git would commit (the pre-commit hook's mode): only files in "
        "the index, and bots that staged deletions break (a deleted domain still in use)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "github", "sarif"),
        help="output format: text, json, github (workflow annotations) or sarif "
        "(default: github when GITHUB_ACTIONS is true, else text)",
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files or folders to report on (default: the whole registry)",
    )
    add_ceiling_arguments(p)
    p.set_defaults(handler=run)


def _git_toplevel(folder: Path) -> Path | None:
    # A plain subprocess, and only when no registry.yaml was found: the hook stays fast.
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=folder,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    top = out.decode("utf-8", "surrogateescape").strip()
    return Path(top) if top else None


def find_registry_root(start: Path) -> Path | None:
    """The registry that holds `start`: the nearest folder up with registry.yaml.

    Without one, the git top level counts if it has a registry's folders
    (bots/, environments/ or knowledge/): a registry that lacks registry.yaml
    is still validated (and told to add one). None when neither is found.
    """
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / _REGISTRY_FILE).is_file():
            return folder
    top = _git_toplevel(start)
    if top is not None and any((top / name).is_dir() for name in _REGISTRY_FOLDERS):
        return top
    return None


def _root(args: argparse.Namespace) -> Path:
    """The registry root: --repo, else found from the working directory (or the PATHs)."""
    if args.repo is not None:
        repo = Path(args.repo)
        if not repo.is_dir():
            raise RepositoryError(f"{repo}: not a directory; pass --repo DIR of a registry")
        if not (repo / _REGISTRY_FILE).is_file() and not any(
            (repo / name).is_dir() for name in _REGISTRY_FOLDERS
        ):
            raise RepositoryError(f"not a botreg registry (no registry.yaml in {repo})")
        return repo
    cwd = Path.cwd()
    root = find_registry_root(cwd)
    if root is None and args.paths:
        # `botreg validate /abs/registry/bots/x.yaml` from outside: the file says where
        first = Path(args.paths[0])
        if os.path.lexists(first):
            root = find_registry_root(first.parent if not first.is_dir() else first)
    if root is None:
        raise RepositoryError(f"not a botreg registry (no registry.yaml in {cwd} or its parents)")
    return root


def repo_relative(repo: Path, paths: list[str], *, repo_fallback: bool = False) -> list[str]:
    """Turn PATH arguments (relative to the working directory) into repository-relative
    POSIX paths.

    Args:
        repo: The registry root.
        paths: The arguments.
        repo_fallback: Also accept paths relative to the root (with an explicit --repo).

    Raises:
        UsageError: A path that does not exist or lies outside the registry.
    """
    root = repo.resolve()
    result = []
    for raw in paths:
        candidate = Path(raw)
        absolute = candidate if candidate.is_absolute() else Path.cwd() / candidate
        if repo_fallback and not os.path.lexists(absolute):
            absolute = root / candidate  # given relative to the repository
        if not os.path.lexists(absolute):
            raise UsageError(f"{raw}: no such file or directory")
        # resolve the folder, not the file: a symbolic link must stay a link
        absolute = absolute.parent.resolve() / absolute.name
        if absolute.name == "..":
            absolute = absolute.resolve()
        try:
            result.append(absolute.relative_to(root).as_posix())
        except ValueError:
            raise UsageError(f"{raw}: outside the registry {root}") from None
    return result


def _expand(source: WorkingTreeSource, repo: Path, rels: list[str], args: list[str]) -> list[str]:
    """Folders stand for every registry file below them; files must be registry files."""
    known = [entry.path for entry in source.entries()]
    known_set = set(known)
    paths: list[str] = []
    for rel, raw in zip(rels, args, strict=True):
        if rel in known_set:  # a file, or a submodule (a folder in the work tree)
            paths.append(rel)
        elif (repo / rel).is_dir() and not (repo / rel).is_symlink():
            prefix = "" if rel == "." else rel + "/"
            paths += [p for p in known if p.startswith(prefix)]
        else:
            raise UsageError(
                f"{raw}: not a file of the registry {repo} (ignored by git, or not staged)"
            )
    return paths


def _staged_deletions(repo: Path) -> list[str]:
    """Registry-relative paths the index deletes (renames count as deletions)."""
    command = ["git", "diff", "--cached", "--name-only", "--no-renames", "--diff-filter=D"]
    try:
        out = subprocess.run(
            [*command, "--relative", "-z"],
            cwd=repo,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except subprocess.CalledProcessError as exc:
        message = exc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RepositoryError(
            f"--staged: cannot read git's index in {repo}: {message[0] if message else exc}"
        ) from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise RepositoryError(f"--staged: cannot run git in {repo}: {exc}") from None
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def _check_deletions(
    source: WorkingTreeSource, paths: list[str], deleted: list[str]
) -> tuple[list[str], set[str], bool]:
    """What staged deletions may break: (bots to check, vanished domains, registry-level).

    A bot naming a domain whose last file is deleted fails BR402; deleting
    registry.yaml or environments can trip the registry-level checks.
    """
    from botreg.registry.layout import FileKind, classify

    infos = {e.path: classify(e.path) for e in source.entries()}
    present = {i.ident for i in infos.values() if i.kind in (FileKind.KNOWLEDGE, FileKind.DOMAIN)}
    vanished: set[str] = set()
    registry_level = False
    for path in deleted:
        info = classify(path)
        if info.kind in (FileKind.KNOWLEDGE, FileKind.DOMAIN) and info.ident not in present:
            vanished.add(str(info.ident))
        elif info.kind in (FileKind.REGISTRY, FileKind.ENVIRONMENT):
            registry_level = True
    bots: list[str] = []
    if vanished:
        asked = set(paths)
        bots = [p for p, i in infos.items() if i.kind is FileKind.BOT and p not in asked]
    return bots, vanished, registry_level


def _validate(source: WorkingTreeSource, paths: list[str] | None, staged: bool) -> Report:
    from botreg.validation.runner import Report, validate_registry

    if not staged or paths is None:
        return validate_registry(source, paths)
    # A link or submodule never reaches the hook by name (pre-commit drops names
    # that are not files), yet the daemon rejects it (BR505): always report it.
    named = set(paths)
    paths = paths + [e.path for e in source.entries() if e.is_symlink and e.path not in named]
    deleted = _staged_deletions(source.root)
    extra, vanished, registry_level = _check_deletions(source, paths, deleted)
    if not paths and not extra and not registry_level:
        return Report(source.label, [])  # nothing registry-related staged: nothing to say
    report = validate_registry(source, paths + extra)
    asked = set(paths)
    # Bots checked only because of a deletion report what the deletion broke, not
    # their old findings: the commit does not touch them.
    names = {repr(d) for d in vanished}
    findings = [
        f
        for f in report.findings
        if f.path in asked
        or (f.code == "BR402" and any(f"domain {n} " in f.message for n in names))
    ]
    if registry_level:
        whole = validate_registry(source, None)
        findings += [f for f in whole.findings if f.code in ("BR407", "BR408")]
    files = sorted({*paths, *(f.path for f in findings if f.path in set(extra))})
    return Report(report.source, files, findings, report.duration)


def run(args: argparse.Namespace) -> int:
    """Validate and print the report; exit 1 if there are errors."""
    from botreg.registry.source import WorkingTreeSource
    from botreg.validation.reporters import render

    fmt = args.format or ("github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text")
    repo = _root(args)
    if args.staged and not (repo / ".git").exists() and _git_toplevel(repo) is None:
        raise UsageError(f"--staged needs a git repository; {repo} is not in one")
    source = WorkingTreeSource(repo, staged=args.staged)
    paths = None
    if args.paths:
        rels = repo_relative(repo, args.paths, repo_fallback=args.repo is not None)
        paths = _expand(source, repo, rels, args.paths)
    elif args.staged:
        paths = []  # the hook without file names: only what staged deletions break
    report = _validate(source, paths, args.staged)
    if args.paths and not report.files and not report.findings:
        raise UsageError(
            f"nothing to validate in {' '.join(args.paths)}: no registry files "
            "(registry.yaml, bots/, environments/, knowledge/)"
        )
    prefix = ""
    if fmt == "github":  # annotations need paths relative to the workspace
        rel = os.path.relpath(repo.resolve(), Path.cwd())
        inside = rel != "." and not rel.startswith("..")
        prefix = rel.replace(os.sep, "/") + "/" if inside else ""
    sys.stdout.write(render(report, fmt, prefix))
    return 0 if report.ok else 1
