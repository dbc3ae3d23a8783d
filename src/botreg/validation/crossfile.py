"""Cross-file checks: references between bots, environments and knowledge domains."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from botreg.registry.layout import IDENTIFIER_RE, FileKind
from botreg.registry.snapshot import Document, Snapshot
from botreg.validation.findings import Finding

__all__ = ["check_bot_references", "iter_resource_refs", "resource_table"]

Pointer = tuple[str | int, ...]


def iter_resource_refs(data: Any, path: Pointer = ()) -> Iterator[tuple[Pointer, str, str]]:
    """Every `{$resource: name, type: type}` in a document: (pointer, type, name)."""
    if isinstance(data, Mapping):
        name, rtype = data.get("$resource"), data.get("type")
        if isinstance(name, str) and isinstance(rtype, str):
            yield path, rtype, name
            return
        for key, value in data.items():
            yield from iter_resource_refs(value, (*path, str(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from iter_resource_refs(value, (*path, index))


def resource_table(env: Document) -> set[tuple[str, str]] | None:
    """(type, name) pairs an environment defines; None if it did not load."""
    if not env.ok or not isinstance(env.data, Mapping):
        return None
    resources = env.data.get("resources")
    table: set[tuple[str, str]] = set()
    if isinstance(resources, Mapping):
        for rtype, group in resources.items():
            if isinstance(group, Mapping):
                table.update((str(rtype), str(name)) for name in group)
    return table


def _domains_named(data: Mapping[str, Any]) -> Iterator[tuple[Pointer, Any]]:
    knowledge = data.get("knowledge")
    if isinstance(knowledge, Mapping) and isinstance(knowledge.get("domains"), list):
        for index, domain in enumerate(knowledge["domains"]):
            yield ("knowledge", "domains", index), domain
    tools = data.get("tools")
    if isinstance(tools, list):
        for index, tool in enumerate(tools):
            if isinstance(tool, Mapping) and tool.get("type") == "knowledge_search":
                yield ("tools", index, "domain"), tool.get("domain")


def check_bot_references(
    snapshot: Snapshot, bot_paths: Iterable[str], *, all_findings: bool
) -> list[Finding]:
    """`$resource` and domain references of the given bots against the whole registry.

    Args:
        snapshot: The registry.
        bot_paths: The bots to check.
        all_findings: Also report domain references (off when only environments
            were asked about, to keep a hook run on one environment file focused).
    """
    envs = {
        path: table
        for path in snapshot.paths(FileKind.ENVIRONMENT)
        if (table := resource_table(snapshot.document(path))) is not None
    }
    domains = snapshot.domains
    findings: list[Finding] = []
    for path in bot_paths:
        doc = snapshot.document(path)
        if not doc.ok or not isinstance(doc.data, Mapping):
            continue
        for pointer, rtype, name in iter_resource_refs(doc.data):
            for env_path, table in envs.items():
                if (rtype, name) not in table:
                    findings.append(
                        Finding(
                            path,
                            "BR401",
                            f"resource {rtype}/{name} is not defined in {env_path}: add "
                            f"resources.{rtype}.{name} there, or fix the reference",
                            pointer=(*pointer, "$resource"),
                            related=(env_path,),
                        )
                    )
        if not all_findings:
            continue
        for pointer, domain in _domains_named(doc.data):
            if isinstance(domain, str) and IDENTIFIER_RE.match(domain) and domain not in domains:
                known = ", ".join(sorted(domains)) or "none yet"
                findings.append(
                    Finding(
                        path,
                        "BR402",
                        f"knowledge domain {domain!r} does not exist: create "
                        f"knowledge/{domain}/ or use an existing one ({known})",
                        pointer=pointer,
                    )
                )
    return findings
