"""Confinement: what a committed file may make botreg touch on the operator's machine.

A committer decides what an environment file says, but not where botreg
writes, what it reads, or to whom it sends the operator's credentials:

- an embedded store (`knowledge.store.path`) is a folder inside the store root
  (the data dir unless the operator names another with `--store-root` /
  `BOTREG_STORE_ROOT`); `..`, absolute paths and symlinks leading out are
  refused, both by `botreg validate` (BR305, on the text) and when the store
  is opened (on the real path);
- the operator's values go only to hosts the operator named (`--store-host` /
  `BOTREG_STORE_HOSTS`): an http store that carries `headers` or any value
  expanded from the operator's environment, and an embedding provider that
  gets a credential (a variable named by an `*_env_var` setting, or a value
  from the operator's environment), are refused elsewhere; credentials never
  travel over plain HTTP except to a loopback address;
- an embedding setting that names an environment variable (`api_key_env_var`)
  must name one the operator allows (`--allow-env`), like `${VAR}` does;
- registry files are read without following symbolic links;
- an embedded store is held by one process at a time (a lock file inside it).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import fnmatch
import ipaddress
import os
import posixpath
import re
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botreg.datadir import is_reserved
from botreg.envref import REF
from botreg.errors import BotregError
from botreg.registry.layout import FileKind
from botreg.secrets import is_secret_key
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
    "check_credential_url",
    "check_http_store",
    "check_store_host",
    "is_loopback_host",
    "read_registry_file",
    "resolve_store_path",
    "set_store_policy",
    "store_path_findings",
    "store_path_problem",
    "store_policy",
    "use_store_policy",
]

STORE_ROOT_ENV = "BOTREG_STORE_ROOT"
STORE_HOSTS_ENV = "BOTREG_STORE_HOSTS"
STORE_LOCK_FILE = "botreg-store.lock"

_VAR_RE = REF
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
        store_hosts: (host, port or None) pairs that may receive the operator's
            credentials and values (Chroma servers, embedding endpoints).
        allow_env: Name patterns (fnmatch) of the variables an embedding setting
            may name (`api_key_env_var`); None: any (a person's own shell).
    """

    store_root: Path | None = None
    store_hosts: frozenset[tuple[str, int | None]] = field(default_factory=frozenset)
    # nothing by default: a daemon built without the CLI reads no variable either
    allow_env: tuple[str, ...] | None = ()

    @classmethod
    def build(
        cls,
        store_root: str | None,
        store_hosts: list[str],
        allow_env: tuple[str, ...] | None = (),
    ) -> StorePolicy:
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
        return cls(root, frozenset(hosts), allow_env)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorePolicy:
        """The policy of `BOTREG_STORE_ROOT` and `BOTREG_STORE_HOSTS` (comma-separated)."""
        variables = os.environ if env is None else env
        hosts = variables.get(STORE_HOSTS_ENV, "")
        return cls.build(variables.get(STORE_ROOT_ENV) or None, [hosts] if hosts else [])

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StorePolicy:
        """The policy of the flags of `add_arguments`, added to the environment's.

        `args.allow_env` (the `--allow-env` patterns) is the variables an
        embedding setting may name; a command without that flag (`botreg
        ingest`, run in a person's own shell) allows any, as its `${VAR}` do.

        Raises:
            ConfinementError: for a host that is not `HOST[:PORT]`.
        """
        base = cls.from_env()
        hosts = cls.build(None, list(args.store_host or [])).store_hosts
        root = Path(args.store_root).expanduser() if args.store_root else base.store_root
        allow = getattr(args, "allow_env", None)
        return cls(root, base.store_hosts | hosts, None if allow is None else tuple(allow))

    def root_for(self, data_dir: Path) -> Path:
        """The store root for a data dir."""
        return self.store_root if self.store_root is not None else data_dir

    def allows_host(self, host: str, port: int) -> bool:
        """True if the operator named this host (with this port, or any port)."""
        name = _normal_host(host)
        return (name, None) in self.store_hosts or (name, port) in self.store_hosts

    def allows_env(self, name: str) -> bool:
        """True if a setting may name this environment variable (see `allow_env`)."""
        if self.allow_env is None:
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.allow_env)


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses (judged on the text: no DNS lookup)."""
    name = _normal_host(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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
        help=f"a host that may receive operator credentials and values: the Chroma server, "
        f"embedding endpoints (repeatable; also ${STORE_HOSTS_ENV}, comma-separated); "
        "anything of the operator's bound elsewhere is refused",
    )


_policy: StorePolicy | None = None


def set_store_policy(policy: StorePolicy | None) -> None:
    """Set the process's policy (the CLI does, from its flags); None: from the environment."""
    global _policy  # noqa: PLW0603 - one operator per process
    _policy = policy


def store_policy() -> StorePolicy:
    """The policy in force: the one the CLI set, else the environment's."""
    return _policy if _policy is not None else StorePolicy.from_env()


@contextmanager
def use_store_policy(policy: StorePolicy) -> Iterator[StorePolicy]:
    """The policy in force for the duration of one command, then the previous one again."""
    global _policy  # noqa: PLW0603 - one operator per process
    previous, _policy = _policy, policy
    try:
        yield policy
    finally:
        _policy = previous


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
    normal = posixpath.normpath(text.replace("\\", "/")) if text else ""
    if normal == ".":
        return "is the store root itself"
    if normal and is_reserved(normal.split("/")[0]):
        return f"is inside {normal.split('/')[0]}, one of the data dir's own files or folders"
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
    real_data = Path(os.path.realpath(data_dir))
    if _inside(target, real_data) and is_reserved(target.relative_to(real_data).parts[0]):
        raise ConfinementError(
            f"knowledge.store.path {path!r} is inside "
            f"{target.relative_to(real_data).parts[0]}, one of botreg's own files or folders "
            "in the data dir: write another folder name such as `chroma`"
        )
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


def check_http_store(
    host: str,
    port: int,
    *,
    ssl: bool,
    has_headers: bool,
    operator_vars: tuple[str, ...],
    policy: StorePolicy,
) -> None:
    """Refuse an http store that would send the operator's values where they must not go.

    The rule: anything of the operator's (request headers, or any value
    expanded from the operator's environment, wherever the committer placed it:
    host, tenant, database...) goes only to a host the operator named; and
    credentials (headers, or a value of a secret-like variable) never go over
    plain HTTP except to a loopback address.

    Args:
        host: The store's host, as expanded.
        port: Its port.
        ssl: Whether the client uses TLS.
        has_headers: Whether the store sends request headers.
        operator_vars: Variables of the operator's environment expanded into the store.
        policy: The operator's policy.

    Raises:
        ConfinementError: naming the setting and the flag that allows it.
    """
    if has_headers:
        check_store_host(host, port, True, policy)
    if operator_vars and not policy.allows_host(host, port):
        names = ", ".join(f"${{{name}}}" for name in operator_vars)
        raise ConfinementError(
            f"knowledge.store carries values of the operator's environment ({names}) and its "
            f"host {host!r} (port {port}) is not one the operator named, so botreg does not "
            f"connect: name it with --store-host HOST[:PORT] (or {STORE_HOSTS_ENV}), or fix "
            "the environment file"
        )
    secret = has_headers or any(is_secret_key(name) for name in operator_vars)
    if secret and not ssl and not is_loopback_host(host):
        raise ConfinementError(
            f"knowledge.store sends credentials to {host!r} (port {port}) over plain HTTP "
            "(ssl: false): set `ssl: true` and terminate TLS in front of Chroma, or run "
            "Chroma on a loopback address"
        )


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "grpc": 80, "grpcs": 443}


def check_credential_url(setting: str, value: str, policy: StorePolicy) -> None:
    """Refuse a URL or host that would get the operator's credentials unless the operator named it.

    Args:
        setting: The setting's dotted name, for the message.
        value: A URL (`https://emb.example/v1`) or a host (`emb.example:8080`).
        policy: The operator's policy.

    Raises:
        ConfinementError: if the host is not one the operator named, cannot be
            read, or is reached over plain HTTP beyond loopback.
    """
    text = value.strip()
    scheme, host, port = "", "", 0
    try:
        if "://" in text:
            parts = urlsplit(text)
            scheme = parts.scheme.lower()
            host = parts.hostname or ""
            port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        elif text:
            host, bare_port = _parse_host(text.split("/", 1)[0])
            port = bare_port or 0
    except ValueError:
        host = ""
    if not host or _CONTROL_RE.search(host):
        raise ConfinementError(
            f"{setting} is not a URL or host botreg can check, and the provider would send it "
            "the operator's credentials: write `https://HOST[:PORT]/...`"
        )
    # the text, not a lookup: what the client will connect to
    if not policy.allows_host(host, port):
        raise ConfinementError(
            f"{setting} points at {host!r} (port {port or 'default'}), not a host the operator "
            f"named, and the provider would send it the operator's credentials: name it with "
            f"--store-host HOST[:PORT] (or {STORE_HOSTS_ENV}), or fix the environment file"
        )
    if scheme in ("http", "ws", "grpc") and not is_loopback_host(host):
        raise ConfinementError(
            f"{setting} sends the operator's credentials to {host!r} over plain {scheme.upper()}: "
            "use https (terminate TLS in front of the service), or a loopback address"
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
