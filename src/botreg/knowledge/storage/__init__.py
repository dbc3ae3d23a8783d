"""Knowledge storage: raw knowledge files before they are embedded (the seed's API).

`KnowledgeResourceBackend` and its three backends (git, memory, file), the models
and `create_knowledge_backend`. See docs/knowledge-storage.md.
"""

from botreg.knowledge.storage.errors import (
    KnowledgeBaseExistsError,
    KnowledgeBaseNotFoundError,
    KnowledgePathError,
    KnowledgeStorageError,
    KnowledgeValidationError,
)
from botreg.knowledge.storage.factory import create_knowledge_backend
from botreg.knowledge.storage.files import FileKnowledgeBackend
from botreg.knowledge.storage.git import GitKnowledgeBackend
from botreg.knowledge.storage.memory import InMemoryKnowledgeBackend
from botreg.knowledge.storage.models import IngestionStatus, KnowledgeBaseInfo, KnowledgeFile
from botreg.knowledge.storage.protocol import KnowledgeResourceBackend

__all__ = [
    "FileKnowledgeBackend",
    "GitKnowledgeBackend",
    "InMemoryKnowledgeBackend",
    "IngestionStatus",
    "KnowledgeBaseExistsError",
    "KnowledgeBaseInfo",
    "KnowledgeBaseNotFoundError",
    "KnowledgeFile",
    "KnowledgePathError",
    "KnowledgeResourceBackend",
    "KnowledgeStorageError",
    "KnowledgeValidationError",
    "create_knowledge_backend",
]
