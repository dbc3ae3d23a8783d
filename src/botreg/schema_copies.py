"""The JSON Schemas a registry carries, so editors and check-jsonschema work offline.

`botreg init` and `botreg schemas --write` put a copy of botreg's schemas in the
registry, in `.schemas/` by default: a hidden folder, which the layout ignores
(it is not the data dir `.botreg/`, which is git-ignored: the copies are
committed, so every clone and CI has them). The modeline of each template file
points at them by relative path:
`# yaml-language-server: $schema=../.schemas/bot.schema.json`.

Each copy keeps its published `$id`. A `$ref` between schemas is relative
(`resource-ref.schema.json#/$defs/secret`), and JSON Schema resolves it against
the `$id`, that is on the web. So each copy also embeds the schemas it
references under `$defs`, each with its own `$id` (a compound document, JSON
Schema 2020-12 section 9.3): check-jsonschema, jsonschema and the YAML language
server find the reference inside the file, and a tool that resolves by path
finds the sibling file. Inside an embedded schema, a reference to itself is
spelled with its file name (`resource-ref.schema.json#/$defs/envReference`
rather than `#/$defs/envReference`: the same target, since its base is its own
`$id`), because the YAML language server resolves `#/...` against the outer
document. botreg's own validation reads the packaged originals
(`botreg.resources.schema_dir`), not these copies.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin

from botreg.errors import BotregError

__all__ = [
    "SCHEMAS_DIR",
    "CopyState",
    "SchemaCopy",
    "compare_copies",
    "schema_copies",
    "write_copies",
]

SCHEMAS_DIR = ".schemas"

_COMMENT = (
    "A copy of botreg's schema for editors and check-jsonschema, written by "
    "`botreg schemas --write`: the schemas it references are embedded under $defs "
    "(by their $id) so that it resolves offline. Do not edit; run `botreg schemas "
    "--write` again after upgrading botreg."
)


class CopyState(StrEnum):
    """How a schema file in a folder compares with botreg's."""

    CURRENT = "up to date"
    OUTDATED = "out of date"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class SchemaCopy:
    """One schema as a registry carries it."""

    name: str  # file name, e.g. bot.schema.json
    schema_id: str  # the published $id
    content: bytes  # the self-contained document, as written


def _refs(node: Any, base: str) -> Iterator[str]:
    """The document URIs of every `$ref` in `node`, resolved against `base`."""
    stack: list[tuple[Any, str]] = [(node, base)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, Mapping):
            if isinstance(item.get("$id"), str):
                where = urljoin(where, item["$id"])
            if isinstance(item.get("$ref"), str):
                yield urldefrag(urljoin(where, item["$ref"]))[0]
            stack.extend((value, where) for value in item.values())
        elif isinstance(item, list):
            stack.extend((value, where) for value in item)


def _self_refs_by_name(node: Any, file: str) -> Any:
    """`node` with every same-document `$ref` (`#...`) spelled `<file>#...`."""
    if isinstance(node, Mapping):
        out = {key: _self_refs_by_name(value, file) for key, value in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            out["$ref"] = file if ref == "#" else file + ref
        return out
    if isinstance(node, list):
        return [_self_refs_by_name(value, file) for value in node]
    return node


def _bundle(name: str, documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`documents[name]` with every schema it references (transitively) embedded."""
    by_id = {doc["$id"]: file for file, doc in documents.items()}
    root_id = documents[name]["$id"]
    seen = {root_id}
    queue = [root_id]
    while queue:
        uri = queue.pop()
        for target in _refs(documents[by_id[uri]], uri):
            if target in seen:
                continue
            if target not in by_id:
                raise BotregError(f"{name}: $ref to {target}, which botreg does not ship")
            seen.add(target)
            queue.append(target)
    needed = sorted(by_id[uri] for uri in seen - {root_id})
    out: dict[str, Any] = {}
    for key, value in documents[name].items():
        out[key] = copy.deepcopy(value)
        if key == "$id":
            out["$comment"] = _COMMENT
    if needed:
        defs = out.setdefault("$defs", {})
        for file in needed:
            if file in defs:  # pragma: no cover - a schema naming a def like a file
                raise BotregError(f"{name}: $defs already has an entry {file!r}")
            defs[file] = _self_refs_by_name(documents[file], file)
    return out


@functools.cache
def schema_copies() -> tuple[SchemaCopy, ...]:
    """botreg's schemas as a registry carries them, by file name."""
    from botreg.resources import schema_dir

    documents = {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(schema_dir().glob("*.schema.json"))
    }
    return tuple(
        SchemaCopy(
            name,
            doc["$id"],
            (json.dumps(_bundle(name, documents), indent=2, ensure_ascii=False) + "\n").encode(),
        )
        for name, doc in documents.items()
    )


def _state(path: Path, content: bytes) -> CopyState:
    """How the copy at `path` compares with `content`, reading at most its size.

    A copy is a regular file: a symbolic link (to `/dev/zero`, to a file outside),
    a FIFO or a device is out of date, and never read (a commit could otherwise
    make `botreg schemas --check` in CI block or fill the memory).
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return CopyState.MISSING
    except OSError:  # a link (ELOOP), a folder, no permission: not a usable copy
        return CopyState.OUTDATED
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != len(content):
            return CopyState.OUTDATED
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(len(content) + 1)
        return CopyState.CURRENT if data == content else CopyState.OUTDATED
    except OSError:
        return CopyState.OUTDATED
    finally:
        os.close(fd)


def compare_copies(directory: Path) -> list[tuple[SchemaCopy, CopyState]]:
    """Each of botreg's schemas with the state of its copy in `directory`."""
    return [(item, _state(directory / item.name, item.content)) for item in schema_copies()]


def _write(path: Path, content: bytes) -> None:
    """Write `path` atomically: a reader sees the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)  # a leftover (or a planted link): never written through
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)  # replaces a symlink itself, never writes through it
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BotregError(f"{path}: cannot write the schema: {exc.strerror or exc}") from None


def write_copies(directory: Path) -> list[tuple[SchemaCopy, CopyState]]:
    """Write every schema that is missing or out of date in `directory` (created if needed).

    Idempotent: a file that is up to date is not touched. Files in `directory`
    that are not botreg's schemas are left as they are.

    Returns:
        Each schema with the state its copy had before: MISSING was created,
        OUTDATED was replaced, CURRENT was left alone.

    Raises:
        BotregError: the folder or a file cannot be written (the message says which).
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BotregError(f"{directory}: cannot create the folder: {exc.strerror or exc}") from None
    before = compare_copies(directory)
    for item, state in before:
        if state is not CopyState.CURRENT:
            _write(directory / item.name, item.content)
    return before
