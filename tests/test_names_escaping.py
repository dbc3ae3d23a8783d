"""Names are safe: identifiers match whole strings, unsafe paths are BR403 and
never reach a consumer, and every output escapes what came from the repository."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.registry.layout import IDENTIFIER_RE, FileKind, classify, is_identifier
from botreg.registry.snapshot import Snapshot
from botreg.registry.source import WorkingTreeSource
from helpers import codes, validate, write
from sync_helpers import SyncHarness, commit

LOOKALIKE_BOT = "bots/product-guide\n.yaml"
NEWLINE_DOMAIN_FILE = "knowledge/billing\n/faq.md"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- identifiers ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["product-guide\n", "billing\n", "a\n", "dev\r\n"])
def test_identifier_rule_matches_the_whole_string(name: str) -> None:
    assert not is_identifier(name)
    # Call sites that still use .match() get whole-string semantics too.
    assert IDENTIFIER_RE.match(name) is None
    assert is_identifier(name.rstrip("\r\n"))


@pytest.mark.parametrize(
    "path",
    [
        "bots/product-guide\n.yaml",
        "bots/a\rb.yaml",
        "environments/dev\x1b[31m.yaml",
        "knowledge/billing\n/faq.md",
        "knowledge/billing/f\x7faq.md",
        "knowledge/billing/f\x85aq.md",
        "knowledge/billing/faq\u2028.md",
        "knowledge/billing/\u202egnp.md",
        "registry\t.yaml",
        "README\n.md",
        ".github/x\n.yml",
    ],
)
def test_a_path_with_a_control_character_is_never_a_registry_file(path: str) -> None:
    info = classify(path)
    assert info.kind is FileKind.MISPLACED and info.code == "BR403"
    assert info.ident is None
    assert re.search(r"U\+[0-9A-F]{4}", info.reason)
    # the reason itself is printable
    assert not any(unicodedata.category(ch).startswith("C") for ch in info.reason)


def test_printable_paths_are_classified_as_before() -> None:
    assert classify("bots/product-guide.yaml").kind is FileKind.BOT
    assert classify("knowledge/billing/faq.md").ident == "billing"
    assert classify("bots/sub/x.yaml").code == "BR406"


def test_lookalike_bot_and_newline_domain_are_br403(registry: Path) -> None:
    write(registry, LOOKALIKE_BOT, (registry / "bots/product-guide.yaml").read_text())
    write(registry, NEWLINE_DOMAIN_FILE, "# FAQ\n\nHow to pay.\n")
    report = validate(registry)
    assert codes(report, LOOKALIKE_BOT) == ["BR403"]
    assert codes(report, NEWLINE_DOMAIN_FILE) == ["BR403"]
    assert not report.ok
    snap = Snapshot(WorkingTreeSource(registry))
    assert "billing\n" not in snap.domains
    assert "product-guide\n" not in snap.bots()
    # the hook, given the file names, fails on them too
    assert codes(validate(registry, [LOOKALIKE_BOT]), LOOKALIKE_BOT) == ["BR403"]


def test_ingest_reports_unsafe_names_and_stores_nothing_of_them(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest = ["ingest", "--repo", str(registry), "--data-dir", str(tmp_path / "data")]
    assert run(capsys, *ingest)[0] == 0
    # a domain folder and a file whose names hold a newline: main crashed on the first
    write(registry, NEWLINE_DOMAIN_FILE, "# FAQ\n\nHow to pay.\n")
    write(registry, "knowledge/billing/evil\n.md", "# Evil\n\nInjected text.\n")
    code, out, err = run(capsys, *ingest, "--format", "json")
    assert code == 1, err  # a clear per-file error, not a silent skip
    reported = [e["path"] for r in json.loads(out)["results"] for e in r.get("errors", [])]
    assert "knowledge/billing/evil\\n.md" in reported  # named, its control character escaped
    results = {r["domain_id"]: r for r in json.loads(out)["results"]}
    # nothing new reached the store
    assert results["billing"]["files_processed"] == 0
    assert results["billing"]["chunks_created"] == 0
    assert "billing\n" not in results


def test_daemon_rejects_unsafe_names_without_applying_them(
    git_registry: Path, tmp_path: Path
) -> None:
    write(git_registry, LOOKALIKE_BOT, (git_registry / "bots/product-guide.yaml").read_text())
    write(git_registry, NEWLINE_DOMAIN_FILE, "# FAQ\n\nHow to pay.\n")
    commit(git_registry)
    h = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        result = h.sync()
        assert result.result == "rejected"
        assert "botreg.bot.created" not in h.types()
        assert "botreg.knowledge.file.added" not in h.types()
        found = {(f["path"], f["code"]) for f in h.status.snapshot()["findings"]}
        assert (LOOKALIKE_BOT, "BR403") in found
        assert (NEWLINE_DOMAIN_FILE, "BR403") in found
    finally:
        h.close()


def test_a_bot_naming_a_domain_with_a_newline_is_still_br402(registry: Path) -> None:
    bot = registry / "bots/product-guide.yaml"
    bot.write_text(
        bot.read_text().replace("domains: [product, billing]", 'domains: ["billing\\n"]')
    )
    assert "BR402" in codes(validate(registry), "bots/product-guide.yaml")


# --- validation output ------------------------------------------------------------------

FORGED = "**Validation of head: ✅ pass** LGTM"
HOSTILE_BOT = "bots/a,b:c <img src=x onerror=alert(1)> @acme-team *x* [y](z).yaml"
HOSTILE_PATHS = [
    f"knowledge/billing/x\n\n{FORGED}\n.md",
    "knowledge/billing/del\x7f\u202e.md",
    "bots/evil\r::error file=x::forged.yaml",
]


@pytest.fixture
def hostile(registry: Path) -> Path:
    for path in HOSTILE_PATHS:
        write(registry, path, "# x\n\ntext\n")
    write(registry, HOSTILE_BOT, "name: X\nstatus: active\nllm: {provider: echo}\n")
    # a NUL in YAML: the parser's message has a raw newline in it
    write(registry, "bots/nul.yaml", 'name: "a\x00b"\nstatus: active\n')
    return registry


def test_text_output_is_one_finding_per_line(
    hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = validate(hostile)
    code, out, _ = run(capsys, "validate", "--repo", str(hostile))
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == len(report.findings) + 1
    for line in lines[:-1]:
        assert re.match(r"^[^\n]+:\d+:\d+: BR\d{3} ", line), line
        assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in line)
    assert not any(line.startswith(FORGED) for line in lines)
    assert any("x\\n\\n**Validation" in line for line in lines)
    assert any(line.startswith("bots/nul.yaml:") and "BR101" in line for line in lines)


def _unescape_github(value: str) -> str:
    for escaped, raw in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        value = value.replace(escaped, raw)
    return value


def test_github_workflow_commands_cannot_be_forged(
    hostile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "validate", "--repo", str(hostile), "--format", "github")
    assert code == 1
    lines = out.splitlines()
    commands = [line for line in lines if line.startswith("::")]
    assert len(commands) == len(validate(hostile).findings)
    assert lines[-1].startswith("botreg: ")
    files = set()
    for line in commands:
        match = re.fullmatch(
            r"::(error|warning) file=([^,:]*),line=\d+,col=\d+,title=[^,:]*::.*", line
        )
        assert match, line
        files.add(_unescape_github(match.group(2)))
        assert "\r" not in line and "\x7f" not in line
    # the escaping is reversible: GitHub shows the real names
    assert set(HOSTILE_PATHS[:1]) | {HOSTILE_BOT} <= files


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_json_outputs_hold_no_raw_control_character(
    hostile: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    code, out, _ = run(capsys, "validate", "--repo", str(hostile), "--format", fmt)
    assert code == 1
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", out)
    doc = json.loads(out)
    if fmt == "json":
        paths = {f["path"] for f in doc["findings"]}
    else:
        paths = {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in doc["runs"][0]["results"]
        }
    assert set(HOSTILE_PATHS) | {HOSTILE_BOT} <= paths


# --- review output ----------------------------------------------------------------------


@pytest.fixture
def hostile_pr(git_registry: Path) -> Path:
    repo = git_registry
    from conftest import git

    git(repo, "checkout", "-q", "-b", "change")
    guide = repo / "bots/product-guide.yaml"
    guide.write_text(
        guide.read_text()
        .replace(
            "description: Helps new users get started and find features.",
            'description: "x | y ` z [link](https://evil.example) <img src=x> @acme-team"',
        )
        .replace(
            "  and keyboard shortcuts,",
            f"  ```\n  </details>\n  {FORGED}\n  <img src=x onerror=alert(1)>\n"
            "  and keyboard shortcuts,",
        )
    )
    write(repo, HOSTILE_PATHS[0], "# x\n\ntext\n")
    write(repo, HOSTILE_BOT, "name: X\nstatus: active\nllm: {provider: echo}\n")
    commit(repo)
    return repo


def test_review_markdown_escapes_repository_text(
    hostile_pr: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from markdown_it import MarkdownIt

    code, markdown, _ = run(capsys, "review", "--repo", str(hostile_pr), "--base", "main")
    assert code == 1
    lines = markdown.splitlines()
    assert [line for line in lines if "Validation of head" in line and "LGTM" not in line] == [
        line for line in lines if line.startswith("**Validation of head:")
    ]
    assert not any(line.startswith(FORGED) for line in lines)
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    # exactly one bold verdict, and it is the real one
    assert re.findall(r"<strong>Validation of head: [^<]*</strong>", html) == [
        "<strong>Validation of head: ❌ fail</strong>"
    ]
    assert "<img" not in html and "<a href" not in html
    # the prompt's ``` and </details> stay inside the diff block
    [diff] = re.findall(r'<pre><code class="language-diff">(.*?)</code></pre>', html, re.S)
    assert "+```" in diff and "+&lt;/details&gt;" in diff and "LGTM" in diff
    assert html.count("<details>") == html.count("</details>")
    # GitHub would notify @acme-team for a mention outside code spans
    prose = re.sub(r"(`+).*?\1", "", markdown)
    assert "@&#8203;acme-team" in prose
    assert "@acme-team" not in prose


def test_review_text_and_json_escape_repository_text(
    hostile_pr: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["review", "--repo", str(hostile_pr), "--base", "main", "--format"]
    code, text, _ = run(capsys, *base, "text")
    assert code == 1
    assert not any(line.startswith(FORGED) for line in text.splitlines())
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", text)
    code, out, _ = run(capsys, *base, "json")
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", out)
    doc = json.loads(out)
    assert HOSTILE_PATHS[0] in {f["path"] for f in doc["findings"]}  # data stays raw


def test_schema_patterns_end_at_the_end_of_the_string() -> None:
    """JSON Schema's `$` is ECMA-262's: a name with a trailing newline does not match.

    fastjsonschema and jsonschema disagreed here, and the file passed with no finding.
    """
    from botreg.registry.layout import FileKind
    from botreg.validation.schema import check_schema

    env = {"resources": {"databases": {"main\n": {"host": "db"}}}}
    [(code, message, pointer, _)] = check_schema(FileKind.ENVIRONMENT, env)
    assert (code, pointer) == ("BR201", ("resources", "databases", "main\n"))
    assert "invalid name" in message
    bot = {"id": "product-guide\n", "name": "x", "status": "active"}
    assert ("id",) in [issue[2] for issue in check_schema(FileKind.BOT, bot)]


@pytest.mark.parametrize("char", ["\u200b", "\u200d", "\ufeff", "\ufff9", "\U000e0041", "\u2060"])
def test_invisible_characters_in_a_path_are_br403_and_escaped(char: str) -> None:
    """Two file names that display the same are refused like control characters."""
    from botreg.registry.layout import classify, escape_unsafe

    info = classify(f"knowledge/product/fa{char}q.md")
    assert info.code == "BR403"
    escaped = escape_unsafe(f"fa{char}q.md")
    assert char not in escaped and escaped.startswith("fa\\") and escaped.endswith("q.md")
