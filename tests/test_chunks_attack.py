"""Issue #13's fresh-clone pass on the chunkers and `botreg chunks`: author, operator, attacker.

`botreg chunks` must show what ingestion stores (ids equal to a real ingest on
Chroma, the files ingestion refuses refused, the files it skips said so), never
put a raw control sequence or a credential on a terminal, never follow a link
out of the registry, and answer bad input with exit 1 or 2, never a traceback.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.knowledge.chunkers import chunk_file
from botreg.registry.layout import UNSAFE_CHARACTERS
from botreg.registry.settings import ChunkingSettings, Limits
from helpers import write
from knowledge_helpers import Harness

# A known credential shape (GitHub token): ingestion refuses a file holding one.
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def chunks_of(capsys: pytest.CaptureFixture[str], repo: Path, rel: str) -> tuple[int, str, str]:
    return run(capsys, "chunks", str(repo / rel), "--repo", str(repo))


def texts(path: str, content: str) -> list[str]:
    return [c.text for c in chunk_file(path, content.encode(), ChunkingSettings(), Limits())]


# --- the chunkers --------------------------------------------------------------------


def test_a_short_section_merged_after_a_table_keeps_its_heading() -> None:
    md = "# Guide\n\n## Plans\n\n| plan | seats |\n|---|---|\n| Team | 5 |\n\n### Notes\n\nShort.\n"
    (last,) = [t for t in texts("a.md", md) if "Short." in t]
    assert "Notes\nShort." in last  # merged into the row's chunk, under its own heading


def test_a_nested_mapping_merged_into_its_record_keeps_its_key() -> None:
    data = [{"name": "Widget", "price": 3, "dims": {"w": 1, "h": 2}}]
    (chunk,) = texts("items.json", json.dumps(data))
    assert chunk.endswith("dims\nw: 1\nh: 2")


def test_tiny_records_merged_together_are_not_given_headings() -> None:
    (chunk,) = texts("codes.csv", "code,label\nA,x\nB,y\n")
    assert chunk == "Codes\n\nlabel: x\ncode: A\n\nlabel: y\ncode: B"


# --- what the preview shows is what ingestion stores ---------------------------------

FILES = {
    "knowledge/docs/guide.md": "---\ntitle: Guide\n---\n# Guide\n\nIntro.\n\n## Plans\n\n"
    "| plan | price |\n|---|---|\n| Free | 0 |\n| Team | 10 |\n\n```bash\n# not a heading\n```\n",
    "knowledge/docs/items.json": json.dumps([{"name": "Widget", "tags": ["a", "b"]}, {"id": 2}]),
    "knowledge/docs/conf.yaml": "title: Config\nservers:\n  - name: alpha\n    port: 80\n",
    "knowledge/docs/catalog.csv": 'sku,name,notes\nA1,Widget,"line one\nline two"\nA2,,\n',
    "knowledge/docs/notes.txt": "First.\n\nSecond.\n\nSecond.\n",  # a repeated text
    "knowledge/docs/faq.md.gz": "",
}


def test_the_ids_of_every_file_type_are_the_ones_ingestion_stores(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for rel, content in FILES.items():
        write(
            registry, rel, gzip.compress(b"# FAQ\n\nAnswer.\n") if rel.endswith(".gz") else content
        )
    shown: dict[str, tuple[str, str]] = {}
    for rel in FILES:
        code, out, _ = run(
            capsys, "chunks", str(registry / rel), "--repo", str(registry), "--format", "json"
        )
        doc = json.loads(out)
        assert code == 0 and doc["ingested"] is True and doc["chunks"]
        shown.update({c["id"]: (rel, c["text"]) for c in doc["chunks"]})
    h = Harness(registry, tmp_path / "data")
    try:
        assert h.ingest("docs").success
        state = h.ledger.domain("docs")
        got = h.store.collection(state.collection, h.function).get(  # type: ignore[union-attr]
            include=["documents", "metadatas"]
        )
        stored = {
            i: (m["path"], d)
            for i, d, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        }
        assert shown == stored
    finally:
        h.ledger.close()


def test_a_file_ingestion_refuses_for_a_credential_is_refused_by_the_preview(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rel = "knowledge/docs/setup.md"
    write(registry, rel, f"# Setup\n\nClone with {TOKEN} then run it.\n")
    code, out, err = chunks_of(capsys, registry, rel)
    assert code == 1 and out == ""
    assert "inline credential" in err and "BR303" in err and TOKEN not in err
    h = Harness(registry, tmp_path / "data")
    try:
        result = h.ingest("docs")
        assert [e["path"] for e in result.errors] == [rel]  # the same verdict
    finally:
        h.ledger.close()


def test_a_password_in_a_url_is_stored_but_never_printed(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rel = "knowledge/docs/db.md"
    write(registry, rel, "# DB\n\nConnect to postgres://app:hunter2hunter2@db.example.com/prod.\n")
    code, out, _ = chunks_of(capsys, registry, rel)
    assert code == 0 and "hunter2hunter2" not in out and "db.example.com" in out


def test_a_file_the_domain_excludes_is_previewed_with_a_note(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(registry, "knowledge/docs/_domain.yaml", "exclude:\n  - drafts/**\n")
    write(registry, "knowledge/docs/drafts/wip.md", "# WIP\n\nNot yet.\n")
    write(registry, "knowledge/docs/live.md", "# Live\n\nServed.\n")
    code, out, err = run(
        capsys,
        "chunks",
        str(registry / "knowledge/docs/drafts/wip.md"),
        "--repo",
        str(registry),
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out)["ingested"] is False and json.loads(out)["chunks"]
    assert "not ingested: excluded by knowledge/docs/_domain.yaml" in err
    code, out, err = run(
        capsys,
        "chunks",
        str(registry / "knowledge/docs/live.md"),
        "--repo",
        str(registry),
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out)["ingested"] is True and err == ""


@pytest.mark.parametrize(
    ("rel", "message"),
    [
        ("knowledge/billing/_domain.yaml", "the domain's settings (_domain.yaml), not knowledge"),
        ("knowledge/docs/.draft.md", "a hidden file or folder"),
        ("knowledge/Billing Team/faq.md", "invalid domain name 'Billing Team'"),
        ("knowledge/docs/faq.pdf", "not a supported knowledge type"),
        ("knowledge/faq.md", "knowledge files are knowledge/DOMAIN/..."),
    ],
)
def test_files_ingestion_never_stores_are_usage_errors(
    registry: Path, capsys: pytest.CaptureFixture[str], rel: str, message: str
) -> None:
    if not (registry / rel).exists():
        write(registry, rel, "# A\n\nText.\n")
    code, out, err = chunks_of(capsys, registry, rel)
    assert (code, out) == (2, "") and message in err


# --- hostile names and text on a terminal --------------------------------------------

HOSTILE = "\x1b]0;pwned\x07 \x1b[2J \x1b[8mhidden\x1b[0m \x9b31m \u202eevil\u202c \x08\x7f"


def test_control_sequences_in_text_headings_and_columns_never_reach_the_terminal(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        registry,
        "knowledge/docs/a.md",
        f"# Title {HOSTILE}\n\nBody {HOSTILE}\n\n```\n\tindented\n```\n",
    )
    write(registry, "knowledge/docs/b.csv", f"name{HOSTILE},value\nx{HOSTILE},1\n")
    for rel in ("knowledge/docs/a.md", "knowledge/docs/b.csv"):
        code, out, _ = chunks_of(capsys, registry, rel)
        assert code == 0 and "\\x1b]0;pwned\\x07" in out
        assert not UNSAFE_CHARACTERS.search(out.replace("\n", "").replace("\t", ""))
    code, out, _ = chunks_of(capsys, registry, "knowledge/docs/a.md")
    assert "\n\tindented\n" in out  # tabs kept: code stays readable


def test_json_output_is_ascii_and_gives_back_the_text(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(registry, "knowledge/docs/a.md", f"# Rückgabe {HOSTILE}\n\nBody.\n")
    code, out, _ = run(
        capsys,
        "chunks",
        str(registry / "knowledge/docs/a.md"),
        "--repo",
        str(registry),
        "--format",
        "json",
    )
    assert code == 0 and out.isascii()
    heading = json.loads(out)["chunks"][0]["heading"]
    assert heading.startswith("Rückgabe \x1b]0;pwned\x07") and "\u202eevil" in heading


def test_a_file_name_with_an_escape_is_refused_with_the_escape_shown(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rel = "knowledge/docs/evil\x1b[31mname.md"
    write(registry, rel, "# A\n\nText.\n")
    code, out, err = chunks_of(capsys, registry, rel)
    assert (code, out) == (2, "") and "evil\\x1b[31mname.md" in err and "\x1b" not in err
    code, _, err = run(
        capsys, "chunks", str(registry / "knowledge/docs/x\x1b[2J.pdf"), "--repo", str(registry)
    )
    assert code == 2 and "\x1b" not in err


# --- links, `..`, directories --------------------------------------------------------


def test_a_link_given_as_path_is_never_followed(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "outside.md"
    secret.write_text("# Outside\n\nThe operator's private notes.\n")
    os.symlink(secret, registry / "knowledge/billing/outside.md")
    os.symlink(
        registry / "knowledge/billing/policies/refunds.md", registry / "knowledge/billing/alias.md"
    )
    os.symlink(tmp_path, registry / "knowledge/linked")
    for rel in (
        "knowledge/billing/outside.md",
        "knowledge/billing/alias.md",
        "knowledge/linked/outside.md",
    ):
        code, out, err = chunks_of(capsys, registry, rel)
        assert (code, out) == (1, "") and "symbolic link" in err, rel
        assert "private notes" not in err


def test_dot_dot_is_folded_within_the_registry_and_refused_beyond_it(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "chunks",
        str(registry / "knowledge/product/../billing/plans.json"),
        "--repo",
        str(registry),
    )
    assert code == 0 and out.startswith("knowledge/billing/plans.json (domain billing)")
    code, _, err = run(
        capsys, "chunks", str(registry / "knowledge/../../etc/passwd"), "--repo", str(registry)
    )
    assert code == 2 and "outside the registry" in err


def test_a_directory_is_a_usage_error(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (registry / "knowledge/docs/folder.md").mkdir(parents=True)
    code, _, err = chunks_of(capsys, registry, "knowledge/docs/folder.md")
    assert code == 2 and "a directory" in err


# --- hostile content: bounded, exit 1, no traceback ----------------------------------

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("rel", "content", "message"),
    [
        ("bomb.txt.gz", gzip.compress(b"a" * (60 << 20)), "decompresses beyond"),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
        ("laughs.yaml", LAUGHS.encode(), "aliases expand"),
        ("big.txt", b"word " * (1 << 20) + b"x", "over the limit"),
        ("latin1.txt", "café".encode("latin-1"), "not UTF-8"),
        ("broken.md.gz", b"not gzip at all", "not valid gzip"),
        ("cut.md.gz", gzip.compress(b"# A\n\ntext\n" * 100)[:30], "truncated gzip"),
    ],
)
def test_hostile_content_is_refused_with_its_reason(
    registry: Path, capsys: pytest.CaptureFixture[str], rel: str, content: bytes, message: str
) -> None:
    write(registry, f"knowledge/docs/{rel}", content)
    code, out, err = chunks_of(capsys, registry, f"knowledge/docs/{rel}")
    assert (code, out) == (1, "") and message in err and "Traceback" not in err


# --- renaming: a file titled by its name is new text; a titled one embeds nothing -----


def test_renaming_re_embeds_only_files_titled_by_their_name(registry: Path, tmp_path: Path) -> None:
    write(registry, "knowledge/docs/items.json", json.dumps([{"name": "Widget", "price": 3}]))
    write(registry, "knowledge/docs/notes.txt", "Plain notes.\n")
    write(registry, "knowledge/docs/guide.md", "# Operator guide\n\nHow to run it.\n")
    h = Harness(registry, tmp_path / "data")
    try:
        h.ingest("docs")
        for old, new in [
            ("items.json", "products.json"),
            ("notes.txt", "memo.txt"),
            ("guide.md", "ops/guide.md"),
        ]:
            (registry / "knowledge/docs" / new).parent.mkdir(exist_ok=True)
            (registry / "knowledge/docs" / old).rename(registry / "knowledge/docs" / new)
        result = h.ingest("docs")
        # items.json and notes.txt take their title from their name: new text, one chunk
        # each; guide.md keeps its H1 title, so its chunk (new id, new path) reuses its vector
        assert (result.chunks_created, result.chunks_deleted, result.chunks_embedded) == (3, 3, 2)
        h.assert_exact("docs")
    finally:
        h.ledger.close()


def test_a_pipe_is_refused_without_blocking(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(registry / "knowledge/billing/pipe.md")  # opening it to read would wait for a writer
    code, out, err = chunks_of(capsys, registry, "knowledge/billing/pipe.md")
    assert (code, out) == (2, "") and "not a regular file" in err


def test_a_file_git_ignores_is_previewed_with_a_note(
    git_registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(git_registry, ".gitignore", "knowledge/billing/local.md\n")
    write(git_registry, "knowledge/billing/local.md", "# Local\n\nMy notes.\n")
    code, out, err = chunks_of(capsys, git_registry, "knowledge/billing/local.md")
    assert code == 0 and "My notes." in out
    assert "not ingested: not among the registry's files (git ignores it)" in err


def test_a_path_below_repo_works_from_anywhere(
    registry: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, _ = run(capsys, "chunks", "knowledge/billing/plans.json", "--repo", str(registry))
    assert code == 0 and out.startswith("knowledge/billing/plans.json (domain billing)")
    code, _, err = run(capsys, "chunks", "../../outside.md", "--repo", str(registry))
    assert code == 2 and "outside the registry" in err


def test_the_count_reads_as_english(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(registry, "knowledge/docs/one.txt", "One paragraph.\n")
    _, out, _ = chunks_of(capsys, registry, "knowledge/docs/one.txt")
    assert out.startswith("knowledge/docs/one.txt (domain docs): 1 chunk\n")
