"""`botreg review --base REV [--head REV] ...`: the changes of a pull request."""

from __future__ import annotations

import argparse
import sys

from botreg.errors import UsageError
from botreg.registry.limits import add_ceiling_arguments

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `review` subcommand."""
    p = sub.add_parser(
        "review",
        help="show what base..head changes (bots, knowledge, environments, validity)",
        description="Review the changes between two revisions of a registry repository, as the "
        "sync daemon will apply them. Exit 0: head is valid; 1: head has validation errors; "
        "2: usage error or unknown revision.",
    )
    p.add_argument("--repo", default=".", metavar="DIR", help="the repository (default: .)")
    p.add_argument("--base", required=True, metavar="REV", help="the base revision")
    p.add_argument("--head", default="HEAD", metavar="REV", help="the head revision (HEAD)")
    p.add_argument(
        "--env",
        default="development",
        metavar="ENV",
        help="environment whose embedding settings decide re-embedding",
    )
    p.add_argument("--format", choices=("markdown", "json", "text"), default="markdown")
    p.add_argument(
        "--max-chars",
        type=int,
        default=None,
        metavar="N",
        help="output length limit (default: markdown 60000, GitHub allows 65536; "
        "text 200000; json 1000000); detail sections past it are left out with a note",
    )
    add_ceiling_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Build and print the review."""
    from botreg.review import build_review
    from botreg.review.render import MAX_CHARS, RENDERERS

    max_chars = MAX_CHARS[args.format] if args.max_chars is None else args.max_chars
    if max_chars < 2000:
        raise UsageError("--max-chars must be at least 2000")
    review = build_review(args.repo, args.base, args.head, args.env)
    sys.stdout.write(RENDERERS[args.format](review, max_chars))
    return 0 if review.valid else 1
