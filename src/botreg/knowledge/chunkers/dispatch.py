"""`chunk_file`: the chunker for a file's type, after bounded decompression."""

from __future__ import annotations

from pathlib import PurePosixPath

from botreg.knowledge.chunkers.base import Chunk
from botreg.knowledge.chunkers.markdown import (
    chunk_markdown,
    front_matter_metadata,
    split_front_matter,
)
from botreg.knowledge.chunkers.structured import render_markdown
from botreg.knowledge.chunkers.tables import chunk_rows
from botreg.knowledge.chunkers.text import chunk_text
from botreg.registry.content import (
    ContentError,
    decode_utf8,
    decompress_bounded,
    load_json_bounded,
    parse_csv,
)
from botreg.registry.layout import knowledge_type
from botreg.registry.settings import ChunkingSettings, Limits
from botreg.registry.yamlfast import YamlLoadError, load_fast

__all__ = ["chunk_file"]


def chunk_file(path: str, raw: bytes, chunking: ChunkingSettings, limits: Limits) -> list[Chunk]:
    """The chunks of one knowledge file (a pure function of its path, bytes and settings).

    Raises:
        ContentError: if the file cannot be decoded or parsed as its type.
    """
    ktype = knowledge_type(path)
    if ktype is None:
        raise ContentError("BR506", f"unsupported file type: {PurePosixPath(path).suffix}")
    if ktype.compressed:
        raw = decompress_bounded(raw, limits)
    text = decode_utf8(raw).replace("\r\n", "\n").replace("\r", "\n")
    metadata: dict[str, str | int | float | bool] = {}
    if ktype.kind == "markdown":
        front, body = split_front_matter(text)
        metadata.update(front_matter_metadata(front))
        pairs = chunk_markdown(body, chunking)
    elif ktype.kind in ("json", "yaml"):
        try:
            data = (
                load_json_bounded(text, limits) if ktype.kind == "json" else load_fast(text, limits)
            )
        except YamlLoadError as exc:
            p = exc.problems[0]
            raise ContentError(p.code, p.message, p.line, p.column) from None
        pairs = chunk_markdown(render_markdown(data), chunking)
    elif ktype.kind == "csv":
        pairs = chunk_rows(parse_csv(text), chunking)
    else:
        pairs = chunk_text(text, chunking)
    return [
        Chunk(text=body, heading=heading, index=index, metadata=dict(metadata))
        for index, (heading, body) in enumerate(pairs)
    ]
