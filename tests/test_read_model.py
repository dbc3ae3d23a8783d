"""The read model of a registry tree (`RegistryView`): one owner of the registry's rules.

Domain file selection (`_domain.yaml` globs), environment loading and the list of
domains are answered in one place, so the daemon's events, `botreg review` and
the ingester agree on the same pair of commits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from botreg.changes import FileChange, compute_changes
from botreg.cli import main
from botreg.errors import BotregError, UsageError
from botreg.git.diff import tree_diff
from botreg.git.tree import GitTreeSource
from botreg.registry.source import WorkingTreeSource
from botreg.registry.view import (
    DomainConfigError,
    DomainRules,
    EnvironmentInvalidError,
    EnvironmentNotFoundError,
    RegistryView,
    glob_regex,
)
from botreg.review import build_review
from conftest import git as run_git
from helpers import write
from sync_helpers import SyncHarness, commit

# --- glob semantics, table-driven --------------------------------------------------------

GLOBS: list[tuple[str, str, bool]] = [
    # `*` never crosses a folder
    ("*.md", "faq.md", True),
    ("*.md", "drafts/faq.md", False),
    ("*.md", ".md", True),
    ("faq*", "faq.md", True),
    ("faq*", "faq/x.md", False),
    ("a*b*c.md", "aXbYc.md", True),
    ("a*b*c.md", "a/b/c.md", False),
    # `?` is one character, never `/`
    ("faq?.md", "faq1.md", True),
    ("faq?.md", "faq.md", False),
    ("faq?.md", "faq12.md", False),
    ("a?b", "a/b", False),
    # `**/` is zero or more folders
    ("**/*.md", "faq.md", True),
    ("**/*.md", "a/faq.md", True),
    ("**/*.md", "a/b/c/faq.md", True),
    ("**/*.md", "faq.txt", False),
    ("drafts/**/*.md", "drafts/x.md", True),
    ("drafts/**/*.md", "drafts/a/b/x.md", True),
    ("drafts/**/*.md", "other/drafts/x.md", False),
    ("**/drafts/**", "a/drafts/x.md", True),
    ("**/drafts/**", "drafts/x.md", True),
    ("**/drafts/**", "adrafts/x.md", False),
    # a trailing `/**` (or `/`) is everything below the folder
    ("drafts/**", "drafts/pricing.md", True),
    ("drafts/**", "drafts/a/b/pricing.md", True),
    ("drafts/**", "drafts.md", False),
    ("drafts/**", "old/drafts/pricing.md", False),  # relative to the domain folder
    ("drafts/", "drafts/a/pricing.md", True),
    ("drafts/", "draftsx/pricing.md", False),
    ("**", "any/thing/at/all.md", True),
    # `**` inside a segment is `*`
    ("a**b.md", "aXYb.md", True),
    ("a**b.md", "a/b.md", False),
    # classes
    ("faq[0-9].md", "faq7.md", True),
    ("faq[0-9].md", "faqx.md", False),
    ("faq[!0-9].md", "faqx.md", True),
    ("faq[!0-9].md", "faq7.md", False),
    ("faq[^0-9].md", "faq7.md", False),
    ("a[/]b", "a/b", False),  # a class never matches `/`
    ("a[!x]b", "a/b", False),
    ("[]]x", "]x", True),
    ("[a-]x", "-x", True),
    ("[z-a]x", "ax", False),  # an empty range matches nothing
    ("faq[.md", "faq[.md", True),  # an unclosed `[` is literal
    # literals: regex characters mean themselves, `\` escapes
    ("a+b(1).md", "a+b(1).md", True),
    ("a.md", "aXmd", False),
    (r"\*.md", "*.md", True),
    (r"\*.md", "x.md", False),
    ("v1.{md,txt}", "v1.md", False),  # no brace expansion
    # a leading `/` or `./` is the domain folder
    ("/faq.md", "faq.md", True),
    ("./drafts/**", "drafts/x.md", True),
    # whole-path match, case-sensitive, a newline is no end of string
    ("faq.md", "faq.md.gz", False),
    ("faq.md", "FAQ.md", False),
    ("faq.md", "faq.md\n", False),
    ("*", "a\nb", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), GLOBS)
def test_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is expected


@pytest.mark.parametrize(
    ("data", "selected", "dropped"),
    [
        (None, ["a.md", "d/b.md"], []),
        ({"exclude": ["drafts/**"]}, ["a.md", "x/drafts/a.md"], ["drafts/a.md"]),
        ({"include": ["**/*.md"], "exclude": ["old/*"]}, ["a.md", "x/y.md"], ["a.csv", "old/a.md"]),
        ({"include": []}, ["a.md"], []),  # an empty include is no filter
        ({"description": "x"}, ["a.md"], []),
    ],
)
def test_domain_rules(data: object, selected: list[str], dropped: list[str]) -> None:
    rules = DomainRules.from_data(data)
    assert [p for p in selected + dropped if rules.selects(p)] == selected


@pytest.mark.parametrize("data", [["drafts/**"], {"exclude": "drafts/**"}, {"include": [1]}])
def test_domain_rules_of_the_wrong_shape_are_an_error(data: object) -> None:
    with pytest.raises(DomainConfigError, match=r"_domain\.yaml"):
        DomainRules.from_data(data)


# --- the view over a work tree -----------------------------------------------------------


def test_domains_and_their_files(registry: Path) -> None:
    write(registry, "knowledge/billing/drafts/pricing.md", "# Pricing\n\nDraft.\n")
    write(registry, "knowledge/billing/notes.pdf", b"%PDF")
    write(registry, "knowledge/bad\nname/faq.md", "# FAQ\n")
    write(registry, "knowledge/product/bad\x1bname.md", "# Escape\n")
    os.symlink("/etc/passwd", registry / "knowledge/product/passwd.md")
    write(registry, "knowledge/legal/_domain.yaml", "exclude: ['**']\n")
    view = RegistryView(WorkingTreeSource(registry))
    assert view.domains() == ["billing", "legal", "product"]
    assert view.domain_files("billing") == [
        "knowledge/billing/faq.md.gz",
        "knowledge/billing/plans.json",
        "knowledge/billing/policies/refunds.md",
    ]
    assert view.domain_files("product") == [
        "knowledge/product/features.yaml",
        "knowledge/product/getting-started.md",
        "knowledge/product/release-notes.txt",
        "knowledge/product/shortcuts.csv",
    ]
    assert view.domain_files("legal") == []
    assert not view.is_ingested("knowledge/billing/drafts/pricing.md")
    assert view.ingestible("knowledge/billing/drafts/pricing.md")  # globs aside
    assert view.is_ingested("knowledge/billing/plans.json")
    assert not view.is_ingested("knowledge/billing/_domain.yaml")
    assert not view.is_ingested("knowledge/billing/missing.md")
    assert not view.is_ingested("bots/billing-assistant.yaml")


def test_a_broken_domain_file_is_an_error_not_a_silent_include_all(registry: Path) -> None:
    write(registry, "knowledge/billing/_domain.yaml", "exclude: [drafts/**\n")
    view = RegistryView(WorkingTreeSource(registry))
    with pytest.raises(DomainConfigError, match=r"knowledge/billing/_domain.yaml:\d+:\d+: BR1"):
        view.domain_files("billing")
    assert view.domain_files("product")  # other domains are unaffected


def test_ingest_refuses_a_domain_whose_domain_file_is_broken(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(registry, "knowledge/billing/_domain.yaml", "exclude: drafts/**\n")
    data = str(tmp_path / "data")
    code = main(["ingest", "--repo", str(registry), "--data-dir", data, "--domain", "billing"])
    err = capsys.readouterr().err
    assert code == 1 and "knowledge/billing/_domain.yaml" in err and "Traceback" not in err


# --- environment loading -----------------------------------------------------------------


def test_environment_and_knowledge_settings(registry: Path) -> None:
    view = RegistryView(WorkingTreeSource(registry))
    assert view.environment_names() == ["development", "production"]
    assert view.environment("development")["name"] == "development"
    settings = view.knowledge_settings("development", {})
    assert (settings.store.type, settings.embedding.provider) == ("persistent", "hash")


@pytest.mark.parametrize(
    ("name", "files", "error", "message"),
    [
        ("staging", {}, EnvironmentNotFoundError, "available: development, production"),
        ("../bots/product-guide", {}, EnvironmentNotFoundError, "environment not found"),
        ("development\n", {}, EnvironmentNotFoundError, "environment not found"),
        (
            "broken",
            {"environments/broken.yaml": "name: [\n"},
            EnvironmentInvalidError,
            r"environments/broken.yaml:\d+:\d+: BR101",
        ),
        (
            "listy",
            {"environments/listy.yaml": "- a\n- b\n"},
            EnvironmentInvalidError,
            "environments/listy.yaml: not a mapping",
        ),
        (
            "binary",
            {"environments/binary.yaml": b"\xff\xfe\x00name"},
            EnvironmentInvalidError,
            "environments/binary.yaml",
        ),
        (
            "typed",
            {"environments/typed.yaml": "knowledge: {store: {port: eighty}}\n"},
            EnvironmentInvalidError,
            "environments/typed.yaml: knowledge.store",
        ),
    ],
)
def test_environment_errors_are_clear(
    registry: Path,
    name: str,
    files: dict[str, str | bytes],
    error: type[BotregError],
    message: str,
) -> None:
    for rel, text in files.items():
        write(registry, rel, text)
    view = RegistryView(WorkingTreeSource(registry))
    with pytest.raises(error, match=message) as caught:
        view.knowledge_settings(name, {})
    assert isinstance(caught.value, UsageError) is (error is EnvironmentNotFoundError)


def test_a_symlinked_environment_is_not_followed(registry: Path, tmp_path: Path) -> None:
    outside = write(tmp_path, "outside.yaml", "name: secret\n")
    os.symlink(outside, registry / "environments/linked.yaml")
    view = RegistryView(WorkingTreeSource(registry))
    with pytest.raises(EnvironmentInvalidError, match="symbolic link"):
        view.environment("linked")


def test_the_cli_and_the_api_load_environments_the_same_way(
    git_registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(git_registry, "environments/broken.yaml", "name: [\n")
    commit(git_registry, "broken environment")
    code = main(["resolve", "billing-assistant", "--env", "broken", "--repo", str(git_registry)])
    assert code == 1 and "environments/broken.yaml:" in capsys.readouterr().err
    from botreg.api.git_backend import GitRegistryBackend

    backend = GitRegistryBackend(repo=git_registry)
    try:
        with pytest.raises(EnvironmentInvalidError, match=r"environments/broken\.yaml:"):
            backend.environment("broken")
        with pytest.raises(EnvironmentNotFoundError, match="available: broken, development"):
            backend.environment("staging")
        assert backend.environment("production")["name"] == "production"
    finally:
        backend.close_now()


# --- review, the daemon and the ingester agree -------------------------------------------


@pytest.fixture
def synced(git_registry: Path, tmp_path: Path) -> Iterator[SyncHarness]:
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    yield harness
    harness.close()


def _knowledge_events(h: SyncHarness) -> set[tuple[str, str]]:
    prefix = "botreg.knowledge.file."
    return {(e.type[len(prefix) :], e.data["path"]) for e in h.events if e.type.startswith(prefix)}


def _ingester_files(repo: Path, commit_sha: str) -> dict[str, str]:
    """path -> blob of every file the ingester stores at a commit."""
    source = GitTreeSource(git.Repo(repo), commit_sha)
    view = RegistryView(source)
    return {p: source.blob_id(p) for d in view.domains() for p in view.domain_files(d)}


def test_review_daemon_and_ingester_agree(git_registry: Path, synced: SyncHarness) -> None:
    repo = git_registry
    # base: excluded files already present
    write(repo, "knowledge/billing/drafts/early.md", "# Early\n\nAn early draft.\n")
    write(repo, "knowledge/product/_domain.yaml", "exclude: [archive/**]\n")
    write(repo, "knowledge/product/archive/old.md", "# Old\n\nRetired feature.\n")
    base = commit(repo, "base")
    assert synced.sync().result == "synced"
    first = _knowledge_events(synced)
    assert ("added", "knowledge/billing/drafts/early.md") not in first
    assert ("added", "knowledge/product/archive/old.md") not in first
    assert ("added", "knowledge/billing/plans.json") in first

    # head: the observed drafts case, both _domain.yaml exclude lists edited, a
    # rename out of the selection, and ordinary changes
    write(repo, "knowledge/billing/drafts/pricing.md", "# Pricing\n\nNew prices.\n\nMore.\n")
    domain = repo / "knowledge/billing/_domain.yaml"
    domain.write_text(
        domain.read_text().replace("  - drafts/**\n", "  - drafts/**\n  - policies/**\n")
    )
    write(repo, "knowledge/product/_domain.yaml", "owner: docs-team\n")
    run_git(repo, "mv", "knowledge/billing/plans.json", "knowledge/billing/drafts/plans.json")
    write(repo, "knowledge/product/new.md", "# New\n\nA new page.\n")
    guide = repo / "knowledge/product/getting-started.md"
    guide.write_text(guide.read_text() + "\n## One more step\n\nDone.\n")
    head = commit(repo, "head")

    expected = {
        ("added", "knowledge/product/archive/old.md"),  # newly included
        ("added", "knowledge/product/new.md"),
        ("modified", "knowledge/product/getting-started.md"),
        ("deleted", "knowledge/billing/policies/refunds.md"),  # newly excluded
        ("deleted", "knowledge/billing/plans.json"),  # renamed into drafts/
    }
    # the ingester's files at both commits say the same
    before, after = _ingester_files(repo, base), _ingester_files(repo, head)
    derived = (
        {("added", p) for p in after.keys() - before.keys()}
        | {("deleted", p) for p in before.keys() - after.keys()}
        | {("modified", p) for p in after.keys() & before.keys() if after[p] != before[p]}
    )
    assert derived == expected

    # the daemon's events
    assert synced.sync().result == "synced"
    assert _knowledge_events(synced) == expected
    stored = {p for d in ("billing", "product") for p, _ in synced.stored(d)}
    assert stored == set(after)  # what it ingested is what it announced

    # review
    review = build_review(str(repo), base, head)
    reviewed = {(f["kind"], f["path"]) for d in review.domains for f in d.files}
    assert reviewed == expected
    billing = next(d for d in review.domains if d.domain == "billing")
    assert billing.chunks_added == 0 and billing.chunks_removed > 0  # no "+2 chunks" of drafts


def test_renames_in_and_out_of_the_selection(git_registry: Path) -> None:
    repo = git_registry
    base = run_git(repo, "rev-parse", "HEAD").strip()
    (repo / "knowledge/billing/drafts").mkdir()
    run_git(repo, "mv", "knowledge/billing/policies/refunds.md", "knowledge/billing/drafts/r.md")
    write(repo, "knowledge/billing/drafts/back.md", "# Back\n\nIt comes back.\n")
    mid = commit(repo, "into drafts")
    run_git(repo, "mv", "knowledge/billing/drafts/back.md", "knowledge/billing/back.md")
    run_git(repo, "mv", "knowledge/product/shortcuts.csv", "knowledge/product/keys.csv")
    head = commit(repo, "out of drafts")
    repository = git.Repo(repo)

    def changes(old: str, new: str) -> set[tuple[str, str, str]]:
        files = [FileChange(*c) for c in tree_diff(repository, old, new)]
        found = compute_changes(
            GitTreeSource(repository, old), GitTreeSource(repository, new), files
        )
        return {(c.kind, c.path, c.old_path) for c in found.knowledge}

    assert changes(base, mid) == {("deleted", "knowledge/billing/policies/refunds.md", "")}
    assert changes(mid, head) == {
        ("added", "knowledge/billing/back.md", ""),
        ("renamed", "knowledge/product/keys.csv", "knowledge/product/shortcuts.csv"),
    }


def test_adding_or_deleting_a_domain_file_changes_the_selection(git_registry: Path) -> None:
    repo = git_registry
    repository = git.Repo(repo)
    write(repo, "knowledge/billing/drafts/pricing.md", "# Pricing\n\nDraft.\n")
    base = commit(repo, "a draft")
    (repo / "knowledge/billing/_domain.yaml").unlink()
    write(repo, "knowledge/product/_domain.yaml", "include: ['*.md']\n")
    head = commit(repo, "billing: no globs; product: Markdown only")
    files = [FileChange(*c) for c in tree_diff(repository, base, head)]
    found = compute_changes(GitTreeSource(repository, base), GitTreeSource(repository, head), files)
    assert {(c.domain, c.kind, c.path) for c in found.knowledge} == {
        ("billing", "added", "knowledge/billing/drafts/pricing.md"),
        ("product", "deleted", "knowledge/product/features.yaml"),
        ("product", "deleted", "knowledge/product/release-notes.txt"),
        ("product", "deleted", "knowledge/product/shortcuts.csv"),
    }
    assert {c.path for c in found.domains} == {
        "knowledge/billing/_domain.yaml",
        "knowledge/product/_domain.yaml",
    }  # still announced as registry changes
    first = compute_changes(
        None,
        GitTreeSource(repository, base),
        [FileChange(*c) for c in tree_diff(repository, "", base)],
    )
    assert "knowledge/billing/drafts/pricing.md" not in {c.path for c in first.knowledge}
