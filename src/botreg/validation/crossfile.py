"""Cross-file checks: references between bots, environments and knowledge domains.

Each file contributes small facts (the references a bot makes, the resources an
environment defines); the checks compare facts, so they never need every
document in memory at once and can run after files were checked in parallel.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from botreg.registry.layout import is_identifier, unsafe_character
from botreg.validation.findings import Finding

__all__ = [
    "BotReferences",
    "bot_references",
    "check_references",
    "iter_resource_refs",
    "resource_table",
]

Pointer = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class BotReferences:
    """What one bot refers to: `$resource`s (pointer, type, name) and domains (pointer, id)."""

    resources: tuple[tuple[Pointer, str, str], ...]
    domains: tuple[tuple[Pointer, str], ...]


def iter_resource_refs(data: Any, path: Pointer = ()) -> Iterator[tuple[Pointer, str, str]]:
    """Every `{$resource: name, type: type}` in a document: (pointer, type, name).

    Iterative (an explicit stack), in document order: depth cannot exhaust the
    stack of the thread that calls it.
    """
    todo: list[tuple[Any, Pointer]] = [(data, path)]
    while todo:
        node, where = todo.pop()
        if isinstance(node, Mapping):
            name, rtype = node.get("$resource"), node.get("type")
            if isinstance(name, str) and isinstance(rtype, str):
                yield where, rtype, name
                continue
            todo.extend((value, (*where, str(key))) for key, value in reversed(list(node.items())))
        elif isinstance(node, list):
            todo.extend(
                (value, (*where, index)) for index, value in reversed(list(enumerate(node)))
            )


def _domains_named(data: Mapping[str, Any]) -> Iterator[tuple[Pointer, str]]:
    knowledge = data.get("knowledge")
    if isinstance(knowledge, Mapping) and isinstance(knowledge.get("domains"), list):
        for index, domain in enumerate(knowledge["domains"]):
            if isinstance(domain, str):
                yield ("knowledge", "domains", index), domain
    tools = data.get("tools")
    if isinstance(tools, list):
        for index, tool in enumerate(tools):
            if isinstance(tool, Mapping) and tool.get("type") == "knowledge_search":
                domain = tool.get("domain")
                if isinstance(domain, str):
                    yield ("tools", index, "domain"), domain


def bot_references(data: Any) -> BotReferences:
    """The references of one loaded bot document."""
    if not isinstance(data, Mapping):
        return BotReferences((), ())
    return BotReferences(tuple(iter_resource_refs(data)), tuple(_domains_named(data)))


def resource_table(data: Any) -> frozenset[tuple[str, str]]:
    """(type, name) pairs an environment document defines."""
    resources = data.get("resources") if isinstance(data, Mapping) else None
    table: set[tuple[str, str]] = set()
    if isinstance(resources, Mapping):
        for rtype, group in resources.items():
            if isinstance(group, Mapping):
                table.update((str(rtype), str(name)) for name in group)
    return frozenset(table)


def check_references(
    path: str,
    refs: BotReferences,
    environments: Mapping[str, frozenset[tuple[str, str]]],
    domains: set[str],
    *,
    check_domains: bool = True,
) -> list[Finding]:
    """A bot's references against every environment and the existing knowledge domains.

    Args:
        path: The bot file.
        refs: Its references.
        environments: Environment file path -> the resources it defines.
        domains: The knowledge domains of the registry.
        check_domains: Also check domain references (off when only environments
            changed: a hook run on one environment file reports what that file broke).
    """
    findings: list[Finding] = []
    for pointer, rtype, name in refs.resources:
        for env_path, table in environments.items():
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
    if check_domains:
        for pointer, domain in refs.domains:
            if (is_identifier(domain) or unsafe_character(domain)) and domain not in domains:
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
