"""A knowledge base of any storage backend, seen as a registry tree by the ingester.

The ingester (`botreg.knowledge.ingest.DomainIngester`) reads registry trees: a
`RegistrySource` listing `knowledge/<domain>/...` with git blob ids. A git
backend hands over its own tree (blobs read directly); any other
`KnowledgeResourceBackend` is wrapped here: its listing gives the entries and
their checksums (git blob ids in every botreg backend), and a file's bytes are
fetched from the backend only when the ingester needs them (an unchanged file is
skipped without being read). The ingester runs in a worker thread; reads hop
back to the event loop that owns the backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from botreg.knowledge.storage.models import KnowledgeFile
from botreg.knowledge.storage.protocol import KnowledgeResourceBackend
from botreg.registry.layout import KNOWLEDGE_DIR
from botreg.registry.source import SourceEntry, git_blob_id

__all__ = ["BackendTree"]

_READ_TIMEOUT = 300.0  # seconds for one file from the backend


class BackendTree:
    """One knowledge base of a backend as a `RegistrySource` (see the module docstring).

    Args:
        backend: The storage backend.
        domain_id: The knowledge base.
        files: Its listing (`await backend.list_files(domain_id)`).
        loop: The event loop the backend runs on (reads are scheduled there).
    """

    fork_safe = False

    def __init__(
        self,
        backend: KnowledgeResourceBackend,
        domain_id: str,
        files: Sequence[KnowledgeFile],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.backend = backend
        self.domain_id = domain_id
        self.loop = loop
        prefix = f"{KNOWLEDGE_DIR}/{domain_id}/"
        self._files = {prefix + f.path: f for f in files}
        self._prefix = prefix

    @property
    def label(self) -> str:
        """The backend and knowledge base, for messages."""
        return f"{type(self.backend).__name__}:{self.domain_id}"

    def entries(self) -> list[SourceEntry]:
        """The knowledge base's files, as registry paths."""
        return [SourceEntry(path, f.size_bytes) for path, f in sorted(self._files.items())]

    def read(self, path: str) -> bytes:
        """A file's bytes, fetched from the backend on its loop.

        Raises:
            FileNotFoundError: if the backend no longer has it.
        """
        if path not in self._files:
            raise FileNotFoundError(path)
        future = asyncio.run_coroutine_threadsafe(
            self.backend.get_file(self.domain_id, path[len(self._prefix) :]), self.loop
        )
        data = future.result(_READ_TIMEOUT)
        if data is None:
            raise FileNotFoundError(path)
        return data

    def blob_id(self, path: str) -> str:
        """The file's checksum from the listing (a git blob id), or computed if it is not one."""
        found = self._files.get(path)
        if found is None:
            raise FileNotFoundError(path)
        checksum = found.checksum
        if len(checksum) == 40 and all(c in "0123456789abcdef" for c in checksum):
            return checksum
        return git_blob_id(self.read(path))  # another backend's hash: not comparable
