"""Each check of the validator, with a failing and a passing example."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from botreg.registry.yamlio import MAX_EXPANDED_NODES
from helpers import codes, validate, write

BOT = "bots/billing-assistant.yaml"


def test_template_is_valid(registry: Path) -> None:
    report = validate(registry)
    assert report.findings == []
    assert len(report.files) >= 15


# --- syntax -------------------------------------------------------------------------------


def test_invalid_yaml_points_at_the_problem(registry: Path) -> None:
    write(registry, BOT, "name: x\nstatus: [active\nllm: {}\n")
    report = validate(registry)
    [finding] = report.findings
    assert (finding.code, finding.path) == ("BR101", BOT)
    assert finding.line in (2, 3)


def test_duplicate_keys_report_both_locations(registry: Path) -> None:
    write(registry, BOT, "name: a\nstatus: active\nllm: {provider: echo}\nname: b\n")
    [finding] = validate(registry).findings
    assert finding.code == "BR102"
    assert (finding.line, finding.column) == (4, 1)
    assert "first defined at line 1, column 1" in finding.message


def test_every_duplicate_key_is_reported(registry: Path) -> None:
    write(registry, BOT, "a: 1\nb:\n  c: 1\n  c: 2\na: 2\n")
    found = [(f.code, f.line) for f in validate(registry).findings]
    assert found == [("BR102", 4), ("BR102", 5)]


def test_non_utf8_bot_file(registry: Path) -> None:
    write(registry, BOT, b"name: caf\xe9\nstatus: active\n")
    [finding] = validate(registry).findings
    assert (finding.code, finding.line, finding.column) == ("BR103", 1, 10)


def test_billion_laughs_is_bounded(registry: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    write(registry, BOT, "\n".join(lines) + "\n")
    [finding] = validate(registry).findings
    assert finding.code == "BR104"
    assert str(MAX_EXPANDED_NODES) in finding.message


def test_small_aliases_are_fine(registry: Path) -> None:
    write(registry, "knowledge/product/anchors.yaml", "base: &b {a: 1}\nother: *b\n")
    assert validate(registry).findings == []


def test_several_documents_are_a_syntax_error(registry: Path) -> None:
    write(registry, BOT, "name: a\n---\nname: b\n")
    assert codes(validate(registry)) == ["BR101"]


# --- portability --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("/home/alice/prompts/billing.txt", "BR301"),
        ("C:\\\\Users\\\\alice\\\\bot", "BR301"),
        ("~/bots/prompt.txt", "BR301"),
        ("http://localhost:8080/v1", "BR302"),
        ("http://127.0.0.1:9000", "BR302"),
        ("sk-proj-abcdefghijklmnopqrstuvwxyz0123", "BR303"),
        ("AKIAIOSFODNN7EXAMPLE", "BR303"),
        ("ghp_" + "a1B2" * 9, "BR303"),
        ("postgres://bots:hunter2@db.internal/bots", "BR303"),
    ],
)
def test_non_portable_values_in_a_bot(registry: Path, value: str, code: str) -> None:
    path = registry / BOT
    path.write_text(path.read_text() + f'  notes: "{value}"\n')  # under metadata
    report = validate(registry)
    assert codes(report) == [code]
    assert value.replace("\\\\", "\\") not in report.findings[0].message  # never echo it


def test_high_entropy_value_under_secret_key(registry: Path) -> None:
    path = registry / "environments/production.yaml"
    text = path.read_text().replace("token: ${BILLING_API_TOKEN}", "token: Zq8x7PkWm2Rt9LbV4nCs")
    path.write_text(text)
    report = validate(registry)
    assert codes(report) == ["BR304"]
    assert report.findings[0].path == "environments/production.yaml"


@pytest.mark.parametrize(
    "value",
    [
        "${OPENAI_API_KEY}",
        "${SERVICE_URL:http://localhost:8080}",
        "${DATA_DIR:/var/lib/botreg}/chroma",
        "https://api.example.com/v1",
        "relative/path.txt",
        "/invoices/{invoice_number}",
    ],
)
def test_portable_values_pass(registry: Path, value: str) -> None:
    path = registry / BOT
    path.write_text(path.read_text() + f'  notes: "{value}"\n')
    assert validate(registry).findings == []


def test_credential_in_a_variable_default_is_caught(registry: Path) -> None:
    path = registry / "environments/development.yaml"
    path.write_text(
        path.read_text().replace(
            "${ANTHROPIC_API_KEY:}", "${ANTHROPIC_API_KEY:sk-ant-abcdefghijklmnopqrstuvwxyz}"
        )
    )
    assert "BR303" in codes(validate(registry))


# --- cross-file ---------------------------------------------------------------------------


def test_resource_missing_in_one_environment(registry: Path) -> None:
    path = registry / "environments/production.yaml"
    path.write_text(
        path.read_text().replace(
            "  vector_stores:\n    memory-vectors:\n"
            "      backend: chroma\n      host: ${CHROMA_HOST}\n",
            "",
        )
    )
    report = validate(registry)
    [finding] = report.findings
    assert finding.code == "BR401"
    assert finding.path == "bots/internal-helpdesk.yaml"
    assert "environments/production.yaml" in finding.message
    assert (finding.line, finding.column) == (21, 16)  # the $resource value


def test_unknown_domain(registry: Path) -> None:
    path = registry / BOT
    path.write_text(path.read_text().replace("domains: [billing]", "domains: [billing, legal]"))
    [finding] = validate(registry).findings
    assert finding.code == "BR402"
    assert "knowledge/legal/" in finding.message


def test_knowledge_search_tool_domain_is_checked(registry: Path) -> None:
    path = registry / "bots/product-guide.yaml"
    path.write_text(path.read_text().replace("    domain: product", "    domain: manuals"))
    assert codes(validate(registry)) == ["BR402"]


def test_bot_id_rules(registry: Path) -> None:
    (registry / BOT).rename(registry / "bots/Billing_Assistant.yaml")
    write(
        registry, "bots/other.yaml", "id: another\nname: x\nstatus: active\nllm: {provider: echo}\n"
    )
    report = validate(registry)
    assert codes(report, "bots/Billing_Assistant.yaml") == ["BR403"]
    assert codes(report, "bots/other.yaml") == ["BR404"]


def test_environment_name_must_match_file(registry: Path) -> None:
    path = registry / "environments/production.yaml"
    path.write_text(path.read_text().replace("name: production", "name: prod"))
    assert codes(validate(registry)) == ["BR404"]


def test_unknown_top_level_folder_and_extra_folders(registry: Path) -> None:
    write(registry, "docs/notes.md", "# notes\n")
    assert codes(validate(registry)) == ["BR405"]
    path = registry / "registry.yaml"
    path.write_text(path.read_text() + "layout:\n  extra_folders: [docs]\n")
    assert validate(registry).findings == []


def test_misplaced_files(registry: Path) -> None:
    write(registry, "bots/team/nested.yaml", "name: x\n")
    write(registry, "bots/readme.md", "x\n")
    write(registry, "environments/staging.yml", "name: staging\n")
    write(registry, "knowledge/loose.md", "# x\n")
    report = validate(registry)
    assert sorted(codes(report)) == ["BR406"] * 4


def test_hidden_files_are_ignored(registry: Path) -> None:
    write(registry, "bots/.gitkeep", "")
    write(registry, ".github/workflows/x.yml", "on: push\n")
    assert validate(registry).findings == []


def test_missing_registry_file_and_environments(registry: Path) -> None:
    (registry / "registry.yaml").unlink()
    for env in (registry / "environments").iterdir():
        env.unlink()
    report = validate(registry)
    assert sorted(codes(report)) == ["BR407", "BR408"]
    assert report.errors == 1 and report.warnings == 1


# --- knowledge files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "code", "line"),
    [
        ("bad.json", '{\n  "a": 1,\n}\n', "BR105", 3),
        ("dup.json", '{"a": 1, "a": 2}', "BR102", 1),
        ("bad.yaml", "a: [1\n", "BR101", 2),
        ("ragged.csv", "a,b\n1,2\n3,4,5\n", "BR106", 3),
        ("quote.csv", 'a,b\n"unterminated,1\n', "BR106", 2),
        ("latin1.md", b"# Caf\xe9\n", "BR103", 1),
        ("empty.txt", "  \n", "BR501", 1),
        ("scan.pdf", b"%PDF-1.4", "BR506", 1),
    ],
)
def test_knowledge_file_checks(
    registry: Path, name: str, content: str | bytes, code: str, line: int
) -> None:
    write(registry, f"knowledge/product/{name}", content)
    [finding] = validate(registry).findings
    assert (finding.code, finding.line) == (code, line)


def test_csv_quoting_is_understood(registry: Path) -> None:
    write(registry, "knowledge/product/q.csv", 'a,b\n"x, y","multi\nline"\n')
    assert validate(registry).findings == []


def test_gzip_files_are_checked_as_their_inner_type(registry: Path) -> None:
    write(registry, "knowledge/product/data.json.gz", gzip.compress(b'{"a": }'))
    [finding] = validate(registry).findings
    assert finding.code == "BR105"
    assert "decompressed" in finding.message


def test_gzip_bomb_is_refused_without_inflating_it(registry: Path) -> None:
    write(registry, "knowledge/product/bomb.txt.gz", gzip.compress(b"0" * 20_000_000))
    [finding] = validate(registry).findings
    assert finding.code == "BR503"


def test_corrupt_and_truncated_gzip(registry: Path) -> None:
    data = gzip.compress(b"# hello\n" * 100)
    write(registry, "knowledge/product/a.md.gz", b"not gzip at all")
    write(registry, "knowledge/product/b.md.gz", data[: len(data) // 2])
    assert codes(validate(registry)) == ["BR502", "BR502"]


def test_file_size_limit_from_registry_yaml(registry: Path) -> None:
    path = registry / "registry.yaml"
    path.write_text(path.read_text().replace("max_file_bytes: 5242880", "max_file_bytes: 2048"))
    write(registry, "knowledge/product/big.txt", "word " * 1000)
    report = validate(registry)
    assert codes(report) == ["BR504"]
    assert "2048" in report.findings[0].message


def test_symlinks_are_errors(registry: Path, tmp_path: Path) -> None:
    outside = write(tmp_path, "secret.txt", "top secret\n")
    os.symlink(outside, registry / "knowledge/product/link.txt")
    os.symlink(registry / "knowledge/billing", registry / "knowledge/product/dir-link")
    report = validate(registry)
    assert codes(report) == ["BR505", "BR505"]


# --- suppression and paths ----------------------------------------------------------------


def test_ignore_comment_silences_one_code_on_its_line(registry: Path) -> None:
    path = registry / BOT
    path.write_text(
        path.read_text() + '  doc: "/srv/docs/billing"  # botreg: ignore[BR301]\n'
        '  other: "/srv/docs/other"  # botreg: ignore[BR302]\n'
    )
    report = validate(registry)
    other_line = (
        path.read_text().splitlines().index('  other: "/srv/docs/other"  # botreg: ignore[BR302]')
        + 1
    )
    assert [(f.code, f.line) for f in report.findings] == [("BR301", other_line)]


def test_paths_limit_the_report_but_not_the_cross_file_view(registry: Path) -> None:
    broken = registry / "bots/product-guide.yaml"
    broken.write_text(broken.read_text().replace("status: active", "status: maybe"))
    report = validate(registry, [BOT])
    assert report.findings == []
    assert report.files == [BOT]
    # an environment change is checked against every bot
    env = registry / "environments/production.yaml"
    env.write_text(
        env.read_text().replace(
            "    conversations:\n      backend: postgres", "    chats:\n      backend: postgres"
        )
    )
    report = validate(registry, ["environments/production.yaml"])
    assert sorted({f.path for f in report.findings}) == [
        "bots/billing-assistant.yaml",
        "bots/product-guide.yaml",
    ]
    assert set(codes(report)) == {"BR401"}
