"""Query a knowledge domain: the chunks nearest to a text, embedded as the domain was.

The ledger says which collection serves a domain and which embedding filled it;
the query text is embedded with that embedding (never another model's vectors
against the collection). Both names are importable from
`botreg.knowledge.ingest` as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botreg.knowledge.ledger import Ledger
from botreg.store.lean import AnyStore
from botreg.store.settings import EmbeddingSettings

__all__ = ["QueryHit", "query_domain"]


@dataclass(frozen=True, slots=True)
class QueryHit:
    """One ranked chunk of a query."""

    id: str
    path: str
    heading: str
    text: str
    distance: float
    metadata: dict[str, Any]

    @property
    def content(self) -> str:
        """The chunk's text (the seed's name for it)."""
        return self.text


def query_domain(
    store: AnyStore, ledger: Ledger, domain_id: str, text: str, k: int, function: Any = None
) -> list[QueryHit]:
    """The k chunks of a domain nearest to `text`, embedded as the domain was.

    Args:
        store: The store.
        ledger: The ledger (which collection and embedding the domain has).
        domain_id: The domain.
        text: The query.
        k: How many results.
        function: The embedding function to use (built from the ledger if None).

    Raises:
        BotregError: if the domain was never ingested.
    """
    from botreg.errors import BotregError
    from botreg.store.embedding import create_embedding_function

    state = ledger.domain(domain_id)
    if state is None:
        known = ", ".join(d.domain for d in ledger.domains()) or "none"
        raise BotregError(f"domain {domain_id!r} has not been ingested (ingested: {known})")
    if function is None:
        function = create_embedding_function(EmbeddingSettings.from_description(state.embedding))
    collection = store.collection(state.collection, function)
    [vector] = function([text])
    return [
        QueryHit(
            h["id"],
            str(h["metadata"].get("path", "")),
            str(h["metadata"].get("heading", "")),
            h["text"],
            h["distance"],
            dict(h["metadata"]),
        )
        for h in store.query(collection, vector, k)
    ]
