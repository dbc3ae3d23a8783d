"""The `botreg` command: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 success, 1 errors found (or a failed operation), 2 usage error or
unreadable repository, 3 unexpected error (a bug), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from botreg import __version__
from botreg.cli import (
    daemon_cmds,
    init_cmd,
    knowledge_cmds,
    resolve_cmd,
    review_cmd,
    validate_cmd,
)
from botreg.errors import BotregError, UsageError

__all__ = ["console_main", "main"]

EXIT_UNEXPECTED = 3
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() returns 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage().strip()}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="botreg",
        description="GitOps registry for chatbot configurations and their knowledge bases.",
    )
    parser.add_argument("--version", action="version", version=f"botreg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in (validate_cmd, init_cmd, resolve_cmd, knowledge_cmds, daemon_cmds, review_cmd):
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
        code: int = args.handler(args)
        return code
    except BotregError as exc:
        print(f"botreg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("botreg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1
    except Exception as exc:
        print(f"botreg: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("BOTREG_DEBUG"):
            traceback.print_exc()
        else:
            print(
                "botreg: this is a bug; rerun with BOTREG_DEBUG=1 for details and report it",
                file=sys.stderr,
            )
        return EXIT_UNEXPECTED


def console_main() -> None:
    """Entry point of the `botreg` console script."""
    sys.exit(main())
