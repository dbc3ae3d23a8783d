"""`botreg resolve BOT_ID --env ENV [--repo DIR] [--show-secrets]`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from botreg.cli.parser import examples
from botreg.errors import BotregError, RepositoryError, UsageError
from botreg.registry.limits import add_ceiling_arguments

__all__ = ["block_strings", "register", "terminal_yaml"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `resolve` subcommand."""
    p = sub.add_parser(
        "resolve",
        help="show a bot's config resolved for an environment",
        usage="%(prog)s BOT_ID --env ENV [--format yaml|json] [--show-secrets] [options]",
        description="Print a bot's config with $resource references resolved from the "
        "environment file and ${VAR:default} expanded: what the bot runs with in that "
        "environment. YAML by default (multi-line strings such as system prompts as `|` "
        "blocks), or JSON. Secrets are masked as *** unless --show-secrets is given.",
        epilog=examples(
            [
                ("botreg resolve billing-assistant --env development", "as YAML"),
                (
                    "botreg resolve billing-assistant --env production --format json",
                    "as JSON, e.g. for jq",
                ),
                (
                    "botreg resolve billing-assistant --env production --allow-env 'BILLING_*'",
                    "expand ${VAR} only from variables named BILLING_*",
                ),
            ],
            {
                0: "the config was printed",
                1: "it cannot be resolved (a ${VAR} without a default is unset, a $resource "
                "is missing, a file does not load: run `botreg validate`)",
                2: "unknown BOT_ID or --env, a bad flag, or --repo is not a registry",
            },
        ),
    )
    p.add_argument("bot_id", metavar="BOT_ID", help="the bot: the name of bots/BOT_ID.yaml")
    p.add_argument(
        "--env",
        required=True,
        metavar="ENV",
        help="the environment: the name of environments/ENV.yaml (required)",
    )
    p.add_argument("--repo", default=".", metavar="DIR", help="registry root (default: .)")
    p.add_argument(
        "--format",
        choices=("yaml", "json"),
        default="yaml",
        help="output format (default: yaml)",
    )
    p.add_argument(
        "--show-secrets",
        action="store_true",
        help="print secret values (API keys, tokens, passwords) as they are (default: masked "
        "as ***)",
    )
    p.add_argument(
        "--allow-env",
        action="append",
        metavar="PATTERN",
        help="expand ${VAR} only from variables matching PATTERN (fnmatch, repeatable); "
        "default: your whole environment",
    )
    add_ceiling_arguments(p)
    p.set_defaults(handler=run)


def block_strings(value: Any) -> Any:
    """`value` with its multi-line strings marked for YAML's literal block style (`|`).

    Mappings and lists are copied (key order kept). A string a block cannot hold
    exactly (spaces at the end of a line, control characters) stays a quoted
    string with escapes, so the YAML always loads back to `value`.

    Args:
        value: Data of JSON types (a resolved config).

    Returns:
        The same data, with `LiteralScalarString` for each string holding a newline.
    """
    from ruamel.yaml.scalarstring import LiteralScalarString

    if isinstance(value, dict):
        return {key: block_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [block_strings(item) for item in value]
    if isinstance(value, str) and "\n" in value and not _NOT_IN_A_BLOCK.search(value):
        if _UNSAFE_IN_YAML.search(value):  # bidi or zero-width: quoted, with escapes
            return value
        return LiteralScalarString(value)
    return value


def _quoted_if_unsafe(value: Any) -> Any:
    """`value` with every key and string holding a control, bidi or invisible character
    marked for double quotes, where YAML can spell each of them as an escape."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if isinstance(value, dict):
        return {_quoted_if_unsafe(key): _quoted_if_unsafe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_quoted_if_unsafe(item) for item in value]
    if isinstance(value, str) and _UNSAFE_IN_YAML.search(value):
        return DoubleQuotedScalarString(value)
    return value


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def terminal_yaml(value: Any) -> str:
    """`value` as YAML that is safe on a terminal and loads back to `value`.

    Multi-line strings are `|` blocks (`block_strings`). A key or string with a
    control, bidi or invisible character (U+202E reorders what a reviewer reads,
    ESC drives the terminal) is double-quoted with that character as an escape
    (`\\u202E`): ruamel.yaml escapes controls there but writes bidi and
    zero-width characters as they are, so they are escaped after dumping (they
    can only appear inside those double-quoted strings).

    Args:
        value: Data of JSON types (a resolved config).
    """
    from botreg.registry.yamlio import dump_roundtrip

    text = dump_roundtrip(_quoted_if_unsafe(block_strings(value)))
    return _UNSAFE_IN_YAML.sub(_escape, text)


# Characters never written as they are: botreg's unsafe set (escape_unsafe) but
# the line break, which blocks and the document itself are made of.
_UNSAFE_IN_YAML = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e"
    "\u2060\u2066-\u2069\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)

# What a `|` block cannot hold as it is: characters YAML must escape (controls, tab,
# CR, NEL, LS, PS, BOM, surrogates) and spaces at the end of a line. Such strings
# stay quoted, with escapes: the output must load back to the same value.
_NOT_IN_A_BLOCK = re.compile(
    "[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]| \n| \\Z"
)


def _load(repo: Path, rel: str, what: str, choices: list[str]) -> Any:
    from botreg.registry.content import ContentError, decode_utf8
    from botreg.registry.yamlio import YamlLoadError, load_fast
    from botreg.validation.confinement import read_registry_file

    try:
        # never through a symlink: it could print a file from outside the registry
        raw = read_registry_file(repo, rel)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        known = ", ".join(choices) or "none"
        raise UsageError(f"{what} not found: {rel} (available: {known})") from None
    except OSError as exc:
        raise BotregError(f"{rel}: cannot read the file: {exc.strerror or exc}") from None
    try:
        data = load_fast(decode_utf8(raw))
    except (YamlLoadError, ContentError) as exc:
        raise BotregError(f"{rel}:{exc}; run `botreg validate` for details") from None
    if not isinstance(data, dict):
        raise BotregError(f"{rel}: not a mapping; run `botreg validate` for details")
    return data


def run(args: argparse.Namespace) -> int:
    """Resolve and print the config."""
    from botreg.registry.layout import IDENTIFIER_RE
    from botreg.registry.source import WorkingTreeSource
    from botreg.registry.view import RegistryView
    from botreg.resolve import allowed_environ, resolve_config
    from botreg.secrets import mask_config

    for value, what in ((args.bot_id, "BOT_ID"), (args.env, "--env")):
        # a name, never a path: `../x` must not reach outside bots/ or environments/
        if not IDENTIFIER_RE.fullmatch(value):
            raise UsageError(f"{what} {value!r} is not a valid name ([a-z0-9][a-z0-9_-]{{0,62}})")
    repo = Path(args.repo)
    if repo.is_dir() and not (repo / "registry.yaml").is_file() and not (repo / "bots").is_dir():
        # said at once: reading the tree of a folder that is no registry (`/`) took seconds
        raise RepositoryError(
            f"not a botreg registry (no registry.yaml in {repo}); pass --repo DIR"
        )
    view = RegistryView(WorkingTreeSource(repo))  # checks the folder exists (exit 2)
    bots = sorted(p.stem for p in (repo / "bots").glob("*.yaml"))
    config = _load(repo, f"bots/{args.bot_id}.yaml", "bot", bots)
    environment = view.environment(args.env)  # the daemon's and review's loading
    # a person in their own shell: their environment, unless they narrow it
    env = allowed_environ(args.allow_env) if args.allow_env is not None else None
    resolved = resolve_config(config, environment, env)
    if not args.show_secrets:
        resolved = mask_config(resolved)
    if args.format == "json":
        sys.stdout.write(json.dumps(resolved, indent=2) + "\n")
    else:
        sys.stdout.write(terminal_yaml(resolved))
    return 0
