"""Render a review as Markdown (a pull-request comment), plain text or JSON.

Every format is bounded: Markdown stays under `max_chars` (GitHub's comment
limit is 65,536): the summary is always complete; detail sections are added
while they fit, and a note says what was left out. Text and JSON have their own
bounds (`MAX_CHARS`), and leave out detail lines or items the same way.

The review holds raw data from the repository (file names, keys, values,
messages); each format escapes it here, with one helper per format: `_md`
(Markdown text), `_code` (Markdown code span), `_html` (inside `<details>`),
`_fence` (diff blocks), `escape_text` (text) and `dump_json` (JSON).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any

from botreg.review.build import BotReview, DomainReview, EnvironmentReview, Review
from botreg.validation.reporters import dump_json, escape_text

__all__ = ["MARKER", "MAX_CHARS", "RENDERERS", "render_json", "render_markdown", "render_text"]

MARKER = "<!-- botreg-review -->"  # finds the comment to update on the next push

# Default output bounds per format, in characters.
MAX_CHARS = {"markdown": 60_000, "text": 200_000, "json": 1_000_000}

_MAX_ROWS = 100  # rows of one table or list in a detail section
_MAX_SUMMARY_DOMAINS = 50
_MAX_NOTES = 20
_MAX_NOTE = 500

# Characters with a meaning in Markdown text wherever they stand (links,
# emphasis, code, HTML, tables, mentions); `_` only outside a word, where it
# can start emphasis.
_MD_SPECIAL = re.compile(r"[\\`*\[\]<>&|~@]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_BACKTICKS = re.compile(r"`+")


# A zero-width space after `@`: GitHub links (and notifies) mentions in the
# rendered text, escapes included; code spans are the only other inert place.
_NO_MENTION = "@&#8203;"


def _md_char(match: re.Match[str]) -> str:
    char = match.group()
    return _NO_MENTION if char == "@" else "\\" + char


def _md(text: str) -> str:
    """Repository text inside Markdown prose or a table cell: inert, on one line."""
    return _MD_SPECIAL.sub(_md_char, escape_text(text))


def _html(text: str) -> str:
    """Repository text inside an HTML block (`<details><summary>`)."""
    return html.escape(escape_text(text), quote=True).replace("@", _NO_MENTION)


def _longest_backticks(text: str) -> int:
    return max((len(m.group()) for m in _BACKTICKS.finditer(text)), default=0)


def _code(text: str, in_table: bool = False) -> str:
    """Repository text as a Markdown code span no content can close."""
    text = escape_text(text)
    fence = "`" * (_longest_backticks(text) + 1)
    if text.startswith("`") or text.endswith("`"):
        text = f" {text} "
    if in_table:
        text = text.replace("|", "\\|")  # GFM splits cells on | even in code spans
    return f"{fence}{text}{fence}"


def _fence(body: str, info: str = "") -> list[str]:
    """A fenced block whose fence is longer than any backtick run of `body`."""
    lines = [escape_text(line) for line in body.splitlines()]
    fence = "`" * max(3, _longest_backticks(body) + 1)
    return [fence + info, *lines, fence]


def _value(value: Any, limit: int = 80) -> str:
    """A value on one line, at most `limit` characters (not escaped for any format)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str, allow_nan=True)
        except ValueError:  # an integer too long to print
            text = "[value too large to show]"
    text = escape_text(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _count(n: int, noun: str) -> str:
    """`1 file`, `2 files`: `noun` is singular; the plural adds an s."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _more(total: int, shown: int, what: str) -> str:
    """`... 3 more files not shown`; `what` is a singular noun."""
    left = total - shown
    return f"... {left} more {what if left == 1 else what + 's'} not shown"


def _summary_markdown(review: Review) -> list[str]:
    s = review.summary()
    state = "✅ pass" if review.valid else "❌ fail"
    counts = f"{_count(review.errors, 'error')}, {_count(review.warnings, 'warning')}"
    if s["new_findings"]:
        counts += f", {s['new_findings']} new"
    lines = [
        MARKER,
        f"## botreg review `{review.base[:12]}..{review.head[:12]}`",
        "",
        f"**Validation of head: {state}** ({counts})",
        "",
        "| bots | created | updated | deleted | activated | deactivated |",
        "|---|---|---|---|---|---|",
        "| | "
        + " | ".join(
            str(s["bots"][k]) for k in ("created", "updated", "deleted", "activated", "deactivated")
        )
        + " |",
    ]
    if s["domains"]:
        lines += [
            "",
            "| knowledge domain | added | modified | deleted | renamed | "
            "chunks +added / -removed / =kept |",
            "|---|---|---|---|---|---|",
        ]
        domains = list(s["domains"].items())
        for domain, d in domains[:_MAX_SUMMARY_DOMAINS]:
            chunks = f"+{d['chunks_added']} / -{d['chunks_removed']} / ={d['chunks_kept']}"
            if d["reembed"]:
                chunks += " ⚠️ re-embed"
            lines.append(
                f"| {_md(domain)} | {d['added']} | {d['modified']} | {d['deleted']} | "
                f"{d['renamed']} | {chunks} |"
            )
        if len(domains) > _MAX_SUMMARY_DOMAINS:
            lines.append(f"| {_more(len(domains), _MAX_SUMMARY_DOMAINS, 'domain')} | | | | | |")
    if s["environments"] or s["registry"]:
        envs = _md(_value(", ".join(s["environments"]), 1000)) or "none"
        registry = _md(_value(", ".join(s["registry"]), 1000)) or "none"
        lines += ["", f"Environments changed: {envs}. Registry settings changed: {registry}."]
    lines += [f"> {_md(_value(note, _MAX_NOTE))}" for note in review.notes[:_MAX_NOTES]]
    if len(review.notes) > _MAX_NOTES:
        lines.append(f"> {_more(len(review.notes), _MAX_NOTES, 'note')}")
    return lines


def _change_rows(changes: list[dict[str, Any]]) -> list[str]:
    lines = ["| key | change | old | new |", "|---|---|---|---|"]
    for c in changes[:_MAX_ROWS]:
        lines.append(
            f"| {_code(_value(c['path'], 200), in_table=True)} | {_md(c['kind'])} | "
            f"{_md(_value(c['old']))} | {_md(_value(c['new']))} |"
        )
    if len(changes) > _MAX_ROWS:
        lines.append(f"| {_more(len(changes), _MAX_ROWS, 'change')} | | | |")
    return lines


def _bot_markdown(bot: BotReview) -> list[str]:
    flags = "".join(f" ⚠️ {_html(flag)}" for flag in bot.flags)
    lines = [
        f"<details><summary><b>{_html(bot.bot_id)}</b>: {_html(bot.kind)}{flags}</summary>",
        "",
        _code(bot.path),
        "",
    ]
    if bot.changes:
        lines += _change_rows(bot.changes)
    for path, diff in bot.text_diffs.items():
        lines += ["", f"{_code(path)}:", "", *_fence(diff, "diff")]
    return [*lines, "", "</details>"]


def _domain_markdown(domain: DomainReview) -> list[str]:
    lines = [
        f"<details><summary><b>{_html(domain.domain)}</b>: {_count(len(domain.files), 'file')}, "
        f"+{domain.chunks_added} / -{domain.chunks_removed} / ={domain.chunks_kept} "
        "chunks</summary>",
        "",
    ]
    lines += [f"- ⚠️ {_md(w)}" for w in domain.warnings]
    for f in domain.files[:_MAX_ROWS]:
        moved = f" (from {_code(f['old_path'])})" if f["old_path"] else ""
        lines.append(f"- {_md(f['kind'])}: {_code(f['path'])}{moved}")
    if len(domain.files) > _MAX_ROWS:
        lines.append(f"- {_more(len(domain.files), _MAX_ROWS, 'file')}")
    lines += [f"- ❌ {_code(e['path'])}: {_md(e['message'])}" for e in domain.errors[:_MAX_ROWS]]
    if len(domain.errors) > _MAX_ROWS:
        lines.append(f"- {_more(len(domain.errors), _MAX_ROWS, 'error')}")
    return [*lines, "", "</details>"]


def _environment_markdown(env: EnvironmentReview) -> list[str]:
    lines = [
        f"<details><summary><b>{_html(env.name)}</b>: {_html(env.kind)}, "
        f"{_count(len(env.changes), 'change')}, "
        f"{_count(len(env.affected_bots), 'unchanged bot')} affected</summary>",
        "",
        _code(env.path),
        "",
    ]
    if env.changes:
        lines += _change_rows(env.changes)
    if env.resources:
        lines += ["", "Changed resources now resolve to:", ""]
        lines += [
            f"- {_code(r['type'] + '/' + r['name'])}: {_code(_value(r['value'], 200))}"
            for r in env.resources[:_MAX_ROWS]
        ]
    if env.affected_bots:
        lines += ["", "Unchanged bots affected:", ""]
        lines += [
            f"- {_md(b['bot_id'])} (uses {_md(', '.join(b['resources']))})"
            for b in env.affected_bots[:_MAX_ROWS]
        ]
        if len(env.affected_bots) > _MAX_ROWS:
            lines.append(f"- {_more(len(env.affected_bots), _MAX_ROWS, 'bot')}")
    return [*lines, "", "</details>"]


def _findings_markdown(review: Review) -> list[str]:
    if not review.findings:
        return []
    lines = ["### Validation findings", ""]
    for f in review.findings[:_MAX_ROWS]:
        new = " **(new)**" if f["new"] else ""
        where = f"{f['path']}:{f['line']}:{f['column']}"
        lines.append(
            f"- {_code(where)} {_md(f['code'])} {_md(f['severity'])}: {_md(f['message'])}{new}"
        )
    if len(review.findings) > _MAX_ROWS:
        lines.append(f"- {_more(len(review.findings), _MAX_ROWS, 'finding')}")
    return lines


def _registry_markdown(reg: dict[str, Any]) -> list[str]:
    changes = reg["changes"]
    lines = [f"### {_code(reg['path'])} ({_md(reg['kind'])})", ""]
    lines += [
        f"- {_code(_value(c['path'], 200))} {_md(c['kind'])}: "
        f"{_md(_value(c['old']))} -> {_md(_value(c['new']))}"
        for c in changes[:_MAX_ROWS]
    ]
    if len(changes) > _MAX_ROWS:
        lines.append(f"- {_more(len(changes), _MAX_ROWS, 'change')}")
    return lines


def _cut(text: str, max_chars: int, note: str) -> str:
    """`text` cut at a line boundary so that it and `note` fit in `max_chars`."""
    if len(text) <= max_chars:
        return text
    room = max(max_chars - len(note) - 1, 0)
    end = text.rfind("\n", 0, room)
    return text[: end + 1 if end >= 0 else room] + note + "\n"


def render_markdown(review: Review, max_chars: int = MAX_CHARS["markdown"]) -> str:
    """A pull-request comment, at most `max_chars` long (the summary is never cut)."""
    summary = "\n".join(_summary_markdown(review)) + "\n"
    sections: list[list[str]] = []
    if review.findings:
        sections.append(_findings_markdown(review))
    if review.bots:
        sections.append(["### Bots"])
        sections += [_bot_markdown(b) for b in review.bots]
    if review.domains:
        sections.append(["### Knowledge"])
        sections += [_domain_markdown(d) for d in review.domains]
    if review.environments:
        sections.append(["### Environments"])
        sections += [_environment_markdown(e) for e in review.environments]
    sections += [_registry_markdown(reg) for reg in review.registry]
    out = summary
    left_out = 0
    note_room = 200
    for section in sections:
        text = "\n" + "\n".join(section) + "\n"
        if left_out or len(out) + len(text) > max_chars - note_room:
            left_out += 1
            continue
        out += text
    if left_out:
        out += (
            f"\n> Truncated: {left_out} detail section(s) left out to stay under "
            f"{max_chars} characters. Run `botreg review --base {review.base[:12]} --head "
            f"{review.head[:12]}` for the full report.\n"
        )
    # The summary is bounded (rows and notes capped), but a tiny --max-chars is
    # still a bound: cut at a line boundary as a last resort.
    return _cut(out, max_chars, "> Truncated: the summary itself is over the limit.")


def render_text(review: Review, max_chars: int = MAX_CHARS["text"]) -> str:
    """A plain-text report for terminals, at most `max_chars` long."""
    s = review.summary()
    lines = [
        f"review {review.base[:12]}..{review.head[:12]} (env {escape_text(review.environment)})",
        f"validation of head: {'pass' if review.valid else 'FAIL'} "
        f"({_count(review.errors, 'error')}, {_count(review.warnings, 'warning')}, "
        f"{s['new_findings']} new)",
        "bots: " + ", ".join(f"{v} {k}" for k, v in s["bots"].items()),
    ]
    for domain, d in s["domains"].items():
        lines.append(f"knowledge {escape_text(domain)}: {_domain_counts(d)}")
    lines += [f"note: {_value(n, _MAX_NOTE)}" for n in review.notes]
    for bot in review.bots:
        flags = f" [{'; '.join(bot.flags)}]" if bot.flags else ""
        lines.append(f"\nbot {escape_text(bot.bot_id)}: {bot.kind}{flags}")
        lines += [
            f"  {_value(c['path'], 200)}: {c['kind']} {_value(c['old'])} -> {_value(c['new'])}"
            for c in bot.changes
        ]
        for diff in bot.text_diffs.values():
            lines += ["  " + escape_text(line) for line in diff.splitlines()]
    for domain_review in review.domains:
        lines += [
            f"knowledge {escape_text(domain_review.domain)}: error in "
            f"{escape_text(e['path'])}: {escape_text(e['message'])}"
            for e in domain_review.errors
        ]
    for env in review.environments:
        lines.append(f"\nenvironment {escape_text(env.name)}: {env.kind}")
        lines += [
            f"  {_value(c['path'], 200)}: {c['kind']} {_value(c['old'])} -> {_value(c['new'])}"
            for c in env.changes
        ]
        lines += [
            f"  affects {escape_text(b['bot_id'])} ({escape_text(', '.join(b['resources']))})"
            for b in env.affected_bots
        ]
    for f in review.findings:
        lines.append(
            f"{escape_text(f['path'])}:{f['line']}:{f['column']}: {f['code']} "
            f"{escape_text(f['message'])}{' (new)' if f['new'] else ''}"
        )
    return _bounded_lines(lines, max_chars)


def _domain_counts(d: dict[str, Any]) -> str:
    """`2 files changed (1 added, 1 modified); chunks: 2 added, 1 removed, 6 kept`."""
    kinds = ("added", "modified", "deleted", "renamed")
    files = sum(d[kind] for kind in kinds)
    which = ", ".join(f"{d[kind]} {kind}" for kind in kinds if d[kind])
    text = f"{_count(files, 'file')} changed ({which or 'none'}); chunks: "
    text += f"{d['chunks_added']} added, {d['chunks_removed']} removed, {d['chunks_kept']} kept"
    return text + (" (re-embed: the embedding settings changed)" if d["reembed"] else "")


def _bounded_lines(lines: list[str], max_chars: int) -> str:
    note_room = 120
    out: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        if used + len(line) + 1 > max_chars - note_room:
            out.append(
                f"[output truncated: {len(lines) - index} more lines left out to stay under "
                f"{max_chars} characters]"
            )
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out) + "\n"


_DETAIL_LISTS = ("findings", "bots", "domains", "environments", "registry")


def _json(doc: Any) -> str:
    # values were bounded (and NaN made a string) when the review was built
    return dump_json(doc, sort_keys=True)


def render_json(review: Review, max_chars: int = MAX_CHARS["json"]) -> str:
    """The review as JSON: the same content as the Markdown, at most `max_chars` long.

    Past the bound, the last items of the detail lists (findings, bots,
    domains, environments, registry) are left out and `truncated` counts them;
    the summary is always complete.
    """
    doc = review.to_dict()
    text = _json(doc)
    if len(text) <= max_chars:
        return text
    sizes: dict[str, list[int]] = {
        # an item's size in the document: its JSON plus the deeper indentation
        name: [len(t) + 4 * t.count("\n") for t in map(_json, doc[name])]
        for name in _DETAIL_LISTS
    }
    skeleton = len(_json({**doc, **{name: [] for name in _DETAIL_LISTS}}))
    budget = max_chars - skeleton - 400  # room for `truncated`
    for _ in range(8):  # the sizes are estimates: shrink until it fits
        left = budget
        kept: dict[str, int] = {}
        for name in _DETAIL_LISTS:
            count = 0
            for size in sizes[name]:
                if size > left:
                    break
                left -= size
                count += 1
            kept[name] = count
        trimmed = {
            **doc,
            **{name: doc[name][: kept[name]] for name in _DETAIL_LISTS},
            "truncated": {
                "max_chars": max_chars,
                **{
                    name: len(doc[name]) - kept[name]
                    for name in _DETAIL_LISTS
                    if kept[name] < len(doc[name])
                },
            },
        }
        text = _json(trimmed)
        if len(text) <= max_chars:
            return text
        budget = budget * 3 // 4
    return text  # only the summary is left; it is never cut


RENDERERS: dict[str, Callable[[Review, int], str]] = {
    "markdown": render_markdown,
    "text": render_text,
    "json": render_json,
}
