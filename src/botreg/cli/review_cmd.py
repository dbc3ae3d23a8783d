"""`botreg review --base REV [--head REV] ...`: the changes of a pull request."""

from __future__ import annotations

import argparse
import sys

from botreg.cli.parser import examples
from botreg.errors import UsageError
from botreg.registry.limits import add_ceiling_arguments

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `review` subcommand."""
    p = sub.add_parser(
        "review",
        help="show what base..head changes (bots, knowledge, environments, validity)",
        usage="%(prog)s --base REV [--head REV] [--env ENV] [--format FORMAT] [options]",
        description="Review the changes between two revisions of a registry repository, as the "
        "sync daemon will apply them: bots created, updated, deleted, (de)activated; knowledge "
        "files and the chunks they add or remove; environments and the bots they affect; "
        "and whether head passes validation. Markdown is a pull-request comment.",
        epilog=examples(
            [
                ("botreg review --base main", "this branch against main, as a PR comment"),
                (
                    "botreg review --base main --head feature --format text",
                    "two branches, for a terminal",
                ),
                (
                    "botreg review --base HEAD~1 --env production --format json",
                    "the last commit, re-embedding judged by production's settings",
                ),
            ],
            {
                0: "head is valid",
                1: "head has validation errors",
                2: "usage error: unknown revision or --env, not a git repository, bad flag",
            },
        ),
    )
    p.add_argument("--repo", default=".", metavar="DIR", help="the repository (default: .)")
    p.add_argument(
        "--base",
        required=True,
        metavar="REV",
        help="the base revision: a branch, tag or commit (required)",
    )
    p.add_argument(
        "--head", default="HEAD", metavar="REV", help="the head revision (default: HEAD)"
    )
    p.add_argument(
        "--env",
        metavar="ENV",
        help="environment whose embedding settings decide re-embedding (default: development; "
        "a name given must exist at base or head)",
    )
    p.add_argument(
        "--format",
        choices=("markdown", "json", "text"),
        default="markdown",
        help="output format (default: markdown, for a pull-request comment)",
    )
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
    review = build_review(
        args.repo,
        args.base,
        args.head,
        args.env or "development",
        check_environment=args.env is not None,
    )
    sys.stdout.write(RENDERERS[args.format](review, max_chars))
    return 0 if review.valid else 1
