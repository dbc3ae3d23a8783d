"""GitRegistryBackend: the registry API on top of the git registry.

Reads come from a tree at a commit:
- `GitRegistryBackend(data_dir=".botreg")`: the sync daemon's applied commit,
  read from its mirror (the daemon may run in another process);
- `GitRegistryBackend(repo="path/to/clone", revision="HEAD")`: a revision of a
  repository (re-resolved at every read, so a moving branch is followed).

Writes go through GitOps: `register`, `update`, `deactivate` and `unregister`
edit the bot's YAML with ruamel.yaml (comments and key order preserved),
validate the repository as the hook would, and commit the one file to the
local clone (optionally pushing); `clear` removes every bot file in one such
commit. An invalid config is refused with the findings and the files are left
as they were. Where the seed's backends write rows to a database, this one
writes commits: the daemon applies them like any other push.

The seed's semantics: `exists`, `list_ids` and `count` see active bots only;
`list_all` sees every bot, active or not.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botreg.api.models import BotNotFoundError, Registration, RegistrationStatus
from botreg.errors import BotregError, UsageError
from botreg.registry.index import IndexSnapshot, RegistryIndex, copy_data
from botreg.registry.layout import BOTS_DIR, IDENTIFIER_RE

if TYPE_CHECKING:
    import git

    from botreg.validation.findings import Finding

__all__ = ["GitRegistryBackend", "RegistryValidationError", "applied_commit"]

_APPLIED_KEY = "sync.applied_commit"


class RegistryValidationError(BotregError):
    """A write was refused: the registry would not validate."""

    def __init__(self, bot_id: str, findings: list[Finding]) -> None:
        self.findings = findings
        detail = "; ".join(
            f"{f.path}:{f.line}:{f.column}: {f.code} {f.message}" for f in findings[:5]
        )
        super().__init__(f"bot {bot_id!r} refused: {detail}")


def applied_commit(data_dir: Path) -> str:
    """The commit the daemon of `data_dir` applied last ('' if none), read-only."""
    ledger = data_dir / "ledger.sqlite"
    if not ledger.exists():
        return ""
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (_APPLIED_KEY,)).fetchone()
    except sqlite3.Error:
        return ""
    finally:
        db.close()
    return str(row[0]) if row else ""


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip()).astimezone(UTC)


_LOG = ("--format=%x00%cI", "--name-only")


def _merge_log(times: dict[str, tuple[datetime, datetime]], log: str) -> None:
    """Fold `git log --format=%x00%cI --name-only` output into (created, updated)."""
    for entry in log.split("\0")[1:]:
        stamp, *paths = entry.strip().splitlines()
        when = _parse_time(stamp)
        for path in filter(None, (p.strip() for p in paths)):
            created, updated = times.get(path, (when, when))
            times[path] = (min(created, when), max(updated, when))


def _is_ancestor(repo: git.Repo, old: str, new: str) -> bool:
    import git

    try:
        repo.git.merge_base("--is-ancestor", old, new)
    except git.GitCommandError:
        return False  # not an ancestor (exit 1) or unknown (a rewritten history)
    return True


class GitRegistryBackend:
    """A RegistryBackend over a git registry (see the module docstring)."""

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        repo: str | Path | None = None,
        revision: str = "HEAD",
        push: bool = False,
        remote: str = "origin",
    ) -> None:
        if (data_dir is None) == (repo is None):
            raise UsageError("GitRegistryBackend needs exactly one of data_dir= or repo=")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.repo_path = Path(repo) if repo is not None else None
        self.revision = revision
        self.push = push
        self.remote = remote
        self._repo: git.Repo | None = None
        self._bot_index: RegistryIndex | None = None  # bot id -> blob -> parsed config
        # (commit, bot file -> (created, updated)) for the last commit asked
        self._history: tuple[str, dict[str, tuple[datetime, datetime]]] = ("", {})
        self._times_lock = threading.Lock()
        self._poll_views: dict[str, dict[str, Any]] = {}  # blob -> config as last polled
        self._lock = threading.Lock()  # one writer at a time within this process

    # --- lifecycle ---------------------------------------------------------------------

    async def initialize(self) -> None:
        await asyncio.to_thread(self._open)

    async def close(self) -> None:
        self.close_now()

    def _open(self) -> git.Repo:
        import git

        if self._repo is None:
            path = self.data_dir / "mirror.git" if self.data_dir else self.repo_path
            assert path is not None
            try:
                self._repo = git.Repo(path)
            except (git.InvalidGitRepositoryError, git.NoSuchPathError):
                what = "the daemon's mirror" if self.data_dir else "a git repository"
                raise BotregError(f"{path}: not {what}") from None
        return self._repo

    # --- reading -----------------------------------------------------------------------

    def commit(self) -> str:
        """The commit reads come from now ('' when the daemon applied nothing yet)."""
        import git

        if self.data_dir is not None:
            return applied_commit(self.data_dir)
        try:
            return str(self._open().git.rev_parse("--verify", "-q", f"{self.revision}^{{commit}}"))
        except git.GitCommandError:
            raise BotregError(f"unknown revision {self.revision!r}") from None

    def _index(self) -> RegistryIndex:
        if self._bot_index is None:
            self._bot_index = RegistryIndex(self._open())
        return self._bot_index

    def _at(self, commit: str) -> IndexSnapshot:
        """The bots of `commit`: O(1) if it is the indexed commit, else O(changed)."""
        return self._index().update(commit) if commit else IndexSnapshot()

    def _times(self, commit: str) -> dict[str, tuple[datetime, datetime]]:
        """bot file -> (created, updated) at `commit`, from the commit dates.

        Kept for the last commit asked; moving forward reads only the new commits'
        log (`old..new`), so a poll after one commit does not walk the history.
        """
        with self._times_lock:
            known, times = self._history
            if commit == known:
                return times
            repo = self._open()
            if known and _is_ancestor(repo, known, commit):
                times = dict(times)
                _merge_log(times, repo.git.log(*_LOG, f"{known}..{commit}", "--", BOTS_DIR))
            else:
                times = {}
                _merge_log(times, repo.git.log(*_LOG, commit, "--", BOTS_DIR))
            self._history = (commit, times)
            return times

    def _registration(self, snapshot: IndexSnapshot, bot_id: str) -> Registration | None:
        entry = snapshot.bots.get(bot_id)
        if entry is None or entry.config is None:
            return None
        # a copy per registration, as a fresh read gave: the index's parse is shared
        return self._registered(snapshot, entry.bot_id, copy_data(entry.config))

    def _registered(
        self, snapshot: IndexSnapshot, bot_id: str, config: dict[str, Any]
    ) -> Registration:
        created, updated = self._times(snapshot.commit).get(
            f"{BOTS_DIR}/{bot_id}.yaml", (datetime.now(UTC), datetime.now(UTC))
        )
        status = str(config.get("status", RegistrationStatus.ACTIVE))
        return Registration(bot_id, config, status, created, updated, snapshot.commit)

    def environment(self, name: str) -> dict[str, Any]:
        """An environment file's data at the current commit.

        Raises:
            EnvironmentNotFoundError: if the environment does not exist.
            EnvironmentInvalidError: if its file cannot be loaded or is not a mapping.
            BotregError: if no commit was applied yet.
        """
        from botreg.git.tree import GitTreeSource
        from botreg.registry.view import RegistryView

        commit = self.commit()
        if not commit:
            raise BotregError(f"environment {name!r} not found: no commit applied yet")
        view = RegistryView(GitTreeSource(self._open(), commit, label=commit[:12]))
        return view.environment(name)  # the daemon's, review's and the CLI's loading

    async def get(self, bot_id: str) -> Registration | None:
        return await asyncio.to_thread(lambda: self._registration(self._at(self.commit()), bot_id))

    async def get_config(self, bot_id: str) -> dict[str, Any] | None:
        registration = await self.get(bot_id)
        return registration.config if registration else None

    def close_now(self) -> None:
        """Close the repository (synchronous form of `close`)."""
        if self._repo is not None:
            self._repo.close()
            self._repo = None
            self._bot_index = None

    def registrations(self) -> list[Registration]:
        """Every bot at the current commit (synchronous)."""
        return self._all()

    def _all(self) -> list[Registration]:
        snapshot = self._at(self.commit())
        found = (self._registration(snapshot, b) for b in snapshot.ids)
        return [r for r in found if r is not None]

    async def list_active(self) -> list[Registration]:
        """Every active bot at the current commit, by id."""
        return [r for r in await asyncio.to_thread(self._all) if r.is_active]

    async def list_all(self) -> list[Registration]:
        """Every bot at the current commit, active or not, by id."""
        return await asyncio.to_thread(self._all)

    def _active_ids(self, only: str | None = None) -> list[str]:
        """The active bots' ids at the current commit (of `only`, if given); no copies."""
        snapshot = self._at(self.commit())
        return [
            b
            for b in (snapshot.ids if only is None else [only])
            if (entry := snapshot.bots.get(b)) is not None
            and entry.config is not None
            and str(entry.config.get("status", RegistrationStatus.ACTIVE))
            == RegistrationStatus.ACTIVE
        ]

    async def list_ids(self) -> list[str]:
        """The active bots' ids at the current commit, sorted."""
        return await asyncio.to_thread(self._active_ids)

    async def exists(self, bot_id: str) -> bool:
        """True if the bot is registered and active at the current commit."""
        return bool(await asyncio.to_thread(self._active_ids, bot_id))

    async def count(self) -> int:
        """Number of active bots at the current commit."""
        return len(await asyncio.to_thread(self._active_ids))

    async def changes_since(
        self, commit: str | None
    ) -> tuple[str, dict[str, dict[str, Any]] | None]:
        """For pollers: the current commit, and every bot's config if it moved.

        O(1) when the commit is `commit` (the snapshot is None). Otherwise the
        index moves by the trees' difference (one parse per changed bot file),
        and each config (`status` included) is a copy made once per blob id:
        an unchanged bot gives the very object of the previous poll, so comparing
        two polls costs O(changed) too. Like the poller's previous snapshot
        always was, these copies are shared between polls: read them, do not edit.

        Args:
            commit: The commit of the caller's last snapshot (None for none).

        Returns:
            (current commit, None if unchanged else bot id -> config with `status`).
        """

        def poll() -> tuple[str, dict[str, dict[str, Any]] | None]:
            current = self.commit()
            if commit is not None and current == commit:
                return current, None
            snapshot = self._at(current)
            previous = self._poll_views
            views: dict[str, dict[str, Any]] = {}  # blob -> config as polled
            configs = {}
            for entry in snapshot.bots.values():
                if entry.config is None:
                    continue
                view = views.get(entry.blob) or previous.get(entry.blob)
                if view is None:
                    status = str(entry.config.get("status", RegistrationStatus.ACTIVE))
                    view = {**copy_data(entry.config), "status": status}
                views[entry.blob] = configs[entry.bot_id] = view
            self._poll_views = views
            return current, configs

        return await asyncio.to_thread(poll)

    # --- writing through git -----------------------------------------------------------

    def _work_tree(self) -> Path:
        if self.repo_path is None:
            raise BotregError(
                "writes need a clone: GitRegistryBackend(repo=...) (the daemon's "
                "mirror is read-only)"
            )
        return self.repo_path

    def _write(self, bot_id: str, change: Any, message: str) -> str:
        """Apply `change(old_text) -> new_text | None` to a bot file, validate, commit."""
        if not IDENTIFIER_RE.match(bot_id):
            raise UsageError(f"invalid bot id {bot_id!r}: lowercase letters, digits, '_' and '-'")
        return self._write_many({bot_id: change}, message, bot_id)

    def _write_many(self, changes: dict[str, Any], message: str, label: str) -> str:
        """Apply each bot's change, validate the repository, commit them all at once.

        Args:
            changes: bot id -> `change(old_text) -> new_text | None` (None deletes).
            message: The commit message.
            label: What a refusal names (a bot id, or "every bot").

        Raises:
            RegistryValidationError: nothing is committed and every file is restored.
        """
        from botreg.registry.source import WorkingTreeSource
        from botreg.validation.runner import validate_registry

        root = self._work_tree()
        with self._lock:
            before: dict[str, str | None] = {}
            after: dict[str, str | None] = {}
            for bot_id, change in changes.items():
                rel = f"{BOTS_DIR}/{bot_id}.yaml"
                path = root / rel
                before[rel] = path.read_text(encoding="utf-8") if path.exists() else None
                after[rel] = text = change(before[rel])
                if text is None:
                    path.unlink(missing_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text, encoding="utf-8")
            deleted = any(text is None for text in after.values())
            report = validate_registry(WorkingTreeSource(root), None if deleted else list(after))
            errors = [f for f in report.findings if str(f.severity) == "error"]
            if errors:
                for rel, text in before.items():
                    if text is None:
                        (root / rel).unlink(missing_ok=True)
                    else:
                        (root / rel).write_text(text, encoding="utf-8")
                raise RegistryValidationError(label, errors)
            repo = self._open()
            removed = [rel for rel, text in after.items() if text is None]
            added = [rel for rel, text in after.items() if text is not None]
            if removed:
                repo.git.rm("--cached", "--quiet", "--ignore-unmatch", "--", *removed)
            if added:
                repo.git.add("--", *added)
            repo.git.commit("--only", "-m", message, "--", *after)
            sha = str(repo.head.commit.hexsha)
            if self.push:
                repo.git.push(self.remote, "HEAD")
            return sha

    async def register(
        self, bot_id: str, config: dict[str, Any], status: str = RegistrationStatus.ACTIVE
    ) -> Registration:
        from botreg.registry.yamlio import dump_roundtrip, load_roundtrip

        def edit(before: str | None) -> str:
            doc = load_roundtrip(before) if before else None
            if not isinstance(doc, dict):
                doc = load_roundtrip(
                    "# yaml-language-server: $schema=https://botreg.dev/schemas/v1/bot.schema.json\n"
                    "{}\n"
                )
                doc.fa.set_block_style()
            _merge(doc, {**config, "status": status})
            return dump_roundtrip(doc)

        verb = "Update" if self._in_work_tree(bot_id) else "Register"
        sha = await asyncio.to_thread(self._write, bot_id, edit, f"{verb} bot {bot_id}")
        registration = await asyncio.to_thread(lambda: self._registration(self._at(sha), bot_id))
        assert registration is not None
        return registration

    def _in_work_tree(self, bot_id: str) -> bool:
        return (self._work_tree() / BOTS_DIR / f"{bot_id}.yaml").exists()

    async def update(self, bot_id: str, config: dict[str, Any]) -> Registration:
        """Replace a bot's config, keeping its status: one validated commit, as `register`.

        Raises:
            BotNotFoundError: (a KeyError) if the clone has no such bot.
            RegistryValidationError: if the registry would not validate (nothing committed).
        """
        from botreg.registry.yamlio import load_roundtrip

        path = self._work_tree() / BOTS_DIR / f"{bot_id}.yaml"
        if not IDENTIFIER_RE.match(bot_id) or not path.exists():
            raise BotNotFoundError(f"bot {bot_id!r} is not registered: register() it first")
        doc = load_roundtrip(path.read_text(encoding="utf-8"))
        status = RegistrationStatus.ACTIVE
        if isinstance(doc, dict):
            status = str(doc.get("status", RegistrationStatus.ACTIVE))
        config = {k: v for k, v in config.items() if k != "status"}
        return await self.register(bot_id, config, status)

    async def clear(self) -> None:
        """Remove every bot in one validated commit ("Clear registry"); none: no commit.

        Raises:
            RegistryValidationError: if the registry would not validate without them.
        """
        bots = sorted(
            p.stem
            for p in (self._work_tree() / BOTS_DIR).glob("*.yaml")
            if IDENTIFIER_RE.match(p.stem)
        )
        if not bots:
            return
        changes = {bot_id: (lambda _before: None) for bot_id in bots}
        await asyncio.to_thread(
            self._write_many, changes, f"Clear registry ({len(bots)} bots)", "every bot"
        )

    async def deactivate(self, bot_id: str) -> bool:
        from botreg.registry.yamlio import dump_roundtrip, load_roundtrip

        if not self._in_work_tree(bot_id):
            return False

        def edit(before: str | None) -> str:
            doc = load_roundtrip(before or "{}")
            doc["status"] = RegistrationStatus.INACTIVE
            return dump_roundtrip(doc)

        await asyncio.to_thread(self._write, bot_id, edit, f"Deactivate bot {bot_id}")
        return True

    async def unregister(self, bot_id: str) -> bool:
        if not self._in_work_tree(bot_id):
            return False
        await asyncio.to_thread(
            self._write, bot_id, lambda _before: None, f"Unregister bot {bot_id}"
        )
        return True


def _merge(doc: Any, new: dict[str, Any]) -> None:
    """Make a round-trip mapping equal `new`, keeping comments and order of what stays."""
    for key in [k for k in doc if k not in new]:
        del doc[key]
    for key, value in new.items():
        current = doc.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            _merge(current, value)
        elif key not in doc or _plain(current) != value:
            doc[key] = value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
