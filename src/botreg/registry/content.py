"""Safe decoding of registry file contents, shared by the validator and the ingester.

Every function here is bounded: a hostile file (a gzip bomb, a huge CSV field)
costs at most the configured limits, never the machine.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any

from botreg.registry.limits import ParseBounds
from botreg.registry.settings import Limits, effective_limits

__all__ = [
    "ContentError",
    "decode_utf8",
    "decompress_bounded",
    "load_json_bounded",
    "parse_csv",
]

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
    limits = effective_limits(limits)  # never above the operator's ceilings
    ratio = limits.max_compression_ratio  # finite: ceilings and settings refuse anything else
    bound = min(limits.max_decompressed_bytes, int(max(len(raw), 1) * ratio))
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
            f"ratio {limits.max_compression_ratio:g}); split the file (registry.yaml can "
            "raise the limits up to the operator's ceilings)",
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


# A JSON string (escapes included) or one structural character; strings are
# matched whole so brackets and commas inside them are not counted.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')


class _JsonRefusedError(Exception):
    """A JSON value the registry refuses: (code, message, the token to locate)."""

    def __init__(self, code: str, message: str, token: str) -> None:
        super().__init__(message)
        self.code, self.message, self.token = code, message, token


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _scan_json(text: str, bounds: ParseBounds) -> None:
    """Check nesting and value count without parsing (iterative, no recursion).

    Values are counted as nodes: 1 for the root plus one per array element and
    object member, i.e. 1 + commas + non-empty containers.
    """
    opens = text.count("[") + text.count("{")
    if opens <= bounds.max_depth and 1 + text.count(",") + opens <= bounds.max_values:
        return  # cannot exceed either bound (most files): no scan
    depth = commas = nonempty = 0
    last_open = -1  # end offset of the previous token if it opened a container
    for match in _JSON_TOKEN.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            nonempty += 1
            if depth > bounds.max_depth:
                line, column = _position(text, match.start())
                raise ContentError(
                    "BR105",
                    f"invalid JSON: nested deeper than {bounds.max_depth} levels (the "
                    "operator's ceiling max_depth); flatten the data",
                    line,
                    column,
                )
            last_open = match.end()
            continue
        if char in "]}":
            depth -= 1
            if last_open >= 0 and not text[last_open : match.start()].strip():
                nonempty -= 1  # `[]` or `{}`: a container without values
        elif char == ",":
            commas += 1
            if 1 + commas > bounds.max_values:  # values >= 1 + commas: fail early
                break
        last_open = -1
    if 1 + commas + nonempty > bounds.max_values:
        raise ContentError(
            "BR108",
            f"more than {bounds.max_values} values in one document (the operator's "
            "ceiling max_values): split the file",
        )


# A \u escape of a surrogate (D800-DFFF), the only way JSON text yields one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _check_surrogates(text: str) -> None:
    """Refuse a `\\uD8xx` escape that is not half of a pair (a lone surrogate).

    json.loads accepts it and yields a string no UTF-8 encoder takes: the chunker,
    the store and the event log would crash on it later. Only string tokens
    holding such an escape are decoded again, so ordinary files cost one search.
    """
    if _SURROGATE_ESCAPE.search(text) is None:
        return
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token[0] != '"' or _SURROGATE_ESCAPE.search(token) is None:
            continue
        value = json.loads(token)  # a pair becomes one character; a lone half stays
        lone = next((c for c in value if "\ud800" <= c <= "\udfff"), None)
        if lone is not None:
            hexcode = f"{ord(lone):04x}"
            escapes = _SURROGATE_ESCAPE.finditer(token)
            where = next((e.start() for e in escapes if e[0][2:].lower() == hexcode), 0)
            offset = match.start() + where
            line, column = _position(text, offset)
            raise ContentError(
                "BR105",
                f"invalid JSON: \\u{ord(lone):04x} is half of a UTF-16 surrogate pair without "
                "its other half (not a character); remove it or write the whole pair",
                line,
                column,
            )


def load_json_bounded(text: str, limits: ParseBounds | None = None) -> Any:
    """Parse JSON within bounds: the same verdict on any thread, any stack.

    Nesting and value count are checked by an iterative scan before parsing, so
    the parser never recurses deeper than `max_depth`. Integers must fit
    `max_int_bits` (signed); NaN and Infinity (not JSON, though Python accepts
    them) and numbers too large for a float are refused, as are duplicate keys.

    Args:
        text: The JSON document.
        limits: The bounds (default: the operator's ceilings); never above the ceilings.

    Raises:
        ContentError: BR105 invalid JSON or nested too deeply, BR102 duplicate
            key, BR107 a number out of range, BR108 too many values; BR105 also
            for a lone surrogate escape (`"\\ud800"`: no UTF-8 text can hold it).
    """
    ceilings = effective_limits(None)
    bounds = (
        ceilings
        if limits is None
        else Limits(
            max_depth=min(limits.max_depth, ceilings.max_depth),
            max_values=min(limits.max_values, ceilings.max_values),
            max_int_bits=min(limits.max_int_bits, ceilings.max_int_bits),
        )
    )
    _scan_json(text, bounds)
    half = 1 << (bounds.max_int_bits - 1)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise _JsonRefusedError(
                    "BR102", f"duplicate key {_short(key)!r}: remove one of them", key
                )
            result[key] = value
        return result

    def integer(token: str) -> int:
        # digits beyond the bit width cannot fit: refused before int() converts them
        number = int(token) if len(token.lstrip("-0")) <= bounds.max_int_bits else None
        if number is None or not -half <= number < half:
            raise _JsonRefusedError(
                "BR107",
                f"an integer of {len(token.lstrip('-'))} digits is outside the "
                f"{bounds.max_int_bits}-bit range "
                f"({-half} to {half - 1}): write it as a string",
                token,
            )
        return number

    def real(token: str) -> float:
        number = float(token)
        if math.isinf(number):
            raise _JsonRefusedError(
                "BR107", f"number {_short(token)} is too large to be a finite number", token
            )
        return number

    def constant(token: str) -> Any:
        raise _JsonRefusedError(
            "BR107", f"{token} is not JSON: write a number, or null, or a string", token
        )

    try:
        data = json.loads(
            text,
            object_pairs_hook=no_duplicates,
            parse_int=integer,
            parse_float=real,
            parse_constant=constant,
        )
    except json.JSONDecodeError as exc:
        raise ContentError("BR105", f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except _JsonRefusedError as exc:
        line, column = _locate_json(text, exc.token, key=exc.code == "BR102")
        raise ContentError(exc.code, exc.message, line, column) from None
    except RecursionError:  # not expected after the scan; kept as a last line of defence
        raise ContentError("BR105", "invalid JSON: nested too deeply") from None
    _check_surrogates(text)  # after parsing: the document is valid JSON, tokens are sound
    return data


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


def _locate_json(text: str, token: str, *, key: bool) -> tuple[int, int]:
    """Where a refused token is (a duplicate key: its second occurrence; best effort)."""
    if key:
        needle = json.dumps(token)
        first = text.find(needle)
        second = text.find(needle, first + 1) if first >= 0 else -1
        offset = second if second >= 0 else max(first, 0)
    else:
        match = re.search(r"(?<![\w.\"+-])" + re.escape(token) + r"(?![\w.])", text)
        offset = match.start() if match else 0
    return _position(text, offset)
