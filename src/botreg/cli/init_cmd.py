"""`botreg init DIR`: a new registry repository from the bundled template."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from botreg.cli.parser import examples
from botreg.errors import BotregError, UsageError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `init` subcommand."""
    p = sub.add_parser(
        "init",
        help="create a registry repository from the template (git init, first commit)",
        description="Copy the registry template into DIR, run git init and make the first "
        "commit. DIR must not exist or be empty.",
        epilog=examples(
            [
                ("botreg init demo-registry", "a new registry in ./demo-registry"),
                ("botreg init bots-config --branch trunk", "with another first branch"),
            ],
            {0: "created", 1: "git failed", 2: "DIR cannot be used (see above), or a bad flag"},
        ),
    )
    p.add_argument("directory", metavar="DIR", help="where to create it (new or empty)")
    p.add_argument("--branch", default="main", help="initial branch (default: main)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Create the repository and print where it is."""
    import git

    from botreg.resources import template_dir

    target = Path(args.directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target}: exists and is not an empty directory; choose a new DIR")
    shutil.copytree(template_dir(), target, dirs_exist_ok=True)
    try:
        repo = git.Repo.init(target, initial_branch=args.branch)
        repo.git.add(all=True)
        repo.index.commit("Create registry from the botreg template")
    except git.GitError as exc:
        raise BotregError(f"{target}: git failed: {exc}") from None
    print(f"Created registry {target} (branch {args.branch}, first commit made).")
    print(f"Next: cd {target} && pre-commit install && botreg validate")
    return 0
