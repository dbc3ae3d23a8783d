"""A registry tree read into documents: the typed view every later stage uses.

Reading is lazy and cached per path, so the hook can look at five files and
the environments without parsing two thousand bots it was not asked about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botreg.registry.content import ContentError, decode_utf8
from botreg.registry.layout import REGISTRY_FILE, FileKind, PathInfo, classify
from botreg.registry.settings import RegistrySettings
from botreg.registry.source import RegistrySource, SourceEntry
from botreg.registry.yamlio import YamlLoadError, YamlProblem, load_fast

__all__ = ["Document", "Snapshot"]

_YAML_KINDS = frozenset({FileKind.REGISTRY, FileKind.BOT, FileKind.ENVIRONMENT, FileKind.DOMAIN})


@dataclass(slots=True)
class Document:
    """One YAML file of the registry: its text and data, or why it could not be loaded."""

    path: str
    info: PathInfo
    text: str | None = None
    data: Any = None
    problems: list[YamlProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if the file loaded (its content may still break the schema)."""
        return not self.problems and self.text is not None


class Snapshot:
    """The files of one registry tree, classified, with YAML documents on demand."""

    def __init__(self, source: RegistrySource) -> None:
        self.source = source
        self.entries: dict[str, SourceEntry] = {e.path: e for e in source.entries()}
        self.info: dict[str, PathInfo] = {p: classify(p) for p in self.entries}
        self._docs: dict[str, Document] = {}
        self._settings: RegistrySettings | None = None

    def paths(self, kind: FileKind) -> list[str]:
        """Paths of one kind, sorted."""
        return [p for p, info in self.info.items() if info.kind is kind]

    @property
    def settings(self) -> RegistrySettings:
        """registry.yaml as settings (defaults where missing or invalid)."""
        if self._settings is None:
            data = self.document(REGISTRY_FILE).data if REGISTRY_FILE in self.entries else None
            self._settings = RegistrySettings.from_data(data)
        return self._settings

    @property
    def domains(self) -> set[str]:
        """Knowledge domains: the folders under knowledge/ that hold files."""
        return {
            info.ident
            for info in self.info.values()
            if info.kind in (FileKind.KNOWLEDGE, FileKind.DOMAIN) and info.ident
        }

    def bots(self) -> dict[str, Document]:
        """Bot id -> document, for every bot file."""
        return {self.info[p].ident or "": self.document(p) for p in self.paths(FileKind.BOT)}

    def environments(self) -> dict[str, Document]:
        """Environment name -> document, for every environment file."""
        return {
            self.info[p].ident or "": self.document(p) for p in self.paths(FileKind.ENVIRONMENT)
        }

    def document(self, path: str) -> Document:
        """The loaded YAML document at `path` (loaded once, then cached)."""
        doc = self._docs.get(path)
        if doc is None:
            doc = self._load(path)
            self._docs[path] = doc
        return doc

    def size_limit(self, path: str) -> int:
        """The most bytes a file at `path` may have to be loaded (registry.yaml: 1 MiB)."""
        return self.settings.limits.max_file_bytes if path != REGISTRY_FILE else 1 << 20

    def _load(self, path: str) -> Document:
        info = self.info.get(path) or classify(path)
        doc = Document(path, info)
        entry = self.entries.get(path)
        if entry is None or entry.is_symlink or info.kind not in _YAML_KINDS:
            return doc
        limit = self.size_limit(path)
        if entry.size > limit:  # never parse oversized YAML
            doc.problems = [
                YamlProblem("BR504", f"{entry.size} bytes, over the limit of {limit}; split it")
            ]
            return doc
        try:
            doc.text = decode_utf8(self.source.read(path))
            doc.data = load_fast(doc.text)
        except OSError as exc:
            doc.problems = [YamlProblem("BR100", f"cannot read the file: {exc.strerror or exc}")]
        except ContentError as exc:
            doc.problems = [YamlProblem(exc.code, exc.message, exc.line, exc.column)]
        except YamlLoadError as exc:
            doc.problems = list(exc.problems)
        return doc

    def text(self, path: str) -> str | None:
        """The UTF-8 text of a YAML document, or None (missing, binary, not YAML)."""
        if path not in self.entries:
            return None
        doc = self._docs.get(path)
        if doc is not None:
            return doc.text
        info = self.info[path]
        if info.kind not in _YAML_KINDS or self.entries[path].is_symlink:
            return None
        try:
            return decode_utf8(self.source.read(path))
        except (OSError, ContentError):
            return None
