"""`botreg init DIR`: a new registry repository from the bundled template.

The template is copied, botreg's JSON Schemas are written to `.schemas/` (the
modelines of the YAML files point there), and the first commit is made. Run
again on a registry that `init` made, it reuses it as it is (the set-up
command of the README can be run twice); any other non-empty DIR is refused.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from botreg.cli.parser import examples
from botreg.errors import BotregError, UsageError

__all__ = ["INIT_COMMIT_MESSAGE", "made_by_init", "register"]

# The first commit of every registry `init` makes: how a second run recognises one.
INIT_COMMIT_MESSAGE = "Create registry from the botreg template"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `init` subcommand."""
    p = sub.add_parser(
        "init",
        help="create a registry repository from the template (git init, first commit)",
        description="Copy the registry template and botreg's JSON Schemas (.schemas/) into "
        "DIR, run git init and make the first commit. DIR must not exist or be empty; "
        "a registry that init made is reused as it is (exit 0).",
        epilog=examples(
            [
                ("botreg init demo-registry", "a new registry in ./demo-registry"),
                ("botreg init bots-config --branch trunk", "with another first branch"),
            ],
            {
                0: "created, or reused (a registry init made)",
                1: "git failed",
                2: "DIR cannot be used (exists, not empty, not made by init), or a bad flag",
            },
        ),
    )
    p.add_argument(
        "directory", metavar="DIR", help="where to create it (new or empty, or one init made)"
    )
    p.add_argument("--branch", default="main", help="initial branch (default: main)")
    p.set_defaults(handler=run)


def made_by_init(directory: Path) -> bool:
    """True if `directory` is a registry repository whose first commit `botreg init` made.

    The test is the repository's root commit message (`INIT_COMMIT_MESSAGE`) and
    a `registry.yaml`: later commits, edits and clones of it keep both.
    """
    import git

    from botreg.registry.layout import REGISTRY_FILE

    if not (directory / REGISTRY_FILE).is_file() or not (directory / ".git").exists():
        return False
    try:
        repo = git.Repo(directory)
        roots = repo.git.rev_list("--max-parents=0", "HEAD").split()
        return any(repo.commit(root).message.strip() == INIT_COMMIT_MESSAGE for root in roots)
    except (git.GitError, ValueError):  # not a repository, no commit yet, a broken object
        return False


def _next_steps(target: Path) -> str:
    return f"Next: cd {target} && pre-commit install --install-hooks && botreg validate"


def _reuse(target: Path) -> int:
    from botreg.schema_copies import SCHEMAS_DIR, CopyState, compare_copies

    print(f"Registry {target} exists (made by botreg init): reusing it as it is.")
    if any(state is not CopyState.CURRENT for _, state in compare_copies(target / SCHEMAS_DIR)):
        print(
            f"Its editor schemas ({SCHEMAS_DIR}/) are missing or out of date: "
            f"run `botreg schemas --repo {target} --write` and commit them."
        )
    print(_next_steps(target))
    return 0


def run(args: argparse.Namespace) -> int:
    """Create (or reuse) the repository and print where it is."""
    import git

    from botreg.hook_source import HOOK_CONFIG, installed_clone_requirement, pin_hook
    from botreg.resources import template_dir
    from botreg.schema_copies import SCHEMAS_DIR, write_copies

    target = Path(args.directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if target.is_dir() and made_by_init(target):
            return _reuse(target)
        raise UsageError(
            f"{target}: exists and is not an empty directory, nor a registry made by "
            "botreg init; choose a new DIR"
        )
    shutil.copytree(template_dir(), target, dirs_exist_ok=True)
    write_copies(target / SCHEMAS_DIR)
    clone = installed_clone_requirement()
    pinned = clone is not None and pin_hook(target, clone)
    try:
        repo = git.Repo.init(target, initial_branch=args.branch)
        repo.git.add(all=True)
        # git's own commit, not GitPython's: it reads GIT_AUTHOR_DATE in every
        # format git accepts (GitPython fails on ISO 8601 with a colon offset).
        repo.git.commit("-q", "--no-verify", "-m", INIT_COMMIT_MESSAGE)
    except git.GitError as exc:
        raise BotregError(f"{target}: git failed: {exc}") from None
    print(f"Created registry {target} (branch {args.branch}, first commit made).")
    print(f"Editor schemas: {target / SCHEMAS_DIR}/ (the YAML files' modelines point there).")
    if pinned:
        print(
            f"Hook installs botreg from this installation's clone ({HOOK_CONFIG}); "
            "CI's BOTREG_REQUIREMENT still names the release tag."
        )
    print(_next_steps(target))
    return 0
