"""Plain text knowledge: paragraphs, packed into chunks under the file's title."""

from __future__ import annotations

import re

from botreg.knowledge.chunkers.base import count_tokens, split_prose
from botreg.knowledge.chunkers.packer import Packer
from botreg.registry.settings import ChunkingSettings

__all__ = ["chunk_text"]

_BLANK_LINES = re.compile(r"\n\s*\n")


def chunk_text(text: str, settings: ChunkingSettings, packer: Packer) -> None:
    """Hand text's paragraphs to `packer` (long ones split at sentences, with overlap)."""
    packer.section(())
    for raw in _BLANK_LINES.split(text):
        paragraph = raw.strip()
        if not paragraph:
            continue
        if count_tokens(paragraph) > packer.budget:
            for piece in split_prose(paragraph, packer.budget, settings.overlap_tokens):
                packer.add(piece)
        else:
            packer.add(paragraph)
