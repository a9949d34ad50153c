"""agent/context/localize.py: Ochiai ranking from a traced run, static signals through
aliases and fixtures, and the tracer plugin run for real with pytest on a temp repo."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from agent.context.localize import (TRACER_SOURCE, Spectrum, SuspectLine, line_groups,
                                    mutation_order, ochiai, parse_trace, rank_lines, trace_job)
from agent.context.repomap import RepoMap
from agent.context.tracebacks import TracebackHit
from sandbox.api import Limits

LIB = textwrap.dedent('''\
    def used_by_all(x):
        return x


    def buggy(x):
        if x > 2:
            return x - 1
        return x + 1


    def unrelated(x):
        return x * 2
''')
TESTS = textwrap.dedent('''\
    import pytest
    from pkg import lib

    f = lib.buggy


    @pytest.fixture
    def doubled():
        return lib.unrelated(2)


    def test_small():
        assert lib.used_by_all(f(1)) == 2


    def test_big():
        assert lib.used_by_all(f(5)) == 6


    def test_other(doubled):
        assert doubled == 4
''')


def make_repo(tmp_path: Path) -> dict[str, str]:
    files = {"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return files


def run_traced(root: Path) -> Spectrum | None:
    """pytest on `root`'s tests with the tracer plugin loaded, as the sandbox runs it."""
    plugin = root / "plugin"
    plugin.mkdir()
    (plugin / "mulligan_trace.py").write_text(TRACER_SOURCE)
    env = {**os.environ, "PYTHONPATH": f"{plugin}:{root}", "MULLIGAN_TRACE_ROOT": str(root)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "mulligan_trace", "tests"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    return parse_trace(proc.stdout)


def test_tracer_plugin_records_lines_per_test_and_ochiai_ranks_the_bug_first(tmp_path):
    files = make_repo(tmp_path)
    spectrum = run_traced(tmp_path)
    assert spectrum is not None and spectrum.failing == 1
    outcomes = {nodeid: failed for nodeid, failed, _ in spectrum.tests}
    assert outcomes == {"tests/test_lib.py::test_small": False,
                        "tests/test_lib.py::test_big": True,
                        "tests/test_lib.py::test_other": False}
    big = next(lines for nodeid, _, lines in spectrum.tests if nodeid.endswith("test_big"))
    assert ("pkg/lib.py", 7) in big and ("pkg/lib.py", 8) not in big
    suspects = RepoMap().localize(files, [], spectrum)
    assert (suspects[0].path, suspects[0].qualname) == ("pkg/lib.py", "buggy")
    assert suspects[0].signals == ("dynamic",)
    assert "unrelated" not in [s.qualname for s in suspects]
    lines = rank_lines(files, suspects, spectrum)
    # run only by the failing test first; then the shared branch, before the helper's line
    assert [(line.line, line.function) for line in lines[:3]] == [
        (7, "buggy"), (6, "buggy"), (2, "used_by_all")]
    assert lines[0].text == "        return x - 1" and lines[0].score == 1.0


REPORTED_LIB = """\
class Box:
    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return self.n == other.n

    def __repr__(self):
        return "Box(%d)" % self.n


class Oops(Exception):
    def __str__(self):
        return "oops: " + self.args[0]


def grow(box):
    return Box(box.n + 2)


def fail(why):
    raise Oops(why)
"""

REPORTED_TESTS = """\
import unittest

import pytest

from pkg.box import Box, fail, grow


def test_assert():
    assert grow(Box(1)) == Box(2)


def test_raises():
    fail("x")


def test_match():
    with pytest.raises(Exception, match="oops: y"):
        fail("y")


class TestCase(unittest.TestCase):
    def test_unittest(self):
        self.assertEqual(grow(Box(1)), Box(2))
"""


def test_tracer_leaves_out_what_pytest_runs_to_report_a_failure(tmp_path):
    files = {"pkg/__init__.py": "", "pkg/box.py": REPORTED_LIB, "tests/test_box.py": REPORTED_TESTS}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    spectrum = run_traced(tmp_path)
    assert spectrum is not None
    lines = {nodeid.split("::")[-1]: {n for path, n in executed if path == "pkg/box.py"}
             for nodeid, _, executed in spectrum.tests}
    # the comparison ran in the test; the repr pytest and unittest printed for it did not
    for test in ("test_assert", "test_unittest"):
        assert {6, 18} <= lines[test] and 9 not in lines[test]
    # an exception's text in the failure report is not behaviour; matched by pytest.raises it is
    assert 22 in lines["test_raises"] and 14 not in lines["test_raises"]
    assert 14 in lines["test_match"]


def test_ochiai_prefers_lines_run_by_failing_tests_only():
    spectrum = Spectrum([("a", True, frozenset({("m.py", 1), ("m.py", 2)})),
                         ("b", False, frozenset({("m.py", 1)}))])
    scores = ochiai(spectrum)
    assert scores[("m.py", 2)] == 1.0 and scores[("m.py", 1)] < 1.0


def test_suspect_lines_skip_headers_and_group_by_function():
    files = {"m.py": "def f(x):\n    y = x + 1\n    if y:\n        pass\n    return y\n\n\n"
                     "def g(x):\n    return x\n"}
    every = frozenset(("m.py", n) for n in range(1, 10))
    spectrum = Spectrum([("a", True, every), ("b", False, frozenset({("m.py", 9)}))])
    suspects = RepoMap().localize(files, [], spectrum)
    lines = rank_lines(files, suspects, spectrum)
    assert [line.line for line in lines] == [2, 3, 5, 9]  # no def, pass or blank lines
    # equal scores: more operators first within a function, better function first; the
    # functions take turns, so g's only question comes before f's second
    assert [[line.line for line in group] for group in line_groups(lines, size=2)] == \
        [[2, 3], [9], [5]]
    assert rank_lines(files, suspects, None) == []


def test_line_questions_take_turns_between_functions_best_first():
    def at(function: str, *numbers: int) -> list[SuspectLine]:
        return [SuspectLine("m.py", n, f"x = {n}", 1.0, function) for n in numbers]

    ranked = at("encode", 1, 2, 3, 4, 5, 6, 7) + at("check", 20, 21) + at("helper", 30)
    groups = [[line.line for line in group] for group in line_groups(ranked)]
    assert groups == [[1, 2, 3], [20, 21], [30], [4, 5, 6], [7]]
    assert line_groups([]) == []


def test_mutants_reach_past_the_line_questions_functions():
    """A function most passing tests also run ranks low; its lines are not in the line
    questions, but its mutants are screened after theirs."""
    names = ["f1", "f2", "f3", "shared"]
    files = {"m.py": "\n\n".join(f"def {n}(x):\n    return x + {i}" for i, n in
                                   enumerate(names))}
    body = {n: ("m.py", 3 * i + 2) for i, n in enumerate(names)}  # each one's return line
    spectrum = Spectrum([
        ("fail", True, frozenset(body.values())),
        *[(f"ok{i}", False, frozenset({body["shared"]})) for i in range(5)]])
    suspects = RepoMap().localize(files, [], spectrum)
    assert suspects[-1].qualname == "shared"
    questions = rank_lines(files, suspects, spectrum, functions=3)
    order = mutation_order(files, suspects, spectrum, questions, first=3)
    assert [line.function for line in questions] == ["f1", "f2", "f3"]
    assert [line.function for line in order] == ["f1", "f2", "f3", "shared"]
    assert mutation_order(files, suspects, None, []) == []


def test_the_condition_guarding_a_symptom_line_follows_it():
    files = {"m.py": "def check(s):\n    n = len(s)\n    if s[1:3] == '--':\n"
                     "        raise ValueError(s)\n    return n\n"}
    spectrum = Spectrum([("bad", True, frozenset(("m.py", n) for n in (1, 2, 3, 4))),
                         ("ok", False, frozenset(("m.py", n) for n in (1, 2, 3, 5)))])
    lines = rank_lines(files, RepoMap().localize(files, [], spectrum), spectrum)
    # the raise runs in the failing test only; its `if` (run by every test) comes next
    assert [line.line for line in lines] == [4, 3, 2]


def test_static_signals_follow_an_alias_and_a_fixture():
    files = {"pkg/__init__.py": "", "pkg/lib.py": LIB, "tests/test_lib.py": TESTS}
    hits = [TracebackHit("tests/test_lib.py", 0, "test_big"),
            TracebackHit("tests/test_lib.py", 0, "test_other")]
    suspects = RepoMap().localize(files, hits, None)
    names = {s.qualname: s.signals for s in suspects}
    assert names["buggy"] == ("calls",)  # through `f = lib.buggy`
    assert names["unrelated"] == ("calls",)  # through the `doubled` fixture
    assert "used_by_all" in names


def test_trace_job_only_for_pytest_and_samples_passing_tests(tmp_path):
    assert trace_job(None, "make test", ["t::a"], [], Limits()) is None
    passing = [f"tests/test_x.py::t{i}" for i in range(100)]
    job = trace_job(None, "python -m pytest -q", ["tests/test_x.py::bad"], passing, Limits())
    assert job.select[0] == "tests/test_x.py::bad" and len(job.select) == 41
    assert job.env["PYTEST_ADDOPTS"] == "-p mulligan_trace"
    assert job.test_command.endswith("&& python -m pytest -q")
    whole = trace_job(None, "python -m pytest -q", ["t::a"], passing, Limits(), whole_suite=True)
    assert whole.select == ()
