"""`chunk_file`: the chunker for a file's type, after bounded decompression.

Whatever the chunker, the result is bounded: the file by the registry's limits
(size, decompressed size, ratio), each chunk by `ChunkBounds` (tokens and bytes,
enforced by a final guard), and the file's chunk count by `MAX_CHUNKS_PER_FILE`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import PurePosixPath

from botreg.knowledge.chunkers.base import (
    MAX_CHUNKS_PER_FILE,
    Chunk,
    ChunkBounds,
    clamped,
    enforce_bounds,
)
from botreg.knowledge.chunkers.context import first_h1, title_from_path
from botreg.knowledge.chunkers.markdown import (
    MAX_TITLE_CHARS,
    chunk_markdown,
    front_matter_metadata,
    split_front_matter,
)
from botreg.knowledge.chunkers.packer import ChunkCeilingError, Packer
from botreg.knowledge.chunkers.structured import chunk_data, data_title
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


def chunk_file(
    path: str,
    raw: bytes,
    chunking: ChunkingSettings,
    limits: Limits,
    *,
    max_chunks: int = MAX_CHUNKS_PER_FILE,
) -> list[Chunk]:
    """The chunks of one knowledge file (a pure function of its path, bytes and settings).

    Every chunk's text is within `ChunkBounds.of(chunking.max_tokens)`.

    Args:
        path: The file's path (its extension picks the chunker).
        raw: The file's bytes.
        chunking: The chunking settings (max_tokens is clamped to the hard ceiling).
        limits: Size limits: the same as validation applies.
        max_chunks: The most chunks the file may produce.

    Raises:
        ContentError: if the file cannot be decoded or parsed as its type, is over
            a limit (BR504, BR503) or needs more than `max_chunks` chunks (BR504).
    """
    ktype = knowledge_type(path)
    if ktype is None:
        raise ContentError("BR506", f"unsupported file type: {PurePosixPath(path).suffix}")
    if len(raw) > limits.max_file_bytes:
        raise ContentError(
            "BR504",
            f"{len(raw)} bytes, over the limit of {limits.max_file_bytes} "
            "(limits.max_file_bytes); split the file",
        )
    if ktype.compressed:
        raw = decompress_bounded(raw, limits)
    text = decode_utf8(raw).replace("\r\n", "\n").replace("\r", "\n")
    bounds = ChunkBounds.of(chunking.max_tokens)
    chunking = clamped(chunking, bounds)
    metadata: dict[str, str | int | float | bool] = {}
    if ktype.kind == "markdown":
        front, body = split_front_matter(text)
        metadata.update(front_matter_metadata(front))
        title = str(metadata["title"]) or first_h1(body) or title_from_path(path)
        pairs = chunk_markdown(body, chunking, title=title[:MAX_TITLE_CHARS], max_chunks=max_chunks)
    else:
        pairs = _chunk_other(ktype.kind, path, text, chunking, limits, max_chunks)
    pairs = enforce_bounds(pairs, bounds)
    if len(pairs) > max_chunks:
        raise ContentError(
            "BR504",
            f"makes more than {max_chunks} chunks, over the ceiling of {max_chunks} per file; "
            "split the file",
        )
    return [
        Chunk(text=body, heading=heading, index=index, metadata=dict(metadata))
        for index, (heading, body) in enumerate(pairs)
    ]


def _chunk_other(
    kind: str, path: str, text: str, chunking: ChunkingSettings, limits: Limits, max_chunks: int
) -> list[tuple[str, str]]:
    """(context line, embedded text) pairs of a JSON, YAML, CSV or text file."""
    title = title_from_path(path)
    if kind in ("json", "yaml"):
        try:
            data = load_json_bounded(text, limits) if kind == "json" else load_fast(text, limits)
        except YamlLoadError as exc:
            p = exc.problems[0]
            raise ContentError(p.code, p.message, p.line, p.column) from None
        except (ValueError, RecursionError):  # an integer of 5,000 digits, 10,000 levels deep
            code = "BR105" if kind == "json" else "BR101"
            raise ContentError(code, "a value too large or nested too deeply to load") from None
        packer = Packer(
            (data_title(data) or title)[:MAX_TITLE_CHARS], chunking.max_tokens, max_chunks
        )
        feed: Callable[[], None] = partial(chunk_data, data, packer)
    elif kind == "csv":
        rows = parse_csv(text)
        packer = Packer(title, chunking.max_tokens, max_chunks)
        feed = partial(chunk_rows, rows, packer)
    else:
        packer = Packer(title, chunking.max_tokens, max_chunks)
        feed = partial(chunk_text, text, chunking, packer)
    try:
        feed()
        return packer.finish()
    except ChunkCeilingError:
        return packer.chunks
