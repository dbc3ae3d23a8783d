"""Whether `botreg ingest` may trust the ledger without opening the store.

Opening the store costs a second or more (importing Chroma, then loading a
collection's index on first use), which a run with nothing to write should not
pay. The ledger alone decides what changed, provided it still describes the
store:

- the store is the one it records (the environment's `knowledge.store`
  identity: path, or host, tenant and database); a new one is followed and
  adopted (`botreg.knowledge.adopt.follow_store`);
- for an embedded store, the store's folder is as the last run that opened it
  left it: that run records a marker of the folder and of Chroma's database
  file (device, inode, size, modification and change times) once the store is
  closed. A store deleted, replaced, restored from a backup, or written by
  another process (the sync daemon) no longer matches: the next run opens it
  and checks its contents against the ledger (`verify_store`) before trusting
  the ledger again. A run that crashed wrote no marker: the store it was
  writing no longer matches the marker before it.

A server store's contents are the server's: as before, the ledger is trusted
while the identity is the same (a server reset is not noticed here).

When the ledger is trusted, the store is embedded and the provider built in,
the ingestion writes through a `SwitchingStore` (`botreg.store.lean`): a
one-file edit is written without importing the chromadb package; anything
else the run needs switches it to the full store.
"""

from __future__ import annotations

import os
from pathlib import Path

from botreg.knowledge.ledger import Ledger
from botreg.store.chroma import ChromaStore, check_server
from botreg.store.lean import SwitchingStore, UntestedCoreError, flush_settled, lean_available
from botreg.store.settings import EmbeddingSettings, StoreSettings
from botreg.validation.confinement import StorePolicy, resolve_store_path

__all__ = ["MARKER_KEY", "StoreGate", "store_marker"]

MARKER_KEY = "ingest.store_marker"  # the ledger's meta key for the marker
_DATABASE = "chroma.sqlite3"


def store_marker(folder: Path) -> str:
    """The state of an embedded store's folder on disk ("" if there is no store there).

    Args:
        folder: The store folder (absolute, symlink-free).
    """
    parts = []
    for path in (folder, folder / _DATABASE, folder / f"{_DATABASE}-wal"):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if path.name.endswith("-wal"):
                parts.append("-")
                continue
            return ""
        except OSError:
            return ""
        parts.append(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}")
    return "|".join(parts)


class StoreGate:
    """The store of an environment, opened only when first needed; its trust marker.

    Args:
        settings: The environment's `knowledge.store`.
        data_dir: The data dir.
        policy: The operator's policy (confines the store's folder).
        ledger: The ledger beside the store.
        embedding: The environment's embedding settings (given: the ingestion may
            write through a lean store, see `writer`).

    Raises:
        ConfinementError: for an embedded store's path outside the store root, or
            a server the policy refuses (checked at once, as `ChromaStore` checks
            them, whether or not the store is opened).
    """

    def __init__(
        self,
        settings: StoreSettings,
        data_dir: Path,
        policy: StorePolicy,
        ledger: Ledger,
        embedding: EmbeddingSettings | None = None,
    ) -> None:
        self.settings = settings
        self.embedding = embedding
        self.data_dir = data_dir
        self.policy = policy
        self.ledger = ledger
        self.folder: Path | None = None
        check_server(settings, policy)
        if settings.type != "http":
            self.folder = resolve_store_path(settings.path, data_dir, policy)
        self._store: ChromaStore | SwitchingStore | None = None

    def trusted(self) -> bool:
        """True if the ledger describes the store as it is, without opening it."""
        if self.ledger.store_identity() != self.settings.identity:
            return False
        if self.folder is None:
            return True
        marker = store_marker(self.folder)
        return bool(marker) and self.ledger.get(MARKER_KEY) == marker

    @property
    def opened(self) -> bool:
        """True once the store was opened."""
        return self._store is not None

    def open(self) -> ChromaStore:
        """The store, opened on the first call.

        Raises:
            ConfinementError, StoreLockedError, StoreUnavailableError: as `ChromaStore`.
        """
        if isinstance(self._store, SwitchingStore):
            return self._store.full()
        if self._store is None:
            self._store = ChromaStore(self.settings, self.data_dir, self.policy)
        return self._store

    def writer(self) -> ChromaStore | SwitchingStore:
        """The store for an ingestion, opened on the first call: a `SwitchingStore` when
        the ledger is trusted, the store embedded and the provider built in (a one-file
        edit then never imports Chroma), else the full store (`open`).

        Raises:
            ConfinementError, StoreLockedError, StoreUnavailableError: as `ChromaStore`.
        """
        if self._store is not None:
            return self._store
        from botreg.store.builtin import builtin_function

        if self.embedding is None or self.folder is None or not self.trusted():
            return self.open()
        function = builtin_function(self.embedding)
        if function is None or not lean_available():
            return self.open()
        try:
            self._store = SwitchingStore(
                self.settings, self.data_dir, self.policy, self.folder, function, self.embedding
            )
        except (UntestedCoreError, TypeError):  # TypeError: a core taking other arguments
            return self.open()
        return self._store

    __call__ = writer

    def close(self) -> None:
        """Close the store if it was opened, then flush the collections the run settled
        (`botreg.store.lean.flush_settled`: the next run's first write stays cheap)."""
        if self._store is not None:
            settled_now = list(self._store.settled_now)
            self._store.close()
            if settled_now and self.folder is not None:
                flush_settled(self.folder, f"data dir {self.data_dir.resolve()}", settled_now)

    def seal(self) -> None:
        """After the store was closed with the ledger in line with it: record the marker
        that lets the next run trust the ledger (nothing to record if it was not opened:
        the marker recorded before still holds)."""
        if self.folder is not None and self._store is not None:
            self.ledger.put(MARKER_KEY, store_marker(self.folder))
