"""Parse a model's answer into edits: SEARCH/REPLACE blocks, unified diffs and whole files."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.edits.diffs import _diff_starts, _has_header, _parse_diff, _patch_edit
from agent.edits.paths import _COMMENT_PATH_RE, _clean_path_line, _Known, _looks_like_path, _path_in_info, _path_in_line
from agent.edits.types import Edit
from agent.errors import FormatError

_SEARCH_RE = re.compile(r"^\s*<{5,9}\s*(?:SEARCH|ORIGINAL)\b[:\s]*(?P<rest>.*?)\s*$", re.IGNORECASE)
_DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
_REPLACE_RE = re.compile(r"^\s*>{5,9}\s*(?:REPLACE|UPDATED)\b.*$", re.IGNORECASE)
_FENCE_OPEN_RE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
_FENCE_CLOSE_RE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*$")
_DIFF_LANGS = {"diff", "patch", "udiff"}

_FORMAT_HELP = """\
Give each change as a SEARCH/REPLACE block: the file's path on its own line, then a fence:

path/to/file.py
```python
<<<<<<< SEARCH
the exact existing lines to change
=======
the new lines
>>>>>>> REPLACE
```

An empty SEARCH section creates a new file. A unified diff in a ```diff fence, or a \
complete file in a fence right after a line holding its path, is also accepted."""


def _join(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def parse_answer(
    text: str, known_paths: Iterable[str] = (), *, functions: bool = False,
    default_path: str | None = None,
) -> list[Edit]:
    """Parse a model's answer into edits, in the order they appear.

    Accepts SEARCH/REPLACE blocks, unified diffs (fenced or not) and whole files in a fence
    named by a path. Whole-file fences are only taken alongside other edits when they
    create a path that `known_paths` lacks, so an illustrative snippet cannot clobber a file.
    With `functions` (the function-level format), a fence named by an existing Python file
    holds replacement definitions instead of the whole file. `default_path` is the one file
    the prompt showed: when the answer names no file at all, its Python fences that define
    functions or classes hold replacement definitions for it (small models drop the path
    line; a definition is spliced by name, so a snippet can never clobber the file).
    Raises FormatError (a message for the model) when nothing usable is found.
    """
    known = _Known(known_paths)
    lines = text.replace("\r\n", "\n").split("\n")
    used = [False] * len(lines)
    found = _parse_search_replace(lines, known, used)
    other, whole = _parse_fences_and_diffs(lines, known, used)
    found += other
    if functions:
        found += [(pos, Edit(path=e.path, functions=e.content)) for pos, e in whole
                  if e.path in known.set and e.path.endswith((".py", ".pyi"))]
        whole = [(pos, e) for pos, e in whole if e.path not in known.set]
    if found:
        whole = [(pos, e) for pos, e in whole if known.paths and e.path not in known.set]
    found += whole
    if not found and default_path is not None and default_path.endswith((".py", ".pyi")):
        found = _unnamed_definitions(lines, default_path)
    if not found:
        raise FormatError("No edits found in the answer. " + _FORMAT_HELP)
    found.sort(key=lambda item: item[0])
    return [edit for _, edit in found]


def _parse_search_replace(
    lines: list[str], known: _Known, used: list[bool]
) -> list[tuple[int, Edit]]:
    edits: list[tuple[int, Edit]] = []
    current: str | None = None  # later blocks without a filename reuse the previous one
    i, count = 0, 0
    while i < len(lines):
        match = _SEARCH_RE.match(lines[i])
        if not match:
            i += 1
            continue
        count += 1
        rest = _clean_path_line(match.group("rest"))
        path, first = None, i
        if _looks_like_path(rest, known):
            path = known.resolve(rest)
        else:
            path, first = _path_before(lines, i, known, used)
        path = path or current
        if path is None:
            raise FormatError(
                f"SEARCH/REPLACE block {count} does not say which file it edits: put the "
                "file's path on its own line right before the opening fence. " + _FORMAT_HELP
            )
        label = f"SEARCH/REPLACE block {count} ({path})"
        divider = _scan_section(lines, i + 1, _DIVIDER_RE, (_SEARCH_RE, _REPLACE_RE))
        if divider is None:
            raise FormatError(
                f"{label}: the SEARCH section must be followed by a line `=======` and then "
                "the REPLACE section. " + _FORMAT_HELP
            )
        end = _scan_section(lines, divider + 1, _REPLACE_RE, (_SEARCH_RE,))
        if end is None:
            raise FormatError(
                f"{label}: the block is not closed by a line `>>>>>>> REPLACE` (was the answer "
                "cut off?). " + _FORMAT_HELP
            )
        search = lines[i + 1 : divider]
        edit = Edit(
            path=path,
            search=_join(search) if any(s.strip() for s in search) else "",
            replace=_join(lines[divider + 1 : end]),
        )
        edits.append((first, edit))
        for j in range(first, end + 1):
            used[j] = True
        current = path
        i = end + 1
    return edits


def _scan_section(
    lines: list[str], start: int, want: re.Pattern[str], forbidden: tuple[re.Pattern[str], ...]
) -> int | None:
    for j in range(start, len(lines)):
        if want.match(lines[j]):
            return j
        if any(p.match(lines[j]) for p in forbidden):
            return None
    return None


def _path_before(
    lines: list[str], index: int, known: _Known, used: list[bool]
) -> tuple[str | None, int]:
    """Look back from a SEARCH marker over blank and fence lines for the filename line."""
    j = index - 1
    while j >= 0 and index - j <= 5 and not used[j]:
        line = lines[j]
        fence = _FENCE_OPEN_RE.match(line)
        if fence:
            _, path = _path_in_info(fence.group("info"), known)
            if path:
                return path, j
        elif line.strip():
            path = _path_in_line(line, known, prose=True)
            return path, (j if path else index)
        j -= 1
    return None, index


@dataclass(frozen=True)
class _Fence:
    start: int  # the opening line
    end: int  # the closing line, or len(lines) when the answer was cut off
    fence: str
    info: str
    holds_blocks: bool  # SEARCH/REPLACE blocks inside: handled by the block parser


def _fences(lines: list[str]) -> list[_Fence]:
    """Pair fence lines, treating everything between SEARCH and REPLACE markers as content."""
    fences: list[_Fence] = []
    opened: tuple[int, str, str] | None = None
    holds, in_block = False, False
    for i, line in enumerate(lines):
        if in_block:
            in_block = not _REPLACE_RE.match(line)
        elif _SEARCH_RE.match(line):
            in_block, holds = True, True
        elif opened is None:
            match = _FENCE_OPEN_RE.match(line)
            if match:
                opened, holds = (i, match.group("fence"), match.group("info")), False
        else:
            match = _FENCE_CLOSE_RE.match(line)
            fence = opened[1]
            if (
                match
                and match.group("fence")[0] == fence[0]
                and len(match.group("fence")) >= len(fence)
            ):
                fences.append(_Fence(opened[0], i, fence, opened[2], holds))
                opened = None
    if opened is not None:
        fences.append(_Fence(opened[0], len(lines), opened[1], opened[2], holds))
    return fences


def _parse_fences_and_diffs(
    lines: list[str], known: _Known, used: list[bool]
) -> tuple[list[tuple[int, Edit]], list[tuple[int, Edit]]]:
    """Diff edits (fenced or bare) and whole-file edits, outside the SEARCH/REPLACE blocks."""
    diffs: list[tuple[int, Edit]] = []
    whole: list[tuple[int, Edit]] = []
    fences = {f.start: f for f in _fences(lines)}
    i = 0
    while i < len(lines):
        fence = fences.get(i)
        if fence is not None:
            i = fence.end + 1
            if fence.holds_blocks or any(used[fence.start : fence.end]):
                continue
            body = lines[fence.start + 1 : fence.end]
            lang, info_path = _path_in_info(fence.info, known)
            before = _line_before(lines, fence.start, used)
            if lang in _DIFF_LANGS or _has_header(body) or (body and body[0].startswith("@@")):
                default = info_path or (
                    _path_in_line(before, known, prose=True) if before else None
                )
                patches, _ = _parse_diff(body, known, default, fenced=True)
                diffs += [(fence.start, _patch_edit(p)) for p in patches]
                continue
            edit = _whole_file(body, info_path, before, known)
            if edit is not None:
                if fence.end >= len(lines):
                    raise FormatError(
                        f"The fence holding the whole file {edit.path} is not closed (was the "
                        "answer cut off?). Close it with ``` on its own line."
                    )
                whole.append((fence.start, edit))
            continue
        if not used[i] and _diff_starts(lines, i):
            patches, consumed = _parse_diff(lines[i:], known, None, fenced=False)
            diffs += [(i, _patch_edit(p)) for p in patches]
            i += max(consumed, 1)
            continue
        i += 1
    return diffs, whole


_DEFINITION_RE = re.compile(r"^\s*(?:async\s+def|def|class)\s+\w+")
_PYTHON_INFO = {"", "python", "py", "python3"}


def _unnamed_definitions(lines: list[str], path: str) -> list[tuple[int, Edit]]:
    """Fenced Python code that defines something, attributed to `path` (no path was given)."""
    edits = []
    for fence in _fences(lines):
        body = lines[fence.start + 1 : fence.end]
        if fence.holds_blocks or fence.end >= len(lines) or \
                fence.info.strip().lower() not in _PYTHON_INFO:
            continue
        if any(_DEFINITION_RE.match(line) for line in body):
            edits.append((fence.start, Edit(path=path, functions=_join(body))))
    return edits


def _line_before(lines: list[str], index: int, used: list[bool]) -> str | None:
    j = index - 1
    if j >= 0 and not lines[j].strip():  # allow one blank line between path and fence
        j -= 1
    return lines[j] if j >= 0 and not used[j] and lines[j].strip() else None


def _whole_file(
    body: list[str], info_path: str | None, before: str | None, known: _Known
) -> Edit | None:
    path = info_path or (_path_in_line(before, known, prose=False) if before else None)
    comment = _COMMENT_PATH_RE.match(body[0]) if body else None
    comment_path = None
    if comment and _looks_like_path(comment.group("path"), known):
        comment_path = known.resolve(comment.group("path"))
    if path is None and comment_path is None:
        return None  # an illustration, not an edit
    if comment_path is not None and comment_path == (path or comment_path):
        body = body[1:]  # the `# path` line is metadata, not file content
    return Edit(path=path or comment_path or "", search=None, replace=None, content=_join(body))
