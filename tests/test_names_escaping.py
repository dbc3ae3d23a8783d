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
from botreg.registry.source import WorkingTreeSource
from botreg.registry.snapshot import Snapshot
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


def test_ingest_skips_a_domain_folder_with_a_newline(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(registry, NEWLINE_DOMAIN_FILE, "# FAQ\n\nHow to pay.\n")
    code, out, err = run(
        capsys, "ingest", "--repo", str(registry), "--data-dir", str(tmp_path / "data")
    )
    assert code == 0, err
    assert "Traceback" not in err
    assert "billing\n" not in out and "billing\\n" not in out
    domains = Snapshot(WorkingTreeSource(registry)).domains
    assert domains == {"billing", "product"}


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
