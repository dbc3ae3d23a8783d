"""GitOps writes for the daemon's HTTP API: each write is a validated commit, pushed.

Where the seed's registry writes a database row, botreg writes a commit to the
registry repository, and the daemon's normal sync cycle applies it like any
other commit (its change events announce it; a write emits nothing itself).

The daemon's mirror is bare and fetched with force: it is never written. Writes
go through a work tree of the source of their own, `<data-dir>/worktree`:

1. fetch the followed branch from the source, with the mirror's URL and
   credentials (`--token-file`, `--ssh-key-file`), through git's environment;
2. reset the work tree to it (whatever an earlier failed write left is dropped);
3. edit `bots/<id>.yaml` with `GitRegistryBackend` (comments and key order kept,
   the repository validated as the pre-commit hook does): an invalid change
   raises `RegistryValidationError` and nothing is committed;
4. amend that commit to the configured author (`--write-author`), with a message
   naming the route: `git log` is the audit trail of every write;
5. push to the branch. A push that lost a race (non-fast-forward: someone else
   pushed in between) starts again at 1 on the new head, up to `PUSH_ATTEMPTS`
   times, then `WriteConflictError`: no write is ever lost or silently merged.

One write at a time per daemon (a lock); git serialises daemons and people.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botreg.api.git_backend import GitRegistryBackend
from botreg.api.models import RegistrationStatus
from botreg.errors import BotregError, UsageError
from botreg.registry.layout import BOTS_DIR
from botreg.secrets import mask_text, redact_url

__all__ = [
    "DEFAULT_AUTHOR",
    "PUSH_ATTEMPTS",
    "BotExistsError",
    "BotNotFoundError",
    "GitOpsWriter",
    "SourceError",
    "WriteConflictError",
    "WriteOutcome",
    "parse_author",
]

DEFAULT_AUTHOR = "botreg daemon <botreg@localhost>"
PUSH_ATTEMPTS = 3  # fetch, edit, push: again on a lost race, then 409
_AUTHOR_RE = re.compile(r"\A([^<>\x00-\x1f\x7f]*[^<>\s]) *<([^<>\s\x7f]+)>\Z")
_RACE_MARKS = ("[rejected]", "(fetch first)", "non-fast-forward")


class BotExistsError(BotregError):
    """POST of a bot id the registry already has (HTTP 409)."""


class BotNotFoundError(BotregError):
    """PUT or DELETE of a bot id the registry does not have (HTTP 404)."""


class WriteConflictError(BotregError):
    """Every push lost a race with another writer (HTTP 409): retry the request."""


class HeadRejectedError(BotregError):
    """The branch head is a commit the daemon rejected: a write on it would never apply."""


class SourceError(BotregError):
    """The source repository could not be fetched or refused the push (HTTP 502)."""


@dataclass(frozen=True)
class WriteOutcome:
    """What a write committed: the bot, the pushed commit, and the bot as written."""

    bot_id: str
    commit: str
    action: str  # created, updated, deleted
    config: dict[str, Any] | None = field(default=None, repr=False)  # None when deleted
    status: str = ""


def parse_author(text: str) -> tuple[str, str]:
    """`Name <email>` as (name, email).

    Raises:
        UsageError: if `text` is not of that form.
    """
    found = _AUTHOR_RE.match(text.strip())
    if found is None:
        raise UsageError(
            f"--write-author {text!r}: expected 'NAME <EMAIL>' "
            "(for example 'botreg daemon <botreg@example.com>')"
        )
    return found[1].strip(), found[2]


class GitOpsWriter:
    """Writes bots as commits pushed to the source (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        url: str,
        branch: str,
        *,
        environment: Callable[[], dict[str, str]] = dict,
        author: str = DEFAULT_AUTHOR,
        timeout: float = 300,
        rejected: Callable[[], str] = str,
    ) -> None:
        """Prepare a writer (nothing is cloned before the first write).

        Args:
            root: the work tree (`<data-dir>/worktree`), created at the first write.
            url: the source as git fetches it (the mirror's URL).
            branch: the branch the daemon follows: writes are pushed there.
            environment: git's credentials as environment variables, read at each
                write (the mirror's: rotated tokens apply; never on a command line).
            author: `Name <email>` of every commit written.
            timeout: seconds a fetch or a push may take.
            rejected: the commit the daemon rejected last ("" if none): a write on
                top of it is refused (it would be committed and never applied).
        """
        self.root = root
        self.url = url
        self.branch = branch
        self.environment = environment
        self.name, self.email = parse_author(author)
        self.timeout = timeout
        self.rejected = rejected
        self._lock = threading.Lock()
        self._backend: GitRegistryBackend | None = None

    # --- the three writes ----------------------------------------------------------------

    def create(self, bot_id: str, config: dict[str, Any], status: str) -> WriteOutcome:
        """Register a new bot (POST /bots); BotExistsError if the branch has it."""

        def change(backend: GitRegistryBackend) -> WriteOutcome:
            if self._has(bot_id):
                raise BotExistsError(f"bot {bot_id!r} exists already: change it with PUT")
            asyncio.run(backend.register(bot_id, config, status))
            return WriteOutcome(bot_id, "", "created", config, status)

        return self._commit(change, f"Register bot {bot_id}", "POST /bots")

    def update(
        self, bot_id: str, config: dict[str, Any] | None, status: str | None
    ) -> WriteOutcome:
        """Replace a bot's config and/or status (PUT /bots/{id}): what is not given is
        kept as the branch has it; BotNotFoundError if the branch does not have it."""

        def change(backend: GitRegistryBackend) -> WriteOutcome:
            if not self._has(bot_id):
                raise BotNotFoundError(f"bot {bot_id!r} not found: create it with POST /bots")
            current = asyncio.run(backend.get(bot_id))
            old = dict(current.config) if current is not None else {}
            old_status = str(old.pop("status", RegistrationStatus.ACTIVE))
            new = config if config is not None else old
            new_status = status or old_status
            asyncio.run(backend.register(bot_id, new, new_status))
            return WriteOutcome(bot_id, "", "updated", new, new_status)

        return self._commit(change, f"Update bot {bot_id}", f"PUT /bots/{bot_id}")

    def delete(self, bot_id: str) -> WriteOutcome:
        """Remove a bot's file (DELETE /bots/{id}, a hard delete as in the seed)."""

        def change(backend: GitRegistryBackend) -> WriteOutcome:
            if not asyncio.run(backend.unregister(bot_id)):
                raise BotNotFoundError(f"bot {bot_id!r} not found")
            return WriteOutcome(bot_id, "", "deleted")

        return self._commit(change, f"Unregister bot {bot_id}", f"DELETE /bots/{bot_id}")

    # --- the cycle of one write ------------------------------------------------------------

    def _has(self, bot_id: str) -> bool:
        return (self.root / BOTS_DIR / f"{bot_id}.yaml").is_file()

    def _commit(
        self, change: Callable[[GitRegistryBackend], WriteOutcome], subject: str, route: str
    ) -> WriteOutcome:
        message = f"{subject}\n\nWritten through the botreg daemon's HTTP API ({route})."
        with self._lock:
            for _attempt in range(PUSH_ATTEMPTS):
                backend = self._reset()
                head = self._git("rev-parse", "HEAD").strip()
                if head and head == self.rejected():
                    raise HeadRejectedError(
                        f"the head of {self.branch} ({head[:12]}) does not validate and the "
                        "daemon rejected it: a commit on top of it would never be applied. "
                        "Fix or revert that commit first (GET /status lists its findings); "
                        "nothing was written"
                    )
                outcome = change(backend)
                self._amend(message)
                commit = self._git("rev-parse", "HEAD").strip()
                if self._push():
                    return WriteOutcome(
                        outcome.bot_id, commit, outcome.action, outcome.config, outcome.status
                    )
            raise WriteConflictError(
                f"{PUSH_ATTEMPTS} pushes to {redact_url(self.url)} {self.branch} lost a race "
                "with other writers: nothing was written; retry the request"
            )

    def _reset(self) -> GitRegistryBackend:
        """The work tree at the branch's current head, fetched now."""
        if not (self.root / ".git").is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            self._git("init", "-q")
        (self.root / ".git" / "index.lock").unlink(missing_ok=True)  # a killed git's leftover
        self._git("config", "remote.origin.url", self.url)
        # the backend's commit needs an identity even where the daemon's user has none
        self._git("config", "user.name", self.name)
        self._git("config", "user.email", self.email)
        remote = f"refs/remotes/origin/{self.branch}"
        self._git(
            "fetch",
            "-q",
            "--no-tags",
            "--no-write-fetch-head",
            "origin",
            f"+refs/heads/{self.branch}:{remote}",
            remote_call=True,
        )
        self._git("checkout", "-q", "-f", "-B", self.branch, remote)
        self._git("clean", "-q", "-f", "-d", "-x")
        if self._backend is None:
            self._backend = GitRegistryBackend(repo=self.root)
        return self._backend

    def _amend(self, message: str) -> None:
        """The commit the backend made, as the configured author (also committer)."""
        identity = {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }
        self._git(
            "commit",
            "-q",
            "--amend",
            "--no-verify",
            "--reset-author",
            "-m",
            message,
            extra=identity,
        )

    def _push(self) -> bool:
        """Push HEAD to the branch: True if it landed, False if it lost a race."""
        try:
            self._git(
                "push", "--porcelain", "origin", f"HEAD:refs/heads/{self.branch}", remote_call=True
            )
        except SourceError as exc:
            if any(mark in str(exc) for mark in _RACE_MARKS):
                return False
            raise
        return True

    def _git(
        self, *args: str, remote_call: bool = False, extra: dict[str, str] | None = None
    ) -> str:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"}
        if remote_call:
            env.update(self.environment())  # credentials: the environment, never argv
        env.update(extra or {})
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=self.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SourceError(
                f"git {args[0]} with {redact_url(self.url)} timed out after {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise SourceError(f"cannot run git: {exc.strerror or exc}") from None
        if done.returncode != 0:
            detail = redact_url(mask_text(f"{done.stdout}\n{done.stderr}".strip()))[-600:]
            where = f" {redact_url(self.url)} {self.branch}" if remote_call else ""
            raise SourceError(f"git {args[0]}{where} failed: {detail}")
        return done.stdout
