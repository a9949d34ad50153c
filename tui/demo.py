"""A recorded run, as the core's events, for `mulligan tui --demo` and the TUI's snapshot
tests: two rounds on a small calculator whose `mean` divides by the wrong count. Fixed
text, ids and numbers, so whatever draws it draws the same thing every time."""

from __future__ import annotations

import difflib

from agent.events import (
    BaselineDone,
    CandidateState,
    CandidateUpdate,
    Event,
    ModelCall,
    ResultStatus,
    RoundFinished,
    RunFinished,
    RunStarted,
    Status,
)

REPO = "/home/dev/calc"
RUN_ID = "20250101-120000-c0ffee"
TEST_CMD = "python -m pytest -q"
MODEL = "qwen2.5-coder-7b"
BASE_URL = "http://127.0.0.1:8000/v1"

CALC = '''"""A tiny calculator with a bug for Mulligan's demo."""


def mean(values):
    """The arithmetic mean of a non-empty list of numbers."""
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / (len(values) - 1)


def clamp(value, low, high):
    """`value` limited to the range [low, high]."""
    return max(low, min(value, high))
'''

TWO = "tests/test_calc.py::test_mean_of_two"
ONE = "tests/test_calc.py::test_mean_of_one"
EMPTY = "tests/test_calc.py::test_mean_empty"
CLAMP = "tests/test_calc.py::test_clamp"

SYSTEM = ("You are an expert software engineer fixing bugs in a repository. You change source "
          "code so that the failing tests pass without breaking the tests that pass now. "
          "Never edit the tests.\n\nAnswer with one or more SEARCH/REPLACE blocks.")
PROPOSE = ("These tests fail:\n\n- tests/test_calc.py::test_mean_of_two\n  assert 6.0 == 3\n"
           "- tests/test_calc.py::test_mean_of_one\n  ZeroDivisionError: division by zero\n\n"
           "calc.py\n```python\n" + CALC + "```\n\nFix the code so that these tests pass.")


def _patch(new: str, path: str = "calc.py", old: str = CALC) -> str:
    body = list(difflib.unified_diff(old.splitlines(keepends=True),
                                     new.splitlines(keepends=True), n=3))[2:]
    return (f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n" + "".join(body))


def _block(old_line: str, new_lines: str, path: str = "calc.py") -> str:
    return (f"{path}\n```python\n<<<<<<< SEARCH\n{old_line}\n=======\n{new_lines}\n"
            ">>>>>>> REPLACE\n```\n")


BAD_LINE = "    return sum(values) / (len(values) - 1)"
FIX_LINE = "    return sum(values) / len(values)"

ANSWERS = {
    "r1c1": "The divisor can reach zero; guard it.\n\n"
            + _block(BAD_LINE, "    return sum(values) / max(len(values) - 1, 1)"),
    "r1c2": "The mean divides by the count of the values, so drop the `- 1`.",
    "r1c3": "The empty check is redundant and the divisor is off by one.\n\n"
            + _block('    if not values:\n        raise ValueError("mean of an empty list")\n'
                     + BAD_LINE, FIX_LINE),
    "r1c4": "Divide by the length.\n\n" + _block("    return sum(values) / (len(values) + 1)",
                                                  FIX_LINE),
    "r2c1": "Keep the check for an empty list and only fix the divisor.\n\n"
            + _block(BAD_LINE, FIX_LINE),
    "r2c2": "Restore the check.\n\n" + _block(BAD_LINE, FIX_LINE),
    "r2c3": "Divide by the number of values.\n\n"
            + _block(BAD_LINE, "    return sum(values) / len(values) if values else 0"),
    "r2c4": "The test expects the wrong value; update it.\n\n"
            + _block("    assert mean([2, 4]) == 3", "    assert mean([2, 4]) == 6",
                     "tests/test_calc.py"),
}

FIXED = CALC.replace(BAD_LINE, FIX_LINE)
PATCHES = {
    "r1c1": _patch(CALC.replace(BAD_LINE, "    return sum(values) / max(len(values) - 1, 1)")),
    "r1c3": _patch(CALC.replace('    if not values:\n        raise ValueError("mean of an empty '
                                'list")\n' + BAD_LINE, FIX_LINE)),
    "r2c1": _patch(FIXED),
    "r2c2": _patch(FIXED),
    "r2c3": _patch(CALC.replace(BAD_LINE, "    return sum(values) / len(values) if values "
                                          "else 0")),
    "r2c4": _patch("import pytest\n\n\ndef test_mean_of_two():\n    assert mean([2, 4]) == 6\n",
                   "tests/test_calc.py",
                   "import pytest\n\n\ndef test_mean_of_two():\n    assert mean([2, 4]) == 3\n"),
}

FAIL_TWO = "assert 6.0 == 3\n +  where 6.0 = mean([2, 4])"
FAIL_EMPTY = "Failed: DID NOT RAISE <class 'ValueError'>"


def _report(failing: dict[str, str], status: str = "completed", seconds: float = 1.4,
            patch_error: str | None = None) -> dict:
    tests = [{"nodeid": t, "outcome": "failed" if t in failing else "passed",
              "message": failing.get(t, ""), "seconds": 0.01} for t in (TWO, ONE, EMPTY, CLAMP)]
    lines = "".join("F" if t in failing else "." for t in (TWO, ONE, EMPTY, CLAMP))
    summary = (f"{len(failing)} failed, {4 - len(failing)} passed" if failing else "4 passed")
    output = (f"{lines}{' ' * 30}[100%]\n"
              + "".join(f"FAILED {t} - {m.splitlines()[0]}\n" for t, m in failing.items())
              + f"{summary} in 0.05s\n")
    return {"status": status, "exit_code": 1 if failing else 0, "wall_s": seconds,
            "output": output, "output_truncated": False,
            "tests": tests if status == "completed" else [],
            "patch_error": patch_error, "changed_test_files": []}


def _update(cid: str, state: CandidateState, parent: str | None = None, **kw) -> CandidateUpdate:
    return CandidateUpdate(cid, int(cid[1]), parent, state, targets_total=2, **kw)


def demo_events() -> list[Event]:
    """The whole run, from the first status line to run_finished."""
    propose = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROPOSE}]
    events: list[Event] = [
        Status("preparing the sandbox image"),
        Status("image mulligan/deps:4d83ecea7e784ddb is ready"),
        RunStarted(RUN_ID, REPO, MODEL, BASE_URL, TEST_CMD, 4, 3, 4),
        BaselineDone([TWO, ONE], [EMPTY, CLAMP], 1, 1.21,
                     _report({TWO: FAIL_TWO, ONE: "ZeroDivisionError: division by zero"})),
    ]
    for i in range(1, 5):
        events.append(_update(f"r1c{i}", CandidateState.SAMPLING))
    events.append(ModelCall("k-propose", "propose", propose,
                            [ANSWERS[f"r1c{i}"] for i in range(1, 5)], ["stop"] * 4,
                            812, 236, 0.00041, 3.2))
    tok = {"r1c1": 61, "r1c2": 16, "r1c3": 88, "r1c4": 71}
    events += [
        _update("r1c1", CandidateState.APPLYING, tokens=tok["r1c1"], patch=PATCHES["r1c1"],
                note="exact"),
        _update("r1c2", CandidateState.FORMAT_ERROR, tokens=tok["r1c2"],
                note="No edits found in the answer. Give each change as a SEARCH/REPLACE "
                     "block: the file path, then the block."),
        _update("r1c3", CandidateState.APPLYING, tokens=tok["r1c3"], patch=PATCHES["r1c3"],
                note="exact"),
        _update("r1c4", CandidateState.APPLYING, tokens=tok["r1c4"], patch=_patch(FIXED),
                note="fuzzy"),
        _update("r1c1", CandidateState.TESTING, tokens=tok["r1c1"], patch=PATCHES["r1c1"],
                note="exact"),
        _update("r1c3", CandidateState.TESTING, tokens=tok["r1c3"], patch=PATCHES["r1c3"],
                note="exact"),
        _update("r1c4", CandidateState.TESTING, tokens=tok["r1c4"], patch=_patch(FIXED),
                note="fuzzy"),
        _update("r1c1", CandidateState.FAILED, tokens=tok["r1c1"], targets_fixed=1,
                patch=PATCHES["r1c1"], note="exact", report=_report({TWO: FAIL_TWO})),
        _update("r1c4", CandidateState.PATCH_FAILED, tokens=tok["r1c4"], patch=_patch(FIXED),
                note="error: patch failed: calc.py:8",
                report=_report({}, "patch_failed", 0.3, "error: patch failed: calc.py:8")),
        _update("r1c3", CandidateState.FAILED, tokens=tok["r1c3"], targets_fixed=2,
                regressions=1, patch=PATCHES["r1c3"], note="exact",
                report=_report({EMPTY: FAIL_EMPTY})),
        RoundFinished(1, "r1c3", False),
    ]
    parents = {"r2c1": "r1c3", "r2c2": "r1c3", "r2c3": "r1c1", "r2c4": "r1c1"}
    for cid, parent in parents.items():
        events.append(_update(cid, CandidateState.SAMPLING, parent))
    feedback = {"r1c3": "Your patch fixed the targets but broke tests/test_calc.py::"
                        "test_mean_empty:\n" + FAIL_EMPTY + "\nRevise it.",
                "r1c1": "tests/test_calc.py::test_mean_of_two still fails:\n" + FAIL_TWO
                        + "\nRevise it."}
    for parent, kids, cost in (("r1c3", ("r2c1", "r2c2"), 0.00033),
                               ("r1c1", ("r2c3", "r2c4"), 0.00031)):
        messages = propose + [{"role": "assistant", "content": ANSWERS[parent]},
                              {"role": "user", "content": feedback[parent]}]
        events.append(ModelCall(f"k-revise-{parent}", "revise", messages,
                                [ANSWERS[k] for k in kids], ["stop", "stop"], 1011, 120, cost,
                                2.4))
    tok2 = {"r2c1": 58, "r2c2": 40, "r2c3": 62, "r2c4": 60}
    for state in (CandidateState.APPLYING, CandidateState.TESTING):
        for cid, parent in parents.items():
            events.append(_update(cid, state, parent, tokens=tok2[cid], patch=PATCHES[cid],
                                  note="exact"))
    events += [
        _update("r2c2", CandidateState.PASSED, "r1c3", tokens=tok2["r2c2"], targets_fixed=2,
                patch=PATCHES["r2c2"], note="exact", report=_report({})),
        _update("r2c4", CandidateState.REJECTED, "r1c1", tokens=tok2["r2c4"],
                edited_tests=["tests/test_calc.py"], patch=PATCHES["r2c4"], note="exact",
                report=_report({ONE: "ZeroDivisionError: division by zero"})),
        _update("r2c1", CandidateState.PASSED, "r1c3", tokens=tok2["r2c1"], targets_fixed=2,
                patch=PATCHES["r2c1"], note="exact", report=_report({})),
        _update("r2c3", CandidateState.FAILED, "r1c1", tokens=tok2["r2c3"], targets_fixed=1,
                patch=PATCHES["r2c3"], note="exact", report=_report({EMPTY: FAIL_EMPTY})),
        RoundFinished(2, "r2c1", True),
        RunFinished(ResultStatus.SOLVED, "r2c1", PATCHES["r2c1"], 2279, 0.00105, 19.6),
    ]
    return events


def mid_run_events() -> list[Event]:
    """The same run while round 2 is being tested (two results in, two still testing)."""
    events = demo_events()
    cut = next(i for i, e in enumerate(events)
               if isinstance(e, CandidateUpdate) and e.id == "r2c1"
               and e.state is CandidateState.PASSED)
    return events[:cut]
