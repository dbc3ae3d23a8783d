"""MkDocs hook: `\\|` inside a code span of a table row shows as `|` on the site too.

GitHub needs a pipe in a table cell escaped even inside backticks
(`` `text\\|json` ``) and shows it as `|`; Python-Markdown's tables keep the
backslash in code but never split a row at a pipe inside backticks. So in table
rows the escape is dropped inside code spans before the page is rendered.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["on_page_markdown"]

_CODE = re.compile(r"(`+)(.+?)\1")


def _unescape(match: re.Match[str]) -> str:
    return match[1] + match[2].replace("\\|", "|") + match[1]


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """The page's Markdown with `\\|` unescaped inside the code spans of table rows."""
    lines = markdown.split("\n")
    fence = False
    for number, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and line.startswith("|") and "\\|" in line:
            lines[number] = _CODE.sub(_unescape, line)
    return "\n".join(lines)
