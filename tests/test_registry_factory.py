"""create_registry_backend and GitRegistryAdapter (the seed's factory and adapter)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from botreg.api import (
    DataKnobsRegistryAdapter,
    GitRegistryAdapter,
    GitRegistryBackend,
    HTTPRegistryBackend,
    InMemoryBackend,
    create_registry_backend,
)
from botreg.api import factory as factory_module
from botreg.errors import UsageError
from conftest import git


def test_memory_and_git_backends(git_registry: Path, tmp_path: Path) -> None:
    memory = create_registry_backend("memory", {})
    assert isinstance(memory, InMemoryBackend)
    assert isinstance(create_registry_backend("memory"), InMemoryBackend)

    async def scenario() -> None:
        backend = create_registry_backend("git", {"repo": str(git_registry), "revision": "main"})
        assert isinstance(backend, GitRegistryBackend)
        await backend.initialize()
        assert await backend.list_ids() == ["billing-assistant", "product-guide"]
        await backend.register("from-factory", {"name": "Echo", "llm": {"provider": "echo"}})
        assert git(git_registry, "log", "-1", "--format=%s").strip() == "Register bot from-factory"
        await backend.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    reader = create_registry_backend("git", {"data_dir": tmp_path / "data"})
    assert isinstance(reader, GitRegistryBackend) and reader.data_dir == tmp_path / "data"


@pytest.mark.parametrize("kind", ["postgres", "sqlite", "s3", "file", "POSTGRES"])
def test_the_seeds_databases_say_git_replaces_them(kind: str) -> None:
    with pytest.raises(ValueError, match="replaced by git") as info:
        create_registry_backend(kind, {"host": "localhost", "database": "myapp"})
    assert "docs/python-api.md" in str(info.value) and isinstance(info.value, UsageError)
    with pytest.raises(ValueError, match="replaced by git"):
        DataKnobsRegistryAdapter(backend_type=kind, backend_config={"host": "localhost"})


def test_bad_configs_name_what_to_fix() -> None:
    with pytest.raises(ValueError, match=r"unknown registry backend 'kafka'.*'memory', 'git'"):
        create_registry_backend("kafka", {})
    with pytest.raises(ValueError, match="exactly one of 'repo'"):
        create_registry_backend("git", {})
    with pytest.raises(ValueError, match=r"unknown git registry backend option\(s\): table"):
        create_registry_backend("git", {"repo": ".", "table": "bot_configs"})
    with pytest.raises(ValueError, match="unknown memory registry backend option"):
        create_registry_backend("memory", {"size": 1})
    with pytest.raises(ValueError, match="needs 'base_url'"):
        create_registry_backend("http", {"auth_token": "secret"})


def test_http_backend_from_the_seeds_config() -> None:
    backend = create_registry_backend(
        "http", {"base_url": "http://daemon:8080", "auth_token": "secret-token", "timeout": 5}
    )
    assert isinstance(backend, HTTPRegistryBackend)
    assert "secret-token" not in repr(backend)


class NewShape:
    """The constructor the seed documents: base_url, auth_header, timeout."""

    def __init__(self, base_url: str, auth_header: str | None = None, timeout: float = 30) -> None:
        self.args: dict[str, Any] = {
            "base_url": base_url,
            "auth_header": auth_header,
            "timeout": timeout,
        }


class OldShape:
    """A url and a bearer token."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10) -> None:
        self.args: dict[str, Any] = {"url": url, "token": token, "timeout": timeout}


def test_http_options_reach_either_constructor_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    from botreg.api import http_backend

    monkeypatch.setattr(http_backend, "HTTPRegistryBackend", NewShape)
    made: Any = factory_module.create_registry_backend(
        "http", {"base_url": "https://cfg/api/v1", "auth_token": "t0k", "timeout": 30}
    )
    assert made.args == {
        "base_url": "https://cfg/api/v1",
        "auth_header": "Bearer t0k",
        "timeout": 30,
    }
    made = create_registry_backend(
        "http", {"base_url": "https://cfg", "auth_header": "Bearer token123"}
    )
    assert made.args["auth_header"] == "Bearer token123"

    monkeypatch.setattr(http_backend, "HTTPRegistryBackend", OldShape)
    made = create_registry_backend(
        "http", {"base_url": "https://cfg", "auth_header": "Bearer token123", "timeout": 3}
    )
    assert made.args == {"url": "https://cfg", "token": "token123", "timeout": 3}
    with pytest.raises(ValueError, match="'Bearer <token>'"):
        create_registry_backend("http", {"base_url": "https://cfg", "auth_header": "Basic eA=="})
    with pytest.raises(ValueError, match="not both"):
        create_registry_backend(
            "http", {"base_url": "https://cfg", "auth_header": "Bearer a", "auth_token": "b"}
        )


def test_the_adapter_is_a_git_backend_with_the_seeds_constructor(git_registry: Path) -> None:
    assert DataKnobsRegistryAdapter is GitRegistryAdapter

    async def scenario() -> None:
        adapter = DataKnobsRegistryAdapter(
            backend_type="git", backend_config={"repo": git_registry}
        )
        assert isinstance(adapter, GitRegistryBackend)
        await adapter.initialize()
        assert await adapter.count() == 2
        await adapter.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    with pytest.raises(ValueError, match="InMemoryBackend"):
        GitRegistryAdapter(backend_type="memory")
    with pytest.raises(ValueError, match="no database to pass"):
        GitRegistryAdapter(database=object())
    with pytest.raises(ValueError, match="exactly one of 'repo'"):
        GitRegistryAdapter()
