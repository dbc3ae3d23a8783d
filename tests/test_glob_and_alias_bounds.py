"""Bounded work for hostile `_domain.yaml` globs and for aliases of long strings.

Both were found by an attacker after issue #9 was merged: a glob with many `*`
backtracked for ever (the daemon stopped answering and ignored SIGTERM, since
Python's `re` holds the GIL), and an alias of a long string repeated a thousand
times turned a 125 KB file into 129 MB of output. Each test's timeout is far
above the linear cost, so a regression hangs the test instead of passing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botreg.cli import main
from botreg.registry.view import MAX_GLOB_CHARS, MAX_GLOBS, DomainConfigError, DomainRules
from botreg.registry.view import compile_glob as glob
from botreg.registry.yamlfast import YamlLoadError, load_fast
from botreg.resources import schema_dir
from botreg.review import build_review
from helpers import codes, validate, write
from sync_helpers import SyncHarness, commit

# The attacker's pattern: 22 `*a` then `*Z`, against a 200-character name of `a`s.
EVIL = "*a" * 22 + "*Z"
LONG_NAME = "a" * 200 + ".md"

# --- globs --------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("pattern", "path", "matching"),
    [
        (EVIL, LONG_NAME, EVIL.replace("Z", ".md")),
        ("*a" * 128 + "*Z", "a" * 4000, "*a" * 128 + "*"),  # a longer pattern and name
        ("*?" * 120 + "Z", "a" * 4000, "*?" * 120),  # `?` runs between stars
        ("*[a-z]" * 80 + "*Z", "a" * 4000, "*[a-z]" * 80 + "*"),  # classes between stars
        ("*" + "a" * 250 + "Z", "a" * 4000, "*" + "a" * 250),  # the last star's fixed tail
        ("**/" * 80 + "x", "a/" * 1000 + "y", "**/" * 80 + "y"),  # folders split many ways
        ("**/a*/" * 40 + "x", "a/" * 1000 + "y", "**/a*/" * 40 + "y"),
        (
            "/".join(["*a*a*a*a*a*a*a*Z"] * 16),
            "/".join(["a" * 200] * 16),
            "/".join(["*a*a*a*a*a*a*a*"] * 16),
        ),
    ],
)
def test_adversarial_globs_match_in_linear_time(pattern: str, path: str, matching: str) -> None:
    # Before the fix each of these backtracked for hours; now milliseconds.
    assert glob(pattern).match(path) is False
    assert glob(matching).match(path) is True


def _reference(pattern: str) -> re.Pattern[str]:
    """The documented semantics as a plain (backtracking) regex, for small inputs.

    Covers the alphabet the property test draws from: letters, `/`, `*`, `?`.
    """
    text = pattern
    while text.startswith(("/", "./")):
        text = text[1:] if text.startswith("/") else text[2:]
    if text.endswith("/"):
        text += "**"
    segments = [s for s in text.split("/") if s]
    out: list[str] = []
    for number, segment in enumerate(segments):
        last = number == len(segments) - 1
        if segment == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        pieces = {"*": "[^/]*", "?": "[^/]"}
        out.append("".join(pieces.get(c, re.escape(c)) for c in re.sub(r"\*+", "*", segment)))
        if not last:
            out.append("/")
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet="ab/*?.", max_size=12),
    st.text(alphabet="ab/.", max_size=12),
)
def test_glob_agrees_with_the_reference_semantics(pattern: str, path: str) -> None:
    assert glob(pattern).match(path) is bool(_reference(pattern).match(path))


def _evil_registry(repo: Path) -> None:
    write(repo, f"knowledge/billing/{LONG_NAME}", "# Hello\n\nhello\n")
    write(repo, "knowledge/billing/_domain.yaml", f"include: [{json.dumps(EVIL)}]\n")


@pytest.mark.timeout(60)
def test_the_daemon_and_review_survive_the_attackers_glob(
    git_registry: Path, tmp_path: Path
) -> None:
    repo = git_registry
    harness = SyncHarness(repo.as_uri(), tmp_path / "data")
    try:
        assert harness.sync().result == "synced"
        _evil_registry(repo)
        head = commit(repo, "evil glob")
        assert harness.sync().result == "synced"  # before the fix: hung here for good
        assert harness.stored("billing") == set()  # the pattern selects nothing
        deleted = {e.data["path"] for e in harness.of("botreg.knowledge.file.deleted")}
        assert "knowledge/billing/plans.json" in deleted
    finally:
        harness.close()
    review = build_review(str(repo), "HEAD~1", head)
    billing = next(d for d in review.domains if d.domain == "billing")
    assert f"knowledge/billing/{LONG_NAME}" not in {f["path"] for f in billing.files}


@pytest.mark.timeout(60)
def test_ingest_survives_the_attackers_glob(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _evil_registry(registry)
    data = str(tmp_path / "d")
    code = main(["ingest", "--repo", str(registry), "--data-dir", data, "--domain", "billing"])
    capsys.readouterr()
    assert code == 0


def test_validate_names_the_bounds_of_absurd_patterns(registry: Path) -> None:
    patterns = ["x" * (MAX_GLOB_CHARS + 1)] + [f"p{i}/*.md" for i in range(MAX_GLOBS)]
    text = "include:\n" + "".join(f"  - {json.dumps(p)}\n" for p in patterns)
    write(registry, "knowledge/billing/_domain.yaml", text)
    report = validate(registry)
    messages = [f.message for f in report.findings if f.path == "knowledge/billing/_domain.yaml"]
    assert codes(report, "knowledge/billing/_domain.yaml") == ["BR201", "BR201"]
    assert any(f"at most {MAX_GLOBS} items allowed, found {MAX_GLOBS + 1}" in m for m in messages)
    assert any(f"at most {MAX_GLOB_CHARS} characters" in m for m in messages)
    assert all("p99/*.md" not in m for m in messages)  # the list is not echoed


def test_the_schema_and_the_code_share_the_bounds() -> None:
    schema = json.loads((schema_dir() / "domain.schema.json").read_text())
    for key in ("include", "exclude"):
        prop = schema["properties"][key]
        assert (prop["maxItems"], prop["items"]["maxLength"]) == (MAX_GLOBS, MAX_GLOB_CHARS)


@pytest.mark.parametrize(
    "data",
    [
        {"include": ["*" * (MAX_GLOB_CHARS + 1)]},
        {"exclude": [f"p{i}" for i in range(MAX_GLOBS + 1)]},
    ],
)
def test_a_commit_that_skipped_the_hook_cannot_use_absurd_patterns(data: object) -> None:
    # The daemon reads _domain.yaml through DomainRules: it refuses, it does not grind.
    with pytest.raises(DomainConfigError, match=f"at most {MAX_GLOBS} patterns"):
        DomainRules.from_data(data)
    DomainRules.from_data({"include": ["*" * MAX_GLOB_CHARS], "exclude": ["p"] * MAX_GLOBS})


# --- aliases of long strings ---------------------------------------------------------------

LOREM = "lorem ipsum " * 10_000  # 120,000 bytes


def alias_bomb(copies: int, text: str = LOREM) -> str:
    """The attacker's block: one long string and a list of `copies` aliases of it."""
    return f'x:\n  s: &s "{text}"\n  l: [' + ", ".join(["*s"] * copies) + "]\n"


def test_aliases_of_a_long_string_are_bounded_in_bytes() -> None:
    # 1,000 aliases of 120 KB: 120 MB of text from a 125 KB document, 1,003 values.
    with pytest.raises(YamlLoadError) as info:
        load_fast(alias_bomb(1000))
    [problem] = info.value.problems
    assert problem.code == "BR104" and "max_expanded_bytes" in problem.message
    assert "10,485,760 bytes" in problem.message
    # at the alias that crosses 10 MiB: the 87th (the string once, then 86 copies fit)
    copies_that_fit = 10 * 1024 * 1024 // len(LOREM) - 1
    assert (problem.line, problem.column) == (3, 7 + 4 * copies_that_fit)
    loaded = load_fast(alias_bomb(copies_that_fit))  # within the bound: loads
    assert len(loaded["x"]["l"]) == copies_that_fit


@pytest.mark.parametrize(
    "text",
    [
        'a: &a "0123456789"\nl: [*a, *a, *a, *a, *a, *a, *a, *a]\n',  # scalar aliases
        "a: &a {k: 0123456789}\nl: [*a, *a, *a, *a, *a, *a, *a, *a]\n",  # a mapping's text
        "a: &a {k0123456789: 1}\nl: [*a, *a, *a, *a, *a, *a, *a, *a]\n",  # keys count too
        "a: &a {k: 0123456789}\n" + "".join(f"m{i}: {{<<: *a}}\n" for i in range(8)),  # merges
        "a: &a [[[0123456789]]]\nl: [*a, *a, *a, *a, *a, *a, *a, *a]\n",  # nested containers
    ],
)
def test_every_kind_of_alias_counts_its_text(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTREG_MAX_EXPANDED_BYTES", "80")
    with pytest.raises(YamlLoadError) as info:
        load_fast(text)
    assert [p.code for p in info.value.problems] == ["BR104"]
    monkeypatch.setenv("BOTREG_MAX_EXPANDED_BYTES", "200")
    assert load_fast(text)["a"] is not None


def test_text_beyond_the_ceiling_without_aliases_is_br108(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTREG_MAX_EXPANDED_BYTES", "1000")
    with pytest.raises(YamlLoadError) as info:
        load_fast("a: " + "é" * 501 + "\n")  # 1,002 bytes of UTF-8 in 501 characters
    [problem] = info.value.problems
    assert problem.code == "BR108" and "split the file" in problem.message
    assert load_fast("a: " + "é" * 499 + "\n")["a"] == "é" * 499


def _bomb_bot(repo: Path, copies: int = 1000, text: str = LOREM) -> None:
    """The block under the bot's `metadata` (the template's last mapping)."""
    bot = repo / "bots/billing-assistant.yaml"
    body = bot.read_text()
    assert body.endswith("tier: customer-facing\n")  # metadata is the last block
    bot.write_text(body + alias_bomb(copies, text).removeprefix("x:\n"))


@pytest.mark.timeout(60)
def test_validate_and_resolve_refuse_the_alias_bomb(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _bomb_bot(registry)
    assert main(["validate", "--repo", str(registry)]) == 1
    out = capsys.readouterr().out
    assert "bots/billing-assistant.yaml:" in out and "BR104" in out
    code = main(["resolve", "billing-assistant", "--env", "production", "--repo", str(registry)])
    out, err = capsys.readouterr()
    assert code == 1
    assert len(out) + len(err) < 10_000  # was 129 MB of output
    assert "BR104" not in err and "max_expanded_bytes" in err


@pytest.mark.timeout(60)
def test_the_operator_can_set_the_ceiling_with_a_flag(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _bomb_bot(registry, 8, "x" * 1000)  # the bot's own text is 2-3 KB
    assert main(["validate", "--repo", str(registry), "bots/billing-assistant.yaml"]) == 0
    capsys.readouterr()
    args = ["validate", "--repo", str(registry), "--max-expanded-bytes", "8000"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "BR104 aliases expand this document beyond 8,000 bytes" in out


@pytest.mark.timeout(60)
def test_one_sync_cycle_rejects_the_alias_bomb(git_registry: Path, tmp_path: Path) -> None:
    _bomb_bot(git_registry)
    bad = commit(git_registry, "alias bomb")
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        result = harness.sync()
        assert (result.result, result.exit_code) == ("rejected", 1)
        [rejected] = harness.events
        assert rejected.data["to"] == bad
        assert [f["code"] for f in rejected.data["findings"]] == ["BR104"]
    finally:
        harness.close()
    assert (tmp_path / "data" / "events.jsonl").stat().st_size < 100_000  # was a 120 MB line
