"""The repository map: the cached per-file analysis and the context built from it.

`RepoMap` caches each file's analysis (`symbols`) by content hash, in memory and on disk
when given a folder, and builds from it the ranked outline (`outline`) and the implicated
source (`source`) for a failure (`focus`, `tracebacks`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from agent.context import symbols as _symbols
from agent.context.focus import _Focus, focus_of
from agent.context.names import is_test_path
from agent.context.outline import CHARS_PER_TOKEN, render_outline
from agent.context.localize import Spectrum, Suspect, rank
from agent.context.source import function_source, implicated_source
from agent.context.symbols import Symbol, _FileInfo, _language, _language_name, extract_symbols
from agent.context.tracebacks import TracebackHit, parse_traceback_locations

__all__ = [
    "CHARS_PER_TOKEN",
    "RepoMap",
    "Symbol",
    "TracebackHit",
    "extract_symbols",
    "is_test_path",
    "parse_traceback_locations",
]

CACHE_VERSION = 2  # 2: aliases


class RepoMap:
    """Symbol tables, a ranked outline, and implicated source for a set of files.

    `files` arguments map repo-relative POSIX paths to their text. The analysis of each file
    is cached by a sha256 of its content (in memory, and as JSON under `cache_dir` when
    given), so re-rendering after an edit re-parses only the edited files. `parses` counts
    cache misses.
    """

    def __init__(self, cache_dir: Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, _FileInfo] = {}
        self.parses = 0

    # ------------------------------------------------------------------ analysis / cache

    def _info(self, path: str, source: str) -> _FileInfo:
        language_name = _language_name(path)
        if language_name is None or _language(language_name) is None:
            return _FileInfo()
        digest = hashlib.sha256(
            f"{CACHE_VERSION}\0{language_name}\0".encode() + source.encode("utf-8", "surrogatepass")
        ).hexdigest()
        info = self._memory.get(digest)
        if info is not None:
            return info
        info = self._load(digest)
        if info is None:
            self.parses += 1
            info = _symbols._analyze(path, source)
            self._store(digest, info)
        self._memory[digest] = info
        return info

    def _load(self, digest: str) -> _FileInfo | None:
        if self.cache_dir is None:
            return None
        try:
            data = json.loads((self.cache_dir / f"{digest}.json").read_text(encoding="utf-8"))
            return _FileInfo.from_json(data)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def _store(self, digest: str, info: _FileInfo) -> None:
        if self.cache_dir is None:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(info.to_json(), handle)
                os.replace(tmp, self.cache_dir / f"{digest}.json")
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass  # a cache that cannot be written is only slower

    def _infos(self, files: Mapping[str, str]) -> dict[str, _FileInfo]:
        return {path: self._info(path, source) for path, source in files.items()}

    def symbols(self, files: Mapping[str, str]) -> dict[str, list[Symbol]]:
        """Each file's symbols in source order ([] for files in unsupported languages)."""
        return {path: info.bind(path) for path, info in self._infos(files).items()}


    def _focus(
        self,
        infos: Mapping[str, _FileInfo],
        table: Mapping[str, list[Symbol]],
        hits: Sequence[TracebackHit],
        mentioned: Iterable[str],
    ) -> _Focus:
        return focus_of(infos, table, hits, mentioned)

    # ------------------------------------------------------------------ render

    def render(
        self,
        files: Mapping[str, str],
        *,
        focus: Sequence[TracebackHit] = (),
        mentioned: Iterable[str] = (),
        token_budget: int = 1024,
    ) -> str:
        """A ranked outline: each file's path, then its symbols' signatures, indented.

        Order: files named by `focus` (or defining names it or `mentioned` point at), then
        files referencing those names, then the rest; unfocused test files after source
        files at each level; files with nothing to outline last. Within a file that does
        not fit whole, the focused symbols are kept first and the gaps shown as `⋮`. The
        text is cut at a line boundary so that len(text) / 4 <= token_budget.
        """
        infos = self._infos(files)
        table = {path: info.bind(path) for path, info in infos.items()}
        ctx = self._focus(infos, table, focus, mentioned)
        return render_outline(files, infos, table, ctx, token_budget)

    # ------------------------------------------------------------------ implicated source

    def implicated_source(
        self,
        files: Mapping[str, str],
        focus: Sequence[TracebackHit],
        *,
        token_budget: int = 4096,
    ) -> dict[str, str]:
        """The source of the non-test files the failure implicates, within the budget.

        Implicated: source files with a traceback hit (innermost frame first), then the
        source files defining what a failing test calls. Each is given whole where it fits
        (leaving room for the others), otherwise as excerpts of the implicated functions
        with a few lines of context, elided ranges shown as `... (lines A-B elided)`.
        """
        infos = self._infos(files)
        table = {path: info.bind(path) for path, info in infos.items()}
        ctx = self._focus(infos, table, focus, ())
        return implicated_source(files, table, ctx, token_budget)

    # ------------------------------------------------------------------ localization

    def localize(
        self,
        files: Mapping[str, str],
        focus: Sequence[TracebackHit],
        spectrum: Spectrum | None = None,
        *,
        limit: int = 40,
    ) -> list[Suspect]:
        """The functions most likely to hold the bug, best first (see `localize.rank`)."""
        infos = self._infos(files)
        table = {path: info.bind(path) for path, info in infos.items()}
        return rank(table, self._focus(infos, table, focus, ()), spectrum, limit)

    def function_source(
        self, files: Mapping[str, str], suspects: Sequence[Suspect], *, token_budget: int = 4096
    ) -> tuple[dict[str, str], bool]:
        """The suspects' files: whole when short, else their imports and suspect functions
        whole (`source.function_view`); and whether any file is shown in part."""
        table = self.symbols(files)
        return function_source(files, table, [(s.path, s.qualname) for s in suspects],
                               token_budget)
