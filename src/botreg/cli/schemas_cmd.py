"""`botreg schemas [--repo DIR] [--write [DIR] | --check [DIR]]`: the registry's JSON Schemas.

Without an option it lists botreg's schemas and the state of the registry's
copies; `--write` puts them in the registry (`.schemas/`, committed, so the
modelines of the YAML files resolve offline in every clone); `--check` exits 1
when a copy is missing or out of date (for CI).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from botreg.cli.parser import examples
from botreg.errors import UsageError

__all__ = ["register", "run"]

_ABOUT = """\
The copies go in .schemas/ at the registry root (a hidden folder: the layout
ignores it; commit it). Each YAML file names its schema on its first line, by
relative path, for editors with the YAML language server:

  # yaml-language-server: $schema=../.schemas/bot.schema.json

Each copy keeps its published $id and embeds the schemas it references, so
check-jsonschema and editors resolve it without network access:

  check-jsonschema --schemafile .schemas/bot.schema.json bots/*.yaml
"""

_EPILOG = (
    _ABOUT
    + "\n"
    + examples(
        [
            ("botreg schemas", "the schemas, and whether the registry's copies are current"),
            ("botreg schemas --write", "write missing or outdated copies (.schemas/)"),
            ("botreg schemas --repo r --write", "the same for the registry in r/"),
            ("botreg schemas --write /tmp/s", "write them anywhere (no registry needed)"),
            ("botreg schemas --check", "exit 1 if a copy is missing or outdated (CI)"),
        ],
        {
            0: "done (listed, written, or every copy current)",
            1: "--check found a missing or outdated copy (a link, FIFO or device in its "
            "place is outdated), or a copy could not be written",
            2: "usage error, e.g. --write without DIR outside a registry",
        },
    )
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `schemas` subcommand."""
    p = sub.add_parser(
        "schemas",
        help="put botreg's JSON Schemas in the registry for editors and check-jsonschema",
        description="Show botreg's JSON Schemas and the state of the registry's copies\n"
        "(no option), write the copies (--write) or check them (--check).",
        epilog=_EPILOG,
    )
    p.add_argument("--repo", default=".", metavar="DIR", help="registry root (default: .)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--write",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="write missing or outdated copies to DIR (default: .schemas/ in the registry; "
        "outside a registry DIR is required); files already current are left alone",
    )
    mode.add_argument(
        "--check",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="exit 1 if a copy in DIR (default: .schemas/ in the registry) is missing or "
        "out of date",
    )
    p.set_defaults(handler=run)


def _registry_dir(repo: Path, option: str) -> Path:
    """The registry's schema folder; refuses a non-registry, and a symlink to write through."""
    from botreg.registry.layout import REGISTRY_FILE
    from botreg.schema_copies import SCHEMAS_DIR

    if not (repo / REGISTRY_FILE).is_file():
        raise UsageError(
            f"{repo}: not a registry (no {REGISTRY_FILE}); pass --repo DIR, "
            f"or {option} DIR to use another folder"
        )
    target = repo / SCHEMAS_DIR
    if option == "--write" and target.is_symlink():
        raise UsageError(
            f"{target}: is a symbolic link; botreg writes the schemas only inside the "
            f"registry: replace it by a folder, or pass {option} DIR"
        )
    return target


def _shown(path: Path) -> str:
    """`path` as the user is likely to recognise it: relative to the cwd when below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive (Windows)
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _write_command(repo: Path) -> str:
    shown = _shown(repo)
    return "botreg schemas --write" if shown == "." else f"botreg schemas --repo {shown} --write"


def _write(directory: Path) -> int:
    from botreg.schema_copies import CopyState, write_copies

    before = write_copies(directory)
    where = _shown(directory)
    changed = [(item, state) for item, state in before if state is not CopyState.CURRENT]
    verbs = {CopyState.MISSING: "created", CopyState.OUTDATED: "updated"}
    for item, state in changed:
        print(f"{verbs[state]} {os.path.join(where, item.name)}")
    if not changed:
        print(f"Schemas in {where}/ are up to date ({len(before)} files); nothing written.")
    else:
        current = len(before) - len(changed)
        print(
            f"Wrote {len(changed)} of {len(before)} schema files to {where}/"
            + (f" ({current} already up to date)." if current else ".")
        )
    return 0


def _check(directory: Path, fix: str) -> int:
    from botreg.schema_copies import CopyState, compare_copies

    states = compare_copies(directory)
    stale = [(item, state) for item, state in states if state is not CopyState.CURRENT]
    where = _shown(directory)
    for item, state in stale:
        print(f"{os.path.join(where, item.name)}: {state}")
    if not stale:
        print(f"Schemas in {where}/ are up to date ({len(states)} files).")
        return 0
    print(f"{len(stale)} of {len(states)} schema files to refresh: run `{fix}`.")
    return 1


def _show(repo: Path) -> int:
    from botreg.registry.layout import REGISTRY_FILE
    from botreg.resources import schema_dir
    from botreg.schema_copies import SCHEMAS_DIR, CopyState, compare_copies, schema_copies

    print(f"botreg's JSON Schemas ({_shown(schema_dir())}):")
    width = max(len(item.name) for item in schema_copies())
    if not (repo / REGISTRY_FILE).is_file():
        for item in schema_copies():
            print(f"  {item.name:<{width}}  {item.schema_id}")
        print(
            f"{_shown(repo)} is not a registry (no {REGISTRY_FILE}): pass --repo DIR, "
            "or write the copies anywhere with `botreg schemas --write DIR`."
        )
        return 0
    directory = repo / SCHEMAS_DIR
    states = compare_copies(directory)
    for item, state in states:
        print(f"  {item.name:<{width}}  {item.schema_id}  {state}")
    where = _shown(directory)
    if all(state is CopyState.CURRENT for _, state in states):
        print(f"The registry's copies in {where}/ are up to date.")
    else:
        print(f"Run `{_write_command(repo)}` to write them to {where}/.")
    return 0


def run(args: argparse.Namespace) -> int:
    """Show, write or check the schema copies."""
    repo = Path(args.repo)
    if args.write is not None:
        directory = Path(args.write) if args.write else _registry_dir(repo, "--write")
        return _write(directory)
    if args.check is not None:
        if args.check:
            return _check(Path(args.check), f"botreg schemas --write {args.check}")
        return _check(_registry_dir(repo, "--check"), _write_command(repo))
    return _show(repo)
