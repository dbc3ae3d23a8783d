"""`botreg validate`: every output format and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.validation.findings import RULES
from helpers import write

BOT = "bots/billing-assistant.yaml"


@pytest.fixture
def broken(registry: Path) -> Path:
    """A registry with one error (unknown key) and one warning (unsupported file)."""
    path = registry / BOT
    path.write_text(path.read_text().replace("  temperature: 0.2\n", "  temprature: 0.2\n"))
    write(registry, "knowledge/product/scan.pdf", b"%PDF")
    return registry


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_text_output_and_exit_0(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--repo", str(registry))
    assert code == 0
    assert out.startswith("15 files: 15 valid, 0 invalid, 0 errors, 0 warnings (")


def test_text_findings_and_exit_1(broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--repo", str(broken))
    lines = out.splitlines()
    assert code == 1
    assert lines[0].startswith(
        f"{BOT}:9:3: BR202 llm: unknown key 'temprature': did you mean 'temperature'?"
    )
    assert lines[1] == (
        "knowledge/product/scan.pdf:1:1: BR506 warning: unsupported file type: it "
        "will not be ingested. Supported: .csv, .json, .markdown, .md, .txt, "
        ".yaml, .yml (and any of them + .gz)"
    )
    assert lines[2].startswith("16 files: 15 valid, 1 invalid, 1 error, 1 warning (")


def test_warnings_alone_exit_0(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(registry, "knowledge/product/scan.pdf", b"%PDF")
    code, out, _ = run(capsys, "validate", "--repo", str(registry))
    assert code == 0 and "BR506" in out


def test_json_output(broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--repo", str(broken), "--format", "json")
    doc = json.loads(out)
    assert code == 1
    first = doc["findings"][0]
    assert {k: first[k] for k in ("path", "line", "column", "code", "severity")} == {
        "path": BOT,
        "line": 9,
        "column": 3,
        "code": "BR202",
        "severity": "error",
    }
    assert first["pointer"] == "/llm/temprature"
    assert doc["findings"][1]["severity"] == "warning"
    assert doc["summary"]["files"] == 16
    assert doc["summary"]["errors"] == 1 and doc["summary"]["warnings"] == 1


def test_github_output_is_escaped(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the registry is outside the working directory: paths stay repository-relative
    write(
        registry,
        "bots/a,b.yaml",
        "name: x\nstatus: active\nllm: {provider: echo}\ndescription: x\n50%off: 1\n",
    )
    code, out, _ = run(capsys, "validate", "--repo", str(registry), "--format", "github")
    assert code == 1
    line = next(row for row in out.splitlines() if "BR202" in row)
    assert line.startswith("::error file=bots/a%2Cb.yaml,line=5,col=1,title=BR202 unknown-key::")
    assert "unknown key '50%25off'" in line
    assert out.splitlines()[-1].startswith("botreg: 16 files")


def test_github_is_chosen_under_github_actions(
    broken: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.chdir(broken.parent)
    _, out, _ = run(capsys, "validate", "--repo", "registry")
    assert out.startswith("::error file=registry/bots/billing-assistant.yaml,line=9,col=3,")
    assert "::warning file=registry/knowledge/product/scan.pdf" in out


def test_sarif_output(broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--repo", str(broken), "--format", "sarif")
    doc = json.loads(out)
    assert code == 1 and doc["version"] == "2.1.0"
    run_ = doc["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(RULES)
    result = run_["results"][0]
    assert result["ruleId"] == "BR202"
    assert rules[result["ruleIndex"]]["id"] == "BR202"
    loc = result["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == BOT
    assert loc["region"] == {"startLine": 9, "startColumn": 3}
    assert len(result["partialFingerprints"]["botregFinding/v1"]) == 64


def test_sarif_fingerprint_survives_moved_lines(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "validate", "--repo", str(broken), "--format", "sarif")
    before = json.loads(out)["runs"][0]["results"][0]
    path = broken / BOT
    path.write_text("# a new comment line\n" + path.read_text())
    _, out, _ = run(capsys, "validate", "--repo", str(broken), "--format", "sarif")
    after = json.loads(out)["runs"][0]["results"][0]
    assert after["locations"][0]["physicalLocation"]["region"]["startLine"] == 10
    assert after["partialFingerprints"] == before["partialFingerprints"]


def test_paths_relative_to_cwd(
    broken: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(broken)
    code, out, _ = run(capsys, "validate", "bots/product-guide.yaml")
    assert code == 0 and out.startswith("1 file: 1 valid")
    code, out, _ = run(capsys, "validate", BOT)
    assert code == 1 and "BR202" in out


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "--format", "xml"],
        ["validate", "--repo", "/nonexistent/registry"],
        ["validate", "no/such/file.yaml"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_2(
    registry: Path,
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(registry)
    code, _, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("botreg: error: ")
    assert "Traceback" not in err


def test_path_outside_the_repo_is_a_usage_error(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = write(tmp_path, "elsewhere.yaml", "a: 1\n")
    code, _, err = run(capsys, "validate", "--repo", str(registry), str(outside))
    assert code == 2 and "outside the registry" in err


def test_unexpected_error_exit_3_without_traceback(
    registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr("botreg.validation.runner.validate_registry", boom)
    code, _, err = run(capsys, "validate", "--repo", str(registry))
    assert code == 3
    assert "unexpected error: RuntimeError: kaput" in err and "Traceback" not in err


def test_ctrl_c_exit_130(
    registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("botreg.validation.runner.validate_registry", interrupted)
    code, _, _ = run(capsys, "validate", "--repo", str(registry))
    assert code == 130


def test_python_dash_m_and_help(registry: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "botreg", "validate", "--repo", str(registry)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "15 valid" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "botreg", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "validate" in proc.stdout


def test_validate_stays_light(registry: Path) -> None:
    """The hook path imports neither the store nor git nor Markdown parsing."""
    code = (
        "import sys\n"
        "from botreg.cli import main\n"
        f"rc = main(['validate', '--repo', {str(registry)!r}])\n"
        "heavy = {'chromadb', 'git', 'markdown_it', 'watchfiles', 'numpy', 'onnxruntime'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[-1] == "[]"


def test_a_folder_path_means_the_files_below_it(
    broken: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(broken)
    code, out, _ = run(capsys, "validate", "bots")
    assert code == 1 and out.splitlines()[-1].startswith("3 files: 2 valid, 1 invalid")
    code, out, _ = run(capsys, "validate", "environments/")
    assert code == 0 and out.startswith("2 files: 2 valid")


def test_public_api_is_pinned() -> None:
    import botreg

    for name in botreg.__all__:
        assert getattr(botreg, name) is not None, name
    with pytest.raises(AttributeError):
        _ = botreg.not_a_name  # type: ignore[attr-defined]


def test_cli_import_stays_light() -> None:
    """Importing the command line (every hook run does) pulls no HTTP, git or store code."""
    code = (
        "import sys\n"
        "import botreg.cli\n"
        "heavy = {'urllib.request', 'http.client', 'git', 'chromadb', 'jsonschema'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[-1] == "[]"


def test_a_deprecated_key_warns_with_its_line_and_fix(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # chunking.csv_rows_per_chunk has had no effect since a CSV row became a
    # chunk of its own (issue #13): accepted, so no registry breaks, but said.
    path = registry / "registry.yaml"
    text = path.read_text()
    assert "\nchunking:\n" in text
    path.write_text(text.replace("\nchunking:\n", "\nchunking:\n  csv_rows_per_chunk: 10\n", 1))
    line = path.read_text().splitlines().index("  csv_rows_per_chunk: 10") + 1
    code, out, _ = run(capsys, "validate", "--repo", str(registry))
    assert code == 0
    assert out.splitlines()[0] == (
        f"registry.yaml:{line}:3: BR204 warning: chunking.csv_rows_per_chunk: Deprecated: "
        "no effect since every CSV row became a chunk of its own (short rows are packed "
        "up to max_tokens); remove it."
    )
    assert RULES["BR204"].severity.value == "warning"
