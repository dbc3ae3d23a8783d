"""`botreg chunks PATH [--repo DIR] [--format text|json]`: the chunks bots will retrieve.

Prints what ingestion would store for one knowledge file: each chunk's text as
embedded, its estimated token count and its id (as the ingester makes it from
the domain, the path below the registry, the text and its occurrence). The same
`chunk_file` as ingestion and `botreg review`, with the registry's settings.

The preview answers like ingestion: a file ingestion refuses (a credential in
it, a name it cannot store) is an error here too, and a file it skips (hidden,
excluded by the domain's `include`/`exclude`) is said to be. The text comes from
whoever committed it, so nothing of it reaches a terminal raw: control and bidi
characters are escaped (tabs kept), JSON is ASCII, credentials are masked.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import Any

from botreg.cli.parser import examples
from botreg.errors import BotregError, UsageError
from botreg.registry.limits import add_ceiling_arguments

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `chunks` subcommand."""
    p = sub.add_parser(
        "chunks",
        help="show the chunks a knowledge file makes (text, tokens, ids)",
        usage="%(prog)s PATH [--repo DIR] [--format text|json] [options]",
        description="Print the chunks a knowledge file of the registry would be stored as: "
        "the text as embedded, its estimated tokens and the chunk id ingestion gives it.",
        epilog=examples(
            [
                ("botreg chunks knowledge/billing/policies/refunds.md", "one file's chunks"),
                (
                    "botreg chunks knowledge/product/shortcuts.csv --format json",
                    "as JSON (index, id, tokens, heading, text)",
                ),
            ],
            {
                0: "the chunks were printed",
                1: "the file cannot be chunked (run `botreg validate`)",
                2: "PATH is not a knowledge file of the registry, or --repo is not a registry",
            },
        ),
    )
    p.add_argument(
        "path", metavar="PATH", help="a file under knowledge/<domain>/ (relative to here)"
    )
    p.add_argument("--repo", default=".", metavar="DIR", help="registry root (default: .)")
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    add_ceiling_arguments(p)
    p.set_defaults(handler=run)


def _shown(text: str) -> str:
    """Text from the command line or the repository on one printable line."""
    from botreg.knowledge.names import escape_controls

    return escape_controls(text)


def _relative(repo: Path, path: str) -> str | None:
    """`path` below the registry root, without following a link at its end (None: outside).

    `..` is folded as written, so a link inside the registry is named as itself
    (and refused when read), never previewed as whatever it points to.
    """
    given = Path(os.path.abspath(path))
    real_repo = repo.resolve()
    for root in (Path(os.path.abspath(repo)), real_repo):
        if given.is_relative_to(root):
            return given.relative_to(root).as_posix()
    # a folder above the registry reached through a link (/tmp -> /private/tmp)
    folder = given.parent.resolve()
    if given.name not in ("", ".", "..") and folder.is_relative_to(real_repo):
        return (folder / given.name).relative_to(real_repo).as_posix()
    return None


def _locate(repo: Path, path: str) -> tuple[str, str]:
    """(domain, path below the registry) of a file given on the command line."""
    from botreg.knowledge.names import valid_domain
    from botreg.registry.layout import (
        DOMAIN_FILE,
        REGISTRY_FILE,
        FileKind,
        classify,
        knowledge_type,
    )

    if not (repo / REGISTRY_FILE).is_file():
        raise UsageError(
            f"{_shown(str(repo))}: not a registry (no {REGISTRY_FILE}); pass --repo DIR"
        )
    rel = _relative(repo, path)
    if rel is None and not os.path.isabs(path):  # a path below --repo, given from elsewhere
        rel = _relative(repo, os.path.join(repo, path))
    if rel is None:
        raise UsageError(
            f"{_shown(path)}: outside the registry at {_shown(str(repo))}; give a file under "
            "its knowledge/ folder (or pass --repo DIR)"
        )
    info = classify(rel)
    if info.code == "BR403":  # a control or bidi character: never stored
        raise UsageError(f"{_shown(rel)}: not ingested: {info.reason}")
    if info.kind is FileKind.DOMAIN:
        raise UsageError(
            f"{_shown(rel)}: the domain's settings ({DOMAIN_FILE}), not knowledge: "
            "it is never ingested; give a knowledge file of the domain"
        )
    if info.kind is not FileKind.KNOWLEDGE or not info.ident:
        hidden = any(part.startswith(".") for part in rel.split("/"))
        raise UsageError(
            f"{_shown(rel)}: not a knowledge file; "
            + (
                "a hidden file or folder (a name starting with '.') is never ingested"
                if hidden
                else "knowledge files are knowledge/DOMAIN/..."
            )
        )
    if not valid_domain(info.ident):
        raise UsageError(
            f"{_shown(rel)}: invalid domain name '{_shown(info.ident)}': not ingested; rename "
            f"knowledge/{_shown(info.ident)}/ using lowercase letters, digits, '_' and '-' "
            "(at most 63 characters)"
        )
    if knowledge_type(rel) is None:
        raise UsageError(
            f"{_shown(rel)}: not a supported knowledge type (.md, .markdown, .txt, .json, "
            ".yaml, .yml, .csv, or any of them + .gz)"
        )
    return info.ident, rel


def _read(repo: Path, rel: str) -> bytes:
    from botreg.validation.confinement import read_registry_file

    try:
        mode = os.lstat(repo / rel).st_mode
    except OSError:
        mode = 0  # missing, or a link on the way: read_registry_file says which
    if stat.S_ISDIR(mode):
        raise UsageError(f"{_shown(rel)}: a directory; give a file in it")
    if mode and not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        # a FIFO would block the read forever, a device never ends
        raise UsageError(f"{_shown(rel)}: not a regular file (a pipe, socket or device)")
    try:
        return read_registry_file(repo, rel)  # refuses a symbolic link on the way
    except IsADirectoryError:
        raise UsageError(f"{_shown(rel)}: a directory; give a file in it") from None
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"{_shown(rel)}: no such file in the registry at {repo}") from None
    except OSError as exc:
        raise BotregError(f"{_shown(rel)}: cannot read the file: {exc.strerror or exc}") from None


def _skipped(view: Any, domain: str, rel: str) -> str:
    """Why ingestion leaves the file out, or "" if it ingests it."""
    from botreg.registry.layout import DOMAIN_FILE

    if view.is_ingested(rel):
        return ""
    if rel in view.snapshot.entries:
        return f"excluded by knowledge/{domain}/{DOMAIN_FILE} (include/exclude)"
    return "not among the registry's files (git ignores it)"


def _rows(view: Any, domain: str, rel: str, raw: bytes) -> list[dict[str, Any]]:
    from botreg.knowledge.chunkers import chunk_file, count_tokens
    from botreg.knowledge.ingest import chunk_id
    from botreg.registry.content import ContentError
    from botreg.secrets import locate_token

    settings = view.settings
    try:
        chunks = chunk_file(rel, raw, settings.chunking, settings.limits)
    except ContentError as exc:
        raise BotregError(f"{_shown(rel)}: {exc}; run `botreg validate` for details") from None
    # Ingestion refuses a file holding a credential (see KnowledgeIngestionManager):
    # the same check, on the joined texts, so the preview never shows what is not stored.
    found = locate_token("\n".join(c.text for c in chunks), generic=False)
    if found is not None and found[0] != "password in URL":
        raise BotregError(
            f"{_shown(rel)}: holds an inline credential ({found[0]}): not ingested; remove it "
            "from the file, then rotate the credential (BR303)"
        )
    seen: dict[str, int] = {}
    rows = []
    for chunk in chunks:  # ids as the ingester makes them (equal texts: by occurrence)
        occurrence = seen.get(chunk.content_hash, 0)
        seen[chunk.content_hash] = occurrence + 1
        rows.append(
            {
                "index": chunk.index,
                "id": chunk_id(domain, rel, chunk.content_hash, occurrence),
                "tokens": count_tokens(chunk.text),
                "heading": chunk.heading,
                "text": chunk.text,
            }
        )
    return rows


def _printable(text: str) -> str:
    """Text with its lines and tabs kept, every other control or bidi character escaped."""
    return "\n".join(
        "\t".join(_shown(part) for part in line.split("\t")) for line in text.split("\n")
    )


def run(args: argparse.Namespace) -> int:
    """Print the chunks of `args.path`; 0, 1 if it cannot be chunked, 2 if it is not knowledge."""
    from botreg.registry.source import WorkingTreeSource
    from botreg.registry.view import RegistryView
    from botreg.secrets import mask_text
    from botreg.validation.reporters import dump_json

    repo = Path(args.repo)
    domain, rel = _locate(repo, args.path)
    raw = _read(repo, rel)
    view = RegistryView(WorkingTreeSource(repo))
    rows = _rows(view, domain, rel, raw)
    for row in rows:  # never print a credential (a URL's password is stored, not shown)
        row["heading"], row["text"] = mask_text(row["heading"]), mask_text(row["text"])
    skipped = _skipped(view, domain, rel)
    if skipped:
        print(
            f"botreg: note: {_shown(rel)} is not ingested: {skipped}; these are the chunks "
            "it would make",
            file=sys.stderr,
        )
    if args.format == "json":
        doc = {"domain": domain, "path": rel, "ingested": not skipped, "chunks": rows}
        sys.stdout.write(dump_json(doc))
        return 0
    count = f"{len(rows)} chunk" + ("" if len(rows) == 1 else "s")
    out = [f"{_shown(rel)} (domain {domain}): {count}"]
    for row in rows:
        out.append(f"\n--- chunk {row['index']} · ~{row['tokens']} tokens · id {row['id']}")
        out.append(_printable(row["text"]))
    sys.stdout.write("\n".join(out) + "\n")
    return 0
