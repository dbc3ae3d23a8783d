"""`botreg chunks PATH [--repo DIR] [--format text|json]`: the chunks bots will retrieve.

Prints what ingestion would store for one knowledge file: each chunk's text as
embedded, its estimated token count and its id (as the ingester makes it from
the domain, the path below the registry, the text and its occurrence). The same
`chunk_file` as ingestion and `botreg review`, with the registry's settings.
"""

from __future__ import annotations

import argparse
import json
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


def _locate(repo: Path, path: str) -> tuple[str, str]:
    """(domain, path below the registry) of a file given on the command line."""
    from botreg.knowledge.names import domain_folder, has_control
    from botreg.registry.layout import REGISTRY_FILE, knowledge_type

    if not (repo / REGISTRY_FILE).is_file():
        raise UsageError(f"{repo}: not a registry (no {REGISTRY_FILE}); pass --repo DIR")
    given = Path(path)
    absolute = (given if given.is_absolute() else Path.cwd() / given).resolve()
    try:
        rel = absolute.relative_to(repo.resolve()).as_posix()
    except ValueError:
        raise UsageError(
            f"{path}: outside the registry at {repo}; give a file under its knowledge/ "
            "folder (or pass --repo DIR)"
        ) from None
    domain = domain_folder(rel)
    if domain is None or has_control(rel):
        raise UsageError(f"{path}: not a knowledge file; knowledge files are knowledge/DOMAIN/...")
    if knowledge_type(rel) is None:
        raise UsageError(f"{path}: not a supported knowledge type (.md, .txt, .json, .yaml, .csv)")
    return domain, rel


def _rows(repo: Path, domain: str, rel: str) -> list[dict[str, Any]]:
    from botreg.knowledge.chunkers import chunk_file, count_tokens
    from botreg.knowledge.ingest import chunk_id
    from botreg.registry.content import ContentError
    from botreg.registry.source import WorkingTreeSource
    from botreg.registry.view import RegistryView
    from botreg.validation.confinement import read_registry_file

    settings = RegistryView(WorkingTreeSource(repo)).settings
    try:
        raw = read_registry_file(repo, rel)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise UsageError(f"{rel}: no such file in the registry at {repo}") from None
    except OSError as exc:
        raise BotregError(f"{rel}: cannot read the file: {exc.strerror or exc}") from None
    try:
        chunks = chunk_file(rel, raw, settings.chunking, settings.limits)
    except ContentError as exc:
        raise BotregError(f"{rel}: {exc}; run `botreg validate` for details") from None
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


def run(args: argparse.Namespace) -> int:
    """Print the chunks of `args.path`; 0, or 1 if the file cannot be chunked."""
    from botreg.secrets import mask_text

    repo = Path(args.repo)
    domain, rel = _locate(repo, args.path)
    rows = _rows(repo, domain, rel)
    for row in rows:  # never print a credential (ingestion refuses such a file anyway)
        row["heading"], row["text"] = mask_text(row["heading"]), mask_text(row["text"])
    if args.format == "json":
        doc = {"domain": domain, "path": rel, "chunks": rows}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return 0
    out = [f"{rel} (domain {domain}): {len(rows)} chunks"]
    for row in rows:
        out.append(f"\n--- chunk {row['index']} · ~{row['tokens']} tokens · id {row['id']}")
        out.append(row["text"])
    sys.stdout.write("\n".join(out) + "\n")
    return 0
