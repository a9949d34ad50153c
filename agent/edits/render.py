"""Render git-style patches from old/new file contents, normalise them for voting, list their paths."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from agent.edits.diffs import _parse_diff, _unquote_c
from agent.edits.paths import _Known
from agent.errors import FormatError


def _split_keepends(text: str) -> list[str]:
    # Not str.splitlines(): git splits on "\n" only, never on \f, \x1c or \u2028.
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


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


def _quote(name: str) -> str:
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


def unified_diff(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """A git-style patch turning `old` into `new` (path -> text), that `git apply` accepts."""
    parts = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before != after:
            parts.append(_file_diff(path, before, after))
    return "".join(parts)


def _file_diff(path: str, before: str | None, after: str | None) -> str:
    a_name, b_name = _quote("a/" + path), _quote("b/" + path)
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


def _strip_prefix(name: str | None) -> str | None:
    if name is None:
        return None
    name = _unquote_c(name.split("\t")[0].strip())
    if name == "/dev/null":
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


def diff_paths(diff: str) -> list[str]:
    """The repository paths a unified diff touches (both names of a rename), in order."""
    paths: list[str] = []
    try:
        pairs = [(pf.source_file, pf.target_file) for pf in PatchSet(diff)]
    except UnidiffParseError:
        # unidiff rejects sloppy hunk counts; the lenient parser still finds the files.
        try:
            patches, _ = _parse_diff(diff.split("\n"), _Known(()), None, fenced=True)
        except FormatError:
            return []
        pairs = [
            (None if p.old is None else "a/" + p.old, None if p.new is None else "b/" + p.new)
            for p in patches
        ]
    for source, target in pairs:
        for name in (_strip_prefix(source), _strip_prefix(target)):
            if name and name not in paths:
                paths.append(name)
    return paths
