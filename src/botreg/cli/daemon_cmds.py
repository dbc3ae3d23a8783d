"""`botreg sync`, `botreg status` and `botreg events`."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botreg.cli.parser import examples
from botreg.errors import BotregError, UsageError
from botreg.registry.limits import add_ceiling_arguments
from botreg.secrets import remember_secret_file
from botreg.validation import confinement

if TYPE_CHECKING:  # the hook never imports the daemon
    from botreg.daemon.housekeeping import HousekeepingOptions
    from botreg.events.outbox import Outbox

__all__ = ["ask_daemon", "register"]

_DATA_DIR_HELP = "the daemon's state: ledger, mirror, event log, webhook outbox (default: .botreg)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `sync`, `status` and `events` subcommands."""
    p = sub.add_parser(
        "sync",
        help="keep a knowledge store and change events in step with a branch",
        usage="%(prog)s --source URL_OR_PATH [--branch B] [--env ENV] [--once] [options]",
        epilog=examples(
            [
                ("botreg sync --source demo-registry --once", "one cycle from a local clone"),
                (
                    "botreg sync --source https://git.example.com/bots.git --env production",
                    "the daemon: polls every 30 s (private repository: add --token-file F)",
                ),
                (
                    "botreg sync --source demo-registry --watch --events-file -",
                    "sync on every local commit, events on stdout",
                ),
            ],
            {
                0: "--once: synced or nothing to do; the daemon: stopped (Ctrl-C, SIGTERM)",
                1: "--once: commit rejected, the cycle failed, or the commit applied without "
                "some knowledge files; the daemon: --max-failures cycles failed in a row; "
                "the data dir or the HA lease is held by another daemon",
                2: "usage: a bad flag or value, a --*-file that does not exist; --once: a "
                "local --source that does not exist, no --branch in the source or no --env "
                "at its head",
            },
        ),
        description="Pull a branch of a registry repository, diff commits into change events "
        "and re-ingest what changed. With --once: one cycle, then exit 0 (synced or nothing to "
        "do), 1 (commit rejected, the cycle failed, or the commit applied without some "
        "knowledge files), 2 (usage), 3 (unexpected).",
    )
    p.add_argument(
        "--source",
        required=True,
        metavar="URL_OR_PATH",
        help="the registry repository: https://, ssh:// or git@host:path URL, or a local path "
        "(required)",
    )
    p.add_argument(
        "--branch", default="main", metavar="B", help="the branch to follow (default: main)"
    )
    p.add_argument(
        "--env",
        default="development",
        metavar="ENV",
        help="environment whose store and embedding to use (default: development)",
    )
    p.add_argument("--data-dir", default=".botreg", metavar="DIR", help=_DATA_DIR_HELP)
    p.add_argument(
        "--once",
        action="store_true",
        help="run one cycle and exit: 0 synced or nothing to do; 1 commit rejected, the cycle "
        "failed, or the commit applied without some knowledge files",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=30,
        metavar="SECONDS",
        help="seconds between polls (default: 30)",
    )
    p.add_argument(
        "--stale-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="/readyz fails after this long without a successful fetch "
        "(default: 3 intervals, at least 300)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="also sync as soon as a local source's refs change (default: poll only)",
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:8470",
        metavar="HOST:PORT",
        help="HTTP API, health and metrics (default: 127.0.0.1:8470; 'off' to disable; "
        "never with --once)",
    )
    p.add_argument(
        "--events-file",
        metavar="PATH|-",
        help="also write events here, one JSON object a line (- for stdout; default: only "
        "the data dir's events.jsonl)",
    )
    p.add_argument("--webhook", metavar="URL", help="POST every event to this URL (default: none)")
    p.add_argument(
        "--webhook-secret-file",
        type=Path,
        metavar="F",
        help="HMAC secret: signs outgoing events, verifies incoming push hooks (default: "
        "none: events unsigned, push hooks refused)",
    )
    p.add_argument(
        "--webhook-dead-letter-after",
        type=float,
        default=86400,
        metavar="SECONDS",
        help="give up on a webhook event still failing after this long: it becomes a dead "
        "letter (`botreg events --dead-letter`) and stops holding the line (default: 86400)",
    )
    rs = p.add_argument_group("events on a Redis stream (see docs/events.md)")
    rs.add_argument(
        "--events-redis",
        metavar="URL",
        # from the environment by default (see _redis_urls): a password on the command
        # line is in `ps`
        help="also append every event to a Redis stream: redis://[:PASSWORD@]HOST:PORT/DB, "
        "rediss://... (TLS) or unix:///PATH; a Redis down only delays events (they wait in "
        "the outbox). Default: $BOTREG_EVENTS_REDIS_URL; pass a URL with a password that "
        "way, not as an argument (arguments are visible in ps)",
    )
    rs.add_argument(
        "--events-stream",
        default="botreg:events",
        metavar="NAME",
        help="the stream's key (default: botreg:events)",
    )
    rs.add_argument(
        "--events-maxlen",
        type=int,
        default=100_000,
        metavar="N",
        help="trim the stream to about N entries at each append (XADD MAXLEN ~; default: "
        "100000, at least 1000 so a follower away for a restart still finds its place)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        metavar="F",
        help="HTTPS token for the source, re-read at each fetch (default: none)",
    )
    p.add_argument(
        "--ssh-key-file",
        type=Path,
        metavar="F",
        help="SSH private key for the source (default: ssh's own configuration)",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        metavar="N",
        help="exit 1 after N failed cycles in a row (default: never)",
    )
    p.add_argument(
        "--api-token-file",
        type=Path,
        metavar="F",
        help="bearer token the HTTP API requires (needed beyond loopback; default: none)",
    )
    wr = p.add_argument_group("writes over HTTP (see docs/http-writes.md)")
    wr.add_argument(
        "--allow-writes",
        action="store_true",
        help="serve POST /bots, PUT and DELETE /bots/{id}: each a validated commit pushed to "
        "the source's branch with the fetch's credentials (needs --api-token-file; default: "
        "off, writes answer 403)",
    )
    wr.add_argument(
        "--write-author",
        default="botreg daemon <botreg@localhost>",
        metavar="'NAME <EMAIL>'",
        help="author and committer of the commits writes make (default: "
        "'botreg daemon <botreg@localhost>')",
    )
    ha = p.add_argument_group("high availability (see docs/operations.md, High availability)")
    ha.add_argument(
        "--ha-redis",
        metavar="URL",
        help="run as one of several daemons of one registry and one Chroma server: a lease "
        "in this Redis (redis://, rediss:// or unix://) elects the leader, the others serve "
        "reads and take over; with --once, exit 1 if another daemon holds the lease. "
        "Default: $BOTREG_HA_REDIS_URL (a password belongs there, not in the arguments)",
    )
    ha.add_argument(
        "--lease-seconds",
        type=float,
        default=15.0,
        metavar="S",
        help="the leader's lease in seconds (at least 1; default: 15): a dead leader is "
        "replaced within two lease periods",
    )
    ha.add_argument(
        "--ha-group",
        metavar="NAME",
        help="daemons with the same group share one lease (default: derived from the source, "
        "branch and environment)",
    )
    hk = p.add_argument_group("housekeeping (between cycles; see docs/operations.md, Housekeeping)")
    hk.add_argument(
        "--events-max-bytes",
        default="64M",
        metavar="SIZE",
        help="rotate events.jsonl when it would pass this size (e.g. 64M, 1G; default: 64M)",
    )
    hk.add_argument(
        "--events-keep",
        type=int,
        default=5,
        metavar="N",
        help="rotated event logs to keep (events.jsonl-1 ... -N; default: 5)",
    )
    hk.add_argument(
        "--gc-interval",
        type=float,
        default=24 * 3600,
        metavar="SECONDS",
        help="git gc of the mirror at most this often (default: 86400; 0: never)",
    )
    hk.add_argument(
        "--compact-interval",
        type=float,
        default=3600,
        metavar="SECONDS",
        help="check the store for collections to compact this often (default: 3600; 0: never)",
    )
    confinement.add_arguments(p)
    p.add_argument(
        "--allow-env",
        action="append",
        default=[],
        metavar="PATTERN",
        help="variables ${VAR} in the registry may read (fnmatch, repeatable, e.g. 'BOTREG_*'; "
        "default: none, so a commit cannot read the daemon's environment)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on stderr: text, or one JSON object per line (default: text)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="least severe records logged (default: info; debug also shows no-op polls "
        "and the per-request lines of httpx and chromadb)",
    )
    add_ceiling_arguments(p)
    p.set_defaults(handler=run_sync)

    s = sub.add_parser(
        "status",
        help="show the sync daemon's status",
        description="Show what the sync daemon of a data dir did last: the source, the "
        "applied and head commits, the last result, a rejected commit's findings, the "
        "conditions and each domain's state. Asked from the running daemon, else read from "
        "the data dir.",
        epilog=examples(
            [
                ("botreg status", "the daemon of ./.botreg"),
                ("botreg status --data-dir /var/lib/botreg --format json", "as JSON"),
            ],
            {
                0: "the status was printed (whatever it says)",
                1: "the running daemon answered with an error",
                2: "--data-dir has no sync status (no `botreg sync` has run with it), bad flag",
            },
        ),
    )
    s.add_argument("--data-dir", default=".botreg", metavar="DIR", help=_DATA_DIR_HELP)
    s.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    s.set_defaults(handler=run_status)

    e = sub.add_parser(
        "events",
        help="print the event log",
        description="Print the change events the sync daemon wrote (CloudEvents, one JSON "
        "object a line), oldest first, rotated logs included; or list and re-queue the "
        "webhook events given up on (dead letters).",
        epilog=examples(
            [
                ("botreg events", "every event in the log"),
                ("botreg events --follow --since EVENT_ID", "what came after an event, live"),
                ("botreg events --dead-letter", "webhook events given up on"),
                ("botreg events --replay --id EVENT_ID", "send one of them again"),
            ],
            {
                0: "printed (or --follow stopped by Ctrl-C or SIGTERM)",
                1: "the event log or the outbox cannot be read",
                2: "no event log or outbox in --data-dir, an unknown --since or --id, flags "
                "that do not go together",
            },
        ),
    )
    e.add_argument("--data-dir", default=".botreg", metavar="DIR", help=_DATA_DIR_HELP)
    e.add_argument(
        "--since",
        metavar="ID",
        help="only events after the event with this id (default: from the oldest kept)",
    )
    e.add_argument(
        "--follow",
        action="store_true",
        help="keep printing new events until Ctrl-C (default: print and exit)",
    )
    e.add_argument(
        "--dead-letter",
        action="store_true",
        help="list the webhook events given up on (dead letters) instead",
    )
    e.add_argument(
        "--replay",
        action="store_true",
        help="move dead letters back to the webhook outbox for delivery (all, or --id)",
    )
    e.add_argument(
        "--id", metavar="ID", help="with --replay: only the dead letter with this id (default: all)"
    )
    e.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="with --dead-letter: the listing's form (default: text)",
    )
    e.set_defaults(handler=run_events)


def run_sync(args: argparse.Namespace) -> int:
    """Run the daemon (or one cycle)."""
    from botreg.daemon.run import Daemon, DaemonOptions
    from botreg.daemon.sync import SyncOptions

    if not math.isfinite(args.interval) or args.interval <= 0:  # nan would spin
        raise UsageError("--interval must be a positive number of seconds")
    if args.stale_after is not None and not (
        math.isfinite(args.stale_after) and args.stale_after > 0
    ):
        raise UsageError("--stale-after must be a positive number of seconds")
    if args.max_failures is not None and args.max_failures < 1:
        raise UsageError("--max-failures must be at least 1")
    if not math.isfinite(args.webhook_dead_letter_after) or args.webhook_dead_letter_after <= 0:
        raise UsageError("--webhook-dead-letter-after must be a positive number of seconds")
    for name in ("webhook_secret_file", "token_file", "ssh_key_file", "api_token_file"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            raise UsageError(f"--{name.replace('_', '-')} {path}: no such file")
        if path is not None:  # masked in every output from now on (issue #9)
            remember_secret_file(path)
    if args.api_token_file is not None:
        _check_api_token_file(args.api_token_file)
    labels = _redis_urls(args)
    _check_events_redis(args, labels["events_redis"])
    _check_ha_flags(args, labels["ha_redis"])
    housekeeping = _housekeeping_options(args)
    if args.once:  # the daemon waits for a source that is not there yet (an outage)
        _check_source(args.source)  # after the flags: their mistakes are named first
    from botreg.daemon.logs import configured_logging
    from botreg.daemon.progress import choose_mode

    policy = confinement.StorePolicy.from_args(args)  # read by the store and the embedding
    listen = None if args.once or args.listen in ("", "off") else args.listen
    # one line per record, credentials masked; restored when the run ends (see logs.py)
    with configured_logging(args.log_format, args.log_level), confinement.use_store_policy(policy):
        daemon = Daemon(
            SyncOptions(
                args.source,
                args.branch,
                args.env,
                Path(args.data_dir),
                args.token_file,
                args.ssh_key_file,
                allow_env=tuple(args.allow_env),
            ),
            DaemonOptions(
                args.interval,
                args.watch,
                listen,
                args.events_file,
                args.webhook,
                args.webhook_secret_file,
                args.max_failures,
                args.api_token_file,
                webhook_dead_letter_after=args.webhook_dead_letter_after,
                stale_after=args.stale_after,
                housekeeping=housekeeping,
                events_redis=args.events_redis,
                events_stream=args.events_stream,
                events_maxlen=args.events_maxlen,
                ha_redis=args.ha_redis,
                lease_seconds=args.lease_seconds,
                ha_group=args.ha_group,
                allow_writes=args.allow_writes,
                write_author=args.write_author,
                # a bar on a terminal with text logs; lines every few seconds otherwise
                progress=choose_mode(args.log_format, sys.stderr),
            ),
        )
        return daemon.run_once() if args.once else daemon.run()


def _check_source(source: str) -> None:
    """With --once, a --source that is a local path (as GitMirror reads it) must exist."""
    import re

    if "://" in source or re.match(r"^[\w.-]+@[\w.-]+:", source):
        return  # a URL: reachable or not, the fetch says (and retries)
    if not Path(source).exists():
        raise UsageError(
            f"--source {source}: no such file or directory (without a URL scheme it is a local "
            "path); give a registry's clone or its URL"
        )


_REDIS_URL_FLAGS = {
    "events_redis": ("--events-redis", "BOTREG_EVENTS_REDIS_URL"),
    "ha_redis": ("--ha-redis", "BOTREG_HA_REDIS_URL"),
}


def _redis_urls(args: argparse.Namespace) -> dict[str, str]:
    """Fill the Redis URLs not given as flags from their environment variables; returns
    what each came from, for messages (a bad URL from the environment names the
    variable the operator has to fix, not a flag they never typed)."""
    labels = {}
    for name, (flag, variable) in _REDIS_URL_FLAGS.items():
        labels[name] = flag
        if getattr(args, name) is None and os.environ.get(variable):
            setattr(args, name, os.environ[variable])
            labels[name] = f"${variable} (the default of {flag}):"
    return labels


def _check_events_redis(args: argparse.Namespace, label: str = "--events-redis") -> None:
    """--events-redis, --events-stream and --events-maxlen, as usage errors (exit 2)."""
    from botreg.events.redis_stream import MIN_MAXLEN, check_stream_name
    from botreg.redis_url import usage_checked

    if args.events_redis is not None:
        usage_checked(args.events_redis, label)  # its password masked from now on
    try:
        check_stream_name(args.events_stream)
    except ValueError as exc:
        raise UsageError(f"--events-stream: {exc}") from None
    if args.events_maxlen < MIN_MAXLEN:
        # trimming removes whole stream nodes (100 entries): a smaller stream would
        # drop what a follower away for a restart has not read yet
        raise UsageError(
            f"--events-maxlen {args.events_maxlen}: at least {MIN_MAXLEN}, so a follower "
            "away for a restart still finds its place in the stream (default 100000)"
        )


def _check_ha_flags(args: argparse.Namespace, label: str = "--ha-redis") -> None:
    """The HA flags, checked before anything starts (usage errors, exit 2)."""
    if not math.isfinite(args.lease_seconds) or args.lease_seconds < 1:
        raise UsageError(f"--lease-seconds {args.lease_seconds:g}: must be at least 1 (default 15)")
    if args.ha_redis is not None:
        from botreg.daemon.lease import check_redis_url

        check_redis_url(args.ha_redis, label)  # also remembers its password as a secret
    elif args.ha_group is not None:
        raise UsageError("--ha-group needs --ha-redis URL (the Redis the group's lease is in)")
    if args.ha_group is not None and not args.ha_group.strip():
        raise UsageError("--ha-group: give a non-empty name")


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _parse_size(text: str) -> int | None:
    """`4096`, `64K`, `64M`, `1G` (also `64MiB`, `64mb`) as bytes; None if not a size."""
    import re

    found = re.fullmatch(r"\s*(\d{1,15})\s*([KMG]?)(?:I?B)?\s*", text.upper())
    return int(found[1]) * _SIZE_UNITS[found[2]] if found else None


def _housekeeping_options(args: argparse.Namespace) -> HousekeepingOptions:
    """The housekeeping flags, checked (a usage error names the flag and the fix)."""
    from botreg.daemon.housekeeping import HousekeepingOptions

    max_bytes = _parse_size(args.events_max_bytes)
    if max_bytes is None or max_bytes < 4096:
        raise UsageError(
            f"--events-max-bytes {args.events_max_bytes!r}: give a size of at least 4K "
            "(e.g. 64M or 1G)"
        )
    if args.events_keep < 0:
        raise UsageError("--events-keep must be 0 or more")
    for flag, value in (
        ("--gc-interval", args.gc_interval),
        ("--compact-interval", args.compact_interval),
    ):
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{flag} must be a number of seconds, 0 or more (0: never)")
    return HousekeepingOptions(
        mirror_gc_interval=args.gc_interval,
        events_max_bytes=max_bytes,
        events_keep=args.events_keep,
        compaction_interval=args.compact_interval,
    )


def _check_api_token_file(path: Path) -> None:
    """An API token file must hold a token: an empty one would leave the API open.

    Raises:
        UsageError: if it cannot be read or holds only whitespace.
    """
    if path.is_dir():
        raise UsageError(f"--api-token-file {path} is a directory: give the file holding the token")
    try:
        token = path.read_bytes().strip()
    except OSError as exc:
        raise UsageError(f"--api-token-file {path}: cannot read it ({exc.strerror})") from None
    if not token.decode("utf-8", errors="replace").strip():  # NBSP, U+3000: not only ASCII
        raise UsageError(
            f"--api-token-file {path} is empty: put the token the HTTP API requires in it "
            "(e.g. `openssl rand -hex 32 > FILE`)"
        )


def ask_daemon(data_dir: Path, path: str, timeout: float = 30) -> Any:
    """GET a JSON endpoint of the daemon that holds `data_dir` (None if none runs)."""
    import urllib.error  # here, not at the top: the hook's start-up never needs HTTP
    import urllib.request

    try:
        info = json.loads((data_dir / "daemon.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        headers = {}
        if info.get("api_token_file"):
            token = Path(info["api_token_file"]).read_text().strip()
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{info['url']}{path}", headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                detail = json.loads(exc.read()).get("error", "")
            except ValueError:
                detail = ""
        raise BotregError(f"the daemon answered {exc.code}: {detail}") from None
    except (OSError, KeyError, ValueError):
        return None


def _running(data_dir: Path) -> bool:
    from botreg.datadir import DataDir, DataDirLockedError

    try:
        with DataDir(data_dir).locked("botreg status"):
            return False
    except DataDirLockedError:
        return True


def run_status(args: argparse.Namespace) -> int:
    """Print the status: asked from the running daemon, else read from the data dir."""
    from botreg.daemon.status import DaemonStatus, finding_lines

    data_dir = Path(args.data_dir)
    if not (data_dir / "status.json").exists() and not (data_dir / "daemon.json").exists():
        raise UsageError(  # a --data-dir that is not the daemon's: exit 2, as a wrong --repo
            f"{data_dir}: no sync status here (has `botreg sync` run with this --data-dir?)"
        )
    doc = ask_daemon(data_dir, "/status") if _running(data_dir) else None
    if not isinstance(doc, dict):
        doc = DaemonStatus.load(data_dir / "status.json")
        doc["running"] = _running(data_dir)
    if args.format == "json":
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return 0
    # every value is escaped and masked: the file may be old or edited, and messages
    # quote git, the store and the repository
    v = _line
    lines = [
        f"source:      {v(doc.get('source', ''))} ({v(doc.get('branch', ''))}, env "
        f"{v(doc.get('environment', ''))})",
        f"running:     {'yes' if doc.get('running') else 'no'}",
        f"applied:     {v(doc.get('applied_commit', '') or '-')}",
        f"head:        {v(doc.get('head_commit', '') or '-')}",
        f"last result: {v(doc.get('last_result', '') or '-')} at "
        f"{v(doc.get('last_attempt', '') or '-')}",
        f"last success: {v(doc.get('last_success') or '-')}",
    ]
    cycle = _mapping(doc.get("last_cycle"))
    if cycle.get("summary"):  # what the last cycle that did something did, in one line
        finished = f"{cycle['finished']} " if cycle.get("finished") else ""
        lines.append(f"last cycle:  {v(finished + str(cycle['summary']))}")
    ha = doc.get("ha")
    if isinstance(ha, dict):  # --ha-redis: the role, and whether the lease's Redis answers
        token = f", fencing token {v(ha['fence'])}" if ha.get("fence") else ""
        redis = v(ha.get("redis") or "-")
        if redis == "unreachable":
            redis += f" since {v(ha.get('redis_since', '-'))} ({v(ha.get('redis_error', ''))})"
        lines.append(
            f"role:        {v(doc.get('role', '-'))}{token} (group {v(ha.get('group', '-'))})"
        )
        lines.append(f"HA Redis:    {redis}")
        lines.append(
            f"recorded:    {v(ha.get('shared_commit') or '-')} by {v(ha.get('last_writer') or '-')}"
        )
    if doc.get("rejected_commit"):
        findings = doc.get("findings")
        stored = len(findings) if isinstance(findings, list) else 0
        total = doc.get("findings_total")
        total = total if isinstance(total, int) and total >= stored else stored
        noun = "finding" if total == 1 else "findings"
        lines.append(f"rejected:    {v(doc['rejected_commit'])} ({total} {noun})")
        # what is wrong with it, as `botreg validate` prints it (bounded, masked, escaped)
        lines.extend(f"  {line}" for line in finding_lines(findings, total))
    if doc.get("last_error"):
        lines.append(f"last error:  {v(doc['last_error'])}")
    lines.append("conditions:")
    # a damaged status.json (edited, truncated by a full disk) prints what it can
    for name, raw_cond in _mapping(doc.get("conditions")).items():
        cond = _mapping(raw_cond)
        message = cond.get("message")
        row = (
            f"  {v(name):<17} {v(cond.get('status', '')):<6} {v(cond.get('reason', ''))}"
            f"{': ' + v(message) if message else ''}"
        )
        lines.append(row.rstrip())
    domains = _mapping(doc.get("domains"))
    if domains:
        lines.append("domains:")
        for name, raw_state in sorted(domains.items(), key=lambda item: str(item[0])):
            state = _mapping(raw_state)
            error = f" ({v(state['error'])})" if state.get("error") else ""
            lines.append(f"  {v(name):<17} {v(state.get('status', ''))}{error}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _line(value: Any) -> str:
    """A value of the status file on one line, credentials masked (the file may be old
    or edited: what it says is not trusted to be clean)."""
    from botreg.registry.layout import escape_unsafe
    from botreg.secrets import mask_text

    return escape_unsafe(mask_text(str(value)))


def run_events(args: argparse.Namespace) -> int:
    """Print events (one JSON object per line).

    A data dir that does not exist is a usage error (exit 2, as for `botreg status`),
    with or without --follow. In an existing data dir with no event log yet,
    --follow waits for the daemon to write one (it says so on stderr); without
    it, there is nothing to print and that is an error too. A closed stdout
    (`| head`) ends the command quietly, as everywhere in the CLI.
    """
    if args.dead_letter or args.replay or args.id is not None:
        return run_dead_letters(args)
    from botreg.datadir import DataDir
    from botreg.events.log import read_events, rotated_logs

    data_dir = Path(args.data_dir)
    log = DataDir(data_dir).events
    hint = "has `botreg sync` run with this --data-dir?"
    if not data_dir.is_dir():  # --follow would otherwise wait, silently, for ever
        raise UsageError(f"{data_dir}: no such data directory, so no event log ({hint})")
    files = [*rotated_logs(log), *([log] if log.exists() else [])]
    if not files:
        if not args.follow:
            raise UsageError(f"{log}: no event log here ({hint})")
        print(
            f"botreg: {log} does not exist yet; waiting for the daemon to write it "
            "(Ctrl-C to stop)",
            file=sys.stderr,
        )
    try:
        # an id not in the log now never will be (ids are new): do not wait for it
        if args.since and files and args.since not in (e.get("id") for e in read_events(log)):
            raise UsageError(_since_not_found(args.since, log, files))
        if args.since and not files:
            raise UsageError(f"no event with id {args.since}: {log} does not exist yet")
        with _stopped_by_signals() if args.follow else contextlib.nullcontext():
            for event in read_events(log, since=args.since, follow=args.follow):
                sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
                sys.stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C, SIGINT or SIGTERM: a clean stop
        return 0
    except BrokenPipeError:
        raise  # stdout closed (`| head`): main() ends quietly, not a read error
    except OSError as exc:
        raise BotregError(f"{log}: cannot read the event log ({exc.strerror or exc})") from None
    except (ValueError, AttributeError):
        # a damaged line (not UTF-8, not an object): the log is written by the daemon
        # only, so this is damage, not input to trust
        raise BotregError(f"{log}: damaged event log (a line is not a JSON object)") from None
    return 0


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM end `events --follow` cleanly, however it was started.

    Python raises KeyboardInterrupt on SIGINT only if SIGINT was not ignored at
    start-up, and a job started in the background by a script (`cmd &`) inherits
    it ignored: `kill -INT` did nothing there, and SIGTERM (systemd, docker stop)
    killed it without a clean stop. Only in the main thread (main() also runs
    inside applications and tests); the previous handlers come back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _since_not_found(event_id: str, log: Path, files: list[Path]) -> str:
    """The --since error, naming every file searched (the log and its rotated files)."""
    rotated = [f.name for f in files if f != log]
    if not rotated:
        where = f"{log} (no rotated files are kept beside it)"
    else:
        where = f"{log} or its rotated files {', '.join(rotated)} in {log.parent}"
    return (
        f"no event with id {event_id} in {where}: an older event may have been rotated "
        "away (see --events-keep), or the id is mistyped"
    )


def run_dead_letters(args: argparse.Namespace) -> int:
    """`botreg events --dead-letter` lists webhook dead letters; `--replay` re-queues them.

    Works beside a running daemon: the outbox is SQLite (WAL), and the delivery
    thread picks replayed events up within a second.
    """
    import sqlite3

    from botreg.events.outbox import Outbox

    if args.id is not None and not args.replay:
        raise UsageError("--id goes with --replay (which dead letter to send again)")
    if args.dead_letter and args.replay:
        raise UsageError("--dead-letter lists, --replay re-queues: give one of them")
    if args.follow or args.since:
        raise UsageError("--follow and --since read the event log, not the dead letters")
    path = Path(args.data_dir) / "outbox.sqlite"
    if not path.is_file():
        raise UsageError(
            f"{path}: no webhook outbox here (has `botreg sync --webhook` run with this "
            "--data-dir?)"
        )
    try:
        outbox = Outbox(path, create=False)
        try:
            if args.replay:
                return _replay(outbox, args.id)
            _print_dead_letters(outbox, args.format)
        finally:
            outbox.close()
    except sqlite3.Error as exc:
        raise BotregError(f"{path}: cannot read the webhook outbox ({exc})") from None
    return 0


def _replay(outbox: Outbox, event_id: str | None) -> int:
    moved = outbox.replay(event_id)
    if event_id is not None and not moved:
        raise UsageError(f"no dead letter with id {event_id} (see `botreg events --dead-letter`)")
    sys.stdout.write(f"{moved} dead letter(s) moved back to the webhook outbox\n")
    return 0


def _print_dead_letters(outbox: Outbox, fmt: str) -> None:
    from datetime import UTC, datetime

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")

    rows = []
    for dead in outbox.dead_letters():
        event = dead.event()
        rows.append(
            {
                "id": dead.id,
                "type": str(event.get("type", "")),
                "subject": str(event.get("subject", "")),
                "queued_at": iso(dead.queued_at),
                "dead_at": iso(dead.dead_at),
                "attempts": dead.attempts,
                "last_error": dead.last_error,
                "event": event,
            }
        )
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True) + "\n")
        return
    if not rows:
        sys.stdout.write("no dead letters\n")
        return
    for row in rows:
        subject = f" {row['subject']}" if row["subject"] else ""
        attempts = row["attempts"]
        # the same words as the daemon's log line; an outbox written before errors
        # were recorded for unsent events has none: say so rather than print ""
        error = row["last_error"] or ("never sent" if not attempts else "no error recorded")
        tried = f"after {attempts} attempt{'' if attempts == 1 else 's'}: " if attempts else ""
        # the event's subject and the receiver's error are not ours: escaped, masked
        sys.stdout.write(
            f"{_line(row['id'])}  {_line(row['type'])}{_line(subject)}  queued "
            f"{row['queued_at']}, given up {row['dead_at']} {tried}{_line(error)}\n"
        )
