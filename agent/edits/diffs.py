"""A lenient unified-diff parser: models' diffs with wrong hunk counts and lost spaces still parse."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.edits.paths import _Known
from agent.edits.types import Edit
from agent.errors import FormatError
from sandbox.diff import unquote_path

_HUNK_RE = re.compile(r"^@@+\s*-(\d+)(?:,(\d+))?\s+\+(\d+)(?:,(\d+))?\s*@@+")


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
