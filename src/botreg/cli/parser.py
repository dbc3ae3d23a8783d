"""The argument parser of every `botreg` command: its help layout and its usage errors.

Help: descriptions and epilogs are reflowed paragraph by paragraph, and lines
that start with a space (the commands of an Examples section) are kept as
written. `examples()` builds that section, with the command's exit codes.

Usage errors never exit: they raise `UsageError` (exit 2, see `botreg.cli`)
with the message, the usage of the command that was being parsed (a mistyped
flag of `botreg sync` shows sync's usage, not the top level's) and a
"did you mean ...?" for a mistyped flag, command or choice.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from botreg.errors import UsageError

__all__ = ["EXIT_MEANINGS", "BotregParser", "HelpFormatter", "examples", "suggest"]

# What every command's exit codes mean; a command's epilog lists the ones it uses.
EXIT_MEANINGS = {
    0: "success",
    1: "problems found (in the registry, the store or the data) or the operation failed",
    2: "usage error: unknown flag, bad value, unknown name (bot, domain, environment, "
    "revision, id) or a path that is not what the command needs",
    3: "unexpected error (a bug: a crash log is written)",
    130: "interrupted (Ctrl-C)",
}


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `word` (difflib), or None if none is close enough."""
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def examples(lines: Sequence[tuple[str, str]], exit_codes: dict[int, str] | None = None) -> str:
    """An epilog: `Exit codes:` (when given) and `Examples:` sections.

    Args:
        lines: (command, what it does) pairs; the command is shown as typed.
        exit_codes: The codes the command uses and what each means for it.

    Returns:
        Text for `add_parser(epilog=...)`, laid out by `HelpFormatter`.
    """
    out: list[str] = []
    if exit_codes:
        out.append("Exit codes:")
        out += [f"  {code:<4} {meaning}" for code, meaning in exit_codes.items()]
        out.append("")
    out.append("Examples:")
    for command, what in lines:
        out += [f"  # {what}", f"  {command}"]
    return "\n".join(out)


class HelpFormatter(argparse.HelpFormatter):
    """Reflows prose paragraphs; keeps indented lines (examples, tables) as written."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("max_help_position", 30)
        super().__init__(prog, **kwargs)

    def _split_lines(self, text: str, width: int) -> list[str]:
        # never at a hyphen: `--data-dir` and `re-embedding` stay whole
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        prose: list[str] = []

        def flush() -> None:
            if prose:
                joined = " ".join(" ".join(prose).split())
                out.extend(
                    textwrap.wrap(joined, width, initial_indent=indent, subsequent_indent=indent)
                )
                prose.clear()

        for line in text.splitlines():
            if not line.strip():
                flush()
                out.append("")
            elif line.startswith((" ", "\t")):
                flush()
                out.extend(_hanging(line, width, indent))
            else:
                prose.append(line)
        flush()
        return "\n".join(out)


# An indented table row: `  term   text`; its text wraps under itself.
_ROW = re.compile(r"^(\s+\S+\s{2,})\S")


def _hanging(line: str, width: int, indent: str) -> list[str]:
    """An indented line as written; a table row too long for `width` wraps under its text.

    Commands (single spaces only) are never wrapped: they are copied and pasted.
    """
    row = _ROW.match(line)
    if row is None or len(indent + line) <= width:
        return [indent + line]
    hang = indent + " " * len(row.group(1))
    return textwrap.wrap(
        line[len(row.group(1)) :],
        width,
        initial_indent=indent + row.group(1),
        subsequent_indent=hang,
        break_on_hyphens=False,
    )


_NUMBER = re.compile(r"^-\d+(\.\d+)?$")  # a negative number is a value, not a flag


class BotregParser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 2) instead of exiting, and helps the typist.

    Every parser of the CLI is one (subcommands too: `add_subparsers(parser_class=...)`),
    so an error is reported with the usage of the command it belongs to.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Raise the usage error: message, this command's usage, where help is.

        A required flag reported missing because it was mistyped (`sync --sorce x`)
        is reported as the mistyped flag, with its "did you mean".
        """
        if message.startswith("the following arguments are required"):
            unknown = self._unknown_flags(getattr(self, "_parsing", ()))
            if unknown:
                message = self._unrecognized(unknown)
        raise UsageError(
            f"{message}\n{self.format_usage().strip()}\n"
            f"Run `{self.prog} --help` for its options and examples."
        )

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse; an argument no option takes is an error of this parser (not its caller's)."""
        # argparse reads sys.argv when given nothing (the console entry point): so does the hint
        self._parsing = list(args) if args is not None else sys.argv[1:]
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self._unrecognized(extras))
        return parsed, extras

    def _unknown_flags(self, args: Sequence[str]) -> list[str]:
        """The arguments that look like flags this parser does not have (before `--`)."""
        known = [*self._option_strings(), "-h", "--help"]
        unknown = []
        for arg in args:
            if arg == "--":
                break
            flag = arg.split("=", 1)[0]
            if not flag.startswith("-") or flag == "-" or _NUMBER.match(flag):
                continue
            if flag.startswith("--") and any(option.startswith(flag) for option in known):
                continue  # an abbreviation argparse accepts, or the flag itself
            if not flag.startswith("--") and flag[:2] in known:
                continue  # `-k5`
            unknown.append(arg)
        return unknown

    def _option_strings(self) -> list[str]:
        return [
            flag
            for action in self._actions
            if action.help != argparse.SUPPRESS
            for flag in action.option_strings
        ]

    def _unrecognized(self, extras: list[str]) -> str:
        plural = "s" if len(extras) > 1 else ""
        message = f"unrecognized argument{plural}: {' '.join(extras)}"
        hints = []
        for extra in extras:
            if extra.startswith("-") and len(extra) > 1:
                flag = extra.split("=", 1)[0]
                close = suggest(flag, self._option_strings())
                if close is not None:
                    hints.append(f"{flag}: did you mean {close}?")
        if len(hints) == 1 and len(extras) == 1:
            message += f" ({hints[0].split(': ', 1)[1]})"
        elif hints:
            message += " (" + "; ".join(hints) + ")"
        return message

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """An invalid choice names the choices and the closest one."""
        choices = action.choices
        if choices is None or value in choices:
            return
        names = [str(choice) for choice in choices]
        close = suggest(str(value), names)
        hint = f"; did you mean {close}?" if close is not None else ""
        if isinstance(action, argparse._SubParsersAction):
            raise argparse.ArgumentError(
                None, f"unknown command {value!r}{hint} (commands: {', '.join(names)})"
            )
        raise argparse.ArgumentError(
            action, f"invalid choice: {value!r}{hint} (choose from {', '.join(names)})"
        )
