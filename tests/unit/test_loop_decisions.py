"""The loop's decisions, without Docker or HTTP: a scripted model and an in-process sandbox.

Selection and the vote, the beam's choice of parents, token/cost/time budgets, resume from
a trajectory, reproduction from an issue, format errors, rejected test edits, stopping, and
the baseline's verdicts. Each run takes milliseconds; the real-Docker, real-HTTP versions of
the same flows are in tests/test_loop_e2e.py (marked `docker`).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from agent.config import Settings
from agent.cores import Cores
from agent.context.repomap import RepoMap
from agent.errors import ConfigError, ModelUnavailable
from agent.events import (
    BaselineDone,
    CandidateState,
    CandidateUpdate,
    Event,
    EventBus,
    Localized,
    ModelCall,
    ResultStatus,
    RoundFinished,
    RunFinished,
    Status,
    event_from_dict,
)
import agent.loop as loop_module
from agent.loop import LINE_ANSWER_TOKENS, REPRO_TEST_PATH, Result, Solver
from agent.models.replay import REPLAYED, ReplayModel
from agent.schedule import ServerInfo
from agent.trajectory import recorded_calls
from tests.support.fake_sandbox import FakeSandbox, MemorySnapshot, contains, python_check
from tests.support.scripted_model import ScriptedModel

CALC = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "tests/test_calc.py": ("from calc import add\n\n\ndef test_add():\n    assert add(3, 3) == 6\n"
                           "\n\ndef test_zero():\n    assert add(0, 0) == 0\n"),
}
TEST_ADD = "tests/test_calc.py::test_add"
TEST_ZERO = "tests/test_calc.py::test_zero"
CHECKS = {TEST_ADD: python_check("calc.py", "add(3, 3) == 6"),
          TEST_ZERO: python_check("calc.py", "add(0, 0) == 0")}


def sr(search: str, replace: str, path: str = "calc.py") -> str:
    """A model answer with one SEARCH/REPLACE block."""
    return (f"Here is the change.\n\n{path}\n```python\n<<<<<<< SEARCH\n{search}\n=======\n"
            f"{replace}\n>>>>>>> REPLACE\n```\n")


RIGHT = sr("    return a - b", "    return a + b")
RIGHT_TOO = sr("    return a - b", "    return b + a")
WRONG = sr("    return a - b", "    return a * b")  # add(3, 3) == 9; add(0, 0) still 0
OVERFIT = sr("    return a - b", "    return 6")  # fixes the target, breaks test_zero
PROSE = "I am not sure what to change here."


class Run:
    """One Solver run over in-memory parts, with everything it emitted."""

    def __init__(self, model, *, files=None, checks=None, issue=None, sandbox=None,
                 on_event=None, **overrides):
        values = {"model": "test-model", "candidates": 2, "rounds": 1, "beam": 1,
                  "workers": 2, "test_timeout_s": 30.0, "mutants": 0}
        self.settings = Settings(**{**values, **overrides})
        self.model = model
        self.sandbox = sandbox or FakeSandbox(CHECKS if checks is None else checks)
        self.events: list[Event] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        if on_event is not None:
            bus.subscribe(lambda event: on_event(self, event))
        self.bus = bus
        self.solver = Solver(self.settings, model, self.sandbox,
                             MemorySnapshot(CALC if files is None else files), bus, "run-1",
                             issue, "repo", RepoMap())

    def result(self) -> Result:
        result = asyncio.run(self.solver.run())
        assert not self.bus.errors, self.bus.errors
        return result

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def final_states(self) -> dict[str, CandidateState]:
        return {e.id: e.state for e in self.of(CandidateUpdate)}


def solve(answers, **kwargs) -> tuple[Result, Run]:
    run = Run(ScriptedModel(answers), **kwargs)
    return run.result(), run


# -- selection ---------------------------------------------------------------------------


def test_a_passing_candidate_is_chosen_and_the_run_stops():
    result, run = solve([WRONG, RIGHT], rounds=3)
    assert result.status is ResultStatus.SOLVED
    assert result.chosen is not None and result.chosen.id == "r1c2"
    assert "+    return a + b" in result.patch and "-    return a - b" in result.patch
    # round 1's two single-sample requests; solved there: no revision was asked for
    assert [r.n for r in run.model.requests] == [1, 1]
    assert run.final_states() == {"r1c1": CandidateState.FAILED, "r1c2": CandidateState.PASSED}
    assert run.of(RoundFinished) == [RoundFinished(1, "r1c2", True)]
    assert run.sandbox.prewarmed == [(run.solver.limits, 2)]
    assert run.model.preflights == 1


def test_the_vote_picks_the_fix_most_candidates_agree_on():
    result, _ = solve([RIGHT_TOO, RIGHT, RIGHT], candidates=3, keep_going=True)
    assert result.status is ResultStatus.SOLVED
    assert [c.solved for c in result.candidates] == [True, True, True]
    # two of three wrote `a + b`: the earlier of those wins over the lone `b + a`
    assert result.chosen.id == "r1c2"


def test_without_a_majority_the_smallest_fix_wins():
    longer = sr("    return a - b", "    total = a + b\n    return total")
    result, _ = solve([longer, RIGHT])
    assert result.status is ResultStatus.SOLVED and result.chosen.id == "r1c2"


def test_fixing_the_target_while_breaking_a_passing_test_is_not_a_fix():
    result, _ = solve([OVERFIT, WRONG])
    assert result.status is ResultStatus.UNSOLVED
    overfit = result.candidates[0]
    assert overfit.fixed == [TEST_ADD] and [t.nodeid for t in overfit.regressions] == [TEST_ZERO]
    assert result.chosen is overfit  # the best partial candidate is still offered
    assert result.reason == "no candidate passed in 1 round(s)"
    assert result.to_json()["status"] == "unsolved" and result.to_json()["chosen"] == "r1c1"


# -- the beam ------------------------------------------------------------------------------


def test_the_beam_revises_the_most_promising_candidate_with_its_failures():
    revision = sr("    return 6", "    return a + b")
    result, run = solve([WRONG, OVERFIT, revision, revision], rounds=2, beam=1)
    assert result.status is ResultStatus.SOLVED
    assert result.chosen.round == 2 and result.chosen.parent == "r1c2"  # OVERFIT fixed more
    # one sample per request; candidates // beam samples per parent
    assert [r.n for r in run.model.requests] == [1, 1, 1, 1]
    revise = run.model.requests[2]
    assert revise.messages[-2] == {"role": "assistant", "content": OVERFIT}
    assert TEST_ZERO in revise.user  # the regression is in the feedback
    assert "+    return a + b" in result.patch and "return 6" not in result.patch


def test_each_parent_of_a_wider_beam_gets_its_own_request_and_seed():
    result, run = solve([WRONG, OVERFIT, WRONG, WRONG], rounds=2, beam=2, seed=7)
    assert result.status is ResultStatus.UNSOLVED
    parents = {r.messages[-2]["content"] for r in run.model.requests[2:]}
    assert parents == {WRONG, OVERFIT}
    assert [r.seed for r in run.model.requests] == [7 + 1000, 7 + 1001, 7 + 2000, 7 + 2001]
    assert sorted(c.parent for c in result.candidates if c.round == 2) == ["r1c1", "r1c2"]


# -- budgets -------------------------------------------------------------------------------


def test_the_token_budget_stops_before_the_next_request():
    # a single-sample request costs 100 prompt + 10 completion = 110 tokens
    result, run = solve([WRONG, WRONG, WRONG, WRONG], rounds=3, token_budget=100)
    assert result.status is ResultStatus.UNSOLVED
    assert result.reason == "token budget of 100 spent"
    assert len(run.model.requests) == 1 and result.usage.total == 110
    assert result.candidates[0].report is not None  # the answer paid for is still tested


def test_the_cost_budget_stops_before_the_next_request():
    run = Run(ScriptedModel([WRONG] * 6, cost_per_answer_usd=0.01), rounds=3,
              cost_budget_usd=0.03)
    result = run.result()
    assert result.reason == "cost budget of $0.03 spent"
    assert len(run.model.requests) == 3 and result.cost_usd == pytest.approx(0.03)


def test_the_time_budget_stops_before_any_request_once_spent():
    result, run = solve([RIGHT, RIGHT], time_budget_s=1e-9)
    assert result.status is ResultStatus.UNSOLVED and result.reason == "time budget of 0s spent"
    assert run.model.requests == [] and result.chosen is None


# -- resume --------------------------------------------------------------------------------


def test_a_resumed_run_replays_every_recorded_answer_and_asks_nothing():
    first, earlier = solve([WRONG, OVERFIT], rounds=1)
    recorded = recorded_calls(earlier.of(ModelCall))
    inner = ScriptedModel([])  # any request reaching it fails the test
    run = Run(ReplayModel(inner, recorded), rounds=1)
    again = run.result()
    assert inner.requests == [] and inner.preflights == 0  # no server needed to replay
    assert again.status is first.status and again.chosen.id == first.chosen.id
    assert again.patch == first.patch
    assert again.usage == first.usage and again.cost_usd == first.cost_usd
    assert [c.answer for c in again.candidates] == [WRONG, OVERFIT]
    assert [e.key for e in run.of(ModelCall)] == [e.key for e in earlier.of(ModelCall)]


def test_a_resumed_run_asks_the_model_only_what_was_never_answered():
    _, earlier = solve([WRONG, WRONG], rounds=1)
    inner = ScriptedModel([RIGHT, RIGHT])
    run = Run(ReplayModel(inner, recorded_calls(earlier.of(ModelCall))), rounds=2)
    result = run.result()
    assert result.status is ResultStatus.SOLVED and result.chosen.round == 2
    # only the revisions of the one distinct round-1 change reach the model
    assert len(inner.requests) == 2
    assert all(r.messages[-2]["content"] == WRONG for r in inner.requests)
    assert inner.preflights == 0


def test_replayed_usage_is_counted_once_per_request():
    _, earlier = solve([WRONG, WRONG])
    replay = ReplayModel(ScriptedModel([]), recorded_calls(earlier.of(ModelCall)))
    call = earlier.of(ModelCall)[0]
    completions = asyncio.run(replay.sample(call.messages, 1, seed=None))
    completions += asyncio.run(replay.sample(call.messages, 1, seed=None))
    assert [c.text for c in completions] == [WRONG, WRONG]
    assert {c.request_id for c in completions} == {REPLAYED}
    assert sum(c.usage.total for c in completions) == \
        sum(c.prompt_tokens + c.completion_tokens for c in earlier.of(ModelCall))


def test_a_changed_setting_is_a_new_request_not_a_replay():
    _, earlier = solve([WRONG, WRONG], seed=1)
    inner = ScriptedModel([RIGHT, RIGHT])
    result = Run(ReplayModel(inner, recorded_calls(earlier.of(ModelCall))), seed=2).result()
    assert result.status is ResultStatus.SOLVED and len(inner.requests) == 1


# -- reproduction from an issue ------------------------------------------------------------


ISSUE = "add(2, 2) returns 0 instead of 4"
REPRO_ID = f"{REPRO_TEST_PATH}::test_repro"
REPRO_TEST = ("from calc import add\n\n\ndef test_repro():\n    assert add(2, 2) == 4\n")
WHOLE_REPRO = f"{REPRO_TEST_PATH}\n```python\n{REPRO_TEST}```\n"
ISSUE_FILES = {"calc.py": CALC["calc.py"],
               "tests/test_calc.py": "from calc import add\n\n\ndef test_zero():\n"
                                     "    assert add(0, 0) == 0\n"}
ISSUE_CHECKS = {TEST_ZERO: CHECKS[TEST_ZERO],
                REPRO_ID: lambda f: contains(REPRO_TEST_PATH, "add(2, 2) == 4")(f) is True
                and python_check("calc.py", "add(2, 2) == 4")(f)}


def test_an_issue_without_a_failing_test_is_reproduced_then_fixed():
    triple = sr("    return a - b", "    return a * 3")  # add(2, 2) == 6: still failing
    result, run = solve([PROSE, WHOLE_REPRO, triple, RIGHT], files=ISSUE_FILES,
                        checks=ISSUE_CHECKS, issue=ISSUE)
    assert result.status is ResultStatus.SOLVED and result.chosen.id == "r1c2"
    assert [r.n for r in run.model.requests] == [2, 1, 1]  # reproductions, then proposals
    assert ISSUE in run.model.requests[0].user
    baselines = run.of(BaselineDone)
    assert [b.targets for b in baselines] == [[], [REPRO_ID]]
    assert result.baseline.targets == (REPRO_ID,) and result.baseline.keep == (TEST_ZERO,)
    # the reproduction test ran alone, on the unmodified code
    assert [j.select for j in run.sandbox.jobs[:2]] == [(), (REPRO_TEST_PATH,)]
    assert "+    return a + b" in result.patch


def test_an_issue_no_sampled_test_reproduces_is_unsolved():
    passing = WHOLE_REPRO.replace("add(2, 2) == 4", "add(2, 2) == 0")
    result, run = solve([PROSE, passing], files=ISSUE_FILES, checks={
        TEST_ZERO: CHECKS[TEST_ZERO],
        REPRO_ID: lambda f: "== 0" in f[REPRO_TEST_PATH]}, issue=ISSUE)
    assert result.status is ResultStatus.UNSOLVED
    assert result.reason == "no sampled test reproduced the issue on the current code"
    assert len(run.model.requests) == 1 and result.candidates == []


# -- unusable answers ----------------------------------------------------------------------


def evaluations(run) -> list:
    """The baseline's and the candidates' jobs: not second opinions, not the localization's
    traced runs (their environment carries the tracer; a second, whole-suite one when the
    sampled one found no failing test), which this asserts ran on the unpatched code."""
    traced = [j for j in run.sandbox.jobs if "MULLIGAN_TRACER" in j.env]
    assert 1 <= len(traced) <= 2 and all(j.patch == "" for j in traced)
    return [j for j in run.sandbox.jobs
            if not j.second_opinion and "MULLIGAN_TRACER" not in j.env]


def test_an_answer_without_edits_is_format_feedback_not_a_crash():
    result, run = solve([PROSE, WRONG, RIGHT, RIGHT], rounds=2, beam=1)
    states = run.final_states()
    assert states["r1c1"] is CandidateState.FORMAT_ERROR
    first = result.candidates[0]
    assert first.format_error and first.report is None
    # baseline, r1c2, the revisions (one change, tested once): r1c1 never ran
    assert len(evaluations(run)) == 1 + 1 + 1
    assert result.status is ResultStatus.SOLVED
    assert [j.patch for j in run.sandbox.jobs if j.second_opinion] == [result.chosen.patch]


def test_a_format_error_parent_is_asked_to_answer_again_in_the_format():
    result, run = solve([PROSE, PROSE, RIGHT, RIGHT], rounds=2, beam=1)
    assert result.status is ResultStatus.SOLVED
    revise = run.model.requests[2]
    assert revise.user.startswith("Your answer could not be used:")
    assert result.candidates[0].format_error in revise.user


def test_an_edit_whose_search_text_is_not_in_the_file_is_a_format_error():
    result, run = solve([sr("    return nothing", "    return a + b"), RIGHT])
    assert run.final_states()["r1c1"] is CandidateState.FORMAT_ERROR
    assert result.status is ResultStatus.SOLVED and result.chosen.id == "r1c2"


def test_a_fence_without_a_path_fixes_the_one_file_the_prompt_showed():
    bare = "The subtraction is the bug.\n\n```python\ndef add(a, b):\n    return a + b\n```\n"
    result, run = solve([bare], candidates=1)
    assert result.status is ResultStatus.SOLVED
    assert "+    return a + b" in result.patch
    assert result.candidates[0].shown == ("calc.py",)


def test_an_edit_that_changes_nothing_is_not_tested():
    result, run = solve([sr("    return a - b", "    return a - b"), WRONG])
    assert result.candidates[0].changes_nothing
    assert run.final_states()["r1c1"] is CandidateState.FORMAT_ERROR


def test_an_answer_that_changes_nothing_is_revised_with_the_failures_not_the_format():
    """Told "answer again in the format", the bundled model says the file is already correct
    and copies it again; the revision must hear that the code fails, and where."""
    same = sr("    return a - b", "    return a - b")
    result, run = solve([same, same, RIGHT, RIGHT], rounds=2, beam=1)
    assert result.status is ResultStatus.SOLVED
    revise = run.model.requests[2].user
    assert revise.startswith("Your answer changes nothing")
    assert "could not be used" not in revise and "exactly in the format" not in revise
    assert "tests/test_calc.py::test_add" in revise and "assert" in revise
    assert "the one line that makes a test fail" in revise


def test_a_file_shown_in_part_is_never_asked_for_whole_even_by_the_first_question():
    filler = "".join(f"\n\ndef helper_{i}(x):\n    return x + {i}\n" for i in range(60))
    files = {**CALC, "calc.py": CALC["calc.py"] + filler}
    answer = "calc.py\n```python\ndef add(a, b):\n    return a + b\n```\n"
    result, run = solve([answer], files=files, edit_format="whole_file", candidates=1)
    assert result.status is ResultStatus.SOLVED and result.chosen.fmt == "function"
    assert "complete new version of each function" in run.model.requests[0].messages[0]["content"]
    assert "# lines " in run.model.requests[0].user  # shown in part


# -- line repair ----------------------------------------------------------------------------

STEPS = {"calc.py": "def add(a, b):\n    total = a\n    total = total - b\n    return total\n",
         "tests/test_calc.py": CALC["tests/test_calc.py"]}
EVERY_LINE = [("calc.py", n) for n in (1, 2, 3, 4)]


def test_a_first_round_that_fixed_nothing_is_followed_by_the_line_question():
    """The traced run points at add's lines; round 2 names them (and revises with its other
    half), and the one corrected line the model writes (unindented, in a fence) is the fix."""
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: EVERY_LINE, TEST_ZERO: EVERY_LINE})
    wrong = sr("    total = total - b", "    total = total * b")
    line = "The subtraction should be an addition.\n```python\ntotal = total + b\n```\n"

    def answer(messages, _):
        return line if "Where the bug probably is" in messages[-1]["content"] else wrong

    result, run = solve(answer, files=STEPS, sandbox=sandbox, rounds=2, candidates=4, beam=1)
    assert result.status is ResultStatus.SOLVED and result.chosen.fmt == "line"
    assert "+    total = total + b" in result.patch
    # the trajectory says which question the winner answered
    assert {e.edit_format for e in run.of(CandidateUpdate) if e.id == result.chosen.id} == {"line"}
    [localized] = run.of(Localized)
    # equal Ochiai scores: the line with more operators first; no `def` line
    assert [entry["line"] for entry in localized.lines] == [3, 2, 4]
    round2 = run.model.requests[4:]
    assert sorted(len(r.messages) for r in round2) == [2, 2, 4, 4]  # two line asks, two revisions
    question = next(r.user for r in round2 if len(r.messages) == 2)
    assert "Where the bug probably is" in question and "`add` in calc.py" in question
    assert question.index("Line 2:") < question.index("Line 3:") < question.index("Line 4:")
    assert "do not repeat the function" in question
    # one question for two line samples: greedy first, then sampled
    assert sorted(str(r.hints.temperature) for r in round2 if len(r.messages) == 2) == \
        ["0.0", "None"]
    # a corrected line is short: its answer may not run on (the first round's may)
    assert {r.hints.max_tokens for r in round2 if len(r.messages) == 2} == {LINE_ANSWER_TOKENS}
    assert {r.hints.max_tokens for r in run.model.requests[:4]} == {None}
    # the same prefix as round 1's question: a server's prompt cache reads it once
    first = run.model.requests[0]
    assert first.messages[0] == round2[0].messages[0]
    assert question.startswith(first.user.split("Fix the bug.")[0])


def test_a_first_round_that_only_copied_the_code_back_is_followed_by_line_questions_only():
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: EVERY_LINE, TEST_ZERO: EVERY_LINE})
    copy = sr("    total = total - b", "    total = total - b")
    result, run = solve([copy] * 2 + ["`total = total * b`"] * 2, files=STEPS, sandbox=sandbox,
                        rounds=2, candidates=2, beam=1)
    assert [c.changes_nothing for c in result.candidates if c.round == 1] == [True, True]
    round2 = run.model.requests[2:]
    assert [len(r.messages) for r in round2] == [2, 2]  # no "you changed nothing" revision
    assert all("Where the bug probably is" in r.user for r in round2)
    assert [c.id for c in result.candidates if c.round == 2] == ["r2c1", "r2c2"]


@pytest.mark.parametrize("decode_s, asked, temperatures", [
    (120.0, ["propose", "line", "line"], [0.0, 0.0, None]),  # one line question, then sampled
    (10.0, ["propose", "propose", "propose"], [0.0, None, None]),
])
def test_after_a_long_greedy_answer_the_narrow_search_asks_the_line_question(
        decode_s, asked, temperatures):
    """A greedy answer that took minutes to write (a function copied out on a CPU) is not
    sampled again before the ~10 s line questions; a quick one is."""
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: EVERY_LINE, TEST_ZERO: EVERY_LINE})
    wrong = sr("    total = total - b", "    total = total * b")
    model = ScriptedModel([wrong] * 3, tokens_per_s=10 / decode_s)  # 10 tokens an answer
    run = Run(model, files=STEPS, sandbox=sandbox, schedule="narrow", candidates=3, rounds=1)
    run.result()
    assert [e.purpose for e in run.of(ModelCall)] == asked
    assert [r.hints.temperature for r in model.requests] == temperatures


def test_after_a_greedy_copy_the_narrow_search_asks_the_line_questions():
    """The greedy answer copied the code back: the rest of the round is not that question
    sampled again (a copy again) but the line questions, however quick the answers are."""
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: EVERY_LINE, TEST_ZERO: EVERY_LINE})
    copy = sr("    total = total - b", "    total = total - b")
    model = ScriptedModel([copy] + ["`total = total * b`"] * 2, tokens_per_s=1000)
    run = Run(model, files=STEPS, sandbox=sandbox, schedule="narrow", candidates=3, rounds=1)
    result = run.result()
    assert [e.purpose for e in run.of(ModelCall)] == ["propose", "line", "line"]
    assert result.candidates[0].changes_nothing
    assert any("the first answer changed nothing" in e.message for e in run.of(Status))


def test_after_long_answers_a_stalled_round_asks_new_line_questions_first():
    # five suspect lines in five functions: five line questions to ask
    files = {"calc.py": "".join(f"def f{i}(a, b):\n    return a - b\n\n\n" for i in range(4))
             + "def add(a, b):\n    return f0(a, b)\n",
             "tests/test_calc.py": CALC["tests/test_calc.py"]}
    executed = [("calc.py", n) for n in (2, 6, 10, 14, 18)]
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: executed, TEST_ZERO: executed})
    wrong = sr("    return f0(a, b)", "    return f0(a, a)")
    model = ScriptedModel([wrong] * 2 + ["`return a * b`"] * 6, tokens_per_s=10 / 120)
    run = Run(model, files=files, sandbox=sandbox, schedule="narrow", candidates=2, rounds=4,
              beam=1)
    run.result()
    purposes = [e.purpose for e in run.of(ModelCall)]
    # round 1: the long greedy answer, then a line question; rounds 2-3: line questions (and
    # a revision of the tested candidate), never a fresh minutes-long proposal
    assert purposes[:2] == ["propose", "line"]
    assert "propose" not in purposes[2:] and purposes.count("line") >= 4
    # nor a revision of the minutes-long code answer: only line answers are revised
    revised = {r.messages[-2]["content"] for r in model.requests if len(r.messages) > 2}
    assert wrong not in revised


def test_a_corrected_line_that_fixed_one_target_is_revised_as_a_line_question():
    test_small = "tests/test_calc.py::test_small"
    checks = {**CHECKS, test_small: python_check("calc.py", "add(2, 1) == 3")}
    traced = {t: EVERY_LINE for t in checks}
    sandbox = FakeSandbox(checks, lines=traced)
    wrong = sr("    total = total - b", "    total = total * b")
    half = "```python\ntotal = total + b if a > 2 else total\n```"  # fixes test_add only
    result, run = solve([wrong, half, "`total = total + b`"], files=STEPS, sandbox=sandbox,
                        checks=checks, candidates=1, rounds=3)
    assert result.status is ResultStatus.SOLVED and result.chosen.round == 3
    assert result.chosen.fmt == "line" and result.chosen.parent == "r2c1"
    assert "+    total = total + b\n" in result.patch
    revise = run.model.requests[2].user
    assert "did not fix everything" in revise and "do not repeat the function" in revise


# -- test edits ----------------------------------------------------------------------------


CHEAT = RIGHT + "\n" + sr("    assert add(3, 3) == 6", "    assert True", "tests/test_calc.py")


# -- mutants of the suspect lines --------------------------------------------------------


def test_after_a_failed_greedy_answer_a_one_token_mutant_is_tested_and_wins():
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: EVERY_LINE, TEST_ZERO: EVERY_LINE})
    wrong = sr("    total = total - b", "    total = total * b")
    result, run = solve([wrong] * 3, files=STEPS, sandbox=sandbox, schedule="narrow",
                        candidates=3, mutants=40)
    assert result.status is ResultStatus.SOLVED
    assert result.chosen.fmt == "mutation" and result.chosen.id.startswith("m")
    assert "+    total = total + b" in result.patch
    assert "total = total - b  ->  total = total + b" in result.chosen.answer
    assert len(run.model.requests) == 1  # the rest of round 1 was never asked
    # screened against the failing test only, then the winner's whole suite
    screened = [j for j in sandbox.jobs if j.select == (TEST_ADD,)]
    assert screened and all("total" in j.patch for j in screened)
    # a mutant may loop forever: screening has its own, short time limit (the floor here)
    assert {j.limits.timeout_s for j in screened} == {10.0} and run.settings.test_timeout_s == 30
    assert any(j.select == () and "total + b" in j.patch for j in sandbox.jobs)
    notes = [e.message for e in run.of(Status)]
    assert any("changes of the suspect lines" in n for n in notes)


def test_beside_a_local_model_the_mutants_use_the_cores_it_leaves_idle(monkeypatch):
    """On two cores a local llama.cpp server gets both while it writes; between its
    answers, Mulligan's own changes are screened two at a time."""
    monkeypatch.setattr(loop_module, "probe", lambda _url: ServerInfo(True, 1, True))
    monkeypatch.setattr(loop_module, "usable_cores", lambda: Cores(2, "affinity"))
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: EVERY_LINE, TEST_ZERO: EVERY_LINE})
    wrong = sr("    total = total - b", "    total = total * b")
    result, run = solve([wrong] * 3, files=STEPS, sandbox=sandbox, candidates=3, mutants=40,
                        workers=2)
    assert result.chosen.fmt == "mutation"
    assert run.solver.jobs.workers == 1  # the answers' tests: one sandbox beside the model
    screening = [count for limits, count in sandbox.prewarmed if limits.timeout_s == 10.0]
    assert screening and screening[0] == 2


def test_on_a_cpu_server_a_long_first_prompt_has_the_mutants_go_first(monkeypatch):
    monkeypatch.setattr(loop_module, "probe", lambda _url: ServerInfo(True, 1, True))
    issue = "add() returns the wrong total when both numbers are positive. " * 200  # ~4k tokens
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: EVERY_LINE, TEST_ZERO: EVERY_LINE})
    wrong = sr("    total = total - b", "    total = total * b")
    result, run = solve([wrong] * 3, files=STEPS, sandbox=sandbox, candidates=3, mutants=40,
                        issue=issue)
    assert result.status is ResultStatus.SOLVED and result.chosen.fmt == "mutation"
    assert run.model.requests == []  # solved before the model read the prompt
    # a short prompt on the same server: the greedy answer first, as before
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: EVERY_LINE, TEST_ZERO: EVERY_LINE})
    result, run = solve([wrong] * 3, files=STEPS, sandbox=sandbox, candidates=3, mutants=40)
    assert result.chosen.fmt == "mutation" and len(run.model.requests) == 1


def test_on_a_wide_search_the_mutants_follow_the_first_round():
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: EVERY_LINE, TEST_ZERO: EVERY_LINE})
    wrong = sr("    total = total - b", "    total = total * b")
    result, run = solve([wrong] * 4, files=STEPS, sandbox=sandbox, schedule="wide",
                        candidates=2, rounds=2, mutants=40)
    assert result.status is ResultStatus.SOLVED and result.chosen.fmt == "mutation"
    assert len(run.model.requests) == 2  # round 2 was not needed


def test_a_two_site_bug_is_fixed_by_an_answer_combined_with_a_mutant():
    """The answer fixes one site and a one-token change the other; neither passes alone,
    together they do (agent/edits/combine.py)."""
    files = {"calc.py": "def add(a, b):\n    total = b - a\n    total = total * 1\n"
                        "    bonus = 1\n    return total + bonus\n",
             "tests/test_calc.py": CALC["tests/test_calc.py"]}
    lines = [("calc.py", n) for n in range(1, 6)]
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: lines, TEST_ZERO: lines})
    half = sr("    total = b - a", "    total = a + b")
    result, run = solve([half] * 3, files=files, sandbox=sandbox, schedule="narrow",
                        candidates=3, mutants=40)
    assert result.status is ResultStatus.SOLVED and result.chosen.fmt == "combination"
    assert "+    total = a + b" in result.patch and "+    bonus = 0" in result.patch
    assert result.chosen.answer.startswith("r1c1 + calc.py:4:")
    assert len(run.model.requests) == 1  # combined with the greedy answer, before the rest
    notes = [e.message for e in run.of(Status)]
    assert any(n.startswith("changes of the suspect lines: 0 of") for n in notes)
    assert any(n.startswith("combinations of answers") for n in notes)
    # switched off with the mutants: the same run is unsolved
    result, _ = solve([half], files=files, sandbox=FakeSandbox(
        CHECKS, lines={TEST_ADD: lines, TEST_ZERO: lines}), schedule="narrow", candidates=1)
    assert result.status is ResultStatus.UNSOLVED


def test_a_site_the_failing_test_reached_only_after_an_answer_is_mutated_on_top_of_it():
    """Two wrong base cases asserted one after the other: the failing test stops at the
    first, so no traced line holds the second. The answer fixing the first moves the
    failure; tracing that answer finds the second site's line, whose mutant on top of the
    answer passes."""
    files = {"fib.py": "def fib(n):\n    if n == 1:\n        return 1\n    if n == 2:\n"
                       "        return 2\n    return n\n",
             "tests/test_fib.py": "def test_fib():\n    pass\n"}
    test = "tests/test_fib.py::test_fib"

    def check(files, where=False):
        namespace: dict = {}
        exec(compile(files["fib.py"], "fib.py", "exec"), namespace)  # noqa: S102 - test code
        fib = namespace["fib"]
        for line, (n, want) in enumerate(((2, 1), (1, 0)), 2):  # the test stops at one
            if fib(n) != want:
                at = f"\n\ntests/test_fib.py:{line}: AssertionError" if where else ""
                return f"assert {fib(n)} == {want}{at}"
        return True

    def reached(files):  # the assertion on fib(2) fails first: fib(1) is never called
        first = "return 2" in files["fib.py"]
        return {test: [("fib.py", n) for n in ((2, 4, 5) if first else (2, 3, 4, 5))]}

    half = sr("        return 2", "        return 1", path="fib.py")
    run_kwargs = {"files": files, "schedule": "narrow", "candidates": 1, "rounds": 1,
                  "mutants": 40}
    located = {test: lambda files: check(files, where=True)}  # `tests/test_fib.py:3: ...`
    result, run = solve([half], sandbox=FakeSandbox(located, lines=reached), **run_kwargs)
    assert result.status is ResultStatus.SOLVED and result.chosen.fmt == "combination"
    assert result.chosen.answer.startswith("r1c1 + fib.py:3:")
    assert result.chosen.files["fib.py"] == files["fib.py"].replace(
        "return 1", "return 0").replace("return 2", "return 1")
    traced = [job for job in run.sandbox.jobs if "mulligan_trace" in job.env.get(
        "PYTEST_ADDOPTS", "")]
    assert len(traced) == 2 and traced[0].patch == "" and "return 1" in traced[1].patch
    notes = [e.message for e in run.of(Status)]
    assert any("on top of r1c1" in n for n in notes)
    # without the failures' locations nothing says the test got further: nothing traced
    useless = sr("    return n", "    return n + 0", path="fib.py")
    for answer in (half, useless):
        result, run = solve([answer], sandbox=FakeSandbox({test: check}, lines=reached),
                            **run_kwargs)
        assert result.status is ResultStatus.UNSOLVED
        assert len([job for job in run.sandbox.jobs if "mulligan_trace" in job.env.get(
            "PYTEST_ADDOPTS", "")]) == 1
    # with them, a mutant whose failing test now fails at a later line of the test is a
    # partial fix too: the two sites are found without a useful answer
    keep = "tests/test_fib.py::test_keep"  # passes: a change it fails fixed no site

    def keep_check(files):
        namespace: dict = {}
        exec(compile(files["fib.py"], "fib.py", "exec"), namespace)  # noqa: S102 - test code
        return namespace["fib"](3) == 3

    def reached_both(files):
        return {**reached(files), keep: [("fib.py", n) for n in (2, 4, 6)]}

    result, run = solve([useless], sandbox=FakeSandbox(
        {test: lambda files: check(files, where=True), keep: keep_check}, lines=reached_both),
        files={**files, "tests/test_fib.py": "def test_fib():\n    pass\n\n\n"
                                             "def test_keep():\n    pass\n"},
        **{k: v for k, v in run_kwargs.items() if k != "files"})
    assert result.status is ResultStatus.SOLVED and result.chosen.fmt == "combination"
    assert result.chosen.answer.startswith("fib.py:5: return 2  ->  return 1 + fib.py:3:")
    # a change whose traced run fails a passing test fixed no site: nothing on top of it
    solver = run.solver
    for label, fixes_a_site in (("fib.py:2: if n == 1:  ->  if n != 1:", False),
                                ("fib.py:5: return 2  ->  return 1", True)):
        partial = next(p for p in solver.further if p.label == label)
        offers = asyncio.run(solver._on_top_of(partial, 2))
        assert bool(offers) is fixes_a_site, label
    assert result.chosen.files["fib.py"] == files["fib.py"].replace(
        "return 1", "return 0").replace("return 2", "return 1")


def test_a_mutant_that_fixes_the_target_and_breaks_another_test_is_repaired_on_top():
    """`n == 0` should be `n <= 1`: no one-token change fixes it. `n == 1` fixes the failing
    test and breaks the one for 0; tracing that test on top of it, the mutant `n <= 1` of
    the changed line passes everything."""
    files = {"s.py": "def small(n):\n    if n == 0:\n        return True\n    return False\n",
             "tests/test_s.py": "def test_one():\n    pass\n\n\ndef test_zero():\n    pass\n"
                                "\n\ndef test_two():\n    pass\n"}
    checks = {"tests/test_s.py::test_one": python_check("s.py", "small(1)"),
              "tests/test_s.py::test_zero": python_check("s.py", "small(0)"),
              "tests/test_s.py::test_two": python_check("s.py", "not small(2)")}
    every = [("s.py", n) for n in (2, 3, 4)]
    sandbox = FakeSandbox(checks, lines={k: every for k in checks})
    useless = sr("    return False", "    return False or False", path="s.py")
    result, run = solve([useless], files=files, sandbox=sandbox, schedule="narrow",
                        candidates=1, rounds=1, mutants=40)
    assert result.status is ResultStatus.SOLVED and result.chosen.fmt == "combination"
    assert result.chosen.answer == ("s.py:2: if n == 0:  ->  if n == 1: + "
                                    "s.py:2: if n == 1:  ->  if n <= 1:")
    assert "if n <= 1:" in result.chosen.files["s.py"]
    failed_mutant = next(c for c in result.candidates if c.answer.endswith("if n == 1:"))
    assert [case.nodeid for case in failed_mutant.regressions] == ["tests/test_s.py::test_zero"]


def test_a_mutant_that_breaks_a_passing_test_is_not_a_fix_nor_revised():
    files = {"calc.py": "def add(a, b):\n    return a - b\n",
             "tests/test_calc.py": "def test_add():\n    pass\n\n\ndef test_keep():\n    pass\n"}
    checks = {"tests/test_calc.py::test_add": python_check("calc.py", "add(3, 3) == 6"),
              "tests/test_calc.py::test_keep": python_check("calc.py", "add(4, 1) == 3")}
    every = [("calc.py", 1), ("calc.py", 2)]
    sandbox = FakeSandbox(checks, lines={k: every for k in checks})
    wrong = sr("    return a - b", "    return a * b")
    result, run = solve([wrong] * 4, files=files, checks=checks, sandbox=sandbox,
                        schedule="narrow", candidates=2, rounds=2, mutants=40)
    assert result.status is ResultStatus.UNSOLVED
    [mutant] = [c for c in result.candidates if c.fmt == "mutation"]  # `a + b`: target only
    assert "a + b" in mutant.patch and mutant.regressions and not mutant.solved
    assert all(mutant.answer not in str(r.messages) for r in run.model.requests)


def test_no_mutants_when_switched_off_or_without_suspect_lines():
    wrong = sr("    total = total - b", "    total = total * b")
    sandbox = FakeSandbox(CHECKS, lines={TEST_ADD: EVERY_LINE, TEST_ZERO: EVERY_LINE})
    result, run = solve([wrong] * 3, files=STEPS, sandbox=sandbox, schedule="narrow",
                        candidates=3, mutants=0)
    assert result.status is ResultStatus.UNSOLVED and len(run.model.requests) == 3
    assert not [c for c in result.candidates if c.fmt == "mutation"]
    result, run = solve([wrong] * 3, files=STEPS, schedule="narrow", candidates=3, mutants=40)
    assert not [c for c in result.candidates if c.fmt == "mutation"]  # nothing was traced
    assert all(j.select != (TEST_ADD,) for j in run.sandbox.jobs)


def test_a_candidate_that_edits_the_tests_is_rejected_even_when_they_pass():
    result, run = solve([CHEAT, WRONG, WRONG, WRONG], rounds=2, beam=1)
    cheat = result.candidates[0]
    assert cheat.edited_tests == ["tests/test_calc.py"] and cheat.report.passed
    assert run.final_states()["r1c1"] is CandidateState.REJECTED
    assert not cheat.solved and result.status is ResultStatus.UNSOLVED
    # an honest failure ranks above it: that one is revised, and the cheat is not chosen
    assert {c.parent for c in result.candidates if c.round == 2} == {"r1c2"}
    assert result.chosen is not cheat


def test_a_rejected_parent_is_told_to_leave_the_tests_alone():
    # the revision is applied to the parent's files: it has to undo the test edit
    undo = sr("    assert True", "    assert add(3, 3) == 6", "tests/test_calc.py")
    result, run = solve([CHEAT, CHEAT, undo, undo], rounds=2, beam=1)
    assert "edited test files (tests/test_calc.py)" in run.model.requests[2].user
    assert result.status is ResultStatus.SOLVED and result.chosen.parent == "r1c1"
    assert "tests/test_calc.py" not in result.patch


def test_test_edits_are_accepted_when_allowed():
    result, _ = solve([CHEAT, WRONG], allow_test_edits=True)
    assert result.status is ResultStatus.SOLVED and result.chosen.id == "r1c1"


# -- stopping, baselines, the model's seams ------------------------------------------------


def test_stop_requested_finishes_after_the_current_round_with_the_best_so_far():
    def stop_after_round_one(run: Run, event: Event) -> None:
        if isinstance(event, RoundFinished):
            run.solver.stop_requested = True

    run = Run(ScriptedModel([OVERFIT, WRONG] + [WRONG] * 4), rounds=3,
              on_event=stop_after_round_one)
    result = run.result()
    assert result.status is ResultStatus.UNSOLVED and result.reason == "stopped by the user"
    assert len(run.model.requests) == 2 and result.chosen.id == "r1c1"


def test_a_passing_suite_is_nothing_to_fix_and_asks_no_model():
    files = {**CALC, "calc.py": "def add(a, b):\n    return a + b\n"}
    result, run = solve([], files=files)
    assert result.status is ResultStatus.NOTHING_TO_FIX and result.reason
    assert run.model.requests == [] and run.model.preflights == 0
    assert result.to_json()["status"] == "nothing_to_fix"


def test_an_unreachable_model_fails_before_any_candidate():
    run = Run(ScriptedModel([RIGHT, RIGHT], unreachable=True))
    with pytest.raises(ModelUnavailable):
        run.result()
    assert len(run.sandbox.jobs) == 1 and run.of(CandidateUpdate) == []


def test_a_suite_without_tests_is_a_config_error():
    with pytest.raises(ConfigError, match="no tests found"):
        solve([], checks={})


def test_a_slow_suite_runs_the_targets_first_and_the_rest_only_if_they_pass():
    result, run = solve([WRONG, RIGHT], sandbox=FakeSandbox(CHECKS, wall_s=20.0))
    assert result.status is ResultStatus.SOLVED
    selects = sorted(j.select for j in evaluations(run)[1:])
    assert selects == [(), (TEST_ADD,), (TEST_ADD,)]  # WRONG stopped after the targets


def test_a_timed_out_candidate_is_reported_and_does_not_win():
    hangs = sr("    return a - b", "    while True:\n        pass")
    sandbox = FakeSandbox(CHECKS, timeout_if=lambda f: "while True" in f["calc.py"])
    result, run = solve([hangs, RIGHT], sandbox=sandbox)
    assert run.final_states()["r1c1"] is CandidateState.TIMED_OUT
    assert result.status is ResultStatus.SOLVED and result.chosen.id == "r1c2"


def test_a_patch_the_sandbox_cannot_apply_is_patch_failed():
    class Drifting(FakeSandbox):
        def run(self, job):  # the snapshot moved under the candidate: its context is stale
            if job.patch:
                job = type(job)(job.snapshot, job.patch.replace(" b\n", " c\n"),
                                job.test_command, job.select, job.limits)
            return super().run(job)

    result, run = solve([WRONG, RIGHT], sandbox=Drifting(CHECKS))
    assert set(run.final_states().values()) == {CandidateState.PATCH_FAILED}
    assert result.status is ResultStatus.UNSOLVED
    assert "patch does not apply" in result.candidates[0].report.patch_error


def test_the_finished_event_carries_the_status_as_a_string_in_json():
    result, run = solve([WRONG, RIGHT])
    finished = run.of(RunFinished)[0]
    assert finished.status is ResultStatus.SOLVED
    data = finished.to_dict()
    assert json.dumps(data["status"]) == '"solved"'
    restored = event_from_dict(json.loads(json.dumps(data)))
    assert restored.status is ResultStatus.SOLVED and restored == finished
    assert json.loads(json.dumps(result.to_json()))["status"] == "solved"
