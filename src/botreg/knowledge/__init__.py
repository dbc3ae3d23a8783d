"""Knowledge: chunking registry files and ingesting them into the store."""

from botreg.knowledge.ingest import IngestionResult, KnowledgeIngestionManager, QueryHit
from botreg.knowledge.ledger import IngestionStatus, Ledger

__all__ = ["IngestionResult", "IngestionStatus", "KnowledgeIngestionManager", "Ledger", "QueryHit"]
