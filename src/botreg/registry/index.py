"""An index of a registry's bots at a commit: bot id -> blob id -> parsed config.

Reading a bot through GitPython's `tree / path` re-parses the whole `bots/` tree
for every bot, so listing n bots cost O(n^2) (8 to 10 s at 1,000 bots). The
index instead:

- loads a commit's `bots/` and `environments/` entries once (`git ls-tree`);
- moves to another commit with `git diff-tree` restricted to those folders,
  which compares tree ids and so reads only what changed: O(changed);
- parses a bot file once per blob id (an unchanged file is never parsed again,
  whatever the number of commits), and never parses on a lookup.

Each update publishes an immutable `IndexSnapshot`; readers keep the snapshot
they took (threads never see a half-updated index), lookups are dict lookups.

`ResolvedBots` builds on it for the daemon's `GET /bots` and `/bots/{id}`: each
bot resolved for the daemon's environment and masked, cached by (bot blob,
environment blob), so a request costs O(1) per bot and a cycle O(changed).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from botreg.registry.content import ContentError, decode_utf8
from botreg.registry.layout import BOTS_DIR, ENVIRONMENTS_DIR
from botreg.registry.yamlfast import YamlLoadError, load_fast

if TYPE_CHECKING:
    import git

    from botreg.daemon.metrics import Metrics

__all__ = ["BotEntry", "IndexSnapshot", "RegistryIndex", "ResolvedBots", "copy_data"]

logger = logging.getLogger("botreg.index")

_SUFFIX = ".yaml"
# regular files, executables and symbolic links are blobs (GitPython's `tree.blobs`);
# trees and submodules (160000) are not files of the folder
_BLOB_MODES = ("100644", "100755", "120000")
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_BATCH = 1000  # blobs per `git cat-file --batch`: bounds the memory of one read


@dataclass(frozen=True)
class BotEntry:
    """One bot file of a commit.

    Attributes:
        bot_id: The file's stem (`bots/<bot_id>.yaml`).
        blob: The git blob id of the file: equal blobs are equal configs.
        config: The parsed document; None if it cannot be loaded (not UTF-8,
            not YAML, not a mapping). Shared between snapshots: never mutate it.
    """

    bot_id: str
    blob: str
    config: dict[str, Any] | None = field(repr=False)  # may hold secrets


@dataclass(frozen=True)
class IndexSnapshot:
    """The bots and environment files of one commit (immutable).

    Attributes:
        commit: The commit ('' for none: no bots).
        bots: bot id -> entry.
        ids: Every bot id, sorted.
        environments: environment name -> blob id of `environments/<name>.yaml`.
        changed: The bot ids added, modified or deleted since the previous snapshot
            (every bot after a full load).
    """

    commit: str = ""
    bots: Mapping[str, BotEntry] = field(default_factory=lambda: _EMPTY)
    ids: tuple[str, ...] = ()
    environments: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    changed: frozenset[str] = frozenset()


def copy_data(data: Any) -> Any:
    """A deep copy of parsed YAML (dicts, lists, scalars), several times faster than
    `copy.deepcopy`: what the index hands to callers who may mutate it."""
    if isinstance(data, dict):
        return {k: copy_data(v) for k, v in data.items()}
    if isinstance(data, list):
        return [copy_data(v) for v in data]
    return data  # scalars are immutable


def _top_level(path: str, folder: str) -> str | None:
    """The stem of `folder/<stem>.yaml` (a direct child), else None."""
    prefix = folder + "/"
    if not path.startswith(prefix) or not path.endswith(_SUFFIX):
        return None
    name = path[len(prefix) : -len(_SUFFIX)]
    return None if "/" in name else name


def _cat_file(repo: git.Repo, blobs: list[str]) -> list[bytes]:
    """The contents of `blobs`, in order, from one `git cat-file --batch`."""
    done = subprocess.run(
        ["git", "--git-dir", str(repo.git_dir), "cat-file", "--batch"],
        input="".join(f"{b}\n" for b in blobs).encode(),
        capture_output=True,
        check=True,
    )
    out, view, pos = [], memoryview(done.stdout), 0
    for blob in blobs:
        end = done.stdout.index(b"\n", pos)
        header = done.stdout[pos:end].split()
        if len(header) != 3 or header[0].decode() != blob:  # "<id> missing": a broken mirror
            raise RuntimeError(f"git cat-file: blob {blob} not readable")
        size = int(header[2])
        out.append(bytes(view[end + 1 : end + 1 + size]))
        pos = end + 1 + size + 1  # the content, then a newline
    return out


def git_error() -> type[Exception]:
    """GitPython's command error (imported late: the hook's start-up stays light)."""
    import git

    return git.GitCommandError


def _parse(data: bytes) -> dict[str, Any] | None:
    """A bot file's data, or None if it is not a loadable mapping."""
    try:
        doc = load_fast(decode_utf8(data))
    except (ContentError, YamlLoadError):
        return None  # the daemon never applies such a commit; a branch may hold one
    return doc if isinstance(doc, dict) else None


class RegistryIndex:
    """The bots of a repository at one commit at a time, parsed once per blob.

    Thread-safe: `update` serializes git access under a lock; the snapshot it
    returns is immutable.

    Args:
        repo: The repository (used only under this index's lock: GitPython's
            persistent `git cat-file` process is not shared between threads).
        metrics: Where to count parses and time updates (the daemon's); optional.
    """

    def __init__(self, repo: git.Repo, metrics: Metrics | None = None) -> None:
        self.repo = repo
        self.metrics = metrics
        self._lock = threading.Lock()
        self._snapshot = IndexSnapshot()
        self.parses = 0  # bot files parsed since creation (tests and the bench read it)

    @property
    def snapshot(self) -> IndexSnapshot:
        """The last published snapshot (no git access)."""
        return self._snapshot

    def update(self, commit: str) -> IndexSnapshot:
        """The snapshot of `commit`, moving the index there if needed.

        O(1) when `commit` is the indexed commit; else one `git diff-tree` of
        the `bots/` and `environments/` folders and one parse per changed bot
        file (a full `git ls-tree` of those folders the first time).

        Args:
            commit: A commit id ('' gives an empty snapshot).
        """
        current = self._snapshot
        if commit == current.commit:
            return current  # the common case: no git, no lock
        with self._lock:
            current = self._snapshot
            if commit == current.commit:
                return current
            started = time.perf_counter()
            if not commit:
                new = IndexSnapshot(changed=frozenset(current.bots))
            elif current.commit:
                try:
                    new = self._moved(current, commit)
                except git_error():  # the old commit is gone (a rewritten, pruned history)
                    new = self._loaded(commit)
            else:
                new = self._loaded(commit)
            self._snapshot = new
            if self.metrics is not None:
                self.metrics.histogram(
                    "botreg_read_model_update_seconds",
                    "Time to move the bot index to a new commit (diff and parse what changed)",
                    [],
                ).observe(time.perf_counter() - started)
                self.metrics.gauge(
                    "botreg_read_model_bots", "Bots in the index of the applied commit"
                ).set(len(new.bots))
            return new

    def environment(self, commit: str, name: str) -> dict[str, Any]:
        """`environments/<name>.yaml` at `commit`, loaded as every other reader does.

        Raises:
            EnvironmentNotFoundError: if the environment does not exist.
            EnvironmentInvalidError: if its file cannot be loaded or is not a mapping.
        """
        from botreg.git.tree import GitTreeSource
        from botreg.registry.view import RegistryView

        with self._lock:  # the repository: one thread at a time
            view = RegistryView(GitTreeSource(self.repo, commit, label=commit[:12]))
            return view.environment(name)

    def _parse_blobs(self, blobs: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Read and parse each blob once: one `git cat-file --batch` per 1,000 blobs.

        A round trip per blob through GitPython's persistent process cost about
        a millisecond each; a batch streams them.
        """
        wanted = list(dict.fromkeys(blobs))
        out: dict[str, dict[str, Any] | None] = {}
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start : start + _BATCH]
            for blob, data in zip(chunk, _cat_file(self.repo, chunk), strict=True):
                out[blob] = _parse(data)
        self.parses += len(wanted)
        if self.metrics is not None and wanted:
            self.metrics.counter(
                "botreg_read_model_parses_total",
                "Bot files parsed by the read model (once per new blob id)",
                [],
            ).inc(len(wanted))
        return out

    def _loaded(self, commit: str) -> IndexSnapshot:
        """A full load: every bot file of the commit."""
        out = self.repo.git.ls_tree("-z", commit, "--", f"{BOTS_DIR}/", f"{ENVIRONMENTS_DIR}/")
        files: dict[str, str] = {}  # bot id -> blob
        environments: dict[str, str] = {}
        for record in out.split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, _kind, blob = meta.split()
            if mode not in _BLOB_MODES:
                continue
            if (bot_id := _top_level(path, BOTS_DIR)) is not None:
                files[bot_id] = blob
            elif (name := _top_level(path, ENVIRONMENTS_DIR)) is not None:
                environments[name] = blob
        parsed = self._parse_blobs(files.values())  # identical files parse once
        bots = {b: BotEntry(b, blob, parsed[blob]) for b, blob in files.items()}
        return IndexSnapshot(
            commit,
            MappingProxyType(bots),
            tuple(sorted(bots)),
            MappingProxyType(environments),
            frozenset(bots),
        )

    def _moved(self, current: IndexSnapshot, commit: str) -> IndexSnapshot:
        """`current` moved to `commit` by the trees' difference: O(changed)."""
        out = self.repo.git.diff_tree(
            "-r",
            "-z",
            "--raw",
            "--no-renames",  # a rename is the old id deleted and the new one added
            "--no-commit-id",
            current.commit,
            commit,
            "--",
            BOTS_DIR,
            ENVIRONMENTS_DIR,
        )
        bots = dict(current.bots)
        environments = dict(current.environments)
        present_now: dict[str, str] = {}  # bot id -> new blob
        gone: dict[str, dict[str, Any] | None] = {}  # blob -> parse of a replaced entry
        changed: set[str] = set()
        added_or_deleted = False
        fields = out.split("\0")
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta.startswith(":"):
                continue
            _old_mode, new_mode, _old_blob, new_blob, status = meta[1:].split()
            present = status[0] != "D" and new_mode in _BLOB_MODES
            if (bot_id := _top_level(path, BOTS_DIR)) is not None:
                changed.add(bot_id)
                if (old := bots.get(bot_id)) is not None:
                    gone[old.blob] = old.config  # a rename's new path reuses its parse
                if not present:
                    added_or_deleted |= bots.pop(bot_id, None) is not None
                    continue
                added_or_deleted |= bot_id not in bots
                present_now[bot_id] = new_blob
            elif (name := _top_level(path, ENVIRONMENTS_DIR)) is not None:
                if present:
                    environments[name] = new_blob
                else:
                    environments.pop(name, None)
        # only new content is parsed: a file copied twice once, a renamed one not at all
        parsed = gone | self._parse_blobs(b for b in present_now.values() if b not in gone)
        for bot_id, blob in present_now.items():
            bots[bot_id] = BotEntry(bot_id, blob, parsed[blob])
        # the sorted ids change only when a bot comes or goes
        ids = tuple(sorted(bots)) if added_or_deleted else current.ids
        return IndexSnapshot(
            commit,
            MappingProxyType(bots),
            ids,
            MappingProxyType(environments),
            frozenset(changed),
        )


@dataclass
class _Resolved:
    """A bot resolved for display: its masked config and the error, if any."""

    status: str
    config: dict[str, Any] = field(repr=False)
    error: str | None
    # its JSON as the HTTP layer writes it (masked, strict), rendered on first use
    rendered: tuple[str, str, str] | None = field(default=None, repr=False)

    def json_parts(self) -> tuple[str, str, str]:
        """(status, config, error) as JSON text ('' for no error), masked as any response."""
        if self.rendered is None:
            from botreg.secrets import dumps_strict, mask_config, mask_value

            error = "" if self.error is None else dumps_strict(mask_value(self.error, "error"))
            self.rendered = (  # a race renders twice, the same text: harmless
                dumps_strict(mask_value(self.status, "status")),
                dumps_strict(mask_config(self.config)),
                error,
            )
        return self.rendered


class ResolvedBots:
    """The daemon's read model: every bot of the applied commit, resolved and masked.

    Backs `GET /bots` and `GET /bots/{bot_id}`. Each call reads the applied
    commit (`commit()`: the ledger, a few hundred microseconds); when it moved,
    the index moves by the difference of the trees, and only the bots whose file
    or whose environment file changed are resolved again.

    Args:
        mirror: The daemon's mirror (opened when first needed: it may not exist yet).
        commit: Gives the applied commit ('' if none).
        environment: The daemon's environment name.
        allow_env: The variables the operator allows in resolved configs.
        metrics: The daemon's metrics (a fresh registry if not given).
    """

    def __init__(
        self,
        mirror: Path,
        commit: Callable[[], str],
        environment: str,
        allow_env: Iterable[str] = (),
        metrics: Metrics | None = None,
    ) -> None:
        if metrics is None:
            from botreg.daemon.metrics import Metrics

            metrics = Metrics()
        self.mirror = mirror
        self.commit = commit
        self.environment = environment
        self.allow_env = tuple(allow_env)
        self.metrics = metrics
        self._index: RegistryIndex | None = None
        self._open_lock = threading.Lock()
        self._resolve_lock = threading.Lock()
        # one attribute, swapped whole, so a reader never pairs a commit with another's
        # results: (commit, environment blob, (bot blob, environment blob) -> resolved)
        self._state: tuple[str, str, dict[tuple[str, str], _Resolved]] = ("", "", {})
        # GET /bots's body for (commit, environment blob, resolved map): joined once
        self._bots_body: tuple[tuple[str, str, int], bytes] | None = None
        self._environment: tuple[str, dict[str, Any]] = ("", {})  # its blob, its data

    def close(self) -> None:
        """Close the mirror's repository."""
        with self._open_lock:
            if self._index is not None:
                self._index.repo.close()
                self._index = None

    def _open(self) -> RegistryIndex:
        with self._open_lock:
            if self._index is None:
                import git

                self._index = RegistryIndex(git.Repo(self.mirror), self.metrics)
            return self._index

    def warm(self) -> None:
        """Bring the index and the resolved bots to the applied commit now (the daemon
        calls it after a cycle), so the first request after a start or a commit does
        not pay the load: O(changed bots), O(1) when nothing changed."""
        self._current()

    def loaded_commit(self) -> str:
        """The commit whose bots are loaded and resolved ('' before the first load): cheap,
        for readiness."""
        return self._state[0]

    def _current(self) -> tuple[IndexSnapshot, str, dict[tuple[str, str], _Resolved]]:
        commit = self.commit()
        if not commit:
            return IndexSnapshot(), "", {}
        index = self._index or self._open()
        snapshot = index.update(commit)
        state = self._state
        if state[0] != snapshot.commit:
            with self._resolve_lock:
                state = self._state
                if state[0] != snapshot.commit:
                    state = self._refresh(index, snapshot, state[2])
                    self._state = state
        return snapshot, state[1], state[2]

    def _refresh(
        self,
        index: RegistryIndex,
        snapshot: IndexSnapshot,
        previous: dict[tuple[str, str], _Resolved],
    ) -> tuple[str, str, dict[tuple[str, str], _Resolved]]:
        """Resolve what the new commit changed; keep every other bot's result."""
        from botreg.errors import BotregError

        env_blob = snapshot.environments.get(self.environment, "")
        if env_blob != self._environment[0] or not previous:
            try:
                data = index.environment(snapshot.commit, self.environment)
            except BotregError:
                data = {}  # as before: resolution then names what is missing
            self._environment = (env_blob, data)
        resolved: dict[tuple[str, str], _Resolved] = {}
        for entry in snapshot.bots.values():
            if entry.config is None:
                continue
            key = (entry.blob, env_blob)
            found = previous.get(key) or resolved.get(key)
            resolved[key] = found if found is not None else self._resolve(entry.config)
        return snapshot.commit, env_blob, resolved

    def _resolve(self, config: dict[str, Any]) -> _Resolved:
        from botreg.api.models import RegistrationStatus
        from botreg.errors import BotregError
        from botreg.resolve import resolve_for_display
        from botreg.secrets import mask_config

        self.metrics.counter(
            "botreg_read_model_resolves_total",
            "Bot configs resolved and masked for GET /bots (once per bot and environment file)",
            [],
        ).inc()
        status = str(config.get("status", RegistrationStatus.ACTIVE))
        try:
            # only the variables the operator allows, never all of ours; masked
            shown = resolve_for_display(config, self._environment[1], self.allow_env)
            return _Resolved(status, shown, None)
        except BotregError as exc:  # e.g. a variable this daemon does not have
            return _Resolved(status, mask_config(config), str(exc))

    @staticmethod
    def _item(bot_id: str, commit: str, resolved: _Resolved) -> dict[str, Any]:
        item: dict[str, Any] = {
            "bot_id": bot_id,
            "status": resolved.status,
            "commit": commit,
            "config": resolved.config,
        }
        if resolved.error is not None:
            item["error"] = resolved.error
        return item

    def bots_json(self) -> bytes:
        """`GET /bots` as JSON, each bot rendered once per (bot blob, environment blob).

        The same document as `dumps_strict(mask_config(self.bots()))` (what the HTTP
        layer sends), without masking and encoding every bot at every request:
        that pass, not the read model, cost about 1 s at 1,000 bots.
        """
        from botreg.secrets import dumps_strict, mask_value

        snapshot, env_blob, resolved = self._current()
        key = (snapshot.commit, env_blob, id(resolved))
        cached = self._bots_body
        if cached is not None and cached[0] == key:  # the whole body, once per commit
            return cached[1]
        commit = dumps_strict(mask_value(snapshot.commit, "commit"))
        parts = []
        for bot_id in snapshot.ids:
            found = resolved.get((snapshot.bots[bot_id].blob, env_blob))
            if found is not None:
                parts.append(self._item_json(bot_id, commit, found))
        body = ("[" + ", ".join(parts) + "]").encode()
        self._bots_body = (key, body)
        return body

    def bot_json(self, bot_id: str) -> bytes | None:
        """`GET /bots/{bot_id}` as JSON (see `bots_json`), or None: O(1)."""
        from botreg.secrets import dumps_strict, mask_value

        snapshot, env_blob, resolved = self._current()
        entry = snapshot.bots.get(bot_id)
        found = None if entry is None else resolved.get((entry.blob, env_blob))
        if found is None:
            return None
        commit = dumps_strict(mask_value(snapshot.commit, "commit"))
        return self._item_json(bot_id, commit, found).encode()

    @staticmethod
    def _item_json(bot_id: str, commit: str, resolved: _Resolved) -> str:
        from botreg.secrets import dumps_strict, mask_value

        status, config, error = resolved.json_parts()
        name = dumps_strict(mask_value(bot_id, "bot_id"))
        tail = f', "error": {error}' if error else ""
        return (
            f'{{"bot_id": {name}, "status": {status}, "commit": {commit}, '
            f'"config": {config}{tail}}}'
        )

    def bots(self) -> list[dict[str, Any]]:
        """Every loadable bot at the applied commit, sorted by id (GET /bots)."""
        snapshot, env_blob, resolved = self._current()
        out = []
        for bot_id in snapshot.ids:
            entry = snapshot.bots[bot_id]
            found = resolved.get((entry.blob, env_blob))
            if found is not None:
                out.append(self._item(bot_id, snapshot.commit, found))
        return out

    def bot(self, bot_id: str) -> dict[str, Any] | None:
        """One bot at the applied commit, or None (GET /bots/{bot_id}): O(1)."""
        snapshot, env_blob, resolved = self._current()
        entry = snapshot.bots.get(bot_id)
        if entry is None:
            return None
        found = resolved.get((entry.blob, env_blob))
        return None if found is None else self._item(bot_id, snapshot.commit, found)
