"""`botreg validate [--repo DIR] [--format text|json|github|sarif] [PATH ...]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from botreg.errors import UsageError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `validate` subcommand."""
    p = sub.add_parser(
        "validate",
        help="check a registry (syntax, schema, portability, cross-file, knowledge files)",
        description="Validate a registry repository. With PATHs (as pre-commit passes them) "
        "findings are reported for those files; cross-file checks still read the whole "
        "repository. Exit 0: no errors; 1: errors; 2: usage error or unreadable repository.",
    )
    p.add_argument("--repo", default=".", metavar="DIR", help="registry root (default: .)")
    p.add_argument(
        "--format",
        choices=("text", "json", "github", "sarif"),
        help="output format (default: github when GITHUB_ACTIONS is set, else text)",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="files to report on")
    p.set_defaults(handler=run)


def repo_relative(repo: Path, paths: list[str]) -> list[str]:
    """Turn PATH arguments (relative to the working directory, or to the repo) into
    repository-relative POSIX paths."""
    root = repo.resolve()
    result = []
    for raw in paths:
        candidate = Path(raw)
        absolute = candidate if candidate.is_absolute() else Path.cwd() / candidate
        if not os.path.lexists(absolute):
            absolute = root / candidate  # given relative to the repository
        if not os.path.lexists(absolute):
            raise UsageError(f"{raw}: no such file")
        # resolve the folder, not the file: a symbolic link must stay a link
        absolute = absolute.parent.resolve() / absolute.name
        try:
            result.append(absolute.relative_to(root).as_posix())
        except ValueError:
            raise UsageError(f"{raw}: outside the registry {root}") from None
    return result


def run(args: argparse.Namespace) -> int:
    """Validate and print the report; exit 1 if there are errors."""
    from botreg.registry.source import WorkingTreeSource
    from botreg.validation.reporters import render
    from botreg.validation.runner import validate_registry

    fmt = args.format or ("github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text")
    repo = Path(args.repo)
    source = WorkingTreeSource(repo)
    paths = None
    if args.paths:
        # a folder stands for every registry file below it
        known = [entry.path for entry in source.entries()]
        paths = []
        for rel in repo_relative(repo, args.paths):
            if (repo / rel).is_dir() and not (repo / rel).is_symlink():
                prefix = "" if rel == "." else rel + "/"
                paths += [p for p in known if p.startswith(prefix)]
            else:
                paths.append(rel)
    report = validate_registry(source, paths)
    prefix = ""
    if fmt == "github":  # annotations need paths relative to the workspace
        rel = os.path.relpath(repo.resolve(), Path.cwd())
        inside = rel != "." and not rel.startswith("..")
        prefix = rel.replace(os.sep, "/") + "/" if inside else ""
    sys.stdout.write(render(report, fmt, prefix))
    return 0 if report.ok else 1
