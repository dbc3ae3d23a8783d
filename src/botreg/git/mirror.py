"""The daemon's git mirror: a bare repository in the data dir that follows one branch.

- Fetches force and prune: a force-pushed branch is followed, never merged.
- The last applied commit is kept under `refs/botreg/applied`, so neither gc
  nor a rewritten branch can lose it (the next diff needs it).
- Credentials come from files that are read again for every fetch (rotated
  tokens just work) and reach git through its environment, never its command
  line, a URL, a log or an error message. Credentials written into an http(s)
  `--source` URL are taken out of it too: the mirror's config holds the bare
  URL, and the user name and password travel as an Authorization header in
  git's environment, so nothing in the data dir stores them.
- Lock files that a killed git left behind are removed before each fetch (the
  daemon holds the data dir lock, so no other git runs in the mirror).
- A fetch can be interrupted (`should_stop`): git and its helpers are killed, so
  a stopping daemon never waits for a hanging remote.
- Automatic gc is off (it could race a fetch); `maintain()` packs and prunes at
  a time the daemon chooses, between cycles and never during a fetch: every
  fetch leaves loose objects (6,648 of them, 27.9 MB after 1,286 commits, against
  0.9 MB for a fresh clone) and a force-push leaves unreachable ones.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from botreg.errors import BotregError
from botreg.git.diff import tree_diff
from botreg.secrets import redact_url, split_url_credentials

__all__ = [
    "BranchNotFoundError",
    "FetchError",
    "FetchInterrupted",
    "GitMirror",
    "MaintenanceError",
    "MaintenanceInterrupted",
    "MaintenanceResult",
    "redact_url",
]

APPLIED_REF = "refs/botreg/applied"


class FetchError(BotregError):
    """The branch could not be fetched."""


class BranchNotFoundError(FetchError):
    """The source has no such branch (git answered; not a network or access problem)."""


class FetchInterrupted(Exception):  # noqa: N818 - a stop asked for, not an error
    """A stop was asked for during the fetch: git was killed (nothing is half-updated:
    git updates refs only at the end, and stale lock files are removed next time)."""


class MaintenanceError(BotregError):
    """`git gc` of the mirror failed (the mirror still works; it is retried later)."""


class MaintenanceInterrupted(Exception):  # noqa: N818 - a stop asked for, not an error
    """A stop was asked for during `git gc`: git was killed (the mirror stays usable)."""


@dataclass(frozen=True, slots=True)
class MaintenanceResult:
    """Disk use of the mirror before and after a maintenance run, in bytes."""

    bytes_before: int
    bytes_after: int
    loose_before: int
    loose_after: int


def _disk_usage(path: Path) -> tuple[int, int]:
    """(bytes on disk, loose objects) of a git directory, as `du` counts them (blocks:
    a 200-byte loose object takes a whole block)."""
    total = loose = 0
    for root, _dirs, files in os.walk(path):
        in_objects = os.path.basename(os.path.dirname(root)) == "objects"
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue  # removed meanwhile
            # objects/ab/cdef...: a loose object (packs live in objects/pack)
            loose += in_objects and len(os.path.basename(root)) == 2
    return total, loose


class _Killed(Exception):  # noqa: N818 - internal: git was killed
    def __init__(self, stopped: bool) -> None:
        super().__init__("stopped" if stopped else "timed out")
        self.stopped = stopped


def _run_git(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float, stop: Callable[[], bool]
) -> tuple[int, bytes]:
    """Run git in its own process group, asking `stop` every 0.1 s; `(returncode,
    stderr)`. A stop or the timeout kills the group (git's helpers: remote-https,
    ssh, repack, prune too) and raises `_Killed`. OSError if git cannot start."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            _out, err = proc.communicate(timeout=0.1)
            return proc.returncode, err
        except subprocess.TimeoutExpired:
            stopping = stop()
            if not stopping and time.monotonic() < deadline:
                continue
            with suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise _Killed(stopping) from None


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where credentials come from (files, read at each fetch)."""

    token_file: Path | None = None
    ssh_key_file: Path | None = None


class GitMirror:
    """A bare mirror of one branch of a source repository."""

    def __init__(
        self,
        path: Path,
        source: str,
        branch: str,
        credentials: Credentials | None = None,
        timeout: float = 300,
    ) -> None:
        import git

        self.path = path
        self.source = source
        self.branch = branch
        self.credentials = credentials or Credentials()
        self.timeout = timeout
        self._authorization: str | None = None  # from userinfo in an http(s) --source
        self._secret_url: str | None = None  # the source URL with a query credential
        self._busy = threading.Lock()  # a fetch and a gc never run at once
        if (path / "HEAD").is_file():
            self.repo = git.Repo(path)
        else:
            path.mkdir(parents=True, exist_ok=True)
            self.repo = git.Repo.init(path, bare=True)
        self._remote_url = self._url()
        with self.repo.config_writer() as config:
            config.set_value('remote "origin"', "url", self._remote_url)
            config.set_value("gc", "auto", "0")  # no gc racing a fetch; refs keep what we need

    def _url(self) -> str:
        source = self.source
        if "://" not in source and not re.match(r"^[\w.-]+@[\w.-]+:", source):
            return Path(source).resolve().as_uri()  # a local path
        # never at rest in mirror.git/config: sent as a header at each fetch instead
        bare, self._authorization = split_url_credentials(source)
        shown = redact_url(bare)
        if shown != bare:
            # a credential in the query (`?private_token=`): the config file keeps the
            # masked URL, and git rewrites it to the real one from our environment
            # (`url.<real>.insteadOf`), which only this process and git see
            self._secret_url = bare
        return shown

    @property
    def url(self) -> str:
        """The source URL git fetches from (may hold credentials: redact before showing)."""
        return self._remote_url

    @property
    def tracking_ref(self) -> str:
        """The ref that holds the fetched branch head."""
        return f"refs/remotes/origin/{self.branch}"

    def _environment(self) -> dict[str, str]:
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
        authorization = self._authorization  # from the --source URL's userinfo, if any
        if self.credentials.token_file is not None:
            try:
                token = self.credentials.token_file.read_text().strip()
            except OSError as exc:
                raise FetchError(f"cannot read the token file: {exc.strerror}") from None
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            authorization = f"Basic {basic}"
        config: list[tuple[str, str]] = []
        if authorization is not None:
            config.append(("http.extraHeader", f"Authorization: {authorization}"))
        if self._secret_url is not None:
            config.append((f"url.{self._secret_url}.insteadOf", self._remote_url))
        for n, (key, value) in enumerate(config):  # git's config from the environment
            env[f"GIT_CONFIG_KEY_{n}"] = key
            env[f"GIT_CONFIG_VALUE_{n}"] = value
        if config:
            env["GIT_CONFIG_COUNT"] = str(len(config))
        if self.credentials.ssh_key_file is not None:
            key = shlex.quote(str(self.credentials.ssh_key_file))
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {key} -o IdentitiesOnly=yes -o BatchMode=yes "
                "-o StrictHostKeyChecking=accept-new"
            )
        return env

    def clean_stale_locks(self, older_than: float = 0) -> list[str]:
        """Remove `*.lock` files left by a killed git. Returns what was removed."""
        removed = []
        now = time.time()
        for lock in self.path.rglob("*.lock"):
            try:
                if now - lock.stat().st_mtime >= older_than:
                    lock.unlink()
                    removed.append(str(lock.relative_to(self.path)))
            except OSError:
                continue
        return removed

    def fetch(self, should_stop: Callable[[], bool] | None = None) -> str:
        """Fetch the branch (force, prune) and return its head commit.

        Args:
            should_stop: Asked while git runs (every 0.1 s): True kills git.

        Raises:
            FetchError: with git's message, credentials removed; or a timeout.
            FetchInterrupted: if `should_stop` said so.
        """
        import git

        refspec = f"+refs/heads/{self.branch}:{self.tracking_ref}"
        executable = git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"
        git_dir = self.path.resolve()  # a relative data dir must not resolve against cwd twice
        command = [executable, f"--git-dir={git_dir}", "fetch", "--prune", "--no-tags"]
        command += ["--no-write-fetch-head"]  # it would record the URL, query token included
        command += ["origin", refspec]
        env = {**os.environ, **self._environment(), "LC_ALL": "C", "LANGUAGE": "C"}
        stop = should_stop or (lambda: False)
        with self._busy:  # never beside a gc of this mirror
            self.clean_stale_locks()
            return self._fetch(command, git_dir, env, stop)

    def _fetch(
        self, command: list[str], git_dir: Path, env: dict[str, str], stop: Callable[[], bool]
    ) -> str:
        try:
            returncode, err = _run_git(command, git_dir, env, self.timeout, stop)
        except OSError as exc:
            raise FetchError(f"cannot run git: {exc.strerror or exc}") from None
        except _Killed as killed:
            if killed.stopped:
                raise FetchInterrupted("fetch interrupted by a stop") from None
            raise FetchError(
                f"fetch of {redact_url(self.source)} {self.branch} failed: "
                f"timed out after {self.timeout:g} s"
            ) from None
        if returncode != 0:
            detail = redact_url(err.decode("utf-8", "replace").strip())
            # git's words under LC_ALL=C: the source answered, and has no such branch
            missing = "couldn't find remote ref" in detail
            raise (BranchNotFoundError if missing else FetchError)(
                f"fetch of {redact_url(self.source)} {self.branch} failed: {detail[-500:]}"
            )
        return self.head()

    def disk_usage(self) -> int:
        """Bytes the mirror takes on disk."""
        return _disk_usage(self.path)[0]

    def maintain(
        self, timeout: float = 600, should_stop: Callable[[], bool] | None = None
    ) -> MaintenanceResult:
        """Pack loose objects and refs and prune unreachable objects (`git gc`).

        What a ref names is kept: the fetched branch and `refs/botreg/applied`
        (the applied commit, which the next diff needs even after a force-push).
        Objects no ref reaches are pruned at once (`--prune=now`): nothing else
        writes to the mirror while this runs (the data dir lock keeps other
        processes out, `_busy` a fetch of this one), so no object can be in
        flight. The mirror is a bare repository without reflogs, so none keeps
        a dropped commit alive either.

        git runs in its own process group, so a timeout or a stop kills it with
        the processes it started (repack, pack-objects, prune). A killed gc
        leaves the mirror usable: git writes a new pack before it deletes what
        it replaces, and swaps refs and packs by rename; the lock files it
        leaves are removed before the next fetch or gc.

        Args:
            timeout: Seconds before git is killed.
            should_stop: Asked while git runs (every 0.1 s): True kills git, so a
                stopping daemon never waits for a gc.

        Raises:
            MaintenanceError: with git's message, or a timeout.
            MaintenanceInterrupted: if `should_stop` said so.
        """
        import git

        executable = git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"
        git_dir = self.path.resolve()
        command = [executable, f"--git-dir={git_dir}", "gc", "--quiet", "--prune=now"]
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"}
        stop = should_stop or (lambda: False)
        with self._busy:
            bytes_before, loose_before = _disk_usage(self.path)
            self.clean_stale_locks()
            try:
                returncode, err = _run_git(command, git_dir, env, timeout, stop)
            except OSError as exc:
                raise MaintenanceError(f"cannot run git gc: {exc.strerror or exc}") from None
            except _Killed as killed:
                self.clean_stale_locks()  # what the killed gc held: the mirror stays usable
                if killed.stopped:
                    raise MaintenanceInterrupted("git gc interrupted by a stop") from None
                raise MaintenanceError(
                    f"git gc of the mirror failed: timed out after {timeout:g} s"
                ) from None
            if returncode != 0:
                detail = " ".join(err.decode("utf-8", "replace").split())[-300:]
                raise MaintenanceError(f"git gc of the mirror failed: {detail}")
            bytes_after, loose_after = _disk_usage(self.path)
        return MaintenanceResult(bytes_before, bytes_after, loose_before, loose_after)

    def head(self) -> str:
        """The fetched head of the branch ('' before the first fetch)."""
        return self.resolve(self.tracking_ref)

    def resolve(self, ref: str) -> str:
        """The commit a ref or sha names, or '' if it does not exist."""
        import git

        try:
            return str(self.repo.git.rev_parse("--verify", "-q", f"{ref}^{{commit}}"))
        except git.GitCommandError:
            return ""

    def has_commit(self, sha: str) -> bool:
        """True if the mirror holds this commit."""
        return bool(sha) and self.resolve(sha) == sha

    def is_ancestor(self, old: str, new: str) -> bool:
        """True if `old` is an ancestor of (or equal to) `new`."""
        import git

        try:
            self.repo.git.merge_base("--is-ancestor", old, new)
        except git.GitCommandError:
            return False
        return True

    def keep_applied(self, sha: str) -> None:
        """Point `refs/botreg/applied` at the applied commit (so it stays reachable)."""
        self.repo.git.update_ref(APPLIED_REF, sha)

    def diff(self, old: str, new: str) -> list[tuple[str, str, str, str, str]]:
        """Tree-to-tree changes between two commits (see `botreg.git.diff.tree_diff`)."""
        return tree_diff(self.repo, old, new)
