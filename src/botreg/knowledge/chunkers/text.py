"""Plain text knowledge: paragraphs, packed into chunks."""

from __future__ import annotations

import re

from botreg.knowledge.chunkers.base import count_tokens, pack, split_prose
from botreg.registry.settings import ChunkingSettings

__all__ = ["chunk_text"]

_BLANK_LINES = re.compile(r"\n\s*\n")


def chunk_text(text: str, settings: ChunkingSettings) -> list[tuple[str, str]]:
    """(heading "", text) pairs: paragraphs packed within the budget."""
    pieces: list[str] = []
    for raw in _BLANK_LINES.split(text):
        paragraph = raw.strip()
        if not paragraph:
            continue
        if count_tokens(paragraph) > settings.max_tokens:
            pieces.extend(split_prose(paragraph, settings.max_tokens, settings.overlap_tokens))
        else:
            pieces.append(paragraph)
    return [("", body) for body in pack(pieces, settings.max_tokens)]
