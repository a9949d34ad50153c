"""The matching cascade that places an edit in a file: exact, then whitespace, then fuzzy.

Also the messages that tell the model why a block did not match."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from agent.edits.types import MatchStrategy


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
