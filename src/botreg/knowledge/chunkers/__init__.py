"""One chunker per file type; `chunk_file` picks the right one."""

from botreg.knowledge.chunkers.base import Chunk, count_tokens
from botreg.knowledge.chunkers.dispatch import chunk_file

__all__ = ["Chunk", "chunk_file", "count_tokens"]
