"""Every command's help: text and default of every flag, examples, exit codes; and usage
errors that show the command's own usage with a "did you mean"."""

from __future__ import annotations

import argparse
import contextlib
import re
from pathlib import Path

import pytest

from botreg.cli import build_parser, main
from botreg.cli.parser import HelpFormatter, examples, suggest


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


COMMANDS = sorted(_subparsers())


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with contextlib.suppress(SystemExit):
        assert main(list(argv)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_the_commands_are_the_known_ones() -> None:
    expected = {
        "chunks",
        "events",
        "ingest",
        "init",
        "query",
        "resolve",
        "review",
        "status",
        "sync",
        "validate",
    }
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_argument_has_help_and_every_default_is_shown(name: str) -> None:
    """`botreg status -h` and `botreg events -h` showed flags without a word or a default."""
    for action in _subparsers()[name]._actions:
        if action.help == argparse.SUPPRESS:
            continue
        what = action.option_strings or [action.metavar or action.dest]
        assert action.help, (name, what)
        meaningful = action.default not in (None, False, [], argparse.SUPPRESS)
        if action.option_strings and meaningful and not action.required:
            assert "default" in action.help, (name, what, action.default)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_description_examples_and_exit_codes(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _subparsers()[name]
    assert parser.description
    out = _help(capsys, name, "--help")
    assert "\nExamples:\n" in out
    commands = [line.strip() for line in out.splitlines() if line.startswith("  botreg ")]
    assert commands and all(c.split()[1] == name for c in commands)
    if name != "schemas":  # a command that only prints may have one outcome
        assert "\nExit codes:\n  0 " in out and "\n  2 " in out


def test_the_top_level_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(capsys, "--help")
    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"^  {code} +\S", out, re.M), code
    assert "botreg COMMAND --help" in out


def test_help_lines_fit_and_never_break_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """Wrapping at hyphens split `re-embedding` (and would split `--data-dir`)."""
    for name in COMMANDS:
        out = _help(capsys, name, "-h")
        for line in out.splitlines():
            if not line.startswith("  botreg "):  # commands are never wrapped: copy-paste
                assert len(line) <= 100, (name, line)
            assert not line.rstrip().endswith("-") or line.rstrip().endswith(" -"), (name, line)


# --- usage errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "typo", "meant"),
    [
        (["validate", "--formt", "json"], "--formt", "--format"),
        (["resolve", "bot", "--env", "dev", "--show-secretz"], "--show-secretz", "--show-secrets"),
        (["ingest", "--domian", "billing"], "--domian", "--domain"),
        (["query", "--domain", "billing", "x", "--lmit"], "--lmit", None),
        (["sync", "--source", ".", "--once", "--intervl", "5"], "--intervl", "--interval"),
        (["status", "--data-dri", "x"], "--data-dri", "--data-dir"),
        (["events", "--folow"], "--folow", "--follow"),
        (["review", "--base", "main", "--hed", "x"], "--hed", "--head"),
        (["chunks", "x.md", "--rpeo", "."], "--rpeo", "--repo"),
        (["init", "x", "--brnach", "main"], "--brnach", "--branch"),
    ],
)
def test_a_mistyped_flag_shows_the_commands_usage_and_a_suggestion(
    capsys: pytest.CaptureFixture[str], argv: list[str], typo: str, meant: str | None
) -> None:
    """It printed the top-level usage (`botreg [-h] [--version] COMMAND ...`), no hint."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    first = err.splitlines()[0]
    assert first.startswith("botreg: error: unrecognized argument") and typo in first
    assert f"usage: botreg {argv[0]} " in err
    assert "usage: botreg [-h]" not in err
    assert f"Run `botreg {argv[0]} --help`" in err
    if meant is not None:
        assert f"did you mean {meant}?)" in first


def test_prefixes_still_work_and_a_typo_of_a_prefix_is_suggested(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["resolve", "bot", "--env", "development", "--show-secret", "--repo", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err  # --show-secret is --show-secrets: parsed, then run
    assert "unrecognized" not in err and "not a botreg registry" in err
    assert main(["query", "--domain", "b", "x", "--k"]) == 2
    assert "unrecognized argument: --k (did you mean -k?)" in capsys.readouterr().err


def test_several_mistyped_flags_each_get_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--formt=json", "--stagd"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --formt=json --stagd" in err
    assert "--formt: did you mean --format?; --stagd: did you mean --staged?" in err


@pytest.mark.parametrize(
    ("command", "meant"),
    [("valdate", "validate"), ("reslove", "resolve"), ("stauts", "status"), ("sycn", "sync")],
)
def test_a_mistyped_command_is_suggested(
    capsys: pytest.CaptureFixture[str], command: str, meant: str
) -> None:
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert f"unknown command '{command}'; did you mean {meant}?" in err
    assert "commands: validate, init, resolve" in err
    assert "usage: botreg [-h] [--version] COMMAND ..." in err


def test_a_mistyped_choice_is_suggested(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resolve", "bot", "--env", "development", "--format", "ymal"]) == 2
    err = capsys.readouterr().err
    assert (
        "argument --format: invalid choice: 'ymal'; did you mean yaml? (choose from yaml, json)"
        in err
    )
    assert "usage: botreg resolve BOT_ID --env ENV" in err


def test_nothing_close_means_no_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized argument: --zzzzzz\n" in err and "did you mean" not in err
    assert main(["xyzzy"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_a_stray_positional_is_the_commands_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "extra"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized argument: extra" in err and "usage: botreg status " in err


# --- the pieces ------------------------------------------------------------------------


def test_suggest() -> None:
    assert suggest("--formt", ["--format", "--repo"]) == "--format"
    assert suggest("--q", ["--format", "--repo"]) is None


def test_examples_lay_out_exit_codes_then_commands() -> None:
    text = examples([("botreg x --y", "does x")], {0: "fine", 2: "usage"})
    assert text == (
        "Exit codes:\n  0    fine\n  2    usage\n\nExamples:\n  # does x\n  botreg x --y"
    )


def test_the_formatter_reflows_prose_and_keeps_indented_lines() -> None:
    formatter = HelpFormatter("botreg x", width=40)
    text = (
        "A paragraph that is long enough to be wrapped at forty columns, twice over.\n\n"
        "Examples:\n"
        "  botreg sync --source https://example.com/a/very/long/path.git --once\n"
        "  2    a table row whose text is long enough to wrap under itself"
    )
    lines = formatter._fill_text(text, 40, "").splitlines()
    assert lines[0] == "A paragraph that is long enough to be"
    assert "  botreg sync --source https://example.com/a/very/long/path.git --once" in lines
    row = lines.index("  2    a table row whose text is long")
    assert (
        lines[row + 1].startswith("       ")
        and lines[row + 1].strip() == "enough to wrap under itself"
    )


@pytest.mark.parametrize("argv", [["--verison"], ["--verison", "validate"]])
def test_a_mistyped_top_level_flag_is_named_from_the_console_too(argv: list[str]) -> None:
    """`botreg --verison` as typed in a shell (argparse reads sys.argv) said only that a
    command was required; the typo and its correction are named, as for `main(argv)`."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "botreg", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--verison" in done.stderr and "did you mean --version?" in done.stderr
    assert "Traceback" not in done.stderr
