"""Turn a model's answer into file edits and apply them in memory (patches: sandbox.diff).

Three answer formats are understood: SEARCH/REPLACE blocks, unified diffs and whole files.
Edits are applied with a cascade of increasingly tolerant matching (exact, whitespace,
fuzzy) so that a small transcription slip by the model does not waste a whole candidate.
Every failure raises `FormatError` or `EditApplyError`; their messages are sent back to the
model, so they say which block failed and show what the file really contains.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from agent.errors import EditApplyError, FormatError

# Rendering and comparing patches is sandbox.diff's job; re-exported as part of this API.
from sandbox.diff import diff_paths, normalize_diff, unified_diff, unquote_path

__all__ = [
    "AppliedEdit",
    "ApplyResult",
    "Edit",
    "EditKind",
    "MatchStrategy",
    "apply_edits",
    "diff_paths",
    "normalize_diff",
    "parse_answer",
    "unified_diff",
]


class MatchStrategy(StrEnum):
    """How an edit found its place in the file (reported per applied edit)."""

    EXACT = "exact"
    WHITESPACE = "whitespace"
    FUZZY = "fuzzy"
    WHOLE_FILE = "whole_file"
    DIFF = "diff"
    CREATE = "create"


class EditKind(StrEnum):
    SEARCH_REPLACE = "search_replace"
    CREATE = "create"  # empty SEARCH: creates the file (or appends to an existing one)
    WHOLE_FILE = "whole_file"
    DIFF = "diff"
    DELETE = "delete"


@dataclass(frozen=True)
class Edit:
    """One change to one file, as the model expressed it."""

    path: str  # repo-relative posix path
    search: str | None = None
    replace: str | None = None
    content: str | None = None  # whole-file content
    diff: str | None = None  # this file's part of a unified diff (headers + hunks)
    delete: bool = False  # the file is removed (a diff to /dev/null)

    @property
    def kind(self) -> EditKind:
        if self.delete:
            return EditKind.DELETE
        if self.diff is not None:
            return EditKind.DIFF
        if self.content is not None:
            return EditKind.WHOLE_FILE
        if not (self.search or "").strip():
            return EditKind.CREATE
        return EditKind.SEARCH_REPLACE


@dataclass(frozen=True)
class AppliedEdit:
    path: str
    strategy: MatchStrategy
    score: float  # 1.0 for exact; the similarity ratio for fuzzy matches


@dataclass
class ApplyResult:
    files: dict[str, str]  # full new contents of every file; deleted files are absent
    applied: list[AppliedEdit] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------

_SEARCH_RE = re.compile(r"^\s*<{5,9}\s*(?:SEARCH|ORIGINAL)\b[:\s]*(?P<rest>.*?)\s*$", re.IGNORECASE)
_DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
_REPLACE_RE = re.compile(r"^\s*>{5,9}\s*(?:REPLACE|UPDATED)\b.*$", re.IGNORECASE)
_FENCE_OPEN_RE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
_FENCE_CLOSE_RE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*$")
_HUNK_RE = re.compile(r"^@@+\s*-(\d+)(?:,(\d+))?\s+\+(\d+)(?:,(\d+))?\s*@@+")
_PATH_CHARS_RE = re.compile(r"^[\w.\-+@~/\\]+$")
_PATH_PREFIX_RE = re.compile(
    r"^(?:file(?:\s*name|\s*path)?|path|new file)\s*[:=]\s*", re.IGNORECASE
)
_COMMENT_PATH_RE = re.compile(
    r"^\s*(?:#+|//+|--|;+|<!--|/\*)\s*(?:(?:file(?:name)?|path)\s*:\s*)?"
    r"(?P<path>\S+?)\s*(?:-->|\*/)?\s*$",
    re.IGNORECASE,
)
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


class _Known:
    """Repository paths used to resolve the model's loose spelling of a path."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = list(dict.fromkeys(paths))
        self.set = set(self.paths)

    def resolve(self, raw: str) -> str:
        path = raw.strip().replace("\\", "/")
        while path.startswith("./"):
            path = path[2:]
        if path in self.set or not self.paths:
            return path
        # A bare or partial name ("foo.py" for "pkg/foo.py"), if unique.
        tails = [k for k in self.paths if k.endswith("/" + path)]
        if len(tails) == 1:
            return tails[0]
        # Extra leading directories (an absolute path, the repo's own name); longest wins.
        heads = [k for k in self.paths if path.endswith("/" + k)]
        if heads:
            return max(heads, key=len)
        return path

    def knows(self, raw: str) -> bool:
        return self.resolve(raw) in self.set


def _looks_like_path(text: str, known: _Known) -> bool:
    if not text or len(text) > 255 or not _PATH_CHARS_RE.match(text):
        return False
    if known.knows(text):
        return True
    if not re.search(r"[A-Za-z]", text) or text.endswith("."):
        return False
    return "/" in text.strip("/") or bool(re.search(r"\.[A-Za-z0-9_]+$", text))


def _clean_path_line(line: str) -> str:
    """Strip the decorations models put around a filename line."""
    text = line.strip()
    for _ in range(4):  # decorations nest (**File: `x.py`**), peel a few layers
        before = text
        text = re.sub(r"^<!--\s*(.*?)\s*-->$", r"\1", text)
        text = re.sub(r"^(?:#+|//+|--|;+)\s*", "", text)
        text = re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", text)
        text = text.strip().strip("*_`'\"")
        text = _PATH_PREFIX_RE.sub("", text)
        text = re.sub(r"\s+\([^)]*\)$", "", text)  # "x.py (new file)"
        text = text.rstrip(":").strip()
        if text == before:
            break
    return text


def _path_in_line(line: str, known: _Known, *, prose: bool) -> str | None:
    """The path a line names: the whole line, or (with `prose`) one path token in a sentence."""
    cleaned = _clean_path_line(line)
    if _looks_like_path(cleaned, known):
        return known.resolve(cleaned)
    if not prose:
        return None
    tokens = re.findall(r"`([^`\s]+)`", line) or re.findall(r"[\w./\\-]+", line)
    found = {
        known.resolve(tok.rstrip(".,:;"))
        for tok in tokens
        if _looks_like_path(tok.rstrip(".,:;"), known)
        and (known.knows(tok.rstrip(".,:;")) or "`" in line)
    }
    return found.pop() if len(found) == 1 else None


def _path_in_info(info: str, known: _Known) -> tuple[str, str | None]:
    """Split a fence's info string ("python", "python:pkg/x.py", "pkg/x.py") into lang, path."""
    tokens = [t.strip("'\"") for t in re.split(r"[\s:]+|title=", info) if t.strip("'\"")]
    lang = tokens[0].lower() if tokens and "." not in tokens[0] and "/" not in tokens[0] else ""
    for tok in tokens:
        if tok.lower() != lang and _looks_like_path(tok, known):
            return lang, known.resolve(tok)
    return lang, None


def _join(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def parse_answer(text: str, known_paths: Iterable[str] = ()) -> list[Edit]:
    """Parse a model's answer into edits, in the order they appear.

    Accepts SEARCH/REPLACE blocks, unified diffs (fenced or not) and whole files in a fence
    named by a path. Whole-file fences are only taken alongside other edits when they
    create a path that `known_paths` lacks, so an illustrative snippet cannot clobber a file.
    Raises FormatError (a message for the model) when nothing usable is found.
    """
    known = _Known(known_paths)
    lines = text.replace("\r\n", "\n").split("\n")
    used = [False] * len(lines)
    found = _parse_search_replace(lines, known, used)
    other, whole = _parse_fences_and_diffs(lines, known, used)
    found += other
    if found:
        whole = [(pos, e) for pos, e in whole if known.paths and e.path not in known.set]
    found += whole
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


# --- unified diffs ---------------------------------------------------------------------


@dataclass
class _Hunk:
    old_start: int | None  # 1-based, None when the header carried no usable numbers
    new_start: int | None
    lines: list[str] = field(default_factory=list)  # each begins with " ", "-" or "+"
    old_no_eol: bool = False
    new_no_eol: bool = False

    @property
    def old(self) -> list[str]:
        return [ln[1:] for ln in self.lines if ln[0] in " -"]

    @property
    def new(self) -> list[str]:
        return [ln[1:] for ln in self.lines if ln[0] in " +"]

    def header(self) -> str:
        if self.old_start is None or self.new_start is None:
            return "@@ @@"
        return f"@@ -{self.old_start},{len(self.old)} +{self.new_start},{len(self.new)} @@"


@dataclass
class _FilePatch:
    old: str | None  # None: /dev/null (a created file)
    new: str | None  # None: /dev/null (a deleted file)
    hunks: list[_Hunk] = field(default_factory=list)
    new_file: bool = False
    deleted_file: bool = False

    def text(self) -> str:
        """The canonical text: a/ b/ prefixes and hunk headers with recounted lengths."""
        out = [
            f"--- {'a/' + self.old if self.old is not None else '/dev/null'}",
            f"+++ {'b/' + self.new if self.new is not None else '/dev/null'}",
        ]
        for hunk in self.hunks:
            out.append(hunk.header())
            last_old = max((k for k, x in enumerate(hunk.lines) if x[0] in " -"), default=-1)
            last_new = max((k for k, x in enumerate(hunk.lines) if x[0] in " +"), default=-1)
            for k, line in enumerate(hunk.lines):
                out.append(line)
                if (k == last_old and hunk.old_no_eol) or (k == last_new and hunk.new_no_eol):
                    out.append("\\ No newline at end of file")
        return "\n".join(out) + "\n"


def _diff_starts(lines: list[str], i: int) -> bool:
    if i >= len(lines):
        return False
    if lines[i].startswith("diff --git "):
        return True
    return lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def _has_header(body: list[str]) -> bool:
    return any(_diff_starts(body, j) for j in range(len(body)))


def _header_path(raw: str, known: _Known) -> str | None:
    path = raw.split("\t")[0].strip()
    path = re.sub(r"\s+\d{4}-\d\d-\d\d[ T]\d.*$", "", path)  # GNU diff timestamps
    path = unquote_path(path)
    if path == "/dev/null":
        return None
    if path[:2] in ("a/", "b/") and not (path in known.set and path[2:] not in known.set):
        path = path[2:]
    return known.resolve(path)


def _git_header_paths(line: str, known: _Known) -> tuple[str | None, str | None]:
    rest = line[len("diff --git ") :].strip()
    match = re.match(r'^("(?:[^"\\]|\\.)*"|\S+)\s+("(?:[^"\\]|\\.)*"|\S+)$', rest)
    if match:
        return _header_path(match.group(1), known), _header_path(match.group(2), known)
    half = re.match(r"^a/(.*) b/(.*)$", rest)  # names with spaces: "a/x y b/x y"
    if half:
        return known.resolve(half.group(1)), known.resolve(half.group(2))
    return None, None


def _parse_diff(
    lines: list[str], known: _Known, default_path: str | None, *, fenced: bool
) -> tuple[list[_FilePatch], int]:
    """Lenient unified-diff parser: hunk counts are ignored and recomputed.

    Returns the file patches and how many lines were consumed (for bare diffs, the diff
    ends at the first line that cannot belong to it).
    """
    patches: list[_FilePatch] = []
    current: _FilePatch | None = None
    fresh_git = False  # a "diff --git" header still waiting for its ---/+++ lines
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            old, new = _git_header_paths(line, known)
            current = _FilePatch(old, new)
            patches.append(current)
            fresh_git = True
            i += 1
            continue
        if current is not None and fresh_git and _extended_header(line, current, known):
            i += 1
            continue
        if _diff_starts(lines, i):
            old, new = _header_path(line[4:], known), _header_path(lines[i + 1][4:], known)
            if current is not None and fresh_git:
                current.old, current.new = old, new
            else:
                current = _FilePatch(old, new)
                patches.append(current)
            fresh_git = False
            i += 2
            continue
        if line.startswith("@@"):
            if current is None:
                if default_path is None:
                    raise FormatError(
                        "A diff hunk has no file header: start each file's diff with "
                        "`--- a/path/to/file.py` and `+++ b/path/to/file.py` lines."
                    )
                current = _FilePatch(default_path, default_path)
                patches.append(current)
            fresh_git = False
            i = _parse_hunk(lines, i, current, fenced=fenced)
            continue
        if not fenced and not line.strip() and i + 1 < len(lines) and _diff_starts(lines, i + 1):
            i += 1  # blank line between two files' diffs
            continue
        if not fenced:
            break
        i += 1  # stray text inside a diff fence
    for patch in patches:
        if patch.new_file:
            patch.old = None
        if patch.deleted_file:
            patch.new = None
    return [p for p in patches if p.old is not None or p.new is not None], i


def _extended_header(line: str, patch: _FilePatch, known: _Known) -> bool:
    """Git's extended header lines (modes, index, renames); records creation/deletion."""
    if line.startswith("new file mode"):
        patch.new_file = True
    elif line.startswith("deleted file mode"):
        patch.deleted_file = True
    elif line.startswith("rename from "):
        patch.old = _header_path(line[len("rename from ") :], known)
    elif line.startswith("rename to "):
        patch.new = _header_path(line[len("rename to ") :], known)
    elif not line.startswith(
        (
            "index ",
            "old mode",
            "new mode",
            "similarity index",
            "dissimilarity index",
            "copy from",
            "copy to",
            "Binary files",
        )
    ):
        return False
    return True


def _parse_hunk(lines: list[str], i: int, patch: _FilePatch, *, fenced: bool) -> int:
    header = _HUNK_RE.match(lines[i])
    hunk = _Hunk(int(header.group(1)) if header else None, int(header.group(3)) if header else None)
    blank_tail = 0  # trailing empty lines are more likely separators than context
    i += 1
    while i < len(lines):
        line = lines[i]
        if line.startswith(("@@", "diff --git ")) or _diff_starts(lines, i):
            break
        if line.startswith("\\"):
            if hunk.lines:
                last = hunk.lines[-1][0]
                hunk.old_no_eol |= last in " -"
                hunk.new_no_eol |= last in " +"
        elif line[:1] in (" ", "-", "+"):
            hunk.lines.append(line)
            blank_tail = 0
        elif not line.strip():
            hunk.lines.append(" ")  # blank context line whose leading space was stripped
            blank_tail += 1
        elif fenced:
            hunk.lines.append(" " + line)  # a context line that lost its leading space
            blank_tail = 0
        else:
            break
        i += 1
    if blank_tail:
        del hunk.lines[-blank_tail:]
    if hunk.lines:
        patch.hunks.append(hunk)
    return i


def _patch_edit(patch: _FilePatch) -> Edit:
    if not patch.hunks and patch.old == patch.new and not patch.new_file:
        raise FormatError(
            f"The diff for {patch.new} has no hunks: after the ---/+++ lines, give `@@` hunks "
            "whose lines start with ' ' (context), '-' (removed) or '+' (added)."
        )
    if patch.new is None:
        return Edit(path=patch.old or "", delete=True)
    return Edit(path=patch.new, diff=patch.text())


# --------------------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------------------


class _NoMatch(Exception):
    def __init__(self, start: int, size: int, score: float) -> None:
        super().__init__()
        self.start, self.size, self.score = start, size, score


class _Ambiguous(Exception):
    def __init__(self, starts: list[int], strategy: MatchStrategy) -> None:
        super().__init__()
        self.starts, self.strategy = starts, strategy


@dataclass
class _Doc:
    """A file as lines (without "\\n"; a CRLF file's lines keep their "\\r")."""

    lines: list[str]
    final_eol: bool
    crlf: bool

    @classmethod
    def parse(cls, text: str) -> _Doc:
        lines = text.split("\n")
        final_eol = lines[-1] == ""
        if final_eol:
            lines.pop()
        crlf = sum(ln.endswith("\r") for ln in lines) * 2 > len(lines) > 0
        return cls(lines, final_eol, crlf)

    def text(self) -> str:
        if not self.lines:
            return ""
        lines = list(self.lines)
        if not self.final_eol and lines[-1].endswith("\r"):
            lines[-1] = lines[-1][:-1]  # a bare "\r" at EOF would be a stray half line-ending
        return "\n".join(lines) + ("\n" if self.final_eol else "")

    def keys(self) -> list[str]:
        return [ln.removesuffix("\r") for ln in self.lines]

    def splice(self, start: int, size: int, new: Sequence[str]) -> None:
        suffix = "\r" if self.crlf else ""
        self.lines[start : start + size] = [ln + suffix for ln in new]


@dataclass(frozen=True)
class _Placed:
    strategy: MatchStrategy
    score: float
    start: int
    end: int  # index just past the inserted lines


def _text_lines(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _map_indent(indent: str, s_base: str, f_base: str) -> str:
    """Translate a SEARCH/REPLACE indentation into the file's (the base indents correspond)."""
    if indent.startswith(s_base):
        return f_base + indent[len(s_base) :]
    return f_base[: max(0, len(f_base) - (len(s_base) - len(indent)))]


def _reindent(lines: Sequence[str], s_base: str, f_base: str) -> list[str]:
    if s_base == f_base:
        return list(lines)
    return [
        _map_indent(_indent(ln), s_base, f_base) + ln.lstrip() if ln.strip() else ln for ln in lines
    ]


def _bases(window: Sequence[str], search: Sequence[str]) -> tuple[str, str]:
    """Indents of the first line pair that differs only by indentation: (search, file)."""
    for f, s in zip(window, search, strict=False):
        if s.strip() and f.strip() == s.strip():
            return _indent(s), _indent(f)
    return "", ""


def _same_but_indent(window: Sequence[str], search: Sequence[str]) -> tuple[str, str] | None:
    """(search base, file base) if the lines differ only by a uniform indentation shift
    and trailing whitespace, else None."""
    s_base, f_base = _bases(window, search)
    for f, s in zip(window, search, strict=True):
        f, s = f.rstrip(), s.rstrip()
        if f.lstrip() != s.lstrip():
            return None
        if s and _indent(f) != _map_indent(_indent(s), s_base, f_base):
            return None
    return s_base, f_base


def _trim_blank(search: list[str], replace: list[str]) -> tuple[list[str], list[str]] | None:
    """Drop blank lines at the SEARCH ends (and as many at the REPLACE ends)."""
    top = next((k for k, s in enumerate(search) if s.strip()), len(search))
    if top == len(search):
        return None
    bottom = next(k for k, s in enumerate(reversed(search)) if s.strip())
    if not top and not bottom:
        return None
    r_top = min(top, next((k for k, r in enumerate(replace) if r.strip()), len(replace)))
    rest = replace[r_top:]
    r_bottom = min(bottom, next((k for k, r in enumerate(reversed(rest)) if r.strip()), len(rest)))
    return search[top : len(search) - bottom], rest[: len(rest) - r_bottom]


def _choose(
    starts: list[int], expected: int | None, min_start: int, strategy: MatchStrategy
) -> int:
    if len(starts) == 1:
        return starts[0]
    if expected is not None:  # diff hunks carry line numbers: take the nearest occurrence
        return min(starts, key=lambda s: (abs(s - expected), s))
    later = [s for s in starts if s >= min_start] if min_start else []
    if len(later) == 1:
        return later[0]
    raise _Ambiguous(starts, strategy)


def _place(
    doc: _Doc,
    search: list[str],
    replace: list[str],
    threshold: float,
    expected: int | None = None,
    min_start: int = 0,
) -> _Placed:
    """Find `search` in `doc` with the cascade and put `replace` there."""
    keys = doc.keys()
    n = len(search)

    # 1. exact
    starts = [
        i for i in range(len(keys) - n + 1) if keys[i] == search[0] and keys[i : i + n] == search
    ]
    if starts:
        start = _choose(starts, expected, min_start, MatchStrategy.EXACT)
        doc.splice(start, n, replace)
        return _Placed(MatchStrategy.EXACT, 1.0, start, start + len(replace))

    # 2. whitespace: uniform re-indentation and trailing blanks, then also blank-line ends
    variants = [(search, replace)]
    trimmed = _trim_blank(search, replace)
    if trimmed:
        variants.append(trimmed)
    for s_lines, r_lines in variants:
        m = len(s_lines)
        found: dict[int, tuple[str, str]] = {}  # start -> (search base, file base)
        for i in range(len(keys) - m + 1):
            bases = _same_but_indent(keys[i : i + m], s_lines)
            if bases is not None:
                found[i] = bases
        if found:
            start = _choose(list(found), expected, min_start, MatchStrategy.WHITESPACE)
            new = _merged_replacement(keys[start : start + m], s_lines, r_lines)
            doc.splice(start, m, new)
            return _Placed(MatchStrategy.WHITESPACE, 1.0, start, start + len(new))

    # 3. fuzzy: the most similar window of about the same number of lines
    scored = _similar_windows(keys, search, threshold)
    best = scored[0] if scored else None
    if best is None or best[0] < threshold:
        start, size, score = (best[1], best[2], best[0]) if best else (0, 0, 0.0)
        raise _NoMatch(start, size, score)
    tops = [w for w in scored if w[0] >= best[0] - 1e-9]
    distinct = [w for w in tops if not (w[1] < best[1] + best[2] and best[1] < w[1] + w[2])]
    if distinct and expected is None:
        raise _Ambiguous(sorted({best[1]} | {w[1] for w in distinct}), MatchStrategy.FUZZY)
    if expected is not None:
        best = min(tops, key=lambda w: (abs(w[1] - expected), w[1]))
    score, start, size = best
    new = _merged_replacement(keys[start : start + size], search, replace)
    doc.splice(start, size, new)
    return _Placed(MatchStrategy.FUZZY, round(score, 4), start, start + len(new))


def _merged_replacement(window: list[str], search: list[str], replace: list[str]) -> list[str]:
    """The new lines for a window matched by the whitespace or fuzzy stage.

    Changed lines are re-indented like the file; lines the edit leaves unchanged keep the
    file's own text, so that a slip the model made while copying them (the very reason
    the match was inexact) never lands in the file or the patch.
    """
    s_base, f_base = _bases(window, search)
    aligned: dict[int, int] = {}  # search line -> window line
    matcher = difflib.SequenceMatcher(
        None, [s.strip() for s in search], [w.strip() for w in window], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            aligned.update((i1 + k, j1 + k) for k in range(i2 - i1))
    out: list[str] = []
    change = difflib.SequenceMatcher(None, search, replace, autojunk=False)
    for tag, i1, i2, j1, j2 in change.get_opcodes():
        if tag == "equal":
            for k in range(i1, i2):
                kept = window[aligned[k]] if k in aligned else None
                out.append(kept if kept is not None else _reindent([search[k]], s_base, f_base)[0])
        else:
            out.extend(_reindent(replace[j1:j2], s_base, f_base))
    return out


_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_PEAKS = 24  # windows per size whose exact similarity is computed


def _similar_windows(
    keys: list[str], search: list[str], threshold: float
) -> list[tuple[float, int, int]]:
    """(ratio, start, size) of the windows most similar to `search`, best first.

    SequenceMatcher is too slow to run on every window of a large file, so windows are
    first ranked by token overlap (updated incrementally as the window slides) and only
    the best-ranked ones are scored exactly. Returns the windows at or over the threshold,
    else the single best one (for the error message).
    """
    n = len(search)
    if not n or not keys:
        return []
    want = Counter(tok for line in search for tok in _TOKEN_RE.findall(line))
    line_tokens = [_TOKEN_RE.findall(key) for key in keys]
    candidates: set[tuple[int, int]] = set()
    for size in dict.fromkeys((n, n - 1, n + 1)):
        if size < 1 or size > len(keys):
            continue
        scores = _token_scores(line_tokens, want, size)
        last = len(scores) - 1
        peaks = [
            i
            for i, score in enumerate(scores)
            if (i == 0 or score >= scores[i - 1]) and (i == last or score >= scores[i + 1])
        ]
        peaks.sort(key=lambda i: -scores[i])
        for i in peaks[:_PEAKS]:
            candidates.update((j, size) for j in (i - 1, i, i + 1) if 0 <= j <= last)
    stripped = [key.rstrip() for key in keys]
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2("\n".join(line.rstrip() for line in search))  # seq2 is cached
    results: list[tuple[float, int, int]] = []
    floor = 0.0
    for start, size in sorted(candidates):
        matcher.set_seq1("\n".join(stripped[start : start + size]))
        bar = min(floor, threshold)
        if matcher.real_quick_ratio() < bar or matcher.quick_ratio() < bar:
            continue
        ratio = matcher.ratio() - (0.001 if size != n else 0.0)  # prefer the same length
        results.append((ratio, start, size))
        floor = max(floor, ratio)
    results.sort(key=lambda r: (-r[0], r[1]))
    return [r for r in results if r[0] >= threshold] or results[:1]


def _token_scores(line_tokens: list[list[str]], want: Counter[str], size: int) -> list[float]:
    """Dice overlap of token multisets between `want` and every window of `size` lines."""
    want_total = sum(want.values())
    have: Counter[str] = Counter()
    overlap = total = 0
    scores = []
    for i, tokens in enumerate(line_tokens):
        for tok in tokens:
            overlap += have[tok] < want[tok]
            have[tok] += 1
        total += len(tokens)
        if i >= size:
            for tok in line_tokens[i - size]:
                have[tok] -= 1
                overlap -= have[tok] < want[tok]
            total -= len(line_tokens[i - size])
        if i >= size - 1:
            scores.append(2 * overlap / (total + want_total) if total + want_total else 1.0)
    return scores


def _closest_lines(doc: _Doc, start: int, size: int, path: str) -> str:
    if size <= 0:
        return ""
    lo, hi = max(0, start - 1), min(len(doc.lines), start + size + 1)
    snippet = "\n".join(doc.keys()[lo:hi])
    return f"The closest lines in {path} (lines {lo + 1}-{hi}) are:\n```\n{snippet}\n```\n"


_SR_NOUN = "the SEARCH lines"
_HUNK_NOUN = "the hunk's context and removed lines"


def _no_match_message(
    label: str,
    doc: _Doc,
    path: str,
    search: list[str],
    replace: list[str],
    err: _NoMatch,
    noun: str = _SR_NOUN,
) -> str:
    head = f"{label}: {noun} do not match {path}"
    parts = [
        head + (f" (the best candidate is only {err.score:.0%} similar)." if err.size else ".")
    ]
    if err.size:
        parts.append(_closest_lines(doc, err.start, err.size, path))
    if replace and "\n".join(replace) in "\n".join(doc.keys()):
        parts.append(
            "The new lines are already in the file: drop this edit if an earlier one "
            "already made this change."
        )
    if any(re.fullmatch(r"\s*(?:#|//)?\s*(?:\.\.\.|…).*", s) for s in search):
        parts.append("Do not abbreviate with '...': copy every line.")
    parts.append(
        f"{noun[0].upper() + noun[1:]} must copy lines of the current file exactly, "
        "including indentation, comments and blank lines."
    )
    return "\n".join(parts)


def _ambiguous_message(label: str, path: str, err: _Ambiguous, noun: str = _SR_NOUN) -> str:
    where = ", ".join(str(s + 1) for s in err.starts[:8])
    return (
        f"{label}: {noun} match {len(err.starts)} places in {path} (starting at lines "
        f"{where}). Add a few more unchanged lines around the change so that they match "
        "only one place."
    )


def _check_path(path: str) -> str | None:
    if not path or path.startswith("/") or "\0" in path or re.match(r"^[A-Za-z]:", path):
        return f"the path '{path}' must be relative to the repository root"
    if ".." in path.split("/") or path != posixpath.normpath(path):
        return f"the path '{path}' must be a plain repository path (no '..', '.' or '//')"
    return None


def _unknown_path(path: str, files: Mapping[str, str]) -> str:
    names = list(files)
    base = posixpath.basename(path)
    similar = [p for p in names if posixpath.basename(p) == base]
    similar += difflib.get_close_matches(path, names, n=3, cutoff=0.6)
    similar = list(dict.fromkeys(similar))[:5]
    hint = f" Similar paths: {', '.join(similar)}." if similar else ""
    return (
        f"{path} is not a file in the repository.{hint} Use the path exactly as listed, or "
        "an empty SEARCH section to create a new file."
    )


def _lookup(path: str, files: Mapping[str, str]) -> str | None:
    """The existing path an edit means: exact, else a unique path with that suffix."""
    if path in files:
        return path
    tails = [p for p in files if p.endswith("/" + path)]
    return tails[0] if len(tails) == 1 else None


def _label(edit: Edit, number: int) -> str:
    names = {
        EditKind.SEARCH_REPLACE: "SEARCH/REPLACE block",
        EditKind.CREATE: "SEARCH/REPLACE block",
        EditKind.WHOLE_FILE: "whole-file edit",
        EditKind.DIFF: "diff",
        EditKind.DELETE: "diff",
    }
    return f"Edit {number} ({names[edit.kind]} for {edit.path})"


def apply_edits(
    files: Mapping[str, str], edits: Sequence[Edit], fuzzy_threshold: float = 0.85
) -> ApplyResult:
    """Apply edits in order to in-memory files (never the disk).

    Every edit is attempted so that one error message can report all failing blocks;
    if any failed, EditApplyError is raised and no result is returned.
    """
    state = dict(files)
    applied: list[AppliedEdit] = []
    errors: list[str] = []
    for number, edit in enumerate(edits, 1):
        label = _label(edit, number)
        problem = _check_path(edit.path)
        if problem:
            errors.append(f"{label}: {problem}.")
            continue
        try:
            applied.append(_apply_one(state, edit, label, fuzzy_threshold))
        except EditApplyError as err:
            errors.append(str(err))
    if errors:
        if len(errors) == 1:
            raise EditApplyError(errors[0])
        head = f"{len(errors)} of {len(edits)} edits failed to apply; the others matched."
        raise EditApplyError(head + "\n\n" + "\n\n".join(errors))
    return ApplyResult(files=state, applied=applied)


def _apply_one(state: dict[str, str], edit: Edit, label: str, threshold: float) -> AppliedEdit:
    kind = edit.kind
    existing = _lookup(edit.path, state)
    if kind is EditKind.DELETE:
        if existing is None:
            raise EditApplyError(f"{label}: cannot delete it: {_unknown_path(edit.path, state)}")
        del state[existing]
        return AppliedEdit(existing, MatchStrategy.DIFF, 1.0)
    # Creations take the path as written: a new "foo.py" must not land in "pkg/foo.py".
    if kind is EditKind.WHOLE_FILE:
        return _apply_whole(state, edit.path, edit.content or "")
    if kind is EditKind.CREATE:
        return _apply_create(state, edit.path, edit.replace or "")
    if kind is EditKind.DIFF:
        return _apply_diff(state, edit, existing, label, threshold)
    if existing is None:
        raise EditApplyError(f"{label}: {_unknown_path(edit.path, state)}")
    doc = _Doc.parse(state[existing])
    search, replace = _text_lines(edit.search or ""), _text_lines(edit.replace or "")
    try:
        placed = _place(doc, search, replace, threshold)
    except _NoMatch as err:
        raise EditApplyError(
            _no_match_message(label, doc, existing, search, replace, err)
        ) from None
    except _Ambiguous as err:
        raise EditApplyError(_ambiguous_message(label, existing, err)) from None
    state[existing] = doc.text()
    return AppliedEdit(existing, placed.strategy, placed.score)


def _apply_whole(state: dict[str, str], path: str, content: str) -> AppliedEdit:
    if path not in state:
        state[path] = content
        return AppliedEdit(path, MatchStrategy.CREATE, 1.0)
    # Keep the file's line endings and a missing final newline, so that the patch shows
    # only the model's real changes.
    old = _Doc.parse(state[path])
    new = _Doc.parse(content.replace("\r\n", "\n"))
    doc = _Doc([], old.final_eol if old.lines else new.final_eol, old.crlf)
    doc.splice(0, 0, new.lines)
    state[path] = doc.text()
    return AppliedEdit(path, MatchStrategy.WHOLE_FILE, 1.0)


def _apply_create(state: dict[str, str], path: str, content: str) -> AppliedEdit:
    if path not in state or not state[path].strip():
        state[path] = content
        return AppliedEdit(path, MatchStrategy.CREATE, 1.0)
    # An empty SEARCH on an existing file appends to it (the end always matches).
    doc = _Doc.parse(state[path])
    doc.splice(len(doc.lines), 0, _text_lines(content))
    doc.final_eol = True
    state[path] = doc.text()
    return AppliedEdit(path, MatchStrategy.EXACT, 1.0)


def _apply_diff(
    state: dict[str, str], edit: Edit, existing: str | None, label: str, threshold: float
) -> AppliedEdit:
    known = _Known(state)
    patches, _ = _parse_diff((edit.diff or "").split("\n"), known, edit.path, fenced=True)
    if len(patches) != 1:
        raise EditApplyError(f"{label}: expected the diff of exactly one file, got {len(patches)}.")
    patch = patches[0]
    if patch.new is None:
        return _apply_one(state, Edit(path=edit.path, delete=True), label, threshold)
    if patch.old is None:  # --- /dev/null: a created file
        if state.get(edit.path, "").strip():
            raise EditApplyError(
                f"{label}: the diff creates {edit.path}, but that file already exists; "
                "diff against its current content instead."
            )
        lines = [ln for h in patch.hunks for ln in h.new]
        no_eol = bool(patch.hunks) and patch.hunks[-1].new_no_eol
        state[edit.path] = "\n".join(lines) + ("" if no_eol or not lines else "\n")
        return AppliedEdit(edit.path, MatchStrategy.CREATE, 1.0)

    # A rename reads the old path and writes the new one.
    source = _lookup(patch.old, state) if patch.old != edit.path else existing
    if source is None:
        source = existing
    if source is None:
        raise EditApplyError(f"{label}: {_unknown_path(patch.old or edit.path, state)}")
    target = edit.path if patch.old != patch.new else source
    doc = _Doc.parse(state[source])
    strategies: list[MatchStrategy] = []
    scores: list[float] = []
    offset, min_start = 0, 0  # line shift from earlier hunks; where the last one ended
    failures: list[str] = []
    for number, hunk in enumerate(patch.hunks, 1):
        old, new = hunk.old, hunk.new
        if old == new and not (hunk.old_no_eol or hunk.new_no_eol):
            continue
        hunk_label = f"{label}, hunk {number} ({hunk.header()})"
        expected = None if hunk.old_start is None else max(0, hunk.old_start - 1 + offset)
        if not old:  # pure insertion: the header's line number is all we have
            at = (
                len(doc.lines)
                if hunk.old_start is None
                else min(hunk.old_start + offset, len(doc.lines))
            )
            doc.splice(at, 0, new)
            placed = _Placed(MatchStrategy.EXACT, 1.0, at, at + len(new))
        else:
            try:
                placed = _place(doc, old, new, threshold, expected, min_start)
            except _NoMatch as err:
                failures.append(
                    _no_match_message(hunk_label, doc, source, old, new, err, _HUNK_NOUN)
                )
                continue
            except _Ambiguous as err:
                failures.append(_ambiguous_message(hunk_label, source, err, _HUNK_NOUN))
                continue
        if placed.end == len(doc.lines):  # the hunk reached the end of the file
            if hunk.new_no_eol:
                doc.final_eol = False
            elif hunk.old_no_eol:
                doc.final_eol = True
        offset += len(new) - len(old)
        min_start = placed.end
        strategies.append(placed.strategy)
        scores.append(placed.score)
    if failures:
        raise EditApplyError("\n\n".join(failures))
    order = [MatchStrategy.FUZZY, MatchStrategy.WHITESPACE]
    worst = next((s for s in order if s in strategies), MatchStrategy.DIFF)
    if target != source:
        del state[source]
    state[target] = doc.text()
    return AppliedEdit(target, worst, min(scores, default=1.0))
