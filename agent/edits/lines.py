"""Line repair: the model is shown a few suspect lines and answers with one of them
corrected. The answer is a handful of code lines, so a small model writes ~30 tokens
instead of copying a whole function, and cannot clobber anything it was not pointed at.

The corrected line replaces the suspect line it most resembles (re-indented to it); lines
the answer repeats from just before or after it are context, not new code. An answer that
defines a function instead is read as a function edit, and SEARCH/REPLACE blocks or a diff
as such. A result that no longer parses as Python is refused here, before it costs a sandbox
run.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.edits.parse import parse_answer
from agent.edits.types import Edit
from agent.errors import FormatError

MAX_LINES = 6  # an answer longer than this is not a corrected line
_MIN_LIKENESS = 0.3  # below this the answer's line resembles none of the suspect lines
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})[^\n]*\n(.*?)^\s*\1\s*$", re.DOTALL | re.MULTILINE)
_INLINE = re.compile(r"`([^`\n]+)`")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_DEF = re.compile(r"^\s*(?:async\s+def|def|class)\s+\w+")
_BLOCKS = re.compile(r"^\s*(?:<{5,9}\s*(?:SEARCH|ORIGINAL)\b|--- \S|@@ )", re.MULTILINE)

_HELP = ("Answer with the corrected line in a ```python fence: the one line, changed, "
         "nothing else.")


@dataclass(frozen=True)
class LineTarget:
    """A suspect line the prompt named: its file, 1-based number and current text."""

    path: str
    line: int
    text: str


def retarget(lines: Sequence[LineTarget], files: Mapping[str, str],
             original: Mapping[str, str]) -> tuple[LineTarget, ...]:
    """A line question's targets as they read in `files` (a revision starts from its parent's
    change); none where the change moved line numbers (it added or removed lines)."""
    out = []
    for target in lines:
        text = files.get(target.path, "").split("\n")
        if len(text) != original.get(target.path, "").count("\n") + 1:
            return ()
        if 1 <= target.line <= len(text) and text[target.line - 1].strip():
            out.append(LineTarget(target.path, target.line, text[target.line - 1]))
    return tuple(out)


def code_of(answer: str) -> list[str]:
    """The code lines of an answer: its first fence, else its last `inline` code, else the
    answer itself when it is one line."""
    text = answer.replace("\r\n", "\n")
    fence = _FENCE.search(text)
    if fence is not None:
        lines = fence.group(2).split("\n")
    else:
        spans = _INLINE.findall(text)
        if spans:
            lines = [spans[-1]]
        elif len(text.strip().splitlines()) == 1:
            lines = [text.strip()]
        else:
            return []
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return lines


def line_edits(answer: str, targets: Sequence[LineTarget],
               files: Mapping[str, str]) -> list[Edit]:
    """Edits for an answer to a line-repair question about `targets` (in `files`).
    Raises FormatError with a message for the model."""
    if not targets:
        raise FormatError("no suspect line was named")
    if _BLOCKS.search(answer):  # SEARCH/REPLACE blocks or a diff after all
        return parse_answer(answer, known_paths=files.keys(), default_path=targets[0].path)
    code = code_of(answer)
    if any(_DEF.match(line) for line in code):  # a whole function after all
        return parse_answer(answer, known_paths=files.keys(), functions=True,
                            default_path=targets[0].path)
    if not code:
        raise FormatError("No corrected line found in the answer. " + _HELP)
    if len(code) > MAX_LINES:
        raise FormatError(f"The answer has {len(code)} lines of code; give only the corrected "
                          "line (a few lines at most). " + _HELP)
    target, at = _anchor(code, targets)
    source = files[target.path]
    lines = source.split("\n")
    number = target.line
    if _at(lines, number) != target.text:
        raise FormatError(f"line {number} of {target.path} changed since it was shown")
    # answer lines equal to the file's neighbours of the target are context, kept as they are
    p = 0
    while at - p > 0 and code[at - p - 1].strip() and \
            code[at - p - 1].strip() == _at(lines, number - p - 1).strip():
        p += 1
    q = 0
    while at + q + 1 < len(code) and code[at + q + 1].strip() and \
            code[at + q + 1].strip() == _at(lines, number + q + 1).strip():
        q += 1
    shift = _Shift(code[at], target.text)
    new = (shift(code[:at - p]) + lines[number - p - 1:number - 1] + shift([code[at]])
           + lines[number:number + q] + shift(code[at + q + 1:]))
    start, end = _unique_window(lines, number - p, number + q)
    search = "\n".join(lines[start - 1:end]) + "\n"
    replace = "\n".join(lines[start - 1:number - p - 1] + new + lines[number + q:end]) + "\n"
    if target.path.endswith(".py"):
        head = "".join(line + "\n" for line in lines[:start - 1])
        _check_syntax(source, head + replace + "\n".join(lines[end:]), target)
    return [Edit(path=target.path, search=search, replace=replace)]


def _at(lines: list[str], number: int) -> str:
    return lines[number - 1] if 1 <= number <= len(lines) else ""


def _anchor(code: list[str], targets: Sequence[LineTarget]) -> tuple[LineTarget, int]:
    """The suspect line the answer corrects and the answer line that corrects it: the most
    alike pair, a changed line before an echoed one (ties: the better-ranked suspect, the
    earlier answer line)."""
    best: tuple[bool, float, int, int] | None = None
    named = {target.text.strip() for target in targets}
    for t_index, target in enumerate(targets):
        for c_index, line in enumerate(code):
            if not line.strip() or (line.strip() in named and line.strip() != target.text.strip()):
                continue  # blank, or an echo of another named line
            likeness = _likeness(line.strip(), target.text.strip())
            if likeness < _MIN_LIKENESS:
                continue
            key = (line.strip() != target.text.strip(), likeness)
            if best is None or key > best[:2]:
                best = (*key, t_index, c_index)
    if best is None:
        shown = ", ".join(f"line {t.line}" for t in targets)
        raise FormatError(f"The answer's code resembles none of the lines named ({shown}). "
                          + _HELP)
    return targets[best[2]], best[3]


def _likeness(answer: str, original: str) -> float:
    """How alike two lines of code are: the similarity of their token sequences (a short
    line sharing a few characters with the answer is not alike)."""
    return difflib.SequenceMatcher(None, _TOKEN.findall(answer), _TOKEN.findall(original),
                                   autojunk=False).ratio()


class _Shift:
    """Re-indents answer lines so that the anchor line starts where the original does,
    keeping their indentation relative to it."""

    def __init__(self, anchor: str, original: str) -> None:
        self.have = len(anchor) - len(anchor.lstrip())
        self.want = original[:len(original) - len(original.lstrip())]

    def __call__(self, lines: list[str]) -> list[str]:
        return [self.want + " " * max(0, len(line) - len(line.lstrip()) - self.have)
                + line.lstrip() if line.strip() else "" for line in lines]


def _unique_window(lines: list[str], first: int, last: int) -> tuple[int, int]:
    """The smallest span of lines around `first`..`last` (1-based, inclusive) found once in
    the file, so the SEARCH text cannot match elsewhere."""
    text = "\n".join(lines)
    total = len(lines) - (1 if lines and lines[-1] == "" else 0)  # "" after the last newline
    for radius in range(0, total):
        start, end = max(1, first - radius), min(total, last + radius)
        window = "\n".join(lines[start - 1:end])
        if text.count(window) == 1:
            return start, end
    return 1, total


def _check_syntax(before: str, after: str, target: LineTarget) -> None:
    try:
        ast.parse(before)
    except (SyntaxError, ValueError):
        return  # it did not parse before either: the tests will judge
    try:
        ast.parse(after)
    except (SyntaxError, ValueError) as exc:
        raise FormatError(f"With that line, {target.path} is no longer valid Python "
                          f"({exc.msg}, line {exc.lineno}). " + _HELP) from None
