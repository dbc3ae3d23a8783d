"""Knowledge: raw files in storage, ingested into botreg's store (the seed's names).

Storage: `KnowledgeResourceBackend` and `create_knowledge_backend` (git, memory,
file). Ingestion: `KnowledgeIngestionManager(source, destination, event_bus)`,
async, into a `KnowledgeStore`. See docs/knowledge-storage.md.
"""

from botreg.knowledge.destination import KnowledgeStore
from botreg.knowledge.ingest import IngestionResult, QueryHit
from botreg.knowledge.ledger import IngestionStatus, Ledger
from botreg.knowledge.manager import KnowledgeIngestionManager
from botreg.knowledge.storage import (
    FileKnowledgeBackend,
    GitKnowledgeBackend,
    InMemoryKnowledgeBackend,
    KnowledgeBaseInfo,
    KnowledgeFile,
    KnowledgeResourceBackend,
    create_knowledge_backend,
)

__all__ = [
    "FileKnowledgeBackend",
    "GitKnowledgeBackend",
    "InMemoryKnowledgeBackend",
    "IngestionResult",
    "IngestionStatus",
    "KnowledgeBaseInfo",
    "KnowledgeFile",
    "KnowledgeIngestionManager",
    "KnowledgeResourceBackend",
    "KnowledgeStore",
    "Ledger",
    "QueryHit",
    "create_knowledge_backend",
]
