"""GitHub ```suggestion review comments for the small single-hunk parts of a fix that
replace lines the pull request itself added or changed."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.frontends.ci.render import fence as _fence
from sandbox.diff import parse_patch

SUGGESTION_MARKER = "<!-- mulligan-suggestion:{} -->"
SUGGESTION_MAX_LINES = 12


@dataclass(frozen=True)
class Suggestion:
    path: str
    start: int  # first line replaced, in the pull request's head version of the file
    end: int
    replacement: str

    @property
    def key(self) -> str:
        raw = f"{self.path}\0{self.start}\0{self.end}\0{self.replacement}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def body(self) -> str:
        fence = _fence(self.replacement)
        text = self.replacement if self.replacement.endswith("\n") or not self.replacement \
            else self.replacement + "\n"
        return (f"{SUGGESTION_MARKER.format(self.key)}\nMulligan suggests this change (the "
                f"tests pass with it):\n\n{fence}suggestion\n{text}{fence}")

    def review_comment(self) -> dict:
        comment: dict[str, Any] = {"path": self.path, "line": self.end, "side": "RIGHT",
                                   "body": self.body()}
        if self.start != self.end:
            comment.update(start_line=self.start, start_side="RIGHT")
        return comment


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def touched_lines(pr_files: Iterable[Mapping[str, Any]]) -> dict[str, set[int]]:
    """For each file of a pull request, the head-side line numbers its diff adds."""
    touched: dict[str, set[int]] = {}
    for item in pr_files:
        patch = item.get("patch")
        name = item.get("filename")
        if not patch or not name or item.get("status") == "removed":
            continue
        lines: set[int] = set()
        right = 0
        for line in str(patch).splitlines():
            match = _HUNK_RE.match(line)
            if match:
                right = int(match.group(3))
                continue
            if line.startswith("+"):
                lines.add(right)
                right += 1
            elif line.startswith(" ") or line == "":
                right += 1
        touched[str(name)] = lines
    return touched


def suggestions_for(patch: str, touched: Mapping[str, set[int]],
                    max_lines: int = SUGGESTION_MAX_LINES) -> list[Suggestion]:
    """GitHub suggestions for the files the fix changes in one small hunk, where every line
    it replaces is one the pull request added or changed."""
    out = []
    for pf in parse_patch(patch) or []:
        if pf.is_added_file or pf.is_removed_file or pf.is_binary_file or len(pf) != 1:
            continue
        path = pf.path
        hunk = list(pf[0])
        changed = [i for i, line in enumerate(hunk) if line.is_added or line.is_removed]
        if not changed:
            continue
        first, last = changed[0], changed[-1]
        region = hunk[first:last + 1]
        old = [line.source_line_no for line in region if not line.is_added]
        new = [_line_text(line.value) for line in region if not line.is_removed]
        if not any(line.is_removed for line in region):  # a pure insertion: anchor on a line
            if first > 0 and hunk[first - 1].is_context:
                anchor = hunk[first - 1]
                new = [_line_text(anchor.value)] + new
            elif last + 1 < len(hunk) and hunk[last + 1].is_context:
                anchor = hunk[last + 1]
                new = new + [_line_text(anchor.value)]
            else:
                continue
            old = [anchor.source_line_no]
        start, end = min(old), max(old)
        if end - start + 1 > max_lines or len(new) > max_lines:
            continue
        lines = touched.get(path, set())
        if not all(n in lines for n in range(start, end + 1)):
            continue
        out.append(Suggestion(path, start, end, "".join(new)))
    return out


def _line_text(value: str) -> str:
    return value if value.endswith("\n") else value + "\n"

