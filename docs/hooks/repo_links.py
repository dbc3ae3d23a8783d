"""MkDocs hook: links from a page to a file outside docs/ go to the repository.

A page may link to `../examples/seed/x.py` or `../README.md#a-five-minute-tour`:
the link works on GitHub as written, but the site has no such page. Here each
such link becomes `<repo_url>/blob/main/<path>` (a folder: `/tree/main/`).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

__all__ = ["on_page_markdown"]

_LINK = re.compile(r"\]\((?P<target>\.\./[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """The page's Markdown with links that leave docs/ pointing at the repository."""
    repo = str(config["repo_url"]).rstrip("/")
    folder = posixpath.dirname(page.file.src_uri)

    def repository_link(match: re.Match[str]) -> str:
        path = posixpath.normpath(posixpath.join("docs", folder, match["target"]))
        if path.startswith("docs/"):
            return match[0]  # still inside docs/: MkDocs resolves it
        kind = "tree" if match["target"].endswith("/") else "blob"
        return f"]({repo}/{kind}/main/{path}{match['anchor'] or ''})"

    return _LINK.sub(repository_link, markdown)
