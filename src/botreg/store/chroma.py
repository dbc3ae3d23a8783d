"""Chroma, embedded (PersistentClient) or a server (HttpClient), behind one small API.

Collections: one per knowledge domain and embedding setting, named
`botreg-<domain>-<first 10 hex digits of the embedding fingerprint>`: within
Chroma's rules (3-512 characters of [a-zA-Z0-9._-], starting and ending with a
letter or digit), and two models' vectors never share a collection.

Every write is split into batches of at most the client's `get_max_batch_size()`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from botreg.errors import BotregError
from botreg.store.settings import StoreSettings
from botreg.validation.confinement import (
    StoreLock,
    StorePolicy,
    check_http_store,
    resolve_store_path,
    store_policy,
)

__all__ = ["ChromaStore", "StoreUnavailableError", "collection_name"]


class StoreUnavailableError(BotregError):
    """The Chroma store cannot be opened or reached."""


def collection_name(domain: str, fingerprint: str) -> str:
    """The collection of a domain for one embedding setting (see the module docstring)."""
    return f"botreg-{domain}-{fingerprint[:10]}"


def _batches(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, start + size)


class ChromaStore:
    """A Chroma client with batched writes.

    The operator's policy confines it (see `botreg.validation.confinement`): an
    embedded store opens only inside the store root and is locked for as long
    as it is open; an http store that carries headers or any value of the
    operator's environment opens only on a host the operator named, and sends
    credentials over plain HTTP only to loopback (`check_http_store`). These
    checks hold even if validation was bypassed.
    """

    def __init__(
        self, settings: StoreSettings, data_dir: Path, policy: StorePolicy | None = None
    ) -> None:
        """Open the store an environment names.

        Args:
            settings: The environment's `knowledge.store`, variables expanded.
            data_dir: The data dir (relative store paths are below it by default).
            policy: The operator's policy; default: `store_policy()`.

        Raises:
            ConfinementError: for a store path outside the store root, the
                operator's values for a host the operator did not name, or
                credentials over plain HTTP beyond loopback.
            StoreLockedError: if another process holds the embedded store.
            StoreUnavailableError: if the store cannot be opened or reached.
        """
        import chromadb
        from chromadb.config import Settings

        policy = policy or store_policy()
        # No `.env` of the working directory (a registry checkout may hold one),
        # and no credentials from CHROMA_* variables: only what the environment
        # file says, checked below, reaches the client.
        chroma_settings = Settings(  # type: ignore[call-arg]  # pydantic-settings init keyword
            _env_file=None,
            anonymized_telemetry=False,
            chroma_client_auth_provider=None,
            chroma_client_auth_credentials=None,
        )
        self.settings = settings
        self._lock: StoreLock | None = None
        if settings.type == "http":
            check_http_store(
                settings.host,
                settings.port,
                ssl=settings.ssl,
                has_headers=bool(settings.headers),
                operator_vars=settings.operator_vars,
                policy=policy,
            )
        try:
            if settings.type == "http":
                kwargs: dict[str, Any] = {}
                if settings.tenant:
                    kwargs["tenant"] = settings.tenant
                if settings.database:
                    kwargs["database"] = settings.database
                self.client = chromadb.HttpClient(
                    host=settings.host,
                    port=settings.port,
                    ssl=settings.ssl,
                    headers=settings.headers or None,
                    settings=chroma_settings,
                    **kwargs,
                )
                self.location = (
                    f"{'https' if settings.ssl else 'http'}://{settings.host}:{settings.port}"
                )
            else:
                # absolute and symlink-free: Chroma caches one client system per path string
                path = resolve_store_path(settings.path, data_dir, policy)
                path.mkdir(parents=True, exist_ok=True)
                # again on the created folder: a link may have appeared on the way
                path = resolve_store_path(str(path), data_dir, policy)
                self._lock = StoreLock(path, f"data dir {Path(data_dir).resolve()}")
                self.client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
                self.location = str(path)
            self.batch_size = max(1, int(self.client.get_max_batch_size()))
        except BotregError:
            self._release()
            raise
        except Exception as exc:  # connection refused, bad TLS, unreadable folder...
            self._release()
            where = f"{settings.host}:{settings.port}" if settings.type == "http" else settings.path
            raise StoreUnavailableError(f"cannot open the Chroma store at {where}: {exc}") from None

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def close(self) -> None:
        """Release the client (its database handles or HTTP connections) and the store lock."""
        # chromadb's HTTP component does not close its httpx session when stopped:
        # close it here so long-running processes do not leak connections.
        sessions = [
            getattr(getattr(owner, "_server", None), "_session", None)
            for owner in (self.client, getattr(self.client, "_admin_client", None))
        ]
        close_client = getattr(self.client, "close", None)
        if close_client is not None:
            close_client()
        for session in sessions:
            if session is not None:
                session.close()
        self._release()

    def collection(self, name: str, embedding_function: Any = None) -> Any:
        """Get or create a collection (cosine space)."""
        return self.client.get_or_create_collection(
            name,
            embedding_function=embedding_function,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"created_by": "botreg"},
        )

    def has_collection(self, name: str) -> bool:
        """True if the collection exists."""
        return name in {c.name for c in self.client.list_collections()}

    def drop_collection(self, name: str) -> None:
        """Delete a collection if it exists."""
        if self.has_collection(name):
            self.client.delete_collection(name)

    def upsert(
        self,
        collection: Any,
        ids: Sequence[str],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        embeddings: Sequence[Any],
    ) -> None:
        """Write chunks whole, in batches."""
        for part in _batches(len(ids), self.batch_size):
            collection.upsert(
                ids=list(ids[part]),
                documents=list(documents[part]),
                metadatas=list(metadatas[part]),
                embeddings=list(embeddings[part]),
            )

    def update_metadata(
        self, collection: Any, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]
    ) -> None:
        """Replace chunk metadata (same key set) without touching text or vectors."""
        for part in _batches(len(ids), self.batch_size):
            collection.update(ids=list(ids[part]), metadatas=list(metadatas[part]))

    def delete(self, collection: Any, ids: Sequence[str]) -> None:
        """Delete chunks by id, in batches (missing ids are ignored)."""
        for part in _batches(len(ids), self.batch_size):
            collection.delete(ids=list(ids[part]))

    def embeddings(self, collection: Any, ids: Sequence[str]) -> dict[str, Any]:
        """Stored vectors by chunk id (ids not stored are absent)."""
        found: dict[str, Any] = {}
        for part in _batches(len(ids), self.batch_size):
            got = collection.get(ids=list(ids[part]), include=["embeddings"])
            found.update(zip(got["ids"], got["embeddings"], strict=True))
        return found

    def count(self, collection: Any) -> int:
        """Number of chunks in a collection."""
        return int(collection.count())

    def query(self, collection: Any, embedding: Any, k: int) -> list[dict[str, Any]]:
        """The k nearest chunks: id, text, metadata, distance."""
        got = collection.query(
            query_embeddings=[embedding],
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        return [
            {"id": i, "text": d, "metadata": m, "distance": float(dist)}
            for i, d, m, dist in zip(
                got["ids"][0],
                got["documents"][0],
                got["metadatas"][0],
                got["distances"][0],
                strict=True,
            )
        ]
