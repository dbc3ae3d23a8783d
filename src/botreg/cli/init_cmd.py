"""`botreg init DIR`: a new registry repository from the bundled template.

The template is copied, botreg's JSON Schemas are written to `.schemas/` (the
modelines of the YAML files point there), and the first commit is made. Run
again on a registry that `init` made, it reuses it as it is (the set-up
command of the README can be run twice). A clone of an empty repository is
filled (its remote kept); any other non-empty DIR is refused. A failure
half-way removes what init wrote.
"""

from __future__ import annotations

import argparse
import shlex
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
        "DIR, run git init and make the first commit. DIR must not exist, be empty, or be "
        "a clone of an empty repository (its remote is kept); a registry that init made is "
        "reused as it is (exit 0).",
        epilog=examples(
            [
                ("botreg init demo-registry", "a new registry in ./demo-registry"),
                ("botreg init bots-config --branch trunk", "with another first branch"),
            ],
            {
                0: "created, or reused (a registry init made)",
                1: "DIR could not be written, or git failed (e.g. no user.name and "
                "user.email); what was written is removed, so run it again once fixed",
                2: "DIR cannot be used (exists, not empty, not made by init, a dangling "
                "link), or a bad flag",
            },
        ),
    )
    p.add_argument(
        "directory",
        metavar="DIR",
        help="where to create it (new, empty, an empty clone, or one init made)",
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


def _shown(path: Path | str) -> str:
    """A path as printed: control and bidi characters escaped (it may come from a script)."""
    from botreg.registry.layout import escape_unsafe

    return escape_unsafe(str(path))


def _next_steps(target: Path) -> str:
    # quoted, so that the line can be copied as it is (a folder with a space)
    return (
        f"Next: cd {_shown(shlex.quote(str(target)))} && pre-commit install --install-hooks "
        "&& botreg validate"
    )


def _reuse(target: Path) -> int:
    from botreg.schema_copies import SCHEMAS_DIR, CopyState, compare_copies

    print(f"Registry {_shown(target)} exists (made by botreg init): reusing it as it is.")
    if any(state is not CopyState.CURRENT for _, state in compare_copies(target / SCHEMAS_DIR)):
        print(
            f"Its editor schemas ({SCHEMAS_DIR}/) are missing or out of date: run "
            f"`botreg schemas --repo {_shown(shlex.quote(str(target)))} --write` and commit them."
        )
    print(_next_steps(target))
    return 0


def _empty_clone(target: Path) -> bool:
    """True if `target` holds a git repository without a commit, and nothing else.

    What `git clone` of a new, empty repository on a forge gives: init fills it.
    """
    import git

    dot_git = target / ".git"
    if [child.name for child in target.iterdir()] != [".git"]:
        return False
    if dot_git.is_symlink() or not dot_git.is_dir():
        return False
    try:
        git.Repo(target).head.commit  # noqa: B018 - raises on an unborn branch
    except ValueError:
        return True  # no commit yet
    except git.GitError:
        return False
    return False


def _check_target(target: Path) -> None:
    """Refuse a DIR that cannot become a new registry (UsageError, exit 2)."""
    if target.is_symlink() and not target.exists():
        raise UsageError(
            f"{_shown(target)}: is a symbolic link to a folder that does not exist; "
            "choose a new DIR, or create the folder it points to"
        )
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    if target.is_dir() and _empty_clone(target):
        return
    hint = "choose a new DIR"
    if target.is_dir() and (target / ".git").exists():
        hint = (
            "a repository with commits: create the registry in a new DIR and copy its "
            "files in, or clone an empty repository"
        )
    raise UsageError(
        f"{_shown(target)}: exists and is not an empty directory, nor a registry made by "
        f"botreg init; {hint}"
    )


def _git_failure(target: Path, exc: Exception) -> BotregError:
    """What went wrong with git, in a sentence and without GitPython's command dump."""
    stderr = str(getattr(exc, "stderr", "") or "")
    if "Please tell me who you are" in stderr or "unable to auto-detect email" in stderr:
        return BotregError(
            f"{_shown(target)}: git cannot make the first commit: it does not know who you "
            "are. Set your name and e-mail (git config --global user.name 'Your Name' && "
            "git config --global user.email you@example.com), then run botreg init again"
        )
    # GitPython wraps it as "\n  stderr: '...'": git's last line says what failed
    text = stderr.strip().removeprefix("stderr:").strip().removeprefix("'").removesuffix("'")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = lines[-1] if lines else f"{type(exc).__name__}: {exc}"
    return BotregError(f"{_shown(target)}: git failed: {_shown(detail)}")


def _undo(target: Path, kept: set[str] | None) -> None:
    """Remove what a failed init wrote, so that running it again starts afresh.

    DIR was new (`kept` None: remove it) or held only `kept` (an empty folder, the
    `.git` of an empty clone): everything else goes. Never follows a link out.
    """
    if kept is None:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():
        if child.name in kept:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _create(target: Path, branch: str) -> bool:
    """Copy the template and the schemas, pin the hook, commit; True if the hook was pinned."""
    import git

    from botreg.hook_source import installed_clone_requirement, pin_hook
    from botreg.resources import template_dir
    from botreg.schema_copies import SCHEMAS_DIR, write_copies

    try:
        shutil.copytree(template_dir(), target, dirs_exist_ok=True)
    except (OSError, shutil.Error) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise BotregError(f"{_shown(target)}: cannot create the registry: {reason}") from None
    write_copies(target / SCHEMAS_DIR)
    clone = installed_clone_requirement()
    pinned = clone is not None and pin_hook(target, clone)
    try:
        if (target / ".git").is_dir():  # an empty clone: its remote stays, HEAD names `branch`
            repo = git.Repo(target)
            repo.git.symbolic_ref("HEAD", f"refs/heads/{branch}")
        else:
            repo = git.Repo.init(target, initial_branch=branch)
        repo.git.add(all=True)
        # git's own commit, not GitPython's: it reads GIT_AUTHOR_DATE in every
        # format git accepts (GitPython fails on ISO 8601 with a colon offset).
        repo.git.commit("-q", "--no-verify", "-m", INIT_COMMIT_MESSAGE)
    except git.GitError as exc:
        raise _git_failure(target, exc) from None
    return pinned


def run(args: argparse.Namespace) -> int:
    """Create (or reuse) the repository and print where it is.

    A failure half-way (git has no identity, a disk full) removes what was
    written, so that the same command works once the cause is fixed.
    """
    from botreg.hook_source import HOOK_CONFIG, TEMPLATE_REQUIREMENT
    from botreg.schema_copies import SCHEMAS_DIR

    target = Path(args.directory)
    if target.is_dir() and made_by_init(target):
        return _reuse(target)
    _check_target(target)
    kept = {child.name for child in target.iterdir()} if target.exists() else None
    try:
        pinned = _create(target, args.branch)
    except BaseException:
        _undo(target, kept)
        raise
    print(f"Created registry {_shown(target)} (branch {args.branch}, first commit made).")
    print(
        f"Editor schemas: {_shown(target / SCHEMAS_DIR)}/ (the YAML files' modelines point there)."
    )
    if pinned:
        # a path on this machine, committed: colleagues' clones cannot install it
        print(
            f"Hook installs botreg from this installation's clone ({HOOK_CONFIG}), a path "
            "on this machine: before sharing the registry, pin a source everyone can reach "
            "there and in CI's BOTREG_REQUIREMENT (botreg's docs/pre-commit.md)."
        )
    else:  # not installed from a clone: the template's pin may not be reachable yet
        print(
            f"Hook and CI install `{TEMPLATE_REQUIREMENT}` ({HOOK_CONFIG}, "
            "BOTREG_REQUIREMENT in .github/workflows/registry.yml): if you cannot reach "
            "it, pin a tag or clone you can (botreg's docs/pre-commit.md)."
        )
    print(_next_steps(target))
    return 0
