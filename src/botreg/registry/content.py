"""Safe decoding of registry file contents, shared by the validator and the ingester.

Every function here is bounded: a hostile file (a gzip bomb, a huge CSV field)
costs at most the configured limits, never the machine.
"""

from __future__ import annotations

import csv
import io
import zlib
from dataclasses import dataclass

from botreg.registry.settings import Limits

__all__ = ["ContentError", "decode_utf8", "decompress_bounded", "parse_csv"]

_CSV_FIELD_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class ContentError(Exception):
    """File content that cannot be decoded: check code, message and position."""

    code: str
    message: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return self.message


def decompress_bounded(raw: bytes, limits: Limits) -> bytes:
    """Decompress gzip data without ever holding more than the limits allow.

    Raises:
        ContentError: BR502 if the data is not valid gzip, BR503 if it decompresses
            beyond `max_decompressed_bytes` or `max_compression_ratio`.
    """
    bound = min(
        limits.max_decompressed_bytes,
        int(max(len(raw), 1) * limits.max_compression_ratio),
    )
    decomp = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header expected
    try:
        # Ask for one byte more than allowed: getting it proves the bound is exceeded.
        data = decomp.decompress(raw, bound + 1)
    except zlib.error as exc:
        raise ContentError("BR502", f"not valid gzip data ({exc}); recompress the file") from None
    if len(data) > bound:
        raise ContentError(
            "BR503",
            f"decompresses beyond {bound} bytes (limits: {limits.max_decompressed_bytes} bytes, "
            f"ratio {limits.max_compression_ratio:g}); split the file or raise the limits in "
            "registry.yaml",
        )
    if not decomp.eof:
        raise ContentError("BR502", "truncated gzip data; recompress the file")
    if decomp.unused_data:
        raise ContentError(
            "BR502", "several gzip members or trailing data; recompress as one member"
        )
    return data


def decode_utf8(raw: bytes) -> str:
    """Decode UTF-8 text (a byte-order mark is dropped).

    Raises:
        ContentError: BR103 at the line and column of the first invalid byte.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ContentError(
            "BR103",
            f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); re-save the file "
            "as UTF-8",
            line,
            column,
        ) from None


def parse_csv(text: str) -> list[list[str]]:
    """Parse CSV text into rows; every row must have as many fields as the header.

    Raises:
        ContentError: BR106 with the line of the first malformed row.
    """
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[list[str]] = []
    try:
        for row in reader:
            if not row:
                continue  # blank line
            if rows and len(row) != len(rows[0]):
                raise ContentError(
                    "BR106",
                    f"row has {len(row)} fields, the header has {len(rows[0])}; quote fields "
                    "that contain commas",
                    reader.line_num,
                )
            rows.append(row)
    except csv.Error as exc:
        raise ContentError("BR106", f"invalid CSV: {exc}", reader.line_num) from None
    return rows
