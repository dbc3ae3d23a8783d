"""`botreg init` and `botreg resolve`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.cli.init_cmd import INIT_COMMIT_MESSAGE, made_by_init
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
    assert f"Editor schemas: {target}/.schemas/" in out
    assert git(target, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert git(target, "status", "--porcelain") == ""
    assert git(target, "log", "--format=%s").strip() == INIT_COMMIT_MESSAGE
    tracked = git(target, "ls-files").split()
    assert ".pre-commit-config.yaml" in tracked and "bots/billing-assistant.yaml" in tracked
    assert ".schemas/bot.schema.json" in tracked
    assert validate(target).findings == []
    assert made_by_init(target)


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


def test_init_run_twice_reuses_the_registry_it_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's set-up command can be run again: the demo registry is reused as it is."""
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "init", "demo-registry")[0] == 0
    target = tmp_path / "demo-registry"
    bot = target / "bots/product-guide.yaml"
    bot.write_text(bot.read_text().replace("temperature: 0.5", "temperature: 0.6"))
    git(target, "commit", "-qam", "warmer")
    (target / "notes.txt").write_text("not committed\n")

    code, out, err = run(capsys, "init", "demo-registry")
    assert (code, err) == (0, "")
    assert out == (
        "Registry demo-registry exists (made by botreg init): reusing it as it is.\n"
        "Next: cd demo-registry && pre-commit install --install-hooks && botreg validate\n"
    )
    assert git(target, "log", "--format=%s").splitlines() == ["warmer", INIT_COMMIT_MESSAGE]
    assert "temperature: 0.6" in bot.read_text()
    assert (target / "notes.txt").read_text() == "not committed\n"


def test_init_reuse_says_when_the_editor_schemas_are_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "demo"
    assert run(capsys, "init", str(target))[0] == 0
    (target / ".schemas/bot.schema.json").write_text("{}\n")
    code, out, _ = run(capsys, "init", str(target))
    assert code == 0 and "reusing it" in out
    assert f"run `botreg schemas --repo {target} --write` and commit them" in out
    assert (target / ".schemas/bot.schema.json").read_text() == "{}\n"  # reused as it is


@pytest.mark.parametrize(
    "made",
    [
        "a registry whose first commit is someone else's",
        "an init repository without registry.yaml",
        "a folder with registry.yaml and no git",
    ],
)
def test_init_refuses_a_non_empty_directory_it_did_not_make(
    git_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], made: str
) -> None:
    target = git_registry
    if made == "an init repository without registry.yaml":
        target = tmp_path / "init-made"
        assert run(capsys, "init", str(target))[0] == 0
        (target / "registry.yaml").unlink()
    elif made == "a folder with registry.yaml and no git":
        target = tmp_path / "plain"
        target.mkdir()
        (target / "registry.yaml").write_text("format_version: 1\n")
    before = sorted(p.name for p in target.iterdir())
    code, _, err = run(capsys, "init", str(target))
    assert code == 2
    assert "exists and is not an empty directory, nor a registry made by botreg init" in err
    assert sorted(p.name for p in target.iterdir()) == before
    assert not made_by_init(target)


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
    assert config["llm"]["endpoint"] == {"base_url": "https://api.anthropic.com", "api_key": "***"}
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


@pytest.mark.parametrize("bot", ["billing-assistant", "product-guide", "internal-helpdesk"])
def test_the_development_environment_resolves_without_secrets(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    bot: str,
) -> None:
    """The tour's last step on a fresh machine: no variable set, exit 0, no key invented."""
    monkeypatch.chdir(tmp_path)
    assert main(["init", "my-registry"]) == 0
    monkeypatch.chdir(tmp_path / "my-registry")
    for name in list(os.environ):
        if name.endswith(("_KEY", "_TOKEN", "_URL", "_PASSWORD", "_HOST", "_USER", "_DIR")):
            monkeypatch.delenv(name)
    capsys.readouterr()
    code, out, err = run(capsys, "resolve", bot, "--env", "development", "--format", "json")
    assert (code, err) == (0, "")
    llm = json.loads(out)["llm"]
    if bot != "internal-helpdesk":
        assert llm["endpoint"]["api_key"] == ""  # unset: empty, not a made-up key
    # production still needs its secrets
    code, _, err = run(capsys, "resolve", bot, "--env", "production")
    assert code == 1 and "not set and without default" in err


def test_resolve_missing_variable_is_a_clear_error(
    registry: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("ANTHROPIC_API_KEY", "PG_HOST", "PG_USER", "PG_PASSWORD", "BILLING_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    code, _, err = run(
        capsys, "resolve", "billing-assistant", "--env", "production", "--repo", str(registry)
    )
    assert code == 1
    assert "ANTHROPIC_API_KEY (at llm.endpoint.api_key)" in err
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
