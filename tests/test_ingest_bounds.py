"""Ingestion under the same bounds as validation, and names that never reach the store.

Regression tests for issue #9: on main, `ingest` ignored `max_file_bytes`, a wide
Markdown table multiplied into thousands of oversized chunks, and a domain folder
named `billing\\n` crashed ingest, sync and the CLI (exit 3).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.knowledge.chunkers.base import ChunkBounds, count_tokens
from botreg.knowledge.ledger import IngestionStatus
from conftest import git
from helpers import write
from knowledge_helpers import Harness
from sync_helpers import SyncHarness, commit

BOUNDS = ChunkBounds.of(200)  # the template's chunking.max_tokens


@pytest.fixture
def h(registry: Path, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(registry, tmp_path / "data")
    yield harness
    harness.ledger.close()


def lower_limits(repo: Path, **limits: int) -> None:
    """Lower registry.yaml's limits (the snapshot's settings are what ingest obeys)."""
    path = repo / "registry.yaml"
    text = path.read_text()
    for key, value in limits.items():
        start = text.index(f"  {key}:")
        end = text.index("\n", start)
        text = text[:start] + f"  {key}: {value}" + text[end:]
    path.write_text(text)


def prose(n: int) -> str:
    return "".join(f"Paragraph {i} explains refunds for plan {i}.\n\n" for i in range(n))


def test_a_file_over_max_file_bytes_fails_alone_and_keeps_its_last_good_chunks(
    h: Harness,
) -> None:
    lower_limits(h.repo, max_file_bytes=20_000)
    write(h.repo, "knowledge/billing/big.md", "# Big\n\n" + prose(10))
    first = h.ingest("billing")
    assert first.success and first.files_processed == 4
    good = {item for item in h.stored("billing") if item[0] == "knowledge/billing/big.md"}
    assert good

    write(h.repo, "knowledge/billing/big.md", "# Big\n\n" + prose(5000))  # ~250 KB: 12x
    (h.repo / "knowledge/billing/faq.md").write_text("# FAQ\n\nA changed answer.\n")
    result = h.ingest("billing")
    assert [e["path"] for e in result.errors] == ["knowledge/billing/big.md"]
    message = result.errors[0]["message"]
    assert "limits.max_file_bytes" in message and "20000" in message
    assert result.files_processed == 1  # faq.md, changed alongside, is ingested
    stored = h.stored("billing")
    assert {item for item in stored if item[0] == "knowledge/billing/big.md"} == good
    assert ("knowledge/billing/faq.md", "FAQ\n\nA changed answer.") in stored
    assert h.ledger.domain("billing").status is IngestionStatus.ERROR  # type: ignore[union-attr]


def test_gzip_bounds_of_the_registry_apply_to_ingest(h: Harness) -> None:
    lower_limits(h.repo, max_decompressed_bytes=50_000)
    write(h.repo, "knowledge/billing/bomb.md.gz", gzip.compress(b"# A\n\n" + b"x " * 100_000))
    result = h.ingest("billing")
    assert [e["path"] for e in result.errors] == ["knowledge/billing/bomb.md.gz"]
    assert "(limits: 50000 bytes, ratio 100)" in result.errors[0]["message"]
    assert result.files_processed == 3
    assert all(path != "knowledge/billing/bomb.md.gz" for path, _ in h.stored("billing"))


def test_a_wide_markdown_table_is_stored_in_bounded_chunks(h: Harness) -> None:
    # The 8,000-column table scaled down: on main its header row was
    # repeated in every chunk (each chunk ~3,000 tokens, ~1,500 of them).
    columns = 1000
    table = (
        "# Prices\n\n"
        + "| "
        + " | ".join(f"region{i}" for i in range(columns))
        + " |\n|"
        + "---|" * columns
        + "\n"
        + "".join("| " + " | ".join(f"{r}.{i}" for i in range(columns)) + " |\n" for r in range(4))
    )
    write(h.repo, "knowledge/billing/prices.md", table)
    result = h.ingest("billing")
    assert result.success
    texts = [text for path, text in h.stored("billing") if path.endswith("prices.md")]
    assert texts and all(
        count_tokens(t) <= BOUNDS.tokens and len(t.encode()) <= BOUNDS.bytes for t in texts
    )
    # Header repetition capped: the stored text is not a multiple of the file.
    assert sum(len(t.encode()) for t in texts) < 2 * len(table.encode())
    # 4,000 cells of about ten estimated tokens each ("region988: 3.988", digits
    # costed one token each) packed 200 tokens a chunk: about 200 chunks, not one
    # per cell (4,000) and not a header per row.
    assert len(texts) < 400


def test_a_file_needing_more_chunks_than_the_ceiling_fails(h: Harness) -> None:
    write(h.repo, "knowledge/billing/long.txt", prose(400))
    result = h.manager(max_chunks_per_file=10).ingest("billing")
    assert [e["path"] for e in result.errors] == ["knowledge/billing/long.txt"]
    assert "over the ceiling of 10 per file" in result.errors[0]["message"]
    assert result.files_processed == 3
    assert all(not path.endswith("long.txt") for path, _ in h.stored("billing"))


def test_a_domain_named_with_a_newline_is_refused_and_never_stored(h: Harness) -> None:
    write(h.repo, "knowledge/billing\n/refunds.md", "# Refunds\n\nLook-alike text.\n")
    manager = h.manager()
    assert manager.invalid_domains() == ["billing\n"]
    result = manager.ingest("billing\n")  # on main: InvalidArgumentError from Chroma
    assert not result.success and result.files_processed == 0
    assert result.domain_id == "billing\\n"
    assert result.errors == [
        {
            "path": "knowledge/billing\\n/refunds.md",
            "message": "invalid domain name 'billing\\n': not ingested; rename "
            "knowledge/billing\\n/ using lowercase letters, digits, '_' and '-' "
            "(at most 63 characters)",
        }
    ]
    assert h.ledger.domain("billing\n") is None
    assert h.ingest("billing").success  # the real domain is untouched
    h.assert_exact("billing")
    names = [str(getattr(c, "name", c)) for c in h.store.client.list_collections()]
    assert len(names) == 1 and names[0].startswith("botreg-billing-")


def test_a_file_name_with_a_control_character_is_reported_not_stored(h: Harness) -> None:
    write(h.repo, "knowledge/billing/notes\x1b[31m.md", "# Notes\n\nText.\n")
    result = h.ingest("billing")
    assert result.errors == [
        {
            "path": "knowledge/billing/notes\\x1b[31m.md",
            "message": "file name with a control character: not ingested; rename the file",
        }
    ]
    assert result.files_processed == 3
    assert all("\x1b" not in path for path, _ in h.stored("billing"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_ingest_and_query_agree_on_unknown_and_invalid_domains(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(registry, "knowledge/billing\n/refunds.md", "# Refunds\n\nLook-alike text.\n")
    data = str(tmp_path / "data")
    common = ("--repo", str(registry), "--data-dir", data)
    code, out, err = run(capsys, "ingest", *common, "--format", "json")
    assert code == 1, err  # on main: exit 3 (a crash)
    results = {r["domain_id"]: r for r in json.loads(out)["results"]}
    assert results["billing"]["success"] and results["product"]["success"]
    assert results["billing\\n"]["errors"][0]["path"] == "knowledge/billing\\n/refunds.md"

    code, out, _ = run(capsys, "ingest", *common)
    assert code == 1
    [line] = [x for x in out.splitlines() if "refunds.md" in x]  # one line per failed file
    assert line.startswith("billing\\n: knowledge/billing\\n/refunds.md: invalid domain name")

    for command in (("ingest",), ("query", "refunds")):
        code, _, err = run(capsys, command[0], *common, "--domain", "billing\n", *command[1:])
        assert code == 2 and "invalid domain name(s): 'billing\\n'" in err, err
        code, _, err = run(capsys, command[0], *common, "--domain", "legal", *command[1:])
        assert code == 2  # on main, query answered 1 "has not been ingested"
        assert "unknown domain(s): legal (available: billing, product)" in err, err


def test_sync_survives_a_domain_named_with_a_newline(git_registry: Path, tmp_path: Path) -> None:
    write(git_registry, "knowledge/billing\n/refunds.md", "# Refunds\n\nLook-alike text.\n")
    git(git_registry, "add", "-A")
    commit(git_registry)
    h = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        result = h.sync()  # on main: InvalidArgumentError escaped the cycle
        assert result is not None
        # Whether the daemon applies the commit or refuses it (BR403 in validation),
        # the look-alike domain never reaches the ledger or the store.
        assert h.syncer.ledger.domain("billing\n") is None
        store = h.syncer._store
        names = (
            [str(getattr(c, "name", c)) for c in store.client.list_collections()] if store else []
        )
        assert all("\n" not in name for name in names)
    finally:
        h.close()
