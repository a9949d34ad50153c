"""Two changes of the same code made into one. A bug with two faulty sites is fixed by no
single answer when each answer repairs one site: seen on `is_prime`, one answer fixed the
loop's range and another the `n < 1` guard, and neither passed alone. Two changes that touch
different lines of the original (at least one unchanged line apart) are applied together;
the combination is screened and tested like any other candidate (agent/loop.py).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

# (first base line, end base line, replacement lines): one changed run, base coordinates
Change = tuple[int, int, list[str]]


def merge(base: Mapping[str, str], a: Mapping[str, str],
          b: Mapping[str, str]) -> dict[str, str] | None:
    """The files with both a's and b's changes, or None where the two change the same or
    adjacent lines of a file (or a file one of them deletes or adds)."""
    merged = dict(a)
    for path in set(a) | set(b):
        old, left, right = base.get(path), a.get(path), b.get(path)
        if right == old:
            continue  # b leaves the file alone: a's version stands
        if left == old:
            if right is None:
                merged.pop(path, None)
            else:
                merged[path] = right
            continue
        if old is None or left is None or right is None:
            return None  # both add, or one deletes what the other edits
        text = _merge_text(old, left, right)
        if text is None:
            return None
        merged[path] = text
    return merged


def _merge_text(base: str, a: str, b: str) -> str | None:
    lines = base.split("\n")
    ours, theirs = _changes(lines, a.split("\n")), _changes(lines, b.split("\n"))
    for start, end, _ in ours:
        for other_start, other_end, _ in theirs:
            if start <= other_end and other_start <= end:  # overlapping or adjacent
                return None
    out: list[str] = []
    at = 0
    for start, end, new in sorted(ours + theirs, key=lambda change: change[:2]):
        out += lines[at:start] + new
        at = end
    return "\n".join(out + lines[at:])


def _changes(base: list[str], new: list[str]) -> list[Change]:
    matcher = difflib.SequenceMatcher(None, base, new, autojunk=False)
    return [(i1, i2, new[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes()
            if tag != "equal"]
