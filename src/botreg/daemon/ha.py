"""High availability: the shared state of an HA group, following it, adopting a store.

Daemons of one HA group (one registry, one store: a Chroma server) share, in
Redis, besides the lease (`botreg.daemon.lease`):

- `botreg:ha:<group>:state`, a hash: `commit` (the applied commit), `writer`
  (the lease holder that wrote it), `token` (its fencing token) and `domains`
  (JSON: domain -> {collection, embedding}, the active collections).

Only the leader writes it, with a Lua script that checks its fencing token in
the same step (a deposed leader's write is refused atomically), and only once
the commit is really applied: after `botreg.sync.completed` was published and,
with a Redis event sink, once the sink flushed (contract section 3).

A standby polls it, fetches the commit into its own mirror, and records it as
what it serves (ledger applied commit, domain -> collection rows), so `/bots`,
`/query`, `/status` and `/readyz` answer for the leader's commit.

A new leader whose ledger may not describe the store (the state's writer is
not itself) adopts the store first (`adopt_store`): its chunk records are
rebuilt from the store itself, every file marked unknown, so the next cycle
re-plans every file without embedding any chunk the store already holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botreg.daemon.lease import FencedError, Lease, lease_key
from botreg.knowledge.adopt import ADOPTED_BLOB, adopt_store_records, metadata_hash
from botreg.knowledge.ledger import IngestionStatus, Ledger
from botreg.store.chroma import ChromaStore

__all__ = [
    "ADOPTED_BLOB",
    "HAState",
    "SharedState",
    "adopt_store",
    "default_group",
    "domain_map",
    "metadata_hash",
    "record_domains",
]

logger = logging.getLogger("botreg.daemon")


# KEYS[1] state, KEYS[2] fence; ARGV[1] token, then field/value pairs
_WRITE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'token', ARGV[1], unpack(ARGV, 2))
return 1
"""


def default_group(source: str, branch: str, environment: str) -> str:
    """The HA group two daemons of one registry agree on without `--ha-group`.

    A digest of the source (see `same_source`), branch and environment: the key
    names nothing secret and stays short.
    """
    key = f"{same_source(source)}\0{branch}\0{environment}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def same_source(source: str) -> str:
    """One spelling for the ways of writing one repository, so that daemons started
    with `/srv/reg`, `/srv/reg/`, `file:///srv/reg` or `/srv/reg/.git` (or `https://
    Host/org/reg.git` and `https://host/org/reg`) share one lease instead of each
    leading on its own: no credentials, no trailing slash or `.git`, a local path
    made absolute, the scheme and host in lower case, an scp-like `git@host:path`
    written as ssh://.
    """
    from urllib.parse import urlsplit

    from botreg.secrets import redact_url

    text = source.strip()
    scp = re.fullmatch(r"(?:[^@/:]+@)?([^/:]+):(?!//)(.+)", text)
    if scp and "://" not in text and not Path(text).exists():
        text = f"ssh://{scp[1]}/{scp[2].lstrip('/')}"
    if "://" not in text or text.lower().startswith("file://"):
        if text.lower().startswith("file://localhost/"):  # RFC 8089: the same file
            text = "file://" + text[len("file://localhost") :]
        local = Path(text[7:] if text.lower().startswith("file://") else text)
        path = str(local.expanduser().resolve()) if str(local) else str(local)
        return "file://" + _bare(path)
    try:
        parts = urlsplit(redact_url(text))
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:  # unparsable: the redacted text as it is
        return _bare(redact_url(text))
    default = {"https": 443, "http": 80, "ssh": 22, "git": 9418}.get(parts.scheme.lower())
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{netloc}{_bare(parts.path)}"


def _bare(path: str) -> str:
    """A repository path without a trailing slash, `/.git` or `.git`."""
    path = path.rstrip("/")
    if path.endswith("/.git"):
        path = path[: -len("/.git")]
    elif path.endswith(".git"):
        path = path[: -len(".git")]
    return path


@dataclass(frozen=True)
class HAState:
    """What the leader recorded as applied (empty before any leader wrote)."""

    commit: str = ""
    writer: str = ""
    token: int = 0
    domains: dict[str, dict[str, Any]] = field(default_factory=dict)


class SharedState:
    """The group's shared state in Redis (see the module docstring).

    Args:
        lease: The group's lease (its client, keys and fence are used).
    """

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.key = lease_key(lease.group, "state")
        self._fence_key = lease_key(lease.group, "fence")

    def read(self) -> HAState:
        """The state now.

        Raises:
            redis.RedisError: if Redis cannot be reached.
        """
        with self.lease.bounded():  # a trickled reply must not hold the standby's poll
            raw = self.lease.client.hgetall(self.key)
        try:
            domains = json.loads(raw.get("domains") or "{}")
        except ValueError:
            domains = {}
        try:
            token = int(raw.get("token") or 0)
        except ValueError:
            token = 0
        return HAState(
            raw.get("commit", ""),
            raw.get("writer", ""),
            token,
            domains if isinstance(domains, dict) else {},
        )

    def write(self, commit: str, domains: dict[str, dict[str, Any]]) -> None:
        """Record `commit` and the active collections as applied (leader only).

        Raises:
            FencedError: if this daemon no longer holds the lease with its token
                (checked locally, then atomically in Redis with the write).
            redis.RedisError: if Redis cannot be reached.
        """
        self.lease.check()
        token = self.lease.token()
        with self.lease.bounded():
            written = self._write(token, commit, domains)
        if not int(written):
            raise FencedError(f"token {token} was superseded: the shared state was not written")

    def _write(self, token: int, commit: str, domains: dict[str, dict[str, Any]]) -> Any:
        return self.lease.client.eval(
            _WRITE,
            2,
            self.key,
            self._fence_key,
            token,
            "commit",
            commit,
            "writer",
            self.lease.holder,
            "domains",
            json.dumps(domains, sort_keys=True),
        )


def domain_map(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """domain -> {collection, embedding} of the domains the ledger serves."""
    return {
        state.domain: {"collection": state.collection, "embedding": state.embedding}
        for state in ledger.domains()
    }


def record_domains(ledger: Ledger, domains: dict[str, dict[str, Any]], commit: str) -> None:
    """Make the ledger's domain rows name `domains`' collections (a standby's follow,
    an adoption): queries then read the leader's collections."""
    for state in ledger.domains():
        if state.domain not in domains:
            ledger.forget_domain(state.domain)
    for name, entry in domains.items():
        collection = str(entry.get("collection", ""))
        embedding = entry.get("embedding")
        if not collection or not isinstance(embedding, dict):
            continue  # a damaged entry: the next cycle re-ingests the domain
        current = ledger.domain(name)
        if (
            current is not None
            and current.collection == collection
            and current.embedding == embedding
            and current.status == IngestionStatus.READY
        ):
            continue
        ledger.set_domain(
            name,
            collection=collection,
            embedding=embedding,
            status=IngestionStatus.READY,
            commit=commit,
        )


def adopt_store(
    store: ChromaStore, ledger: Ledger, domains: dict[str, dict[str, Any]], commit: str
) -> int:
    """Rebuild the ledger's chunk records from the store; returns chunks adopted.

    Every chunk of the store is recorded as stored and every file as
    `ADOPTED_BLOB` (`botreg.knowledge.adopt`): the next ingest re-plans every
    file without embedding a chunk the store holds. Then the domain rows name
    the shared state's collections.

    Args:
        store: The shared store.
        ledger: This daemon's ledger (its chunk and file records are replaced).
        domains: The shared state's domain -> collection map (may be empty).
        commit: The shared state's applied commit (recorded on the domain rows).
    """
    chunks = adopt_store_records(store, ledger)
    record_domains(ledger, domains, commit)
    return chunks
