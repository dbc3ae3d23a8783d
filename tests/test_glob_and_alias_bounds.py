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
