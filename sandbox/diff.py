"""Unified diffs, read and written in one place: the files a patch touches with their line
counts, the git-style patch between two file maps, and the normalized form the vote compares.

Reading is `unidiff`'s; where it rejects a patch (a model's sloppy hunk counts, a cut-off
diff) one lenient scan of the file headers takes over, so a caller always learns which files
a patch names. The sandbox uses it to see which test files a candidate edits, the core to
render candidates and vote, the front ends to summarise a fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from unidiff import PatchedFile, PatchSet
from unidiff.errors import UnidiffParseError

__all__ = [
    "ChangeKind",
    "DiffStats",
    "FileChange",
    "diff_paths",
    "diff_stats",
    "file_changes",
    "normalize_diff",
    "parse_patch",
    "quote_path",
    "unified_diff",
    "unquote_path",
]


class ChangeKind(StrEnum):
    MODIFIED = "modified"
    ADDED = "added"
    DELETED = "deleted"
    RENAMED = "renamed"


@dataclass(frozen=True)
class FileChange:
    """One file of a patch: its path (the old one for a deletion), what happens to it, and
    how many lines it gains and loses. `old_path` is the source of a rename."""

    path: str
    kind: ChangeKind
    added: int
    removed: int
    old_path: str | None = field(default=None, compare=False, repr=False)

    @property
    def paths(self) -> tuple[str, ...]:
        """Every repository path this change touches (both names of a rename)."""
        return (self.old_path, self.path) if self.old_path else (self.path,)


class DiffStats(NamedTuple):
    files: int
    added: int
    removed: int


# -- reading ------------------------------------------------------------------------------


def parse_patch(patch: str) -> PatchSet | None:
    """The patch as unidiff reads it, hunk by hunk; None where it is not a well-formed diff."""
    try:
        return PatchSet(patch)
    except (UnidiffParseError, ValueError):
        return None


def file_changes(patch: str) -> list[FileChange]:
    """The files a patch touches, in its order; a patch unidiff rejects is read leniently."""
    parsed = parse_patch(patch)
    if parsed is None:
        return _scan_headers(patch)
    return [_from_unidiff(pf) for pf in parsed]


def diff_paths(patch: str) -> list[str]:
    """The repository paths a patch touches (both names of a rename), in order, once each."""
    paths: list[str] = []
    for change in file_changes(patch):
        for path in change.paths:
            if path not in paths:
                paths.append(path)
    return paths


def diff_stats(patch: str) -> DiffStats:
    """How many files a patch touches and how many lines it adds and removes."""
    changes = file_changes(patch)
    return DiffStats(len(changes), sum(c.added for c in changes),
                     sum(c.removed for c in changes))


def _from_unidiff(pf: PatchedFile) -> FileChange:
    source, target = _repo_path(pf.source_file), _repo_path(pf.target_file)
    if pf.is_added_file or source is None:
        return FileChange(target or "", ChangeKind.ADDED, pf.added, pf.removed)
    if pf.is_removed_file or target is None:
        return FileChange(source, ChangeKind.DELETED, pf.added, pf.removed)
    if pf.is_rename or source != target:
        return FileChange(target, ChangeKind.RENAMED, pf.added, pf.removed, old_path=source)
    return FileChange(target, ChangeKind.MODIFIED, pf.added, pf.removed)


def _scan_headers(patch: str) -> list[FileChange]:
    """The lenient reading: a "--- " line directly followed by "+++ " opens a file, every
    other "+"/"-" line counts toward it (hunk counts are not trusted)."""
    lines = patch.replace("\r\n", "\n").split("\n")
    found: list[list] = []  # [source, target, added, removed]
    for i, line in enumerate(lines):
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            found.append([_repo_path(line[4:]), _repo_path(lines[i + 1][4:]), 0, 0])
        elif found and line.startswith("+++ ") and i > 0 and lines[i - 1].startswith("--- "):
            continue
        elif found and line.startswith("+"):
            found[-1][2] += 1
        elif found and line.startswith("-"):
            found[-1][3] += 1
    out = []
    for source, target, added, removed in found:
        if source is None and target is None:
            continue
        if source is None:
            out.append(FileChange(target, ChangeKind.ADDED, added, removed))
        elif target is None:
            out.append(FileChange(source, ChangeKind.DELETED, added, removed))
        elif source != target:
            out.append(FileChange(target, ChangeKind.RENAMED, added, removed, old_path=source))
        else:
            out.append(FileChange(target, ChangeKind.MODIFIED, added, removed))
    return out


def _repo_path(name: str | None) -> str | None:
    """A header's file name as a repository path: no tab suffix, quoting or a/ b/ prefix;
    None for /dev/null."""
    if name is None:
        return None
    name = unquote_path(name.split("\t")[0].strip())
    if name == "/dev/null" or not name:
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


# -- writing ------------------------------------------------------------------------------


def unified_diff(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """A git-style patch turning `old` into `new` (path -> text), that `git apply` accepts."""
    parts = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before != after:
            parts.append(_file_diff(path, before, after))
    return "".join(parts)


def _file_diff(path: str, before: str | None, after: str | None) -> str:
    a_name, b_name = quote_path("a/" + path), quote_path("b/" + path)
    out = [f"diff --git {a_name} {b_name}\n"]
    if before is None:
        out.append("new file mode 100644\n")
    elif after is None:
        out.append("deleted file mode 100644\n")
    a_lines, b_lines = _split_keepends(before or ""), _split_keepends(after or "")
    if not a_lines and not b_lines:
        return "".join(out)  # an empty file created or deleted: the header says it all
    tab = "\t" if " " in path else ""  # as git does, so names with spaces parse back
    out.append(f"--- {a_name if before is not None else '/dev/null'}{tab}\n")
    out.append(f"+++ {b_name if after is not None else '/dev/null'}{tab}\n")
    body = difflib.unified_diff(a_lines, b_lines, n=3, lineterm="\n")
    for line in list(body)[2:]:  # skip difflib's own ---/+++ lines
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)


def _split_keepends(text: str) -> list[str]:
    # Not str.splitlines(): git splits on "\n" only, never on \f, \x1c or \u2028.
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def normalize_diff(diff: str) -> str:
    """A canonical form of a patch for agreement voting.

    Hunk line numbers, index lines, "No newline" markers and trailing whitespace are
    dropped, so two candidates making the same change compare equal.
    """
    out = []
    for line in diff.replace("\r\n", "\n").split("\n"):
        if line.startswith(("index ", "similarity index", "dissimilarity index", "\\")):
            continue
        out.append("@@" if line.startswith("@@") else line.rstrip())
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""


# -- git's path quoting -------------------------------------------------------------------

_C_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
}


def quote_path(name: str) -> str:
    """Quote a path the way git does (C-style, UTF-8 bytes as octal) when it needs it."""
    if not any(c in _C_ESCAPES or ord(c) < 0x20 or ord(c) >= 0x7F for c in name):
        return name
    out = []
    for char in name:
        if char in _C_ESCAPES:
            out.append(_C_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) >= 0x7F:
            out.extend(f"\\{byte:03o}" for byte in char.encode("utf-8"))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def unquote_path(name: str) -> str:
    """Undo git's C-style quoting of unusual path names ("a/f\\303\\251.py")."""
    if not (len(name) >= 2 and name[0] == name[-1] == '"'):
        return name
    raw = name[1:-1].encode("latin-1", "backslashreplace")
    try:
        return raw.decode("unicode_escape").encode("latin-1").decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return name[1:-1]
