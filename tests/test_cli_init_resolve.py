"""`botreg init` and `botreg resolve`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.errors import ResolutionError
from botreg.resolve import expand_variables, resolve_config
from conftest import git
from helpers import validate


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_creates_a_committed_valid_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "my-registry"
    code, out, _ = run(capsys, "init", str(target))
    assert code == 0 and "Created registry" in out
    assert git(target, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert git(target, "status", "--porcelain") == ""
    tracked = git(target, "ls-files").split()
    assert ".pre-commit-config.yaml" in tracked and "bots/billing-assistant.yaml" in tracked
    assert validate(target).findings == []


def test_init_refuses_a_non_empty_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "init", str(tmp_path / "x"))
    assert code == 2 and "not an empty directory" in err
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_init_into_an_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, _, _ = run(capsys, "init", str(tmp_path / "empty"))
    assert code == 0 and (tmp_path / "empty" / "registry.yaml").is_file()


def test_resolve_masks_secrets(
    registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real-secret-value-0123456789")
    monkeypatch.delenv("BILLING_API_TOKEN", raising=False)
    code, out, _ = run(
        capsys,
        "resolve",
        "billing-assistant",
        "--env",
        "development",
        "--repo",
        str(registry),
        "--format",
        "json",
    )
    assert code == 0
    config = json.loads(out)
    assert config["llm"]["api_key"] == "***"
    assert config["tools"][0]["endpoint"] == {"base_url": "http://localhost:8081", "token": "***"}
    assert config["conversation_storage"] == {
        "backend": "sqlite",
        "path": ".botreg/conversations.db",
    }
    assert "sk-ant-real" not in out


def test_resolve_show_secrets_and_yaml(
    registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real-secret-value-0123456789")
    code, out, _ = run(
        capsys,
        "resolve",
        "billing-assistant",
        "--env",
        "development",
        "--repo",
        str(registry),
        "--show-secrets",
    )
    assert code == 0
    assert "api_key: sk-ant-real-secret-value-0123456789" in out
    assert "token: dev-token" in out


def test_resolve_missing_variable_is_a_clear_error(
    registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("ANTHROPIC_API_KEY", "PG_HOST", "PG_USER", "PG_PASSWORD", "BILLING_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    code, _, err = run(
        capsys, "resolve", "billing-assistant", "--env", "production", "--repo", str(registry)
    )
    assert code == 1
    assert "ANTHROPIC_API_KEY (at llm.api_key)" in err
    assert "PG_HOST (at conversation_storage.host)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "--env", "development"], "bot not found: bots/nope.yaml"),
        (["billing-assistant", "--env", "staging"], "available: development, production"),
    ],
)
def test_resolve_unknown_bot_or_env(
    registry: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(capsys, "resolve", *args, "--repo", str(registry))
    assert code == 2 and message in err


def test_resolve_broken_bot_points_at_validate(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (registry / "bots/product-guide.yaml").write_text("name: [\n")
    code, _, err = run(
        capsys, "resolve", "product-guide", "--env", "development", "--repo", str(registry)
    )
    assert code == 1 and "bots/product-guide.yaml:" in err and "botreg validate" in err


def test_expand_variables_rules() -> None:
    env = {"HOST": "db", "EMPTY": "", "PORT": "6543"}
    data = {
        "a": "${HOST}",
        "b": "${MISSING:fallback}",
        "c": "${EMPTY:used}",
        "d": "${PORT}",
        "e": "${NOPE:5432}",
        "f": "x-${HOST}-y",
        "g": "$${HOST}",
        "h": "${FLAG:true}",
        "i": ["${HOST}"],
    }
    assert expand_variables(data, env) == {
        "a": "db",
        "b": "fallback",
        "c": "used",
        "d": 6543,
        "e": 5432,
        "f": "x-db-y",
        "g": "${HOST}",
        "h": True,
        "i": ["db"],
    }


def test_resolve_config_reports_every_missing_resource() -> None:
    config = {
        "x": {"$resource": "a", "type": "databases"},
        "y": [{"$resource": "b", "type": "queues"}],
    }
    with pytest.raises(ResolutionError) as info:
        resolve_config(config, {"resources": {"databases": {}}}, env={})
    assert "x -> resources.databases.a" in str(info.value)
    assert "y[0] -> resources.queues.b" in str(info.value)
