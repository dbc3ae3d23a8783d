"""Where a new registry's pre-commit hook installs botreg from.

The template pins one pip requirement for the hook (`.pre-commit-config.yaml`)
and the same one for CI (`BOTREG_REQUIREMENT` in the workflow). Until botreg is
published that pin names a tag nobody can reach yet, so `botreg init`, when
botreg itself was installed from a local git clone (the README's set-up), pins
the hook to that clone at its current commit: the tour's `pre-commit install`
then works on a fresh machine. CI keeps its pin (a runner cannot see a local
clone): init says so.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["HOOK_CONFIG", "TEMPLATE_REQUIREMENT", "installed_clone_requirement", "pin_hook"]

TEMPLATE_REQUIREMENT = "botreg @ git+https://github.com/botreg/botreg@v0.1.0"
HOOK_CONFIG = ".pre-commit-config.yaml"


def installed_clone_requirement() -> str | None:
    """`botreg @ git+file://DIR@SHA` when this botreg was installed from a git clone, else None.

    Read from the installation's PEP 610 record (`direct_url.json`); the commit
    is the clone's HEAD (uncommitted changes in the clone are not part of it).
    """
    try:
        record = metadata.distribution("botreg").read_text("direct_url.json")
        url = json.loads(record or "{}").get("url", "")
    except (metadata.PackageNotFoundError, ValueError, AttributeError):
        return None
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme != "file":
        return None
    clone = Path(unquote(parsed.path))
    if not (clone / ".git").exists():
        return None
    import git

    try:
        sha = git.Repo(clone).head.commit.hexsha
    except (git.GitError, ValueError):  # no commit yet, a broken repository
        return None
    return f"botreg @ git+{clone.as_uri()}@{sha}"


def pin_hook(registry: Path, requirement: str) -> bool:
    """Pin the registry's hook to `requirement` (False: the template's pin is gone).

    Only the `additional_dependencies:` line changes: the comment above it, which
    lists the template's requirement as the example of a project tag, stays as it is.
    """
    config = registry / HOOK_CONFIG
    lines = config.read_text(encoding="utf-8").splitlines(keepends=True)
    pinned = False
    for number, line in enumerate(lines):
        if line.lstrip().startswith("additional_dependencies:") and TEMPLATE_REQUIREMENT in line:
            lines[number] = line.replace(TEMPLATE_REQUIREMENT, requirement)
            pinned = True
    if pinned:
        config.write_text("".join(lines), encoding="utf-8")
    return pinned
