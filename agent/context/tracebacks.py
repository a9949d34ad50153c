"""Read pytest output and Python tracebacks into the repository locations they name."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agent.context.names import _normalize
from agent.context.symbols import _IDENT_RE


@dataclass(frozen=True)
class TracebackHit:
    """A repo file location named by test output. `line` is 0 when only the test id was seen."""

    path: str
    line: int
    function: str | None


_TB_PATTERN = re.compile(
    r"""
      File\ "(?P<tb_path>[^"\n]+)",\ line\ (?P<tb_line>\d+)(?:,\ in\ (?P<tb_func>[^\s]+))?
    | (?P<nodeid_path>[^\s:"'()\[\]]+\.[A-Za-z0-9]+)::(?P<nodeid_rest>[A-Za-z_][\w:]*)
    | (?P<loc_path>[^\s:"'()\[\]<>]+\.[A-Za-z0-9]+):(?P<loc_line>\d+)(?::\d+)?
      (?::\ in\ (?P<loc_func>[A-Za-z_][\w.]*))?
    | (?:^(?:ERROR|FAILED)(?:\ collecting)?\ |importing\ test\ module\ ')
      (?P<bare_path>[^\s:"'()\[\]]+\.[A-Za-z0-9]+)(?!::|[\w.])
    """,
    re.VERBOSE | re.MULTILINE,
)


class _PathMapper:
    """Maps a path as printed (absolute, container-relative, rootdir-relative) to a repo path."""

    def __init__(self, known_paths: Iterable[str]):
        self.known = {_normalize(p) for p in known_paths}
        self.by_name: dict[str, list[str]] = {}
        for known in self.known:
            self.by_name.setdefault(known.rsplit("/", 1)[-1], []).append(known)

    def __call__(self, raw: str) -> str | None:
        path = _normalize(raw)
        if path in self.known:
            return path
        parts = [p for p in path.split("/") if p not in ("", ".")]
        for i in range(len(parts)):  # longest known suffix: /workspace/pkg/mod.py -> pkg/mod.py
            suffix = "/".join(parts[i:])
            if suffix in self.known:
                return suffix
        if not parts:
            return None
        # printed relative to a sub-folder (pytest rootdir): mod.py -> pkg/mod.py, if unique
        tail = "/".join(parts)
        matches = [k for k in self.by_name.get(parts[-1], ()) if k.endswith("/" + tail)]
        return matches[0] if len(matches) == 1 else None


def parse_traceback_locations(text: str, known_paths: Iterable[str]) -> list[TracebackHit]:
    """Repo locations named by test output, in order of appearance, without repeats.

    Understands Python tracebacks (`File "/workspace/pkg/mod.py", line 12, in foo`), pytest's
    location lines (`pkg/mod.py:12: AssertionError`, `tests/t.py:5: in test_x`), test ids
    (`tests/test_x.py::TestK::test_y[1]`, line 0) and collection errors. Paths are mapped
    to `known_paths` (any prefix such as /workspace/ is dropped); unknown paths are skipped.
    """
    mapper = _PathMapper(known_paths)
    hits: list[TracebackHit] = []
    seen: set[TracebackHit] = set()
    for match in _TB_PATTERN.finditer(text):
        groups = match.groupdict()
        if groups["tb_path"]:
            raw, line, function = groups["tb_path"], int(groups["tb_line"]), groups["tb_func"]
        elif groups["nodeid_path"]:
            raw, line = groups["nodeid_path"], 0
            function = groups["nodeid_rest"].rstrip(":").split("::")[-1] or None
        elif groups["loc_path"]:
            raw, line, function = groups["loc_path"], int(groups["loc_line"]), groups["loc_func"]
        else:
            raw, line, function = groups["bare_path"], 0, None
        if function is not None and not _IDENT_RE.fullmatch(function):
            function = None  # <module>, <lambda>, <listcomp>
        path = mapper(raw)
        if path is None:
            continue
        hit = TracebackHit(path, line, function)
        if hit not in seen:
            seen.add(hit)
            hits.append(hit)
    return hits


def got_further(before: str, after: str, test_path: str) -> bool:
    """Whether a test's failure moved to a later line of its own file (a later assertion:
    the code under test now passes the one it failed before), judged by the test file's
    frames in the two failure reports, outermost first."""
    def position(message: str) -> tuple[int, ...]:
        return tuple(hit.line for hit in parse_traceback_locations(message, [test_path])
                     if hit.path == test_path and hit.line > 0)

    first, then = position(before), position(after)
    return bool(first) and bool(then) and then > first
