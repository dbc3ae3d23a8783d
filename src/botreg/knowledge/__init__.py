"""Knowledge: raw files in storage, chunked and ingested into the store (the seed's names)."""

from botreg.knowledge.ingest import (
    IngestionResult,
    KnowledgeIngestionManager,
    QueryHit,
)
from botreg.knowledge.ledger import IngestionStatus, Ledger
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
    "Ledger",
    "QueryHit",
    "create_knowledge_backend",
]
