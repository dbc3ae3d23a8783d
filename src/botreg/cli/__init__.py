"""The `botreg` command: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 success, 1 errors found (or a failed operation), 2 usage error or
unreadable repository, 3 unexpected error (a bug), 130 interrupted (Ctrl-C).
No input may lead to 3: a 3 is a bug, and it leaves a crash log (traceback,
version, redacted argv) whose path is printed, so the report needs no rerun.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from botreg import __version__
from botreg.cli import (
    chunks_cmd,
    daemon_cmds,
    init_cmd,
    knowledge_cmds,
    resolve_cmd,
    review_cmd,
    schemas_cmd,
    validate_cmd,
)
from botreg.cli.parser import EXIT_MEANINGS, BotregParser
from botreg.errors import BotregError, write_crash_log

__all__ = ["console_main", "main"]

EXIT_UNEXPECTED = 3
EXIT_INTERRUPTED = 130


_Parser = BotregParser  # the name this module used; kept for callers


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    codes = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_MEANINGS.items())
    parser = BotregParser(
        prog="botreg",
        description="GitOps registry for chatbot configurations and their knowledge bases.",
        epilog=f"Exit codes (every command):\n{codes}\n\n"
        "Run `botreg COMMAND --help` for a command's options, defaults and examples.",
    )
    parser.add_argument("--version", action="version", version=f"botreg {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=BotregParser, title="commands"
    )
    sub.required = True
    for module in (
        validate_cmd,
        init_cmd,
        resolve_cmd,
        knowledge_cmds,
        daemon_cmds,
        review_cmd,
        chunks_cmd,
        schemas_cmd,
    ):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run botreg with `argv` (default: sys.argv[1:]) and return the exit code."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version
            return int(exc.code or 0)
        if not hasattr(args, "ceiling_max_file_bytes"):
            code: int = args.handler(args)
            return code
        # the operator's ceilings, checked before any work (a bad value: exit 2),
        # in force for this command only (main() also runs inside tests and apps)
        from botreg.registry.limits import apply_ceiling_arguments, set_ceilings

        apply_ceiling_arguments(args)
        try:
            code = args.handler(args)
        finally:
            set_ceilings(None)
        return code
    except BotregError as exc:
        from botreg.secrets import mask_text  # a safety net: messages may quote input

        print(f"botreg: error: {mask_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("botreg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1
    except Exception as exc:  # MemoryError and RecursionError included: a bug, not a crash
        return _unexpected(exc, sys.argv[:1] + list(sys.argv[1:] if argv is None else argv))


def _unexpected(exc: Exception, argv: list[str]) -> int:
    """Report a bug: one line on stderr, the traceback in a crash log."""
    from botreg.secrets import mask_text

    message = mask_text(" ".join(str(exc).split())[:300])  # one line, bounded: may quote input
    print(f"botreg: unexpected error: {type(exc).__name__}: {message}", file=sys.stderr)
    try:
        path = write_crash_log(exc, argv)
    except Exception:  # the log is best effort; the exit code is not
        path = None
    if path is not None:
        print(f"botreg: this is a bug; details are in {path}: please report it", file=sys.stderr)
    else:
        print(
            "botreg: this is a bug (no crash log could be written): please report it",
            file=sys.stderr,
        )
    return EXIT_UNEXPECTED


def console_main() -> None:
    """Entry point of the `botreg` console script."""
    sys.exit(main())
