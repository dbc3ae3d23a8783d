"""What changed in a domain since it was ingested: decided from blob ids and the ledger.

Nothing here reads a file the ledger records as ingested with the same blob
(and size), or opens the store: a registry tree gives blob ids cheaply (a git
revision from its tree, a work tree from git's index, see
`botreg.knowledge.worktree`), so an unchanged domain is known as such for the
price of a listing and one ledger query.

A file's ledger key is its blob id and the chunking settings (chunking and
limits of registry.yaml): new settings re-chunk every file, while unchanged
chunk texts keep their ids and vectors. The embedding is not in the key: it
names the collection (see `botreg.store.chroma.collection_name`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from botreg.knowledge.ledger import FileRecord, Ledger
from botreg.knowledge.names import folder_files, has_control
from botreg.registry.snapshot import Snapshot
from botreg.registry.view import RegistryView

__all__ = ["CHUNKER_VERSION", "DomainScan", "domain_version", "scan_domain", "settings_key"]


@dataclass(slots=True)
class DomainScan:
    """A domain's files against the ledger's records of one collection."""

    files: list[str]  # the ingestible files, sorted
    blobs: dict[str, str]  # path -> git blob id
    keys: dict[str, str]  # path -> ledger key (`<blob>:<settings key>`)
    sizes: dict[str, int]  # path -> bytes
    changed: list[str]  # files to chunk again (new, edited, failed before, new settings)
    removed: list[str]  # files recorded but gone (or no longer selected)
    refused: list[str] = field(default_factory=list)  # names with a control character

    @property
    def unchanged(self) -> bool:
        """True if every file is recorded as it is and none is gone or refused."""
        return not (self.changed or self.removed or self.refused)


# The chunkers' version: bump it whenever the same file and settings give other
# chunk texts (tests/test_chunker_version.py fails until you do), so an upgraded
# botreg re-chunks every file once instead of serving old chunks for the files
# nobody edits. Unchanged chunk texts keep their ids and vectors: nothing is
# embedded twice.
CHUNKER_VERSION = 2


def settings_key(snapshot: Snapshot) -> str:
    """The part of a file's key that the chunkers' version, chunking settings and limits make."""
    settings = snapshot.settings
    chunking = (settings.chunking.max_tokens, settings.chunking.overlap_tokens)  # not the
    # deprecated csv_rows_per_chunk (BR204): setting or removing it changes nothing
    material = repr((CHUNKER_VERSION, chunking, settings.limits))
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def scan_domain(view: RegistryView, ledger: Ledger, domain: str, collection: str) -> DomainScan:
    """Compare a domain's files with what `collection` holds of them (no file is read
    when the tree knows its blob ids).

    Args:
        view: The registry tree's view (selects the domain's ingestible files).
        ledger: The ledger.
        domain: A valid domain name.
        collection: The collection the domain is written to.

    Raises:
        DomainConfigError: if the domain's `_domain.yaml` cannot be read.
    """
    snapshot = view.snapshot
    files = [path for path in view.domain_files(domain) if not has_control(path)]
    # names with a control character are reported, never stored (few: looked up among those)
    refused = folder_files((p for p in snapshot.entries if has_control(p)), domain)
    suffix = settings_key(snapshot)
    blobs = {path: snapshot.source.blob_id(path) for path in files}
    keys = {path: f"{blob}:{suffix}" for path, blob in blobs.items()}
    sizes = {path: snapshot.entries[path].size for path in files}
    recorded = ledger.file_records(collection)
    return DomainScan(
        files=files,
        blobs=blobs,
        keys=keys,
        sizes=sizes,
        changed=[p for p in files if not _same(recorded.get(p), keys[p], sizes[p])],
        removed=[p for p in recorded if p not in keys],
        refused=refused,
    )


def _same(record: FileRecord | None, key: str, size: int) -> bool:
    return record is not None and record.matches(key, size)


def domain_version(fingerprint: str, files: list[str], blobs: dict[str, str]) -> str:
    """A version of a domain's content and embedding: equal versions, equal stores.

    Args:
        fingerprint: The embedding settings' fingerprint.
        files: The domain's ingestible files.
        blobs: Their blob ids.
    """
    digest = hashlib.sha256(fingerprint.encode())
    for path in files:
        digest.update(f"{path}\0{blobs[path]}\n".encode())
    return digest.hexdigest()
