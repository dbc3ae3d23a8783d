"""The read model's index (issue #10, item 5): bot id -> blob -> parsed and resolved config.

Observed on main: `GET /bots/{id}` built every bot, and `GitRegistryBackend`
re-parsed the whole `bots/` tree for each bot (quadratic: 8 to 10 s for
`list_active` or a poll at 1,000 bots). The index is moved per commit by the
trees' difference and parses a file once per blob id; these tests count parses
(the loader is wrapped) and check every answer against a fresh full load.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from botreg import CachingRegistryManager, GitRegistryBackend, HotReloadManager, ReloadMode
from botreg.api.git_backend import applied_commit
from botreg.daemon.metrics import Metrics
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import SyncOptions
from botreg.registry import index as index_module
from botreg.registry.index import IndexSnapshot, RegistryIndex, ResolvedBots
from botreg.secrets import dumps_strict, mask_config
from conftest import git as run_git
from helpers import write
from sync_helpers import SyncHarness, commit

GUIDE = "bots/product-guide.yaml"


class Parses:
    """Counts bot files parsed by the index (wraps its loader)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = index_module.load_fast

        def counting(text: str, bounds: Any = None) -> Any:
            self.count += 1
            return real(text, bounds)

        monkeypatch.setattr(index_module, "load_fast", counting)

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Parses:
    return Parses(monkeypatch)


@pytest.fixture
def synced(git_registry: Path, tmp_path: Path) -> Iterator[SyncHarness]:
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    assert harness.sync().result == "synced"
    yield harness
    harness.close()


def _edit(repo: Path, rel: str, old: str, new: str) -> None:
    path = repo / rel
    text = path.read_text()
    assert old in text, (rel, old)
    path.write_text(text.replace(old, new))


def _applied(repo: Path, synced: SyncHarness) -> bool:
    """Commit what changed in `repo` and let the daemon apply it."""
    commit(repo)
    return bool(synced.sync().result == "synced")


def _fresh(repo: Path, commit_id: str) -> IndexSnapshot:
    """A full load of a commit by a new index: the oracle for a moved one."""
    repository = git.Repo(repo)
    try:
        return RegistryIndex(repository).update(commit_id)
    finally:
        repository.close()


def _same(moved: IndexSnapshot, fresh: IndexSnapshot) -> None:
    assert moved.commit == fresh.commit
    assert moved.ids == fresh.ids == tuple(sorted(fresh.bots))
    assert {b: (e.blob, e.config) for b, e in moved.bots.items()} == {
        b: (e.blob, e.config) for b, e in fresh.bots.items()
    }
    assert dict(moved.environments) == dict(fresh.environments)


# --- the index over commits --------------------------------------------------------------


def test_the_index_follows_add_modify_delete_and_rename(git_registry: Path, parses: Parses) -> None:
    repo = git_registry
    repository = git.Repo(repo)
    index = RegistryIndex(repository)
    first = run_git(repo, "rev-parse", "HEAD").strip()
    start = index.update(first)
    assert start.ids == ("billing-assistant", "internal-helpdesk", "product-guide")
    assert start.changed == set(start.ids) and parses.take() == 3
    assert set(start.environments) == {"development", "production"}
    assert index.update(first) is start and parses.take() == 0  # same commit: nothing read

    # modify one, add one (a copy of another file: same blob), delete one
    _edit(repo, GUIDE, "temperature: 0.5", "temperature: 0.7")
    write(repo, "bots/copy-of-billing.yaml", (repo / "bots/billing-assistant.yaml").read_text())
    (repo / "bots/internal-helpdesk.yaml").unlink()
    write(repo, "bots/nested/not-a-bot.yaml", "name: nested\n")  # bots are direct children
    write(repo, "bots/notes.txt", "not a bot\n")
    second = commit(repo, "modify, add, delete")
    moved = index.update(second)
    assert moved.ids == ("billing-assistant", "copy-of-billing", "product-guide")
    assert moved.changed == {"product-guide", "copy-of-billing", "internal-helpdesk"}
    assert parses.take() == 2  # the modified file and the new blob; the others are reused
    assert moved.bots["product-guide"].config["llm"]["temperature"] == 0.7  # type: ignore[index]
    assert moved.bots["billing-assistant"] is start.bots["billing-assistant"]  # not re-read
    _same(moved, _fresh(repo, second))
    parses.take()  # the oracle's parses
    assert start.ids == ("billing-assistant", "internal-helpdesk", "product-guide")  # immutable

    # rename: the old id goes, the new one comes with the same blob: nothing parsed
    run_git(repo, "mv", "bots/copy-of-billing.yaml", "bots/renamed.yaml")
    third = commit(repo, "rename")
    renamed = index.update(third)
    assert renamed.ids == ("billing-assistant", "product-guide", "renamed")
    assert renamed.changed == {"copy-of-billing", "renamed"}
    assert renamed.bots["renamed"].config == renamed.bots["billing-assistant"].config
    assert parses.take() == 0
    _same(renamed, _fresh(repo, third))
    parses.take()

    # a file that does not load is indexed (its id is listed) with no config
    write(repo, "bots/broken.yaml", "name: [\n")
    fourth = commit(repo, "broken")
    broken = index.update(fourth)
    assert "broken" in broken.ids and broken.bots["broken"].config is None
    assert parses.take() == 1

    # backwards (a rewritten history) and an unrelated jump are differences too
    _same(index.update(first), _fresh(repo, first))
    _same(index.update(fourth), _fresh(repo, fourth))
    repository.close()


def test_an_indexed_commit_pruned_from_the_repository_means_a_full_load(
    git_registry: Path, parses: Parses
) -> None:
    repo = git_registry
    repository = git.Repo(repo)
    index = RegistryIndex(repository)
    base = run_git(repo, "rev-parse", "HEAD").strip()
    _edit(repo, GUIDE, "temperature: 0.5", "temperature: 0.7")
    index.update(commit(repo, "to be dropped"))
    run_git(repo, "reset", "-q", "--hard", base)  # a force-push, then the mirror's gc
    run_git(repo, "reflog", "expire", "--expire=now", "--all")
    run_git(repo, "gc", "-q", "--prune=now")
    write(repo, "bots/new-bot.yaml", "name: New\n")
    head = commit(repo, "another history")
    parses.take()
    _same(index.update(head), _fresh(repo, head))
    assert parses.take() == 2 * 4  # a full load of 4 bot files, and the oracle's
    repository.close()


def test_an_environment_change_is_tracked_by_blob(git_registry: Path) -> None:
    repo = git_registry
    repository = git.Repo(repo)
    index = RegistryIndex(repository)
    before = index.update(run_git(repo, "rev-parse", "HEAD").strip())
    _edit(repo, "environments/development.yaml", "/conversations.db", "/chats.db")
    (repo / "environments/production.yaml").unlink()
    moved = index.update(commit(repo, "environments"))
    assert set(moved.environments) == {"development"}
    assert moved.environments["development"] != before.environments["development"]
    assert moved.changed == set() and moved.bots == before.bots  # no bot file changed
    assert index.environment(moved.commit, "development")["resources"]["databases"][
        "conversations"
    ]["path"].endswith("/chats.db")
    repository.close()


# --- GitRegistryBackend and the poller -----------------------------------------------------


def test_backend_reads_parse_each_file_once_and_a_poll_without_change_parses_nothing(
    git_registry: Path, synced: SyncHarness, tmp_path: Path, parses: Parses
) -> None:
    async def scenario() -> None:
        backend = GitRegistryBackend(data_dir=tmp_path / "data")
        active = await backend.list_active()
        assert [r.bot_id for r in active] == ["billing-assistant", "product-guide"]
        assert parses.take() == 3
        for _ in range(3):  # every read of the same commit is parse-free
            assert [r.bot_id for r in await backend.list_all()] == [
                "billing-assistant",
                "internal-helpdesk",
                "product-guide",
            ]
            assert await backend.list_ids() == ["billing-assistant", "product-guide"]
            guide = await backend.get("product-guide")
            assert guide is not None and guide.config["llm"]["temperature"] == 0.5
            assert await backend.count() == 2 and not await backend.exists("internal-helpdesk")
            assert not await backend.exists("nope") and await backend.get("nope") is None
        assert parses.take() == 0

        # callers get copies: editing one never changes what the next reader sees
        guide = await backend.get("product-guide")
        assert guide is not None
        guide.config["llm"]["temperature"] = 99
        again = await backend.get_config("product-guide")
        assert again is not None and again["llm"]["temperature"] == 0.5

        seen: list[tuple[str, Any, Any]] = []
        poller = backend_poller(backend, seen)
        assert await poller.poll_once() == [] and parses.take() == 0  # the first snapshot
        for _ in range(3):
            assert await poller.poll_once() == []
        assert parses.take() == 0 and seen == []

        # one bot changes: the daemon applies it; the poll reports it with one parse
        before_commit, before = await backend.changes_since(None)
        assert before is not None and await backend.changes_since(before_commit) == (
            before_commit,
            None,
        )
        _edit(git_registry, GUIDE, "temperature: 0.5", "temperature: 0.6")
        assert _applied(git_registry, synced)
        assert await poller.poll_once() == ["product-guide"]
        _after_commit, after = await backend.changes_since(before_commit)
        assert after is not None and after["product-guide"] is not before["product-guide"]
        # an unchanged bot is the same object: comparing two polls costs O(changed)
        assert after["billing-assistant"] is before["billing-assistant"]
        assert parses.take() == 1
        assert seen[0][0] == "product-guide"
        assert (seen[0][1]["llm"]["temperature"], seen[0][2]["llm"]["temperature"]) == (0.5, 0.6)
        assert seen[0][2]["status"] == "active"
        assert await poller.poll_once() == [] and parses.take() == 0
        # the backend answers from the same index: nothing parsed again
        guide = await backend.get("product-guide")
        assert guide is not None and guide.config["llm"]["temperature"] == 0.6
        assert guide.commit == applied_commit(tmp_path / "data") and parses.take() == 0

        # a deactivated bot is reported and leaves list_active
        _edit(git_registry, "bots/billing-assistant.yaml", "status: active", "status: inactive")
        assert _applied(git_registry, synced)
        assert await poller.poll_once() == ["billing-assistant"] and parses.take() == 1
        assert [r.bot_id for r in await backend.list_active()] == ["product-guide"]
        await backend.close()

    asyncio.run(scenario())


def backend_poller(backend: GitRegistryBackend, seen: list[tuple[str, Any, Any]]) -> Any:
    from botreg import RegistryPoller

    return RegistryPoller(
        backend, poll_interval=3600, on_change=lambda b, o, n: seen.append((b, o, n))
    )


def test_polling_hot_reload_on_the_git_backend_invalidates_the_changed_bot(
    git_registry: Path, synced: SyncHarness, tmp_path: Path, parses: Parses
) -> None:
    class Manager(CachingRegistryManager[dict[str, Any]]):
        async def _create_instance(self, bot_id: str, config: dict[str, Any]) -> dict[str, Any]:
            return config

        async def _destroy_instance(self, instance: dict[str, Any]) -> None:
            return None

    async def scenario() -> None:
        backend = GitRegistryBackend(data_dir=tmp_path / "data")
        manager = Manager(backend, cache_ttl=3600)
        await manager.initialize()
        reload = HotReloadManager(backend, manager, mode=ReloadMode.POLLING, polling_interval=3600)
        await reload.initialize()
        await manager.get_or_create("product-guide")
        await manager.get_or_create("billing-assistant")
        parses.take()
        _edit(git_registry, GUIDE, "temperature: 0.5", "temperature: 0.6")
        assert _applied(git_registry, synced)
        assert await reload.poller.poll_once() == ["product-guide"]
        assert manager.cached_ids() == ["billing-assistant"] and parses.take() == 1
        fresh = await manager.get_or_create("product-guide")
        assert fresh["llm"]["temperature"] == 0.6
        await reload.shutdown()
        await manager.close()
        await backend.close()

    asyncio.run(scenario())


def test_created_and_updated_times_follow_new_commits(
    git_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = git_registry

    async def times(backend: GitRegistryBackend, bot_id: str) -> tuple[Any, Any]:
        registration = await backend.get(bot_id)
        assert registration is not None
        return registration.created_at, registration.updated_at

    async def scenario() -> None:
        backend = GitRegistryBackend(repo=repo)
        created, updated = await times(backend, "product-guide")
        assert created == updated
        _edit(repo, GUIDE, "temperature: 0.5", "temperature: 0.6")
        run_git(repo, "add", "-A")
        monkeypatch.setenv("GIT_COMMITTER_DATE", "2099-01-02 03:04:05 +0000")
        run_git(repo, "commit", "-q", "-m", "later")
        monkeypatch.delenv("GIT_COMMITTER_DATE")
        moved = await times(backend, "product-guide")  # read from `old..new` only
        assert moved[0] == created and moved[1].year == 2099
        assert await times(backend, "billing-assistant") == (created, created)
        fresh = GitRegistryBackend(repo=repo)  # the whole history: the same answer
        assert await times(fresh, "product-guide") == moved
        # a rewritten history is read again from the start
        run_git(repo, "reset", "-q", "--hard", "HEAD~1")
        assert await times(backend, "product-guide") == (created, created)
        await fresh.close()
        await backend.close()

    asyncio.run(scenario())


# --- the daemon's GET /bots and /bots/{id} ---------------------------------------------------


def _daemon(git_registry: Path, tmp_path: Path, allow_env: tuple[str, ...] = ()) -> Daemon:
    return Daemon(
        SyncOptions(git_registry.as_uri(), data_dir=tmp_path / "data", allow_env=allow_env),
        DaemonOptions(listen=None),
    )


def _renders_as_the_http_layer(daemon: Daemon) -> None:
    """The pre-rendered JSON is the document the HTTP layer makes of the items."""
    model = daemon.read_model
    items = daemon._bots()
    assert json.loads(model.bots_json()) == json.loads(dumps_strict(mask_config(items)))
    for item in items:
        one = model.bot_json(item["bot_id"])
        assert one is not None
        assert json.loads(one) == json.loads(dumps_strict(mask_config(item)))
    assert model.bot_json("nope") is None


def _resolves(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("botreg_read_model_resolves_total")
    return value or 0.0


def test_the_daemon_serves_one_bot_in_o1_and_resolves_only_what_changed(
    git_registry: Path,
    synced: SyncHarness,
    tmp_path: Path,
    parses: Parses,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-never-shown-0123456789abcdef")
    daemon = _daemon(git_registry, tmp_path, allow_env=("OPENAI_*",))
    metrics = daemon.metrics
    try:
        everything = daemon._bots()
        assert [b["bot_id"] for b in everything] == [
            "billing-assistant",
            "internal-helpdesk",
            "product-guide",
        ]
        assert parses.take() == 3 and _resolves(metrics) == 3
        guide = daemon._bot("product-guide")
        assert guide == everything[2]  # the same item as the list gives
        assert guide is not None
        assert guide["config"]["llm"]["endpoint"]["api_key"] == "***"  # resolved, masked
        assert "never-shown" not in repr(everything) and "error" not in guide
        assert guide["commit"] == applied_commit(tmp_path / "data")
        assert guide["config"]["conversation_storage"]["backend"] == "sqlite"  # resolved
        assert daemon._bot("nope") is None
        _renders_as_the_http_layer(daemon)
        for _ in range(3):
            daemon._bots()
            daemon._bot("billing-assistant")
        assert parses.take() == 0 and _resolves(metrics) == 3  # served from the index

        # one bot changes: one parse, one resolve; every item carries the new commit
        _edit(git_registry, GUIDE, "temperature: 0.5", "temperature: 0.6")
        assert _applied(git_registry, synced)
        guide = daemon._bot("product-guide")
        assert guide is not None and guide["config"]["llm"]["temperature"] == 0.6
        assert parses.take() == 1 and _resolves(metrics) == 4
        head = applied_commit(tmp_path / "data")
        assert {b["commit"] for b in daemon._bots()} == {head}

        # the daemon's environment file changes: every bot is resolved again, none parsed
        _edit(git_registry, "environments/development.yaml", "/conversations.db", "/chats.db")
        assert _applied(git_registry, synced)
        guide = daemon._bot("product-guide")
        assert guide is not None
        assert guide["config"]["conversation_storage"]["path"].endswith("/chats.db")
        assert parses.take() == 0 and _resolves(metrics) == 7

        # another environment's file: nothing to resolve again
        _edit(
            git_registry, "environments/production.yaml", "The production cluster.", "The cluster."
        )
        assert _applied(git_registry, synced)
        daemon._bots()
        assert parses.take() == 0 and _resolves(metrics) == 7

        # a rename and a deletion
        run_git(git_registry, "mv", GUIDE, "bots/guide.yaml")
        (git_registry / "bots/internal-helpdesk.yaml").unlink()
        assert _applied(git_registry, synced)
        assert [b["bot_id"] for b in daemon._bots()] == ["billing-assistant", "guide"]
        assert daemon._bot("product-guide") is None and daemon._bot("internal-helpdesk") is None
        assert parses.take() == 0 and _resolves(metrics) == 7  # same blob: same result

        # a variable this daemon does not allow, without a default: the error says why,
        # nothing is expanded
        key = "  api_key: ${ANTHROPIC_API_KEY}\n"
        _edit(git_registry, "bots/billing-assistant.yaml", "  max_tokens: 1024\n", key)
        assert _applied(git_registry, synced)
        billing = daemon._bot("billing-assistant")
        assert billing is not None and "ANTHROPIC_API_KEY" in billing["error"]
        assert billing["config"]["llm"]["api_key"] == "${ANTHROPIC_API_KEY}"
    finally:
        daemon.read_model.close()


def test_nothing_applied_yet_is_an_empty_list(tmp_path: Path, git_registry: Path) -> None:
    daemon = _daemon(git_registry, tmp_path)
    assert daemon._bots() == [] and daemon._bot("product-guide") is None
    model = ResolvedBots(tmp_path / "nowhere.git", lambda: "", "development")
    assert model.bots() == [] and model.bot("x") is None
