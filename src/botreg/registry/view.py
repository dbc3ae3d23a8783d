"""The registry at a commit or work tree: the one owner of the registry's rules.

The daemon (which knowledge changes become events, what it ingests), `botreg
review` (what the store will do), the API and the CLI all answer the same
questions about a registry tree; they answer them here, so they cannot disagree:

- which folders under `knowledge/` are domains, and which of their files are
  ingested (`_domain.yaml` `include` / `exclude`, supported types, no symbolic
  links, no control characters in the path);
- an environment file's data and its knowledge store and embedding settings,
  with one clear error when it is missing or unreadable;
- the registry settings of `registry.yaml`.

Glob semantics of `include` / `exclude` (`compile_glob`), patterns relative to the
domain folder, matched against the whole relative path, case-sensitive:

- `*` matches any run of characters except `/` (never crosses a folder);
- `?` matches one character except `/`;
- `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) match one character of (not of) the
  set, never `/`; a `[` without its `]` is a literal `[`;
- `**` as a whole segment: `**/` matches zero or more folders, a trailing `/**`
  everything below the folder, `**` alone every file; `**` inside a segment
  (`a**b`) is the same as `*`;
- a trailing `/` means everything below that folder (`drafts/` = `drafts/**`);
  a leading `/` or `./` is ignored; `\\` makes the next character literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botreg.errors import BotregError, UsageError
from botreg.registry.layout import (
    DOMAIN_FILE,
    ENVIRONMENTS_DIR,
    IDENTIFIER_RE,
    KNOWLEDGE_DIR,
    UNSAFE_CHARACTERS,
    FileKind,
    classify,
    knowledge_type,
)
from botreg.registry.settings import RegistrySettings
from botreg.registry.snapshot import Document, Snapshot
from botreg.registry.source import RegistrySource

if TYPE_CHECKING:
    from botreg.store.settings import KnowledgeSettings

__all__ = [
    "MAX_GLOBS",
    "MAX_GLOB_CHARS",
    "DomainConfigError",
    "DomainRules",
    "EnvironmentInvalidError",
    "EnvironmentNotFoundError",
    "Glob",
    "RegistryView",
    "compile_glob",
    "glob_regex",
]


class EnvironmentNotFoundError(UsageError):
    """The environment named on the command line or in the daemon's options is not there."""


class EnvironmentInvalidError(BotregError):
    """The environment file exists but cannot be used (unreadable, not YAML, not a mapping)."""


class DomainConfigError(BotregError):
    """A `_domain.yaml` that cannot be read: its file selection is unknown."""


# --- globs -------------------------------------------------------------------------------

# Bounds of `include` / `exclude` (each list), also in schemas/domain.schema.json.
MAX_GLOBS = 100
MAX_GLOB_CHARS = 256


def compile_glob(pattern: str) -> Glob:
    """Compile a domain glob (see the module docstring) to a matcher of relative paths.

    Never raises: a malformed class is read literally, an empty range matches nothing.
    Matching costs at most about len(pattern) x len(path) steps whatever the pattern:
    patterns come from the repository, and a backtracking regex (`*a*a*a...*Z`)
    would hold the daemon's GIL for ever.

    Args:
        pattern: The glob, relative to the domain folder.

    Returns:
        A `Glob` whose `match` is a whole-path match of a domain-relative POSIX path.
    """
    text = pattern
    while text.startswith(("/", "./")):
        text = text[1:] if text.startswith("/") else text[2:]
    if text.endswith("/"):
        text += "**"
    segments = [s for s in text.split("/") if s]  # `a//b` is `a/b`
    return Glob(tuple(None if s == "**" else _segment_regex(s) for s in segments))


# The table-driven tests and older callers know the matcher by this name.
glob_regex = compile_glob


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled domain glob: one matcher per pattern segment (None for `**`).

    Each segment regex matches one path segment and cannot backtrack
    catastrophically (see `_segment_regex`); `match` combines them with a
    dynamic program over path segments, so `**/**/...` cannot explode either.
    """

    segments: tuple[re.Pattern[str] | None, ...]

    def match(self, path: str) -> bool:
        """True if the glob matches the whole of `path` (domain-relative, POSIX).

        Args:
            path: The relative path.
        """
        segments = self.segments
        if not segments:
            return path == ""
        if segments == (None,):
            return True  # `**` alone: every path
        parts = path.split("/")
        n = len(parts)
        # reach[j]: the segments so far match `parts[0]/.../parts[j-1]/` (slash
        # included, so only j <= n - 1 is meaningful).
        reach = [False] * n
        reach[0] = True
        for number, segment in enumerate(segments):
            last = number == len(segments) - 1
            if segment is None:
                if last:  # a trailing `/**`: anything after the slash
                    return any(reach)
                # zero or more non-empty folders (`(?:[^/]+/)*`)
                for j in range(1, n):
                    if not reach[j] and reach[j - 1] and parts[j - 1]:
                        reach[j] = True
                continue
            if last:
                return reach[n - 1] and segment.fullmatch(parts[n - 1]) is not None
            step = [False] * n
            for j in range(n - 1):
                if reach[j] and segment.fullmatch(parts[j]) is not None:
                    step[j + 1] = True
            if not any(step):
                return False
            reach = step
        raise AssertionError("unreachable: the last segment returns")  # pragma: no cover


def _segment_regex(segment: str) -> re.Pattern[str]:
    """One pattern segment -> a regex for `fullmatch` on one path segment.

    A segment is `F0 * F1 * ... * Fm` where each `Fi` is a fixed-length run of
    one-character matchers. As in CPython's `fnmatch.translate`, every inner
    `* Fi` is an atomic lazy group `(?>.*?Fi)`: taking the earliest `Fi` is
    always right (the next `*` absorbs the rest), and the atomic group forbids
    the regex engine to retry other splits, which is what made `*a*a*a...`
    exponential.
    """
    chunks: list[list[str]] = [[]]  # fixed runs, split at each run of `*`
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "\\" and i + 1 < len(segment):
            chunks[-1].append(re.escape(segment[i + 1]))
            i += 2
        elif char == "*":
            while i < len(segment) and segment[i] == "*":  # `a**b` is `a*b`
                i += 1
            chunks.append([])
        elif char == "?":
            chunks[-1].append("[^/]")
            i += 1
        elif char == "[":
            parsed = _class_regex(segment, i)
            if parsed is None:
                chunks[-1].append(re.escape("["))
                i += 1
            else:
                regex, i = parsed
                chunks[-1].append(regex)
        else:
            chunks[-1].append(re.escape(char))
            i += 1
    out = ["".join(chunks[0])]
    inner, final = chunks[1:-1], chunks[-1]
    out.extend(f"(?>[^/]*?{''.join(chunk)})" for chunk in inner)
    if len(chunks) > 1:
        out.append("[^/]*" + "".join(final))
    return re.compile("".join(out), re.DOTALL)


def _class_regex(segment: str, start: int) -> tuple[str, int] | None:
    """`[...]` at `start` -> (regex, index after `]`), or None if it is not closed."""
    i = start + 1
    negate = i < len(segment) and segment[i] in "!^"
    if negate:
        i += 1
    members: list[tuple[str, str]] = []  # inclusive ranges
    first = True
    while i < len(segment):
        char = segment[i]
        if char == "]" and not first:
            break
        first = False
        if char == "\\" and i + 1 < len(segment):
            i += 1
            char = segment[i]
        if i + 2 < len(segment) and segment[i + 1] == "-" and segment[i + 2] != "]":
            end = segment[i + 2]
            if end == "\\" and i + 3 < len(segment):
                end = segment[i + 3]
                i += 1
            members.append((char, end))
            i += 3
        else:
            members.append((char, char))
            i += 1
    else:
        return None
    ranges = "".join(
        re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}"
        for lo, hi in members
        if lo <= hi  # an empty range (z-a) matches nothing, as in fnmatch
    )
    if negate:
        return f"[^/{ranges}]", i + 1
    if not ranges:
        return "(?!)", i + 1  # an empty set matches nothing
    return f"(?!/)[{ranges}]", i + 1


@dataclass(frozen=True, slots=True)
class DomainRules:
    """The file selection of one domain: its `_domain.yaml` `include` and `exclude`."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def from_data(cls, data: Any, where: str = DOMAIN_FILE) -> DomainRules:
        """Rules from loaded `_domain.yaml` data (None: no file, every supported file).

        Args:
            data: The loaded document.
            where: Its path, for messages.

        Raises:
            DomainConfigError: if `include` or `exclude` is not a list of strings, or
                the document is not a mapping.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise DomainConfigError(f"{where}: not a mapping; run `botreg validate`")
        lists: list[tuple[str, ...]] = []
        for key in ("include", "exclude"):
            value = data.get(key)
            if value is None:
                lists.append(())
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DomainConfigError(
                    f"{where}: `{key}` must be a list of glob strings; run `botreg validate`"
                )
            # The schema reports these; checked here too so a commit that skipped
            # the hook cannot make every file cost an absurd pattern's work.
            if len(value) > MAX_GLOBS or any(len(v) > MAX_GLOB_CHARS for v in value):
                raise DomainConfigError(
                    f"{where}: `{key}` allows at most {MAX_GLOBS} patterns of at most "
                    f"{MAX_GLOB_CHARS} characters; run `botreg validate`"
                )
            lists.append(tuple(value))
        return cls(lists[0], lists[1])

    def selects(self, relative: str) -> bool:
        """True if the globs select a file.

        Args:
            relative: The file's POSIX path relative to the domain folder.
        """
        if self.include and not any(_compiled(p).match(relative) for p in self.include):
            return False
        return not any(_compiled(p).match(relative) for p in self.exclude)


_GLOB_CACHE: dict[str, Glob] = {}


def _compiled(pattern: str) -> Glob:
    regex = _GLOB_CACHE.get(pattern)
    if regex is None:
        if len(_GLOB_CACHE) > 4096:  # patterns come from repositories: keep the cache bounded
            _GLOB_CACHE.clear()
        regex = _GLOB_CACHE[pattern] = compile_glob(pattern)
    return regex


# --- the view ----------------------------------------------------------------------------


class RegistryView:
    """The registry rules over one tree (a work tree or a git commit).

    Args:
        tree: The tree, as a `RegistrySource` or an existing `Snapshot` (its
            loaded documents are shared).
    """

    def __init__(self, tree: RegistrySource | Snapshot) -> None:
        self.snapshot = tree if isinstance(tree, Snapshot) else Snapshot(tree)
        self._knowledge: dict[str, list[str]] | None = None
        self._rules: dict[str, DomainRules | DomainConfigError] = {}
        self._files: dict[str, list[str]] = {}

    @classmethod
    def of(cls, tree: RegistryView | RegistrySource | Snapshot) -> RegistryView:
        """`tree` itself if it is a view, else a view over it."""
        return tree if isinstance(tree, RegistryView) else cls(tree)

    @property
    def source(self) -> RegistrySource:
        """The tree's files."""
        return self.snapshot.source

    @property
    def label(self) -> str:
        """The tree's name for messages (a folder, or `branch@commit`)."""
        return self.snapshot.source.label

    @property
    def settings(self) -> RegistrySettings:
        """registry.yaml as settings (defaults where missing or invalid)."""
        return self.snapshot.settings

    # --- knowledge -----------------------------------------------------------------------

    def _knowledge_paths(self) -> dict[str, list[str]]:
        if self._knowledge is None:
            by_domain: dict[str, list[str]] = {}
            for path, info in self.snapshot.info.items():
                if info.kind in (FileKind.KNOWLEDGE, FileKind.DOMAIN) and info.ident:
                    paths = by_domain.setdefault(info.ident, [])
                    if info.kind is FileKind.KNOWLEDGE:
                        paths.append(path)
            # A folder whose name is not an identifier (`billing\n`) is a finding of
            # the validator; it is never a domain, so it never reaches the store.
            self._knowledge = {
                d: sorted(p) for d, p in by_domain.items() if IDENTIFIER_RE.fullmatch(d)
            }
        return self._knowledge

    def domains(self) -> list[str]:
        """The knowledge domains: folders under knowledge/ that hold files, sorted."""
        return sorted(self._knowledge_paths())

    def domain_rules(self, domain: str) -> DomainRules:
        """The `include` / `exclude` rules of a domain.

        Raises:
            DomainConfigError: if its `_domain.yaml` cannot be read or has the wrong shape.
        """
        rules = self._rules.get(domain)
        if rules is None:
            rules = self._rules[domain] = self._load_rules(domain)
        if isinstance(rules, DomainConfigError):
            raise rules
        return rules

    def _load_rules(self, domain: str) -> DomainRules | DomainConfigError:
        path = f"{KNOWLEDGE_DIR}/{domain}/{DOMAIN_FILE}"
        if path not in self.snapshot.entries:
            return DomainRules()
        doc = self.snapshot.document(path)
        if not doc.ok:
            return DomainConfigError(f"{_document_problem(doc)}; run `botreg validate`")
        try:
            return DomainRules.from_data(doc.data, path)
        except DomainConfigError as exc:
            return exc

    def domain_files(self, domain: str, rules: DomainRules | None = None) -> list[str]:
        """The ingestible files of a domain, sorted: what the ingester stores.

        Args:
            domain: The domain.
            rules: Select with these rules instead of the domain's `_domain.yaml`.

        Raises:
            DomainConfigError: if its `_domain.yaml` cannot be read (and no rules given).
        """
        files = self._files.get(domain) if rules is None else None
        if files is None:
            selection = self.domain_rules(domain) if rules is None else rules
            prefix = f"{KNOWLEDGE_DIR}/{domain}/"
            files = [
                path
                for path in self._knowledge_paths().get(domain, [])
                if self._ingestible(path) and selection.selects(path[len(prefix) :])
            ]
            if rules is None:
                self._files[domain] = files
        return list(files)

    def ingestible(self, path: str) -> bool:
        """True if `path` is a knowledge file the ingester can store, globs aside.

        That is: present, in a domain, not a symbolic link, a supported type and
        free of control characters.
        """
        info = classify(path)
        if info.kind is not FileKind.KNOWLEDGE or not info.ident:
            return False
        if info.ident not in self._knowledge_paths() or path not in self.snapshot.entries:
            return False
        return self._ingestible(path)

    def is_ingested(self, path: str) -> bool:
        """True if the ingester stores the file at `path` (globs applied; False if absent).

        Raises:
            DomainConfigError: if its domain's `_domain.yaml` cannot be read.
        """
        if not self.ingestible(path):
            return False
        return path in self.domain_files(classify(path).ident or "")

    def _ingestible(self, path: str) -> bool:
        return (
            not self.snapshot.entries[path].is_symlink
            and knowledge_type(path) is not None
            and not UNSAFE_CHARACTERS.search(path)  # never reaches the store or an event
        )

    # --- environments --------------------------------------------------------------------

    def environment_names(self) -> list[str]:
        """The environments of the tree, sorted."""
        names = (
            self.snapshot.info[p].ident or "" for p in self.snapshot.paths(FileKind.ENVIRONMENT)
        )
        return sorted(n for n in names if IDENTIFIER_RE.fullmatch(n))

    def environment(self, name: str) -> dict[str, Any]:
        """The data of `environments/<name>.yaml`.

        Args:
            name: The environment name (a file stem; anything else is not found).

        Raises:
            EnvironmentNotFoundError: if there is no such environment (or the name is
                not an identifier): exit 2.
            EnvironmentInvalidError: if the file is a symbolic link, cannot be loaded
                or is not a mapping: exit 1.
        """
        path = f"{ENVIRONMENTS_DIR}/{name}.yaml"
        folder = self.snapshot.entries.get(ENVIRONMENTS_DIR)
        if folder is not None and folder.is_symlink:  # never followed: it may point anywhere
            raise EnvironmentInvalidError(
                f"{ENVIRONMENTS_DIR} is a symbolic link; environment files must be regular "
                "files inside the registry"
            )
        if not IDENTIFIER_RE.fullmatch(name) or path not in self.snapshot.entries:
            known = ", ".join(self.environment_names()) or "none"
            where = path if IDENTIFIER_RE.fullmatch(name) else f"{ENVIRONMENTS_DIR}/<name>.yaml"
            raise EnvironmentNotFoundError(
                f"environment not found: {name!r} (no {where} in {self.label}; available: {known})"
            )
        if self.snapshot.entries[path].is_symlink:
            raise EnvironmentInvalidError(
                f"{path}: a symbolic link; environment files must be regular files"
            )
        doc = self.snapshot.document(path)
        if not doc.ok:
            raise EnvironmentInvalidError(f"{_document_problem(doc)}; run `botreg validate`")
        if not isinstance(doc.data, dict):
            raise EnvironmentInvalidError(
                f"{path}: not a mapping of settings; run `botreg validate`"
            )
        return doc.data

    def knowledge_settings(
        self, name: str, env: Mapping[str, str] | None = None
    ) -> KnowledgeSettings:
        """The knowledge store and embedding of an environment, `${VAR}` expanded.

        Args:
            name: The environment name.
            env: The variables to expand from (None: the process environment).

        Raises:
            EnvironmentNotFoundError: see `environment`.
            EnvironmentInvalidError: see `environment`.
            BotregError: if a value has the wrong type or a variable is unset.
        """
        from botreg.store.settings import KnowledgeSettings  # not on the hook's import path

        data = self.environment(name)
        try:
            return KnowledgeSettings.from_environment(data, env)
        except BotregError as exc:
            raise EnvironmentInvalidError(f"{ENVIRONMENTS_DIR}/{name}.yaml: {exc}") from None


def _document_problem(doc: Document) -> str:
    if not doc.problems:
        return f"{doc.path}: cannot be read"
    problem = doc.problems[0]
    return f"{doc.path}:{problem.line}:{problem.column}: {problem.code} {problem.message}"
