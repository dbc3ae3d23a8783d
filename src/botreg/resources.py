"""Files that ship with botreg: the JSON Schemas and the registry template.

`schemas/` and `registry-repo-template/` at the project root are the single
sources; the wheel carries copies under `botreg/_data/`. A source checkout
(editable install, tests) reads the originals.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["schema_dir", "template_dir"]

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent.parent  # src/botreg -> project root


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _CHECKOUT / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"botreg is installed without its {name} folder; reinstall botreg")


def schema_dir() -> Path:
    """The folder of botreg's JSON Schemas (`*.schema.json`)."""
    return _find("schemas")


def template_dir() -> Path:
    """The folder of the registry repository template that `botreg init` copies."""
    return _find("registry-repo-template")
