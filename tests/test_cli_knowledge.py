"""`botreg ingest` and `botreg query`: output, exit codes, the data dir lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.datadir import DataDir
from helpers import write


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def repo(registry: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(registry.parent)
    return registry


def test_ingest_table_then_incremental_json(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ingest", "--repo", "registry")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == [
        "domain",
        "files",
        "skipped",
        "created",
        "deleted",
        "unchanged",
        "embedded",
        "errors",
        "seconds",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["billing", "product"]
    assert (Path(".botreg") / "ledger.sqlite").is_file()
    assert (Path(".botreg") / "chroma").is_dir()  # development: embedded store in the data dir
    code, out, _ = run(capsys, "ingest", "--repo", "registry", "--format", "json")
    doc = json.loads(out)
    assert code == 0
    assert [r["chunks_embedded"] for r in doc["results"]] == [0, 0]
    assert doc["results"][0]["files_skipped"] == 3 and doc["removed_domains"] == []


def test_ingest_one_domain_and_unknown_domain(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "ingest", "--repo", "registry", "--domain", "product", "--format", "json"
    )
    assert code == 0 and [r["domain_id"] for r in json.loads(out)["results"]] == ["product"]
    code, _, err = run(capsys, "ingest", "--repo", "registry", "--domain", "legal")
    assert code == 2 and "unknown domain(s): legal (available: billing, product)" in err


def test_ingest_reports_bad_files_with_exit_1(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, "knowledge/product/broken.json", "{")
    code, out, _ = run(capsys, "ingest", "--repo", "registry")
    assert code == 1
    assert "product: knowledge/product/broken.json: invalid JSON" in out


def test_removed_domain_is_dropped(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "ingest", "--repo", "registry")
    for path in sorted((repo / "knowledge/product").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (repo / "knowledge/product").rmdir()
    code, out, _ = run(capsys, "ingest", "--repo", "registry")
    assert code == 0 and "product: removed (no longer in the registry)" in out


def test_query_text_and_json(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "ingest", "--repo", "registry")
    code, out, _ = run(
        capsys,
        "query",
        "--repo",
        "registry",
        "--domain",
        "billing",
        "-k",
        "2",
        "Do you accept purchase orders?",
    )
    assert code == 0
    assert out.startswith("1. ") and "knowledge/billing/faq.md.gz  [Billing FAQ > Do you" in out
    code, out, _ = run(
        capsys,
        "query",
        "--repo",
        "registry",
        "--domain",
        "billing",
        "--format",
        "json",
        "-k",
        "3",
        "refund timelines",
    )
    results = json.loads(out)["results"]
    assert len(results) == 3
    assert set(results[0]) == {"id", "path", "heading", "text", "distance", "metadata"}
    assert results[0]["distance"] <= results[1]["distance"] <= results[2]["distance"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["query", "--repo", "registry", "--domain", "billing", "x"], 1, "has not been ingested"),
        (["query", "--repo", "registry", "--domain", "billing", "-k", "0", "x"], 2, "-k must be"),
        (["ingest", "--repo", "registry", "--env", "staging"], 2, "environment not found"),
        (["ingest", "--repo", "registry", "--env", "production"], 1, "CHROMA_HOST"),
    ],
)
def test_errors(
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CHROMA_HOST", raising=False)
    got, _, err = run(capsys, *args)
    assert got == code and message in err and "Traceback" not in err


def test_a_second_writer_is_refused_at_once(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with DataDir(".botreg").locked("another process"):
        code, _, err = run(capsys, "ingest", "--repo", "registry")
    assert code == 1 and "in use by another botreg process" in err


def test_query_text_escapes_terminal_controls(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A committed ESC or NUL never reaches the terminal as is (issue #9)."""
    write(repo, "knowledge/product/evil.txt", "Escape \x1b[31mred\x1b[0m and hello\x00world\n")
    assert run(capsys, "ingest", "--repo", "registry")[0] == 0
    code, out, _ = run(
        capsys, "query", "--repo", "registry", "--domain", "product", "-k", "20", "red hello"
    )
    assert code == 0 and "\\x1b[31mred" in out and "hello\\x00world" in out
    assert "\x1b" not in out and "\x00" not in out


def test_ingest_refuses_a_knowledge_file_holding_a_private_key(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ingest` runs without validation: a key split over chunks must not be stored."""
    import base64
    import random

    rng = random.Random(7)
    body = base64.b64encode(bytes(rng.randrange(256) for _ in range(6000))).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    write(
        repo,
        "knowledge/product/deploy.md",
        "# Deploy key\n\n```\n-----BEGIN RSA PRIVATE KEY-----\n"
        f"{lines}\n-----END RSA PRIVATE KEY-----\n```\n",
    )
    code, out, _ = run(capsys, "ingest", "--repo", "registry", "--format", "json")
    assert code == 1
    [error] = [e for r in json.loads(out)["results"] for e in r["errors"]]
    assert error["path"] == "knowledge/product/deploy.md" and "credential" in error["message"]
    code, out, _ = run(
        capsys, "query", "--repo", "registry", "--domain", "product", "-k", "50", "deploy key"
    )
    assert code == 0 and body[64:128] not in out and body[3000:3064] not in out


def test_ingest_into_a_moved_store_fills_it(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`botreg ingest` after the environment names another store path: the ledger's
    records described the old store, so every file was skipped as unchanged and the
    new store stayed empty."""
    assert run(capsys, "ingest", "--repo", "registry")[0] == 0
    env = repo / "environments/development.yaml"
    env.write_text(env.read_text().replace("path: chroma ", "path: chroma-moved "))
    code, out, err = run(capsys, "ingest", "--repo", "registry", "--format", "json")
    assert code == 0 and "the store moved" in err
    doc = json.loads(out)
    assert all(r["chunks_embedded"] > 0 for r in doc["results"])
    assert (Path(".botreg") / "chroma-moved").is_dir()
    code, out, _ = run(capsys, "query", "--repo", "registry", "--domain", "billing", "orders")
    assert code == 0 and out.startswith("1. ")


def test_ingest_into_a_store_moved_back_drops_what_was_deleted_meanwhile(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Store A, then B, a file deleted, then A again: A kept the deleted file's
    chunks (queries returned them). Now the ledger adopts A's chunks: stale ones go,
    nothing A holds is embedded again."""
    env = repo / "environments/development.yaml"
    assert run(capsys, "ingest", "--repo", "registry")[0] == 0
    env.write_text(env.read_text().replace("path: chroma ", "path: chroma-b "))
    assert run(capsys, "ingest", "--repo", "registry")[0] == 0
    (repo / "knowledge/product/release-notes.txt").unlink()
    assert run(capsys, "ingest", "--repo", "registry")[0] == 0
    env.write_text(env.read_text().replace("path: chroma-b ", "path: chroma "))
    code, out, err = run(capsys, "ingest", "--repo", "registry", "--format", "json")
    assert code == 0 and "the store moved" in err
    assert all(r["chunks_embedded"] == 0 for r in json.loads(out)["results"])
    code, out, _ = run(
        capsys,
        "query",
        "--repo",
        "registry",
        "--domain",
        "product",
        "-k",
        "50",
        "--format",
        "json",
        "release",
    )
    assert code == 0
    paths = {hit["path"] for hit in json.loads(out)["results"]}
    assert paths and not any(p.endswith("release-notes.txt") for p in paths)
