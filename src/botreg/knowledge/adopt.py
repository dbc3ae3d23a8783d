"""Rebuild the ledger's records from what a store holds.

The ledger says which chunks the store holds, so an ingest skips what is
there. When the ledger cannot know (an HA takeover: another daemon wrote the
store; a commit that points the environment at another store, perhaps one this
ledger described before), the records are rebuilt from the store itself: every
botreg collection is read (ids and metadata, no vectors), each chunk recorded
as stored, each file as `ADOPTED_BLOB`. The next ingest then re-plans every
file: chunks already stored are found by id and never embedded again, metadata
that differs is updated, chunks no file produces any more (a file deleted
while the store was elsewhere) are deleted, and missing ones are written.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botreg.knowledge.ledger import Ledger, StoredChunk
from botreg.store.chroma import ChromaStore

__all__ = ["ADOPTED_BLOB", "adopt_store_records", "follow_store", "metadata_hash"]

# The blob recorded for a file whose chunks were adopted from the store: matches
# no real `<blob>:<settings>` key, so the next ingest re-plans the file.
ADOPTED_BLOB = "adopted:unknown"
_PAGE = 1000  # chunks read from the store per request


def metadata_hash(metadata: dict[str, Any]) -> str:
    """A chunk's metadata hash, exactly as ingest computes it (`_Planned.meta_hash`)."""
    return hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()


def adopt_store_records(store: ChromaStore, ledger: Ledger) -> int:
    """Replace the ledger's chunk and file records with the store's; returns chunks read.

    Args:
        store: The store the ledger is to describe.
        ledger: Its chunk and file records are replaced; its store identity set.
    """
    adopted: dict[str, list[StoredChunk]] = {}
    for collection in store.client.list_collections():
        name = str(collection.name)
        if not name.startswith("botreg-"):
            continue
        records: list[StoredChunk] = []
        offset = 0
        while True:
            got = collection.get(limit=_PAGE, offset=offset, include=["metadatas"])
            ids = list(got["ids"])
            if not ids:
                break
            for chunk_id, stored in zip(ids, got["metadatas"] or [], strict=True):
                meta = dict(stored or {})
                records.append(
                    StoredChunk(
                        chunk_id,
                        str(meta.get("path", "")),
                        str(meta.get("content_hash", "")),
                        metadata_hash(meta),
                    )
                )
            offset += len(ids)
        adopted[name] = records
    # the records now describe this store: a later apply must not take it for a move
    ledger.follow_store(store.settings.identity)
    ledger.adopt(adopted, ADOPTED_BLOB)
    return sum(len(records) for records in adopted.values())


def follow_store(store: ChromaStore, ledger: Ledger) -> str:
    """Make the ledger describe `store`; if it described another one, adopt this one.

    Forgetting the records alone would leave chunks of files deleted while the
    store was elsewhere in it for good (observed: a store moved away and back
    kept serving a deleted file); adopting finds and deletes them, and embeds
    nothing the store already holds.

    Returns:
        The previous store's identity when the store moved, else "".
    """
    moved = ledger.follow_store(store.settings.identity)
    if moved:
        adopt_store_records(store, ledger)
    return moved
