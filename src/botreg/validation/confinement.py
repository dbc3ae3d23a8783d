"""Confinement: what a committed file may make botreg touch on the operator's machine.

A committer decides what an environment file says, but not where botreg
writes, what it reads, or to whom it sends the operator's credentials:

- an embedded store (`knowledge.store.path`) is a folder inside the store root
  (the data dir unless the operator names another with `--store-root` /
  `BOTREG_STORE_ROOT`); `..`, absolute paths and symlinks leading out are
  refused, both by `botreg validate` (BR305, on the text) and when the store
  is opened (on the real path);
- an http store gets request headers (the operator's credentials, from
  `${VAR}`) only if its host is one the operator named (`--store-host` /
  `BOTREG_STORE_HOSTS`); otherwise it is refused;
- registry files are read without following symbolic links;
- an embedded store is held by one process at a time (a lock file inside it).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import posixpath
import re
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botreg.errors import BotregError
from botreg.registry.layout import FileKind
from botreg.validation.findings import Finding

__all__ = [
    "STORE_HOSTS_ENV",
    "STORE_LOCK_FILE",
    "STORE_ROOT_ENV",
    "ConfinementError",
    "StoreLock",
    "StoreLockedError",
    "StorePolicy",
    "add_arguments",
    "check_store_host",
    "read_registry_file",
    "resolve_store_path",
    "set_store_policy",
    "store_path_findings",
    "store_path_problem",
    "store_policy",
]

STORE_ROOT_ENV = "BOTREG_STORE_ROOT"
STORE_HOSTS_ENV = "BOTREG_STORE_HOSTS"
STORE_LOCK_FILE = "botreg-store.lock"

_VAR_RE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_WINDOWS_ABSOLUTE_RE = re.compile(r"^(?:[A-Za-z]:[\\/]|[\\/]{2})")


class ConfinementError(BotregError):
    """A committed setting would make botreg leave the places the operator allows."""


class StoreLockedError(BotregError):
    """Another process holds the embedded store."""


# --- the operator's policy ------------------------------------------------------------


def _parse_host(spec: str) -> tuple[str, int | None]:
    """`HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` as (lowercase host, port or None)."""
    spec = spec.strip()
    port: str | None = None
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
        elif rest:
            raise ValueError(f"not HOST[:PORT]: {spec!r}")
    elif spec.count(":") == 1:
        host, port = spec.split(":")
    else:
        host = spec  # a bare IPv6 address or a plain host
    if not host:
        raise ValueError(f"not HOST[:PORT]: {spec!r}")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"bad port in {spec!r}")
    return _normal_host(host), int(port) if port is not None else None


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class StorePolicy:
    """Where an embedded store may live and which servers get credentials (the operator's say).

    Attributes:
        store_root: Folder that relative store paths are relative to, and that
            every store path must resolve into; None means the data dir.
        store_hosts: (host, port or None) pairs an http store with headers may use.
    """

    store_root: Path | None = None
    store_hosts: frozenset[tuple[str, int | None]] = field(default_factory=frozenset)

    @classmethod
    def build(cls, store_root: str | None, store_hosts: list[str]) -> StorePolicy:
        """A policy from flag values (`--store-root DIR`, `--store-host HOST[:PORT]` ...).

        Raises:
            ConfinementError: for a host that is not `HOST[:PORT]`.
        """
        hosts: set[tuple[str, int | None]] = set()
        for item in store_hosts:
            for spec in item.split(","):
                if spec.strip():
                    try:
                        hosts.add(_parse_host(spec))
                    except ValueError as exc:
                        raise ConfinementError(f"--store-host: {exc}") from None
        root = Path(store_root).expanduser() if store_root else None
        return cls(root, frozenset(hosts))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorePolicy:
        """The policy of `BOTREG_STORE_ROOT` and `BOTREG_STORE_HOSTS` (comma-separated)."""
        variables = os.environ if env is None else env
        hosts = variables.get(STORE_HOSTS_ENV, "")
        return cls.build(variables.get(STORE_ROOT_ENV) or None, [hosts] if hosts else [])

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StorePolicy:
        """The policy of the flags of `add_arguments`, added to the environment's.

        Raises:
            ConfinementError: for a host that is not `HOST[:PORT]`.
        """
        base = cls.from_env()
        hosts = cls.build(None, list(args.store_host or [])).store_hosts
        root = Path(args.store_root).expanduser() if args.store_root else base.store_root
        return cls(root, base.store_hosts | hosts)

    def root_for(self, data_dir: Path) -> Path:
        """The store root for a data dir."""
        return self.store_root if self.store_root is not None else data_dir

    def allows_host(self, host: str, port: int) -> bool:
        """True if the operator named this host (with this port, or any port)."""
        name = _normal_host(host)
        return (name, None) in self.store_hosts or (name, port) in self.store_hosts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--store-root DIR` and `--store-host HOST[:PORT]` (the operator's store policy)."""
    parser.add_argument(
        "--store-root",
        metavar="DIR",
        help=f"folder an embedded store must be inside (default: ${STORE_ROOT_ENV}, else the "
        "data dir); relative store paths are relative to it",
    )
    parser.add_argument(
        "--store-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help=f"a Chroma server that may receive the store's headers (repeatable; also "
        f"${STORE_HOSTS_ENV}, comma-separated); an http store with headers elsewhere is refused",
    )


_policy: StorePolicy | None = None


def set_store_policy(policy: StorePolicy | None) -> None:
    """Set the process's policy (the CLI does, from its flags); None: from the environment."""
    global _policy  # noqa: PLW0603 - one operator per process
    _policy = policy


def store_policy() -> StorePolicy:
    """The policy in force: the one the CLI set, else the environment's."""
    return _policy if _policy is not None else StorePolicy.from_env()


# --- the store path -------------------------------------------------------------------


def _with_defaults(text: str) -> str:
    """The path as the daemon sees it when no variable is set (each default substituted)."""

    def substitute(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        # no default: the operator's value, judged when the store is opened
        return name if default is None else default

    return _VAR_RE.sub(substitute, text)


def store_path_problem(path: str) -> str | None:
    """Why a store path could leave the store root, judged on its text (None if it cannot).

    A `${VAR:default}` is judged with its default (what applies when VAR is
    unset); a `${VAR}` without default is the operator's value and is checked
    when the store is opened.
    """
    text = _with_defaults(path)
    if _CONTROL_RE.search(text):
        return "contains a control character"
    if text.startswith(("/", "~")) or _WINDOWS_ABSOLUTE_RE.match(text):
        return "is absolute"
    parts = text.replace("\\", "/").split("/")
    if ".." in parts:
        return "has a '..' segment"
    if text and posixpath.normpath(text.replace("\\", "/")) == ".":
        return "is the store root itself"
    return None


def store_path_findings(path: str, kind: FileKind, data: Any) -> list[Finding]:
    """BR305 for an environment whose embedded store path could leave the store root."""
    if kind is not FileKind.ENVIRONMENT or not isinstance(data, Mapping):
        return []
    knowledge = data.get("knowledge")
    store = knowledge.get("store") if isinstance(knowledge, Mapping) else None
    if not isinstance(store, Mapping) or store.get("type", "persistent") != "persistent":
        return []
    value = store.get("path")
    if not isinstance(value, str):
        return []
    problem = store_path_problem(value)
    if problem is None:
        return []
    return [
        Finding(
            path,
            "BR305",
            f"knowledge.store.path {problem}: an embedded store is a folder inside the data "
            "dir (or the operator's --store-root); write a relative path such as `chroma`",
            pointer=("knowledge", "store", "path"),
        )
    ]


def _inside(path: Path, root: Path) -> bool:
    return path != root and path.is_relative_to(root)


def resolve_store_path(path: str, data_dir: Path, policy: StorePolicy | None = None) -> Path:
    """The real folder of an embedded store, refused unless it is inside the store root.

    Args:
        path: `knowledge.store.path`, variables expanded.
        data_dir: The data dir (the store root unless the policy names one).
        policy: The operator's policy (default: `store_policy()`).

    Returns:
        The absolute, symlink-free folder (not created).

    Raises:
        ConfinementError: if the path, once `..` and symlinks are resolved, is
            not a folder strictly inside the store root.
    """
    policy = policy or store_policy()
    root = policy.root_for(data_dir)
    if _CONTROL_RE.search(path) or not path:
        raise ConfinementError(
            f"knowledge.store.path {path!r} is not a folder name; write a relative path "
            "such as `chroma`"
        )
    real_root = Path(os.path.realpath(root))
    # realpath resolves `..` and every symlink of the part that exists
    target = Path(os.path.realpath(real_root / Path(path).expanduser()))
    if not _inside(target, real_root):
        raise ConfinementError(
            f"knowledge.store.path {path!r} resolves to {target}, outside the store root "
            f"{real_root}: botreg only creates an embedded store inside the data dir (or "
            f"the folder named with --store-root / {STORE_ROOT_ENV}); fix the environment "
            "file or run `botreg validate`"
        )
    return target


def check_store_host(host: str, port: int, has_credentials: bool, policy: StorePolicy) -> None:
    """Refuse to send the operator's credentials to a server the operator did not name.

    Raises:
        ConfinementError: if the store carries credentials and its host is not allowed.
    """
    if has_credentials and not policy.allows_host(host, port):
        raise ConfinementError(
            f"knowledge.store.host {host!r} (port {port}) is not a store host the operator "
            f"named, so botreg does not send it credentials: name it with --store-host "
            f"HOST[:PORT] (or {STORE_HOSTS_ENV}), or fix the environment file"
        )


# --- the embedded store's lock --------------------------------------------------------


# Chroma shares one client system per store path within a process, so the
# process is the unit that holds a store: stores opened twice in one process
# share one lock (counted), and a second process is refused.
_held: dict[str, tuple[int, int]] = {}  # real path of the lock file -> (fd, users)
_held_guard = threading.Lock()


class StoreLock:
    """An exclusive advisory lock on a store folder, held while the store is open."""

    def __init__(self, folder: Path, holder: str) -> None:
        """Take the lock (or share this process's hold on it), or fail at once.

        Args:
            folder: The store folder (it exists).
            holder: What this process is, recorded for the error of a second one.

        Raises:
            StoreLockedError: naming the holder, if another process holds it.
        """
        self.path = folder / STORE_LOCK_FILE
        self._key: str | None = str(self.path)
        with _held_guard:
            if self._key in _held:
                fd, users = _held[self._key]
                _held[self._key] = (fd, users + 1)
                return
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.path, flags, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                self._key = None
                raise StoreLockedError(
                    f"the Chroma store {folder} is in use by another botreg process ({other}): "
                    "an embedded store has one user at a time; stop that process, or give "
                    "this one its own store"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}: {holder}\n".encode(), 0)
            _held[self._key] = (fd, 1)

    def release(self) -> None:
        """Let the store go (the last user of the process closes the descriptor: unlocked)."""
        with _held_guard:
            if self._key is None or self._key not in _held:
                return
            fd, users = _held[self._key]
            if users > 1:
                _held[self._key] = (fd, users - 1)
            else:
                del _held[self._key]
                os.close(fd)
            self._key = None

    def __del__(self) -> None:
        # a store nobody closed releases its share when collected
        self.release()


# --- registry files -------------------------------------------------------------------


def read_registry_file(repo: Path, rel: str) -> bytes:
    """Read a file of a registry work tree without following any symbolic link.

    Args:
        repo: The registry root.
        rel: The file's path below it, `/`-separated.

    Raises:
        ConfinementError: if the file or a folder on its way is a symbolic link.
        FileNotFoundError: if it does not exist.
        OSError: if it cannot be read.
    """
    current = repo
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise ConfinementError(f"{rel}: not a path inside the registry")
    for part in rel.split("/"):
        current = current / part
        if os.path.islink(current):
            raise ConfinementError(
                f"{rel}: {current.relative_to(repo)} is a symbolic link; botreg does not "
                "follow links in a registry (replace it with the file itself)"
            )
    try:
        fd = os.open(current, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link since the check
            raise ConfinementError(f"{rel} is a symbolic link; botreg does not follow it") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ConfinementError(f"{rel}: not a regular file")
        return handle.read()
