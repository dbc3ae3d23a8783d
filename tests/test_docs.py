"""The manual (docs/*.md) and README.md render and link as written.

Tables: every row has the header's columns, and no `| ... |` line falls
outside a table (the Events table once had four rows that rendered as raw
text). Links: every relative link reaches a file of the repository, and every
`#anchor` a heading of its page, with GitHub's anchors (the MkDocs site uses
the same). Python snippets: their imports import, and every name they use is
defined by them or by an earlier snippet of the page. The site builds with
`mkdocs build --strict` where MkDocs is installed.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

PROJECT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((PROJECT / "docs").glob("*.md")), PROJECT / "README.md"]
_MD = MarkdownIt("commonmark").enable("table")


def _ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(PROJECT)) for p in pages]


def _cells(row: str) -> int:
    """Cells of a table row as GitHub counts them: split at pipes not escaped."""
    parts = re.split(r"(?<!\\)\|", row.strip())
    if parts and parts[0] == "":
        parts = parts[1:]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    return len(parts)


def table_problems(text: str) -> list[str]:
    """Table rows with another column count than their header, and stray `|` rows."""
    tokens = _MD.parse(text)
    lines = text.splitlines()
    inside: set[int] = set()
    problems = []
    for token in tokens:
        if token.map and token.type in ("fence", "code_block", "html_block"):
            inside.update(range(*token.map))
        if token.map and token.type == "table_open":
            start, end = token.map
            inside.update(range(start, end))
            width = _cells(lines[start])
            for number in range(start, end):
                if _cells(lines[number]) != width:
                    problems.append(
                        f"line {number + 1}: {_cells(lines[number])} cells, header has {width}"
                    )
    for number, line in enumerate(lines):
        if line.startswith("|") and number not in inside:
            problems.append(f"line {number + 1}: renders as text, not in a table: {line[:60]}")
    return problems


def slug(title: str) -> str:
    """GitHub's anchor of a heading (lowercase; only word characters, `-` and spaces)."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _heading_text(inline: Token) -> str:
    return "".join(
        child.content for child in inline.children or [] if child.type in ("text", "code_inline")
    )


def anchors(path: Path) -> list[str]:
    """The anchors of a page's headings, in order (GitHub's slugs)."""
    tokens = _MD.parse(path.read_text())
    return [
        slug(_heading_text(tokens[i + 1]))
        for i, token in enumerate(tokens)
        if token.type == "heading_open"
    ]


def links(path: Path) -> Iterator[str]:
    """Every link and image target of a page (not those in code)."""

    def walk(tokens: list[Token]) -> Iterator[str]:
        for token in tokens:
            if token.type in ("link_open", "image"):
                target = token.attrs.get("href", token.attrs.get("src"))
                yield str(target)
            if token.children:
                yield from walk(token.children)

    yield from walk(_MD.parse(path.read_text()))


def link_problems(path: Path) -> list[str]:
    """Relative links of `path` that reach no file, or no heading of their page."""
    problems = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
            continue  # https:, mailto: ...
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if file_part and (not dest.exists() or PROJECT not in dest.parents):
            problems.append(f"{target}: no such file in the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: {dest.name} has no heading with that anchor")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_tables_render_as_tables(page: Path) -> None:
    assert table_problems(page.read_text()) == []


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    assert link_problems(page) == []


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_headings_have_distinct_anchors(page: Path) -> None:
    """GitHub and MkDocs number a repeated anchor differently: a link to one would break."""
    found = anchors(page)
    assert sorted({a for a in found if found.count(a) > 1}) == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """Rows cut off from their table, a row with a cell too many, a dead link or anchor."""
    detached = "| a | b |\n|---|---|\n| 1 | 2 |\n\nA paragraph.\n| 3 | 4 |\n"
    assert table_problems(detached) == ["line 6: renders as text, not in a table: | 3 | 4 |"]
    assert table_problems("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n") == [
        "line 3: 3 cells, header has 2"
    ]
    assert table_problems("| a | b |\n|---|---|\n| `x\\|y` | 2 |\n") == []
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## A `code` heading\n\n[ok](#a-code-heading) [no](#nope) [f](x.md)\n"
    )
    assert link_problems(page) == [
        "#nope: page.md has no heading with that anchor",
        "x.md: no such file in the repository",
    ]
    assert slug("`botreg sync`: the daemon (`--once`)") == "botreg-sync-the-daemon---once"


def python_snippets(text: str) -> list[str]:
    """The ```python blocks of a page, in order."""
    return [t.content for t in _MD.parse(text) if t.type == "fence" and t.info.strip() == "python"]


def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(names a snippet binds, names it reads)."""
    bound: set[str] = set()
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound, read


def snippet_problems(text: str) -> list[str]:
    """Snippets that do not parse, imports that fail, names nothing defines."""
    problems = []
    defined = set(dir(builtins))
    for number, code in enumerate(python_snippets(text), 1):
        try:
            tree = compile(
                code,
                f"snippet {number}",
                "exec",
                ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )
        except SyntaxError as error:
            problems.append(f"snippet {number}: {error}")
            continue
        bound, read = _names(tree)
        defined |= bound
        problems += [f"snippet {number}: {name} is not defined" for name in sorted(read - defined)]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                problems += [
                    f"snippet {number}: cannot import {a.name} from {node.module}"
                    for a in node.names
                    if not hasattr(module, a.name)
                ]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
    return problems


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_python_snippets_import_what_they_use(page: Path) -> None:
    """The README's Python API snippet used `Path` without importing it (issue #14)."""
    assert snippet_problems(page.read_text()) == []


def test_the_snippet_check_sees_a_missing_import() -> None:
    missing = "```python\nstore = Path('.botreg')\n```\n"
    assert snippet_problems(missing) == ["snippet 1: Path is not defined"]
    earlier = "```python\nfrom pathlib import Path\n```\n\n```python\nawait f(Path('x'))\n```\n"
    assert snippet_problems(earlier) == ["snippet 2: f is not defined"]
    wrong = "```python\nfrom botreg.api import NoSuchName\n```\n"
    assert snippet_problems(wrong) == ["snippet 1: cannot import NoSuchName from botreg.api"]


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (PROJECT / "mkdocs.yml").read_text()
    for page in (PROJECT / "docs").glob("*.md"):
        assert re.search(rf":\s+{re.escape(page.name)}$", nav, re.M), page.name


@pytest.mark.timeout(300)
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: no missing page or anchor, no warning (where MkDocs is)."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    pytest.importorskip("material", reason="the docs extra is not installed")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "events" / "index.html").is_file()


def _hook(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, PROJECT / "docs" / "hooks" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_links_files_outside_docs_to_the_repository() -> None:
    page = SimpleNamespace(file=SimpleNamespace(src_uri="index.md"))
    config = {"repo_url": "https://github.com/botreg/botreg/"}
    markdown = "[a](../examples/x.py) [b](../README.md#tour) [c](../deploy/) [d](cli.md#x)"
    assert _hook("repo_links").on_page_markdown(markdown, page, config, None) == (
        "[a](https://github.com/botreg/botreg/blob/main/examples/x.py) "
        "[b](https://github.com/botreg/botreg/blob/main/README.md#tour) "
        "[c](https://github.com/botreg/botreg/tree/main/deploy) [d](cli.md#x)"
    )


def test_the_site_shows_escaped_pipes_in_table_code_as_pipes() -> None:
    markdown = "| `a\\|b` | x \\| y |\n```\n| `c\\|d` |\n```\ntext `e\\|f`"
    assert _hook("table_pipes").on_page_markdown(markdown, None, None, None) == (
        "| `a|b` | x \\| y |\n```\n| `c\\|d` |\n```\ntext `e\\|f`"
    )


def _command_lines(text: str) -> Iterator[str]:
    """Every `botreg CMD ...` of a page's code (spans and blocks), one command each."""
    for token in _MD.parse(text):
        pieces: list[str] = []
        if token.type in ("fence", "code_block"):
            pieces.append(token.content)
        for child in token.children or []:
            if child.type == "code_inline":
                pieces.append(child.content)
        for piece in pieces:
            for line in piece.splitlines():
                for part in re.split(r"&&|\|\||[|;]|\$\(|`", line.removeprefix("$ ")):
                    if part.strip().startswith("botreg "):
                        yield part.strip()


def flag_problems(text: str) -> list[str]:
    """Flags a page gives a botreg command that the command does not have."""
    import argparse

    from botreg.cli import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    problems = []
    for command in _command_lines(text):
        words = command.split()
        name = words[1]
        if name not in sub.choices:  # `botreg @ git+...`, `botreg daemon <...>`: not commands
            continue
        known = {f for a in sub.choices[name]._actions for f in a.option_strings}
        for word in words[2:]:
            flag = word.split("=", 1)[0].strip("[]()'\",.")
            if re.fullmatch(r"--?[a-z][a-z0-9-]*", flag) and flag not in known:
                problems.append(f"{command}: {name} has no {flag}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_flag_a_page_gives_a_command_exists(page: Path) -> None:
    """Checked by hand on the fresh-clone pass of issue #14; now on every change."""
    assert flag_problems(page.read_text()) == []


def test_the_flag_check_sees_a_stale_flag() -> None:
    text = "Run `botreg sync --source x --onse` or\n\n```\n$ botreg status --data-dir d\n```\n"
    assert flag_problems(text) == ["botreg sync --source x --onse: sync has no --onse"]
    assert flag_problems("`botreg init r && botreg sync --source r --once`") == []
    assert flag_problems("`botreg query --domain d -k 3 'x'`") == []
    assert flag_problems("`botreg query -q`") == ["botreg query -q: query has no -q"]
