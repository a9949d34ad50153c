"""Localization: rank the repository's functions by how likely they hold the bug.

Signals, each cheap:

* `traceback`: source frames of the failures (innermost first);
* `calls`: what the failing tests call, resolved through imports, `f = mod.func` aliases,
  methods, test helpers and fixtures (`focus`);
* `dynamic`: the lines each test executes, from a run of the failing targets and a sample
  of passing tests under `sandbox/tracer.py`, scored by Ochiai (executed by the failing
  tests, rarely by the passing ones); a function scores its best line.

The ranked `Suspect` list says which signals named each function, so a measurement can
tell which one found the bug. Inside the best functions, `rank_lines` ranks single lines
(`SuspectLine`) for the line-repair question (agent/edits/lines.py).
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import sandbox
from agent.context.focus import _Focus
from agent.context.names import is_test_path
from agent.context.symbols import Symbol
from sandbox.api import Job, Limits

TRACE_MARKER = "MULLIGAN-TRACE"
TRACER_SOURCE = (Path(sandbox.__file__).with_name("tracer.py")).read_text(encoding="utf-8")
TRACE_DIR = "/tmp/mulligan-trace"
PASSING_SAMPLE = 40  # passing tests traced beside the failing ones
TRACE_ALL_BELOW_S = 20.0  # a suite faster than this is traced whole


@dataclass(frozen=True)
class Suspect:
    """A function that may hold the bug; `line`/`end_line` are 1-based, inclusive."""

    path: str
    qualname: str
    line: int
    end_line: int
    score: float
    signals: tuple[str, ...]  # "dynamic", "traceback", "calls"

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "function": self.qualname, "line": self.line,
                "end_line": self.end_line, "score": round(self.score, 4),
                "signals": list(self.signals)}


@dataclass(frozen=True)
class SuspectLine:
    """One line that may hold the bug: in a suspect function, run by failing tests."""

    path: str
    line: int  # 1-based
    text: str
    score: float
    function: str

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "function": self.function,
                "score": round(self.score, 4), "text": self.text.strip()[:120]}


@dataclass
class Spectrum:
    """Lines executed per test: `tests` holds (nodeid, failed, {(path, line)})."""

    tests: list[tuple[str, bool, frozenset[tuple[str, int]]]]

    @property
    def failing(self) -> int:
        return sum(1 for _, failed, _ in self.tests if failed)


def trace_job(snapshot, test_command: str, targets: Sequence[str], passing: Sequence[str],
              limits: Limits, *, whole_suite: bool = False, seed: int = 0,
              patch: str = "") -> Job | None:
    """The sandbox job that runs the targets (and a sample of passing tests) traced, with
    `patch` applied, or None where the test command is not pytest."""
    if "pytest" not in test_command or not targets:
        return None
    select: tuple[str, ...] = ()
    if not whole_suite:
        files = {t.split("::", 1)[0] for t in targets}
        near = [p for p in passing if p.split("::", 1)[0] in files]
        far = [p for p in passing if p.split("::", 1)[0] not in files]
        rng = random.Random(seed)
        rng.shuffle(near)
        rng.shuffle(far)
        half = PASSING_SAMPLE // 2  # half from the failing tests' files, half from others
        sample = near[:half] + far[:half]
        rest = near[half:] + far[half:]
        sample += rest[: PASSING_SAMPLE - len(sample)]
        select = tuple(dict.fromkeys([*targets, *sample]))
    command = (f"mkdir -p {TRACE_DIR} && printf '%s' \"$MULLIGAN_TRACER\" > "
               f"{TRACE_DIR}/mulligan_trace.py && export PYTHONPATH=\"{TRACE_DIR}:$PYTHONPATH\""
               f" && {test_command}")
    env = {"MULLIGAN_TRACER": TRACER_SOURCE, "PYTEST_ADDOPTS": "-p mulligan_trace"}
    return Job(snapshot, patch, command, select, limits, env)


def parse_trace(output: str) -> Spectrum | None:
    """The spectrum from a traced run's output (its last marker line), None if absent."""
    at = output.rfind(TRACE_MARKER + " ")
    if at < 0:
        return None
    payload = output[at + len(TRACE_MARKER) + 1:].split("\n", 1)[0].strip()
    try:
        data = json.loads(zlib.decompress(base64.b64decode(payload)))
        names = [str(n) for n in data["files"]]
        tests = [(str(t[0]), bool(t[1]), frozenset((names[f], int(n)) for f, n in t[2]))
                 for t in data["tests"]]
    except (ValueError, KeyError, IndexError, TypeError, zlib.error):
        return None
    return Spectrum(tests)


def reached_lines(files: Mapping[str, str], spectrum: Spectrum | None) -> set[tuple[str, str]]:
    """(path, stripped text) of every line a failing test executed: by text, so that the
    same lines are recognised in a changed version of the files."""
    reached: set[tuple[str, str]] = set()
    split: dict[str, list[str]] = {}
    for _, failed, lines in (spectrum.tests if spectrum else ()):
        for path, number in lines if failed else ():
            if path in files:
                text = split.setdefault(path, files[path].split("\n"))
                if 1 <= number <= len(text):
                    reached.add((path, text[number - 1].strip()))
    return reached


def ochiai(spectrum: Spectrum) -> dict[tuple[str, int], float]:
    """Ochiai suspiciousness of every executed line: ef / sqrt(F * (ef + ep))."""
    total_failed = spectrum.failing
    if not total_failed:
        return {}
    ef: dict[tuple[str, int], int] = {}
    ep: dict[tuple[str, int], int] = {}
    for _, failed, lines in spectrum.tests:
        counts = ef if failed else ep
        for key in lines:
            counts[key] = counts.get(key, 0) + 1
    return {key: f / math.sqrt(total_failed * (f + ep.get(key, 0))) for key, f in ef.items()}


def _functions(table: Mapping[str, list[Symbol]]) -> dict[str, list[Symbol]]:
    return {path: [s for s in symbols if s.kind != "class"]
            for path, symbols in table.items() if not is_test_path(path)}


def _owner(symbols: list[Symbol], line: int) -> Symbol | None:
    """The innermost function whose span (decorators included) holds `line`."""
    best = None
    for s in symbols:
        if s.line - len(s.decorators) <= line <= s.end_line and (best is None or s.line > best.line):
            best = s
    return best


def rank(table: Mapping[str, list[Symbol]], ctx: _Focus, spectrum: Spectrum | None,
         limit: int = 40) -> list[Suspect]:
    """Functions outside the tests, most suspicious first (at most `limit`)."""
    funcs = _functions(table)
    scores: dict[tuple[str, str], float] = {}
    signals: dict[tuple[str, str], list[str]] = {}
    spans: dict[tuple[str, str], Symbol] = {}

    def note(symbol: Symbol, score: float, signal: str) -> None:
        key = (symbol.path, symbol.qualname)
        spans.setdefault(key, symbol)
        scores[key] = scores.get(key, 0.0) + score
        if signal not in signals.setdefault(key, []):
            signals[key].append(signal)

    if spectrum is not None:
        best: dict[tuple[str, str], float] = {}
        for (path, line), score in ochiai(spectrum).items():
            symbol = _owner(funcs.get(path, []), line)
            if symbol is not None:
                key = (path, symbol.qualname)
                spans.setdefault(key, symbol)
                best[key] = max(best.get(key, 0.0), score)
        for key, score in best.items():
            note(spans[key], 10.0 * score, "dynamic")
    for path, symbols in ctx.hit_symbols.items():
        if is_test_path(path):
            continue
        for index, symbol in enumerate(symbols):  # later hits are deeper frames
            if symbol.kind != "class":
                note(symbol, 2.0 + 0.1 * index, "traceback")
    for path, symbols in ctx.defining.items():
        if is_test_path(path):
            continue
        for symbol in symbols:
            if symbol.kind != "class":
                note(symbol, 1.0, "calls")
    order = sorted(scores, key=lambda k: (-scores[k], spans[k].end_line - spans[k].line, k))
    return [Suspect(k[0], k[1], spans[k].line - len(spans[k].decorators), spans[k].end_line,
                    scores[k], tuple(signals[k])) for k in order[:limit]]


# Lines that cannot hold a single-site bug: layout, headers, bare keywords, brackets.
_NOT_CODE = re.compile(r"""^(?:$|#|@|(?:async\s+)?def\s|class\s|(?:else|try|finally)\s*:|pass$|"""
                       r"""[)\]}]+[,:]?$|[rbuRBU]*(?:\"\"\"|\'\'\'))""")
# Tokens where a one-site bug lives (operators, comparisons, literals, subscripts): among
# lines the spectrum cannot tell apart, the ones with more of them come first.
_RISKY = re.compile(r"[<>!=]=?|[-+*/%&|^~]|\b(?:and|or|not|is|in|None|True|False)\b|\d+|\[")


def rank_lines(files: Mapping[str, str], suspects: Sequence[Suspect],
               spectrum: Spectrum | None, *, functions: int = 5,
               limit: int = 24) -> list[SuspectLine]:
    """Code lines of the best `functions` suspects that the failing tests executed, most
    suspicious first (Ochiai; ties: the better-ranked function, then the line with more
    operators and literals, then source order). Empty without a spectrum."""
    if spectrum is None or not suspects:
        return []
    scores = ochiai(spectrum)
    top = list(suspects[:functions])
    texts = {s.path: files[s.path].split("\n") for s in top if s.path in files}  # split once
    found: dict[tuple[str, int], tuple[int, SuspectLine]] = {}
    for (path, line), score in scores.items():
        owner = next((i for i, s in enumerate(top)
                      if s.path == path and s.line <= line <= s.end_line), None)
        if owner is None or path not in texts:
            continue
        lines = texts[path]
        if not 1 <= line <= len(lines) or _NOT_CODE.match(lines[line - 1].strip()):
            continue
        found[(path, line)] = (owner, SuspectLine(path, line, lines[line - 1], score,
                                                  top[owner].qualname))
    order = sorted(found.values(), key=lambda item: (
        -item[1].score, item[0], -len(_RISKY.findall(item[1].text)), item[1].line))
    ranked: dict[SuspectLine, None] = {}  # insertion-ordered set
    for _, line in order:
        if line in ranked:
            continue  # placed already, as the guard of a line before it
        ranked[line] = None
        # the condition that let the failing run into this line (often the bug, where the
        # line is only the symptom: a `raise` under a wrong `if`) comes right after it
        guard = _guard(texts[line.path], line.line)
        if guard is not None and (line.path, guard) in found:
            ranked.setdefault(found[(line.path, guard)][1])
    return list(ranked)[:limit]


_HEADER = re.compile(r"(?:if|elif|while|for|except|with)\b")


def _guard(lines: list[str], number: int) -> int | None:
    """The line number of the `if`/`while`/... header whose block holds line `number`."""
    text = lines[number - 1]
    indent = len(text) - len(text.lstrip())
    for at in range(number - 1, 0, -1):
        above = lines[at - 1]
        if not above.strip() or above.lstrip().startswith("#"):
            continue
        depth = len(above) - len(above.lstrip())
        if depth < indent:
            return at if _HEADER.match(above.lstrip()) else None
    return None


def line_groups(lines: Sequence[SuspectLine], size: int = 3) -> list[tuple[SuspectLine, ...]]:
    """The ranked lines cut into questions: up to `size` consecutive lines of one function
    each (the model picks the wrong one among them). The functions take turns, best first:
    each one's best question before any function's second, because which function holds the
    bug is itself uncertain (scores of callers and callees run by the same tests nearly
    tie), and a question about a second function costs less than a third about the first."""
    per_function: dict[tuple[str, str], list[tuple[SuspectLine, ...]]] = {}
    current: list[SuspectLine] = []
    for line in [*lines, None]:
        if current and (line is None or len(current) == size or
                        (line.path, line.function) != (current[0].path, current[0].function)):
            per_function.setdefault((current[0].path, current[0].function), []).append(
                tuple(current))
            current = []
        if line is not None:
            current.append(line)
    turns = list(per_function.values())  # best function first
    return [groups[depth] for depth in range(max(map(len, turns), default=0))
            for groups in turns if depth < len(groups)]


def mutation_order(files: Mapping[str, str], suspects: Sequence[Suspect],
                   spectrum: Spectrum | None, ahead: Sequence[SuspectLine], *,
                   first: int = 5, limit: int = 200) -> list[SuspectLine]:
    """The executed lines in the order their mutants are screened: the line questions'
    lines (`ahead`: rank_lines of the best `first` functions, taking turns) and then the
    other ranked functions', taking turns likewise. A bug in a function that most passing
    tests also run ranks low by the spectrum, but a mutant costs one sandbox run of the
    failing tests, not an answer."""
    rest = rank_lines(files, suspects[first:], spectrum, functions=len(suspects), limit=limit)
    return [line for lines in (ahead, rest) for group in line_groups(lines) for line in group]
