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

`verify_store` finds the other ways a store can stop being what the ledger
describes with its identity unchanged: the embedded store's folder deleted,
or restored from an older backup, written by another process, or a ledger
started afresh beside a full store. It compares chunk ids per collection and
adopts on a difference.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botreg.knowledge.ledger import Ledger, StoredChunk
from botreg.store.chroma import ChromaStore

__all__ = [
    "ADOPTED_BLOB",
    "adopt_store_records",
    "follow_store",
    "metadata_hash",
    "verify_store",
]

# The blob recorded for a file whose chunks were adopted from the store: matches
# no real `<blob>:<settings>` key, so the next ingest re-plans the file.
ADOPTED_BLOB = "adopted:unknown"
_PAGE = 1000  # chunks read from the store per request


def metadata_hash(metadata: dict[str, Any]) -> str:
    """A chunk's metadata hash, exactly as ingest computes it (`PlannedChunk.meta_hash`
    in `botreg.knowledge.plan`)."""
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


def verify_store(store: ChromaStore, ledger: Ledger) -> str:
    """Check that the store holds what the ledger records; adopt what it holds if not.

    A store in line holds, in each botreg collection, every chunk id the ledger
    records as stored and no id it does not record (a crash may have kept a
    recorded write from landing, never the reverse). Ids are compared, not
    metadata. Reading them loads each collection's index (about a second for
    20,000 chunks): `botreg ingest` calls this only when the store's folder is
    not as its last run left it (see `botreg.knowledge.gate`).

    Args:
        store: The store the ledger describes (its identity already followed).
        ledger: The ledger; its chunk and file records are replaced on a difference.

    Returns:
        "" if the store is in line; otherwise what differed (the records were
        then adopted from the store: the next ingest re-plans every file).
    """
    held = {
        str(c.name): c for c in store.client.list_collections() if str(c.name).startswith("botreg-")
    }
    for name in sorted(set(ledger.collections()) | set(held)):
        states = ledger.chunk_states(name)
        ids = _stored_ids(held[name]) if name in held else set()
        missing = sum(1 for i, stored in states.items() if stored and i not in ids)
        unknown = sum(1 for i in ids if i not in states)
        if missing or unknown:
            adopt_store_records(store, ledger)
            return (
                f"collection {name}: {missing} recorded chunk(s) missing, "
                f"{unknown} unrecorded chunk(s) held"
            )
    return ""


def _stored_ids(collection: Any) -> set[str]:
    """Every chunk id a collection holds (no metadata, no vectors: the cheapest read)."""
    ids: set[str] = set()
    offset = 0
    while True:
        got = collection.get(limit=_PAGE * 5, offset=offset, include=[])
        if not got["ids"]:
            return ids
        ids.update(got["ids"])
        offset += len(got["ids"])
