"""A fresh-clone pass over what issue #14 built, as a new user, an operator and an attacker.

Each test is something that pass found: `init` on a machine without a git
identity, on odd directories; the hook pin; `botreg status` text; hostile
names and contents on the new surfaces (schemas, status, progress, resolve);
mistyped flags; help that pointed at README sections that moved to docs/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botreg.cli import build_parser, main
from botreg.cli.init_cmd import INIT_COMMIT_MESSAGE, made_by_init
from botreg.hook_source import HOOK_CONFIG, TEMPLATE_REQUIREMENT, pin_hook
from botreg.resources import template_dir

PROJECT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- init -----------------------------------------------------------------------------


def test_init_without_a_git_identity_says_how_to_set_it_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh machine: GitPython's command dump (exit 1), and a half-made folder that
    the second run refused ("exists and is not an empty directory", exit 2)."""
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME"):
        monkeypatch.delenv(name)
    monkeypatch.delenv("GIT_COMMITTER_EMAIL")
    monkeypatch.setenv("EMAIL", "")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    # git falls back to user@hostname unless it cannot: make it refuse
    (tmp_path / "no-gitconfig").write_text("[user]\n\tuseConfigOnly = true\n")
    target = tmp_path / "demo-registry"
    code, _, err = run(capsys, "init", str(target))
    assert code == 1, err
    assert "git cannot make the first commit: it does not know who you are" in err
    assert "git config --global user.name" in err and "cmdline:" not in err
    assert not target.exists()  # nothing left behind ...
    monkeypatch.setenv("GIT_AUTHOR_NAME", "A")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "a@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "A")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "a@example.com")
    assert run(capsys, "init", str(target))[0] == 0  # ... so the same command now works
    assert made_by_init(target)


def test_a_failed_init_in_an_empty_folder_empties_it_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    code, _, err = run(capsys, "init", "--branch", "a..b", str(target))
    assert code == 1
    assert "git failed: fatal: invalid initial branch name: 'a..b'" in err
    assert target.is_dir() and list(target.iterdir()) == []


def test_init_on_a_dangling_link_or_an_unwritable_place_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both were exit 3 (FileExistsError, FileNotFoundError) with a crash log."""
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    code, _, err = run(capsys, "init", str(tmp_path / "dangling"))
    assert code == 2 and "symbolic link to a folder that does not exist" in err
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "init", str(tmp_path / "file" / "registry"))
    assert code == 1 and "cannot create the registry" in err and "bug" not in err


def test_init_prints_commands_that_can_be_pasted_and_escapes_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "init", "my registry")
    assert code == 0
    assert "Next: cd 'my registry' && pre-commit install" in out
    code, out, _ = run(capsys, "init", "x\x1b]0;title\x07y")
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert "x\\x1b]0;title\\x07y" in out


def test_the_pin_changes_the_hook_and_leaves_the_comment_that_lists_sources(
    tmp_path: Path,
) -> None:
    """The comment's first example ("a tag of the project") was rewritten to the clone."""
    config = tmp_path / HOOK_CONFIG
    template = (template_dir() / HOOK_CONFIG).read_text()
    config.write_text(template)
    pinned = "botreg @ git+file:///home/me/src/botreg@0123456789abcdef0123456789abcdef01234567"
    assert pin_hook(tmp_path, pinned) is True
    text = config.read_text()
    changed = [
        (a, b) for a, b in zip(template.splitlines(), text.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1
    assert changed[0][0].strip().startswith("additional_dependencies:")
    assert f'["{pinned}"]' in changed[0][1]
    assert re.search(rf"#\s+{re.escape(TEMPLATE_REQUIREMENT)}\s+a tag of the project", text)


# --- botreg status and the dead letters, as text -----------------------------------------

HOSTILE = "x\x1b]0;pwned\x07\u202eevil\x1b[2J"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def _status_file(data: Path, **values: object) -> None:
    data.mkdir(parents=True, exist_ok=True)
    conditions = {
        "Ready": {"status": "False", "reason": "", "message": ""},
        "IngestFailed": {"status": "True", "reason": HOSTILE, "message": HOSTILE},
    }
    doc = {
        "source": f"file:///srv/{HOSTILE}",
        "branch": HOSTILE,
        "environment": "development",
        "applied_commit": "a" * 40,
        "head_commit": HOSTILE,
        "last_result": "rejected",
        "rejected_commit": "b" * 40,
        "findings": [
            {"path": "bots/x.yaml", "line": 1, "column": 1, "code": "BR201", "message": "bad"}
        ],
        "findings_total": 1,
        "last_error": f"git said {HOSTILE}",
        "conditions": conditions,
        "domains": {HOSTILE: {"status": "error", "error": HOSTILE}},
        "role": HOSTILE,
        "ha": {"group": HOSTILE, "redis": "unreachable", "redis_error": HOSTILE},
        **values,
    }
    (data / "status.json").write_text(json.dumps(doc))


def test_status_text_escapes_every_value_and_counts_one_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """last_error, conditions, domains, source, role ... were printed raw: a terminal
    escape in a message (git's stderr, a store's error, an edited file) reached the
    terminal. "(1 findings)"; "IngestFailed False " ended in spaces."""
    _status_file(tmp_path / "data")
    code, out, _ = run(capsys, "status", "--data-dir", str(tmp_path / "data"))
    assert code == 0
    assert not UNSAFE.search(out), [line for line in out.splitlines() if UNSAFE.search(line)]
    assert "last error:  git said x\\x1b]0;pwned\\x07\\u202eevil\\x1b[2J" in out
    assert f"rejected:    {'b' * 40} (1 finding)\n" in out
    assert all(line == line.rstrip() for line in out.splitlines())
    assert "  Ready             False\n" in out


def test_dead_letters_text_escapes_the_subject_and_the_receivers_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from botreg.events.outbox import Outbox

    data = tmp_path / "data"
    data.mkdir()
    outbox = Outbox(data / "outbox.sqlite")
    event = {"id": "e1", "type": "botreg.bot.updated", "subject": HOSTILE, "data": {}}
    seq = outbox.enqueue("e1", json.dumps(event).encode(), now=time.time() - 7200)
    outbox.failed(seq, f"HTTP 500: {HOSTILE}")
    outbox.expire(time.time() - 3600)
    outbox.close()
    code, out, _ = run(capsys, "events", "--data-dir", str(data), "--dead-letter")
    assert code == 0 and out.startswith("e1  botreg.bot.updated x")
    assert not UNSAFE.search(out) and "HTTP 500: x\\x1b]0;pwned" in out


# --- the command line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["sync", "--sorce", "demo-registry", "--once"], "--sorce (did you mean --source?)"),
        (["sync", "--sorce=demo-registry"], "--sorce=demo-registry (did you mean --source?)"),
        (["resolve", "billing-assistant", "--evn", "development"], "--evn (did you mean --env?)"),
        (["review", "--bsae", "main"], "--bsae (did you mean --base?)"),
        (["query", "--domian", "billing", "refunds"], "--domian (did you mean --domain?)"),
    ],
)
def test_a_mistyped_required_flag_is_named_with_a_suggestion(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "the following arguments are required: --source", hiding the typo."""
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert f"unrecognized argument: {said}" in err
    assert f"usage: botreg {argv[0]} " in err


def test_a_required_flag_that_is_really_missing_is_still_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["sync"], ["sync", "--once"], ["query", "-k", "-1", "x"], ["review", "--"]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "the following arguments are required" in err, argv


def _help_texts() -> dict[str, str]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"botreg": parser.format_help()} | {
        name: command.format_help() for name, command in sub.choices.items()
    }


def test_help_points_at_the_manual_not_at_readme_sections_that_moved() -> None:
    """`sync -h` said "see README 'High availability'": README is a front door now."""
    for name, text in _help_texts().items():
        assert "README" not in text, name
        for page in re.findall(r"docs/[\w.-]+\.md", text):
            assert (PROJECT / page).is_file(), (name, page)


def test_every_example_fits_an_80_column_terminal() -> None:
    """sync's second example was one 131-character line."""
    for name, text in _help_texts().items():
        examples = text.partition("\nExamples:\n")[2]
        for line in examples.splitlines():
            assert len(line) <= 80, (name, line)


# --- botreg schemas on a hostile registry ------------------------------------------------


def _made(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    registry = tmp_path / "registry"
    assert run(capsys, "init", str(registry))[0] == 0
    return registry


def test_schemas_check_does_not_block_on_a_fifo_planted_as_a_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A commit that replaces `.schemas/bot.schema.json` by a FIFO (or a link to
    /dev/zero) made `botreg schemas --check` in CI wait for ever (or fill the memory)."""
    registry = _made(tmp_path, capsys)
    copy = registry / ".schemas" / "bot.schema.json"
    copy.unlink()
    os.mkfifo(copy)
    result: list[tuple[int, str, str]] = []
    worker = threading.Thread(
        target=lambda: result.append(run(capsys, "schemas", "--repo", str(registry), "--check")),
        daemon=True,
    )
    worker.start()
    worker.join(10)
    blocked = worker.is_alive()
    if blocked:  # unblock the reader before failing
        os.close(os.open(copy, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
    assert not blocked, "botreg schemas --check blocked on a FIFO"
    code, out, _ = result[0]
    assert code == 1 and "bot.schema.json: out of date" in out


def test_a_copy_that_is_a_link_is_out_of_date_and_write_replaces_the_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Copies are read without following links: a link to a file outside the registry
    (even one with the right content) is not a copy, and --write never writes through it."""
    registry = _made(tmp_path, capsys)
    copy = registry / ".schemas" / "bot.schema.json"
    outside = tmp_path / "outside.json"
    outside.write_bytes(copy.read_bytes())
    copy.unlink()
    copy.symlink_to(outside)
    code, out, _ = run(capsys, "schemas", "--repo", str(registry), "--check")
    assert code == 1 and "bot.schema.json: out of date" in out
    before = outside.read_bytes()
    assert run(capsys, "schemas", "--repo", str(registry), "--write")[0] == 0
    assert not copy.is_symlink() and copy.read_bytes() == before
    assert outside.read_bytes() == before
    assert run(capsys, "schemas", "--repo", str(registry), "--check")[0] == 0


def test_schemas_write_does_not_write_through_a_planted_temporary_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = _made(tmp_path, capsys)
    copy = registry / ".schemas" / "bot.schema.json"
    copy.write_text("{}\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    planted = copy.with_name(f".{copy.name}.tmp-{os.getpid()}")
    os.link(victim, planted)  # a hard link: O_NOFOLLOW alone would write into it
    assert run(capsys, "schemas", "--repo", str(registry), "--write")[0] == 0
    assert victim.read_text() == "mine"
    assert run(capsys, "schemas", "--repo", str(registry), "--check")[0] == 0


# --- botreg resolve on a hostile bot -----------------------------------------------------


def test_resolve_yaml_escapes_bidi_and_invisible_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """YAML wrote U+202E (which reorders what a reviewer reads) and zero-width characters
    as they are, in plain strings, blocks and keys; JSON escaped them."""
    registry = _made(tmp_path, capsys)
    bot = registry / "bots" / "billing-assistant.yaml"
    text = bot.read_text()
    text = text.replace(
        "description: Answers customer questions about invoices, plans and refunds.",
        'description: "refunds \\u202egnirts\\u202c \\u200bhidden \\e]0;title\\a"',
    )
    text = text.replace(
        "  tier: customer-facing",
        '  tier: customer-facing\n  "key\\u2066x": 1\n  prompt: "one\\u202e\\ntwo\\n"',
    )
    bot.write_text(text)
    code, out, err = run(
        capsys, "resolve", "billing-assistant", "--env", "development", "--repo", str(registry)
    )
    assert code == 0, err
    assert not re.search("[\x00-\x09\x0b-\x1f\u200b-\u200f\u202a-\u202e\u2066-\u2069]", out)
    assert 'description: "refunds \\u202Egnirts\\u202C \\u200Bhidden \\e]0;title\\a"' in out
    assert '"key\\u2066x": 1' in out and 'prompt: "one\\u202E\\ntwo\\n"' in out
    from ruamel.yaml import YAML

    loaded = YAML(typ="safe").load(out)
    assert loaded["description"] == "refunds \u202egnirts\u202c \u200bhidden \x1b]0;title\x07"
    assert loaded["metadata"]["key\u2066x"] == 1
    assert "system_prompt: |\n" in out  # a plain prompt is still a block


_HOSTILE_TEXT = st.text(
    alphabet=st.sampled_from(
        ["a", " ", "\n", "\t", "\x1b", "\u202e", "\u200b", "\u2066", "\x85", "\u2028", "é", ":"]
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_HOSTILE_TEXT, _HOSTILE_TEXT | st.lists(_HOSTILE_TEXT), max_size=4))
def test_terminal_yaml_loads_back_and_holds_no_unsafe_character(data: dict[str, object]) -> None:
    from ruamel.yaml import YAML

    from botreg.cli.resolve_cmd import terminal_yaml

    out = terminal_yaml(data)
    assert YAML(typ="safe").load(out) == data
    assert not re.search("[\x00-\x09\x0b-\x1f\x85\u200b-\u200f\u2028\u202a-\u202e\u2066]", out)


# --- the cycle's summary and progress: text from the repository, on a terminal ----------


def test_a_failed_cycles_summary_escapes_its_error() -> None:
    """The text log escapes line breaks only: an ESC in an error reached the terminal."""
    from botreg.daemon.summary import cycle_line
    from botreg.daemon.sync import CycleResult

    failed = CycleResult("failed", "a" * 40, "b" * 40, error=f"store said {HOSTILE}", phase="apply")
    line = cycle_line(failed)
    assert not UNSAFE.search(line)
    assert line.endswith("store said x\\x1b]0;pwned\\x07\\u202eevil\\x1b[2J")


def test_progress_escapes_its_subject_and_the_bar_reads_no_markup(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import io
    import logging

    from rich.console import Console

    from botreg.daemon.progress import BarProgress, LineProgress

    subject = "knowledge/[bold red]x[/]\x1b]0;pwned\x07\u202e"
    lines = LineProgress(interval=0)
    with caplog.at_level(logging.INFO, logger="botreg.daemon.progress"):
        lines.update("chunking", subject, 1, 2, "files")
    [record] = caplog.records
    assert record.getMessage().startswith(
        "chunking knowledge/[bold red]x[/]\\x1b]0;pwned\\x07\\u202e: 1/2 files"
    )
    buffer = io.StringIO()
    bar = BarProgress(Console(file=buffer, force_terminal=True, width=200, color_system=None))
    bar.update("embedding", subject, 1, 2, "chunks")
    bar.finish()
    shown = buffer.getvalue()
    assert "[bold red]x[/]\\x1b]0;pwned\\x07\\u202e" in shown  # as written, not as markup
    assert "pwned\x07" not in shown and "\u202e" not in shown


def test_every_command_lists_its_exit_codes_in_one_layout() -> None:
    """`schemas -h` had its exit codes as a sentence after the examples, and examples
    without the `# what` comment every other command has."""
    for name, text in _help_texts().items():
        if name == "botreg":
            continue
        assert re.search(r"\nExit codes:\n  0    \S.*\n(.*\n)*  2    \S", text), name
        assert text.index("\nExit codes:\n") < text.index("\nExamples:\n"), name
        examples = text.partition("\nExamples:\n")[2].splitlines()
        assert examples[0].startswith("  # "), name


def test_init_not_from_a_clone_says_where_the_hook_installs_botreg_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed from a wheel, init pinned nothing and said nothing: the hook's
    `pre-commit install` then failed on a tag that is not published yet."""
    import botreg.hook_source

    monkeypatch.setattr(botreg.hook_source, "installed_clone_requirement", lambda: None)
    code, out, _ = run(capsys, "init", str(tmp_path / "r"))
    assert code == 0
    assert f"Hook and CI install `{TEMPLATE_REQUIREMENT}`" in out
    assert "docs/pre-commit.md" in out


def test_init_fills_a_clone_of_an_empty_repository_and_keeps_its_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A platform team creates the repository on its forge, clones it, runs init in it:
    the clone (only `.git`) was refused as "not an empty directory"."""
    from conftest import git

    git(tmp_path, "init", "-q", "--bare", "remote.git")
    git(tmp_path, "clone", "-q", "remote.git", "bots")
    clone = tmp_path / "bots"
    code, _, err = run(capsys, "init", "--branch", "a..b", str(clone))  # a failure ...
    assert code == 1 and (clone / ".git").is_dir()  # ... keeps the clone
    assert [child.name for child in clone.iterdir()] == [".git"]
    code, out, err = run(capsys, "init", str(clone))
    assert code == 0, err
    assert "Created registry" in out and made_by_init(clone)
    assert git(clone, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    git(clone, "push", "-q", "-u", "origin", "main")  # the remote is still there
    assert git(tmp_path / "remote.git", "log", "--format=%s", "main").strip() == INIT_COMMIT_MESSAGE


def test_init_refuses_a_clone_with_commits_and_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import git

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "first")
    (tmp_path / "clone").mkdir()
    git(tmp_path, "clone", "-q", str(repo), "clone")
    code, _, err = run(capsys, "init", str(tmp_path / "clone"))
    assert code == 2 and "a repository with commits" in err
    assert git(tmp_path / "clone", "log", "--format=%s").strip() == "first"


def test_query_where_nothing_was_ingested_says_so_and_creates_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run in the wrong folder (the data dir is relative to it), query made an empty
    `.botreg/` there and said "has not been ingested (ingested: none)"."""
    registry = _made(tmp_path, capsys)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = run(capsys, "query", "--repo", str(registry), "--domain", "billing", "x")
    assert code == 1
    assert "there is no store in .botreg" in err and "--data-dir" in err
    assert list(elsewhere.iterdir()) == []


def test_init_from_a_clone_warns_that_the_pin_is_a_path_on_this_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pin (`git+file:///home/me/...`) is committed: a colleague's clone cannot
    install it, and init did not say so."""
    import botreg.hook_source

    clone = "botreg @ git+file:///home/me/src/botreg@0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setattr(botreg.hook_source, "installed_clone_requirement", lambda: clone)
    code, out, _ = run(capsys, "init", str(tmp_path / "r"))
    assert code == 0 and clone in (tmp_path / "r" / HOOK_CONFIG).read_text()
    assert "a path on this machine: before sharing the registry, pin a source" in out
