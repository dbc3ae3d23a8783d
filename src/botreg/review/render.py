"""Render a review as Markdown (a pull-request comment), plain text or JSON.

Markdown stays under `max_chars` (GitHub's comment limit is 65,536): the
summary is always complete; detail sections are added while they fit, and a
note says what was left out.
"""

from __future__ import annotations

import json
from typing import Any

from botreg.review.build import BotReview, DomainReview, EnvironmentReview, Review

__all__ = ["MARKER", "render_json", "render_markdown", "render_text"]

MARKER = "<!-- botreg-review -->"  # finds the comment to update on the next push


def _value(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    text = text.replace("\n", " ").replace("|", "\\|").replace("`", "'")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _summary_markdown(review: Review) -> list[str]:
    s = review.summary()
    state = "✅ pass" if review.valid else "❌ fail"
    counts = f"{review.errors} errors, {review.warnings} warnings"
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
        for domain, d in s["domains"].items():
            chunks = f"+{d['chunks_added']} / -{d['chunks_removed']} / ={d['chunks_kept']}"
            if d["reembed"]:
                chunks += " ⚠️ re-embed"
            lines.append(
                f"| {domain} | {d['added']} | {d['modified']} | {d['deleted']} | "
                f"{d['renamed']} | {chunks} |"
            )
    if s["environments"] or s["registry"]:
        lines += [
            "",
            f"Environments changed: {', '.join(s['environments']) or 'none'}. "
            f"Registry settings changed: {', '.join(s['registry']) or 'none'}.",
        ]
    lines += [f"> {note}" for note in review.notes]
    return lines


def _bot_markdown(bot: BotReview) -> list[str]:
    flags = "".join(f" ⚠️ {flag}" for flag in bot.flags)
    lines = [
        f"<details><summary><b>{bot.bot_id}</b>: {bot.kind}{flags}</summary>",
        "",
        f"`{bot.path}`",
        "",
    ]
    if bot.changes:
        lines += ["| key | change | old | new |", "|---|---|---|---|"]
        for c in bot.changes:
            lines.append(
                f"| `{c['path']}` | {c['kind']} | {_value(c['old'])} | {_value(c['new'])} |"
            )
    for path, diff in bot.text_diffs.items():
        lines += ["", f"`{path}`:", "", "```diff", diff, "```"]
    return [*lines, "", "</details>"]


def _domain_markdown(domain: DomainReview) -> list[str]:
    lines = [
        f"<details><summary><b>{domain.domain}</b>: {len(domain.files)} files, "
        f"+{domain.chunks_added} / -{domain.chunks_removed} / ={domain.chunks_kept} "
        "chunks</summary>",
        "",
    ]
    lines += [f"- ⚠️ {w}" for w in domain.warnings]
    for f in domain.files:
        moved = f" (from `{f['old_path']}`)" if f["old_path"] else ""
        lines.append(f"- {f['kind']}: `{f['path']}`{moved}")
    lines += [f"- ❌ `{e['path']}`: {e['message']}" for e in domain.errors]
    return [*lines, "", "</details>"]


def _environment_markdown(env: EnvironmentReview) -> list[str]:
    lines = [
        f"<details><summary><b>{env.name}</b>: {env.kind}, {len(env.changes)} changes, "
        f"{len(env.affected_bots)} unchanged bots affected</summary>",
        "",
        f"`{env.path}`",
        "",
    ]
    if env.changes:
        lines += ["| key | change | old | new |", "|---|---|---|---|"]
        lines += [
            f"| `{c['path']}` | {c['kind']} | {_value(c['old'])} | {_value(c['new'])} |"
            for c in env.changes
        ]
    if env.resources:
        lines += ["", "Changed resources now resolve to:", ""]
        lines += [
            f"- `{r['type']}/{r['name']}`: `{_value(r['value'], 200)}`" for r in env.resources
        ]
    if env.affected_bots:
        lines += ["", "Unchanged bots affected:", ""]
        lines += [f"- {b['bot_id']} (uses {', '.join(b['resources'])})" for b in env.affected_bots]
    return [*lines, "", "</details>"]


def _findings_markdown(review: Review) -> list[str]:
    if not review.findings:
        return []
    lines = ["### Validation findings", ""]
    for f in review.findings:
        new = " **(new)**" if f["new"] else ""
        lines.append(
            f"- `{f['path']}:{f['line']}:{f['column']}` {f['code']} "
            f"{f['severity']}: {f['message']}{new}"
        )
    return lines


def render_markdown(review: Review, max_chars: int = 60000) -> str:
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
    for reg in review.registry:
        sections.append(
            [
                f"### `{reg['path']}` ({reg['kind']})",
                "",
                *[
                    f"- `{c['path']}` {c['kind']}: {_value(c['old'])} -> {_value(c['new'])}"
                    for c in reg["changes"]
                ],
            ]
        )
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
    return out


def render_text(review: Review) -> str:
    """A plain-text report for terminals."""
    s = review.summary()
    lines = [
        f"review {review.base[:12]}..{review.head[:12]} (env {review.environment})",
        f"validation of head: {'pass' if review.valid else 'FAIL'} ({review.errors} errors, "
        f"{review.warnings} warnings, {s['new_findings']} new)",
        "bots: " + ", ".join(f"{v} {k}" for k, v in s["bots"].items()),
    ]
    for domain, d in s["domains"].items():
        lines.append(
            f"knowledge {domain}: +{d['added']} ~{d['modified']} -{d['deleted']} "
            f">{d['renamed']} files; chunks +{d['chunks_added']} -{d['chunks_removed']} "
            f"={d['chunks_kept']}{' (re-embed)' if d['reembed'] else ''}"
        )
    lines += [f"note: {n}" for n in review.notes]
    for bot in review.bots:
        flags = f" [{'; '.join(bot.flags)}]" if bot.flags else ""
        lines.append(f"\nbot {bot.bot_id}: {bot.kind}{flags}")
        lines += [
            f"  {c['path']}: {c['kind']} {_value(c['old'])} -> {_value(c['new'])}"
            for c in bot.changes
        ]
        for diff in bot.text_diffs.values():
            lines += ["  " + line for line in diff.splitlines()]
    for env in review.environments:
        lines.append(f"\nenvironment {env.name}: {env.kind}")
        lines += [
            f"  {c['path']}: {c['kind']} {_value(c['old'])} -> {_value(c['new'])}"
            for c in env.changes
        ]
        lines += [
            f"  affects {b['bot_id']} ({', '.join(b['resources'])})" for b in env.affected_bots
        ]
    for f in review.findings:
        lines.append(
            f"{f['path']}:{f['line']}:{f['column']}: {f['code']} {f['message']}"
            f"{' (new)' if f['new'] else ''}"
        )
    return "\n".join(lines) + "\n"


def render_json(review: Review) -> str:
    """The review as JSON (the same content as the Markdown, never truncated)."""
    return json.dumps(review.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
