"""`botreg ingest` and `botreg query`: knowledge into the store, and back out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botreg.cli.knowledge_session import open_manager
from botreg.cli.parser import examples
from botreg.errors import BotregError, UsageError
from botreg.registry.limits import add_ceiling_arguments
from botreg.validation import confinement

if TYPE_CHECKING:
    from botreg.knowledge.ingest import IngestionResult

__all__ = ["MAX_K", "register"]

MAX_K = 100  # the most results a query returns (the daemon's HTTP API has the same bound)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", default=".", metavar="DIR", help="registry root (default: .)")
    p.add_argument(
        "--env",
        default="development",
        metavar="ENV",
        help="environment whose knowledge store and embedding to use (default: development)",
    )
    p.add_argument(
        "--data-dir",
        default=".botreg",
        metavar="DIR",
        help="where the ledger and the embedded store live (default: .botreg)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="output format (default: text)",
    )
    confinement.add_arguments(p)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `ingest` and `query` subcommands."""
    p = sub.add_parser(
        "ingest",
        help="ingest the registry's knowledge into the store (incrementally)",
        usage="%(prog)s [--repo DIR] [--env ENV] [--domain D ...] [options]",
        description="Chunk and embed the knowledge files of the registry (its working tree) "
        "into the store of an environment. Only changed chunks are embedded. Files over the "
        "registry's limits, or whose name has a control character, fail alone. Domains no "
        "longer in the registry are removed from the store.",
        epilog=examples(
            [
                ("botreg ingest", "every domain, into development's store"),
                ("botreg ingest --domain billing --format json", "one domain, counts as JSON"),
                ("botreg ingest --env production --data-dir /var/lib/botreg", "another store"),
            ],
            {
                0: "every file ingested",
                1: "some files failed (the others are ingested), or the data dir is in use",
                2: "unknown or invalid --domain or --env, --repo is not a registry, bad flag",
            },
        ),
    )
    _common(p)
    p.add_argument(
        "--domain",
        action="append",
        default=[],
        metavar="D",
        help="only this domain (repeatable; default: every domain)",
    )
    add_ceiling_arguments(p)
    p.set_defaults(handler=run_ingest)

    q = sub.add_parser(
        "query",
        help="search a knowledge domain",
        usage="%(prog)s --domain D [-k N] [options] TEXT",
        description="Print the chunks of a domain nearest to TEXT, from the store `botreg "
        "ingest` or `botreg sync` filled (asked from the running daemon if it holds the "
        "data dir).",
        epilog=examples(
            [
                ("botreg query --domain billing 'how long do refunds take?'", "top 5 chunks"),
                (
                    "botreg query --domain product -k 3 --format json 'keyboard shortcuts'",
                    "top 3, as JSON",
                ),
            ],
            {
                0: "results printed (none is not an error)",
                1: "the domain has not been ingested yet, or the store cannot be read",
                2: "unknown or invalid --domain or --env, -k not from 1 to 100, bad flag",
            },
        ),
    )
    _common(q)
    q.add_argument("--domain", required=True, metavar="D", help="the domain to search (required)")
    q.add_argument(
        "-k", type=int, default=5, metavar="N", help=f"number of results, 1 to {MAX_K} (default: 5)"
    )
    q.add_argument("text", metavar="TEXT", help="what to search for (quote it)")
    add_ceiling_arguments(q)
    q.set_defaults(handler=run_query)


def _progress_printer(domain: list[str]) -> Any:
    if not sys.stderr.isatty():
        return None

    def show(phase: str, done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r{domain[0]:<20} {phase:<9} [{bar}] {done}/{total}   ")
        sys.stderr.flush()

    return show


def _table(results: list[IngestionResult]) -> str:
    from botreg.knowledge.names import escape_controls

    head = (
        "domain",
        "files",
        "skipped",
        "created",
        "deleted",
        "unchanged",
        "embedded",
        "errors",
        "seconds",
    )
    rows = [head] + [
        (
            r.domain_id,
            str(r.files_processed),
            str(r.files_skipped),
            str(r.chunks_created),
            str(r.chunks_deleted),
            str(r.chunks_unchanged),
            str(r.chunks_embedded),
            str(len(r.errors)),
            f"{r.duration_seconds or 0:.2f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    for result in results:
        # One line per failed file, whatever the names and messages hold.
        lines += [
            escape_controls(f"{result.domain_id}: {e['path']}: {e['message']}")
            for e in result.errors
        ]
    return "\n".join(lines) + "\n"


def _check_domain_names(names: list[str]) -> None:
    """Refuse a `--domain` that is not an identifier before anything is opened (exit 2)."""
    from botreg.knowledge.names import escape_controls, valid_domain

    bad = ["'" + escape_controls(n) + "'" for n in names if not valid_domain(n)]
    if bad:
        raise UsageError(
            f"invalid domain name(s): {', '.join(bad)} (a domain is a folder "
            "under knowledge/ named with lowercase letters, digits, '_' and '-')"
        )


def _unknown_domains(names: list[str], known: list[str]) -> UsageError:
    from botreg.knowledge.names import valid_domain

    available = ", ".join(d for d in known if valid_domain(d)) or "none"
    return UsageError(f"unknown domain(s): {', '.join(names)} (available: {available})")


def _no_store(args: argparse.Namespace) -> BotregError:
    """Why a query has nothing to read when the data dir does not exist.

    The registry's mistakes come first, as when the store exists: an unknown
    environment or domain is a usage error (exit 2).
    """
    from botreg.registry.source import WorkingTreeSource
    from botreg.registry.view import RegistryView

    view = RegistryView(WorkingTreeSource(Path(args.repo)))
    view.knowledge_settings(args.env)
    if args.domain not in view.domains():
        return _unknown_domains([args.domain], view.domains())
    return BotregError(
        f"domain {args.domain!r} has not been ingested: there is no store in "
        f"{args.data_dir} (run `botreg ingest` or `botreg sync` with this --data-dir, "
        "or pass the --data-dir they used)"
    )


def run_ingest(args: argparse.Namespace) -> int:
    """Ingest every (or the named) domain; remove domains that are gone."""
    _check_domain_names(args.domain)
    current = [""]
    printer = _progress_printer(current)
    with open_manager(args, progress=printer, writing=True) as manager:
        domains = manager.domains()
        unknown = sorted(set(args.domain) - set(domains))
        if unknown:
            raise _unknown_domains(unknown, domains)
        # Folders whose names are not domains are reported as failed, never ingested.
        invalid = [d for d in manager.invalid_domains() if d not in domains]
        results = []
        for domain in args.domain or [*domains, *invalid]:
            current[0] = domain
            results.append(manager.ingest_sync(domain))
        removed = []
        if not args.domain:
            for state in manager.ledger.domains():
                if state.domain not in domains:
                    manager.remove_domain(state.domain)
                    removed.append(state.domain)
    if printer:
        sys.stderr.write("\r" + " " * 79 + "\r")
    if args.format == "json":
        doc = {"results": [r.to_dict() for r in results], "removed_domains": removed}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(_table(results))
        for domain in removed:
            sys.stdout.write(f"{domain}: removed (no longer in the registry)\n")
    return 0 if all(r.success for r in results) else 1


def _query_daemon(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """Ask the daemon that holds the data dir (its embedded store is not shared)."""
    from urllib.parse import quote, urlencode

    from botreg.cli.daemon_cmds import ask_daemon

    query = urlencode({"q": args.text, "k": args.k})
    try:
        answer = ask_daemon(Path(args.data_dir), f"/knowledge/{quote(args.domain)}/query?{query}")
    except BotregError:
        # the daemon's 404 (nothing of that domain in its store) is exit 1; a domain the
        # registry does not have is a mistyped name, exit 2, as without a daemon
        _check_registry_domain(Path(args.repo), args.domain)
        raise
    return None if answer is None else list(answer.get("results", []))


def _check_registry_domain(repo: Path, domain: str) -> None:
    """Refuse (exit 2) a domain the registry at `repo` does not have."""
    from botreg.registry.source import WorkingTreeSource
    from botreg.registry.view import RegistryView

    known = RegistryView(WorkingTreeSource(repo)).domains()
    if domain not in known:
        raise _unknown_domains([domain], known)


def run_query(args: argparse.Namespace) -> int:
    """Print the nearest chunks (from the store, or from the daemon that holds it)."""
    from botreg.datadir import DataDirLockedError
    from botreg.secrets import mask_text

    if not 1 <= args.k <= MAX_K:
        raise UsageError(f"-k must be from 1 to {MAX_K}")
    _check_domain_names([args.domain])
    if not Path(args.data_dir).is_dir():  # a read: never leaves an empty store behind
        raise _no_store(args)
    try:
        with open_manager(args) as manager:
            known = manager.domains()
            if args.domain not in known and manager.ledger.domain(args.domain) is None:
                raise _unknown_domains([args.domain], known)
            results = [
                {
                    "id": h.id,
                    "path": h.path,
                    "heading": h.heading,
                    "text": mask_text(h.text),  # as the daemon's HTTP query masks it
                    "distance": h.distance,
                    "metadata": h.metadata,
                }
                for h in manager.query(args.domain, args.text, args.k)
            ]
    except DataDirLockedError:
        answer = _query_daemon(args)
        if answer is None:
            raise
        results = answer
    if args.format == "json":
        sys.stdout.write(json.dumps({"results": results}, indent=2) + "\n")
        return 0
    from botreg.knowledge.names import escape_controls

    # the text came from the repository: no escape sequence reaches the terminal
    for rank, hit in enumerate(results, 1):
        heading = f"  [{escape_controls(str(hit['heading']))}]" if hit["heading"] else ""
        path = escape_controls(str(hit["path"]))
        sys.stdout.write(f"{rank}. {hit['distance']:.4f}  {path}{heading}\n")
        text = str(hit["text"])
        body = text if len(text) <= 400 else text[:400] + "..."
        lines = (escape_controls(line) for line in body.splitlines())
        sys.stdout.write("".join(f"   {line}\n" for line in lines) + "\n")
    return 0
