"""Scoring a candidate against the baseline, and choosing among candidates (no Docker)."""

from __future__ import annotations

import pytest

from agent.candidate import SUITE, Baseline, Candidate, choose
from agent.events import CandidateState
from sandbox.api import Outcome, RunStatus
from sandbox.api import TestCase as Case  # (a "Test*" name would be collected)
from sandbox.api import TestReport as Report  # (a "Test*" name would be collected)

P, F, E, S, X = (Outcome.PASSED, Outcome.FAILED, Outcome.ERROR, Outcome.SKIPPED,
                 Outcome.XFAIL)


def report(tests: dict[str, Outcome] | None = None, *, status: RunStatus = RunStatus.COMPLETED,
           exit_code: int | None = None, changed: list[str] | None = None,
           output: str = "") -> Report:
    cases = {nid: Case(nid, outcome, "" if outcome is P else f"{nid} failed")
             for nid, outcome in (tests or {}).items()}
    if exit_code is None and status is RunStatus.COMPLETED:
        exit_code = 0 if all(c.ok for c in cases.values()) else 1
    return Report(status, exit_code, 0.5, output=output, tests=cases,
                  changed_test_files=list(changed or []))


def patch_for(body: str, line: int = 1) -> str:
    return (f"diff --git a/m.py b/m.py\nindex 1111111..2222222 100644\n--- a/m.py\n+++ b/m.py\n"
            f"@@ -{line},1 +{line},1 @@\n-old\n+{body}\n")


def scored(cid: str, rep: Report, baseline: Baseline, *, patch: str | None = None,
           allow_test_edits: bool = False) -> Candidate:
    cand = Candidate(cid, int(cid[1]), None, answer="...", files={"m.py": "new"},
                     patch=patch if patch is not None else patch_for(cid),
                     allow_test_edits=allow_test_edits)
    cand.report = rep
    cand.score(baseline)
    return cand


BASE = Baseline(targets=("t::a", "t::b"), keep=("t::c", "t::d"), per_test=True)


# -- Baseline --------------------------------------------------------------------------------


def test_baseline_from_a_per_test_report():
    b = Baseline.from_report(report({"t::a": F, "t::b": E, "t::c": P, "t::d": S, "t::e": X}))
    assert b.targets == ("t::a", "t::b")  # failures and errors are targets
    assert b.keep == ("t::c", "t::d", "t::e")  # skipped and xfail count as passing
    assert b.per_test


@pytest.mark.parametrize("exit_code, targets", [(0, ()), (1, (SUITE,))])
def test_baseline_from_a_command_without_per_test_results(exit_code, targets):
    b = Baseline.from_report(report(exit_code=exit_code))
    assert b.targets == targets and b.keep == () and not b.per_test


# -- Candidate.score -------------------------------------------------------------------------


def test_fixing_every_target_without_regressions_solves():
    c = scored("r1c1", report({"t::a": P, "t::b": P, "t::c": P, "t::d": P}), BASE)
    assert c.fixed == ["t::a", "t::b"]
    assert c.still_failing == [] and c.regressions == []
    assert c.solved and c.state is CandidateState.PASSED


def test_a_partial_fix_reports_what_still_fails_with_its_message():
    c = scored("r1c1", report({"t::a": P, "t::b": F, "t::c": P, "t::d": P}), BASE)
    assert c.fixed == ["t::a"]
    assert [(t.nodeid, t.message) for t in c.still_failing] == [("t::b", "t::b failed")]
    assert not c.solved and c.state is CandidateState.FAILED


def test_a_target_that_did_not_run_still_fails():
    c = scored("r1c1", report({"t::a": P, "t::c": P, "t::d": P}, exit_code=0), BASE)
    assert [(t.nodeid, t.message) for t in c.still_failing] == [("t::b", "did not run")]
    assert not c.solved  # exit code 0 is not enough


def test_breaking_a_passing_test_is_a_regression_even_when_targets_pass():
    c = scored("r1c1", report({"t::a": P, "t::b": P, "t::c": F}), BASE)
    assert c.fixed == ["t::a", "t::b"]
    assert [t.nodeid for t in c.regressions] == ["t::c", "t::d"]  # failed, and vanished
    assert [t.message for t in c.regressions] == ["t::c failed", "did not run"]
    assert not c.solved and c.state is CandidateState.FAILED


def test_a_nonzero_exit_is_not_solved_even_if_every_listed_test_passed():
    rep = report({"t::a": P, "t::b": P, "t::c": P, "t::d": P}, exit_code=2)
    c = scored("r1c1", rep, BASE)
    assert c.fixed == ["t::a", "t::b"] and not c.solved


def test_editing_tests_is_rejected_unless_allowed():
    rep = report({"t::a": P, "t::b": P, "t::c": P, "t::d": P}, changed=["tests/test_m.py"])
    c = scored("r1c1", rep, BASE)
    assert rep.passed and c.edited_tests == ["tests/test_m.py"]
    assert c.rejected and not c.solved and c.state is CandidateState.REJECTED
    allowed = scored("r1c2", rep, BASE, allow_test_edits=True)
    assert not allowed.rejected and allowed.solved and allowed.state is CandidateState.PASSED


def test_a_timed_out_run_fails_every_target_and_regresses_every_kept_test():
    rep = report(status=RunStatus.TIMED_OUT, output="...killed")
    c = scored("r1c1", rep, BASE)
    assert c.fixed == []
    assert [(t.nodeid, t.outcome) for t in c.still_failing] == [(SUITE, E)]
    assert [(t.nodeid, t.outcome) for t in c.regressions] == [("t::c", E), ("t::d", E)]
    assert c.state is CandidateState.TIMED_OUT


def test_states_of_unusable_and_untested_candidates():
    fmt = Candidate("r1c1", 1, None, format_error="No edits found")
    assert fmt.state is CandidateState.FORMAT_ERROR and not fmt.solved
    assert Candidate("r1c2", 1, None).state is CandidateState.TESTING
    failed = scored("r1c3", Report(RunStatus.PATCH_FAILED, None, 0.1, patch_error="no"), BASE)
    assert failed.state is CandidateState.PATCH_FAILED and not failed.solved


def test_without_per_test_results_the_exit_code_decides():
    base = Baseline((SUITE,), (), False)
    ok = scored("r1c1", report(exit_code=0), base)
    assert ok.fixed == [SUITE] and ok.solved
    bad = scored("r1c2", report(exit_code=1, output="x" * 5000 + "AssertionError: boom"), base)
    assert bad.fixed == [] and not bad.solved
    assert bad.still_failing[0].nodeid == SUITE
    assert bad.still_failing[0].message.endswith("AssertionError: boom")
    assert len(bad.still_failing[0].message) <= 2000  # the output's tail, not all of it


# -- ranking and choosing ----------------------------------------------------------------------


def test_rank_prefers_solved_then_not_rejected_then_fixed_then_fewer_regressions():
    solved = scored("r1c1", report({"t::a": P, "t::b": P, "t::c": P, "t::d": P}), BASE)
    cheat = scored("r1c2", report({"t::a": P, "t::b": P, "t::c": P, "t::d": P},
                                  changed=["tests/t.py"]), BASE)
    two_broken = scored("r1c3", report({"t::a": P, "t::b": F, "t::c": F, "t::d": F}), BASE)
    one_broken = scored("r1c4", report({"t::a": P, "t::b": F, "t::c": P, "t::d": F}), BASE)
    none_fixed = scored("r1c5", report({"t::a": F, "t::b": F, "t::c": P, "t::d": P}), BASE)
    unusable = Candidate("r1c6", 1, None, format_error="bad")
    order = sorted([unusable, none_fixed, two_broken, cheat, one_broken, solved],
                   key=Candidate.rank_key, reverse=True)
    assert [c.id for c in order] == ["r1c1", "r1c4", "r1c3", "r1c5", "r1c6", "r1c2"]


def test_choose_nothing():
    assert choose([]) is None
    assert choose([Candidate("r1c1", 1, None)]) is None  # still sampling: not a result


def test_choose_the_solved_candidate_most_others_agree_with():
    ok = report({"t::a": P, "t::b": P, "t::c": P, "t::d": P})
    small = scored("r1c1", ok, BASE, patch=patch_for("x"))
    long1 = scored("r1c2", ok, BASE, patch=patch_for("y = compute()  # long", line=3))
    long2 = scored("r1c3", ok, BASE, patch=patch_for("y = compute()  # long", line=7)
                   .replace("index 1111111..2222222", "index 3333333..4444444"))
    # the same change at other line numbers / blob ids is one vote: 2 beat the smaller 1
    assert choose([small, long1, long2]).id == "r1c2"


def test_choose_among_equal_votes_the_smallest_then_the_earliest():
    ok = report({"t::a": P, "t::b": P, "t::c": P, "t::d": P})
    big = scored("r1c1", ok, BASE, patch=patch_for("a much longer replacement line"))
    small = scored("r1c2", ok, BASE, patch=patch_for("short"))
    assert choose([big, small]).id == "r1c2"
    late = scored("r2c10", ok, BASE, patch=patch_for("same1"))
    early = scored("r2c2", ok, BASE, patch=patch_for("same2"))
    assert choose([late, early]).id == "r2c2"  # r2c2 comes before r2c10 (not by string)


def test_choose_ignores_unsolved_and_rejected_when_one_passes():
    ok = report({"t::a": P, "t::b": P, "t::c": P, "t::d": P})
    cheats = [scored(f"r1c{i}", report({"t::a": P, "t::b": P, "t::c": P, "t::d": P},
                                       changed=["tests/t.py"]), BASE, patch=patch_for("same"))
              for i in (1, 2, 3)]
    partial = scored("r1c4", report({"t::a": P, "t::b": F, "t::c": P, "t::d": P}), BASE)
    honest = scored("r1c5", ok, BASE, patch=patch_for("a longer but honest fix"))
    assert choose([*cheats, partial, honest]).id == "r1c5"


def test_choose_the_best_partial_when_none_passes():
    cheat = scored("r1c1", report({"t::a": P, "t::b": P, "t::c": P, "t::d": P},
                                  changed=["tests/t.py"]), BASE)
    partial = scored("r1c2", report({"t::a": P, "t::b": F, "t::c": P, "t::d": P}), BASE)
    nothing = scored("r1c3", report({"t::a": F, "t::b": F, "t::c": P, "t::d": P}), BASE)
    unusable = Candidate("r1c4", 1, None, format_error="bad")
    best = choose([unusable, nothing, cheat, partial])
    assert best is not None and best.id == "r1c2" and not best.solved
    # only unusable answers: one is still returned (so its feedback can be revised)
    assert choose([unusable, Candidate("r1c5", 1, None)]).id == "r1c4"


# -- evidence, not exit codes --------------------------------------------------------------


EVIDENCE = Baseline.from_report(report({"t::a": F, "t::c": P, "t::s": S, "t::x": X}))


@pytest.mark.parametrize("outcome", [S, X])
def test_a_skipped_or_xfailed_target_is_not_fixed(outcome):
    c = scored("r1c1", report({"t::a": outcome, "t::c": P, "t::s": S, "t::x": X}), EVIDENCE)
    assert c.fixed == [] and not c.solved
    assert "not passed" in c.still_failing[0].message


def test_tests_skipped_in_the_baseline_may_stay_skipped_but_passed_ones_must_pass():
    ok = scored("r1c1", report({"t::a": P, "t::c": P, "t::s": S, "t::x": X}), EVIDENCE)
    assert ok.solved
    skipped_now = scored("r1c2", report({"t::a": P, "t::c": S, "t::s": S, "t::x": X}), EVIDENCE)
    assert not skipped_now.solved and [r.nodeid for r in skipped_now.regressions] == ["t::c"]
    missing = scored("r1c3", report({"t::a": P, "t::c": P, "t::x": X}), EVIDENCE)
    assert "t::s" in [r.nodeid for r in missing.regressions]


def test_no_per_test_results_where_the_baseline_had_them_is_a_failure():
    c = scored("r1c1", report(exit_code=0, output="bye"), EVIDENCE)
    assert not c.solved and c.fixed == []
    assert c.still_failing[0].message.startswith(
        "no test results: the run ended before pytest reported")


def test_fewer_tests_collected_than_the_baseline_is_a_regression():
    base = Baseline(("t::a",), ("t::c",), True, collected=3)
    c = scored("r1c1", report({"t::a": P, "t::c": P}), base)
    assert not c.solved and "fewer than the baseline's 3" in c.regressions[-1].message


def test_a_file_that_failed_to_collect_is_fixed_when_its_tests_all_pass():
    base = Baseline.from_report(report({"tests/test_new.py": E, "t::c": P}))
    assert base.targets == ("tests/test_new.py",)
    fixed = scored("r1c1", report({"tests/test_new.py::test_one": P,
                                   "tests/test_new.py::test_two": P, "t::c": P}), base)
    assert fixed.solved and fixed.fixed == ["tests/test_new.py"]
    half = scored("r1c2", report({"tests/test_new.py::test_one": P,
                                  "tests/test_new.py::test_two": F, "t::c": P}), base)
    assert not half.solved and "test_two" in half.still_failing[0].message
    still = scored("r1c3", report({"tests/test_new.py": E, "t::c": P}), base)
    assert not still.solved


def test_tampering_rejects_with_its_reason_unless_allowed():
    rep = report({"t::a": P, "t::b": P, "t::c": P, "t::d": P})
    rep.tampering = ["m.py: calls os._exit()"]
    c = scored("r1c1", rep, BASE)
    assert c.rejected and not c.solved and c.state is CandidateState.REJECTED
    assert c.rejection == "rejected: m.py: calls os._exit()"
    assert scored("r1c2", rep, BASE, allow_test_edits=True).solved


def test_a_disagreeing_second_opinion_takes_the_pass_away():
    c = scored("r1c1", report({"t::a": P, "t::b": P, "t::c": P, "t::d": P}), BASE)
    assert c.solved
    c.confirmed = False
    assert not c.solved and c.state is CandidateState.FAILED
    assert choose([c]) is c and not choose([c]).solved


# -- dependency edits --------------------------------------------------------------------------


def test_changed_dependency_files():
    from sandbox.depfiles import changed_dependency_files

    before = {"requirements.txt": "a\n", "pyproject.toml": '[project]\ndependencies = ["a"]\n'
              "[tool.x]\ny = 1\n", "m.py": "x\n"}
    assert changed_dependency_files(before, {**before, "m.py": "y\n"}) == []
    assert changed_dependency_files(before, {**before, "requirements.txt": "b\n"}) == [
        "requirements.txt"]
    assert changed_dependency_files(before, {**before, "requirements-dev.txt": "c\n"}) == [
        "requirements-dev.txt"]
    tool_only = before["pyproject.toml"].replace("y = 1", "y = 2")
    assert changed_dependency_files(before, {**before, "pyproject.toml": tool_only}) == []
    deps = before["pyproject.toml"].replace('["a"]', '["a", "b"]')
    assert changed_dependency_files(before, {**before, "pyproject.toml": deps}) == [
        "pyproject.toml"]


def test_a_candidate_that_edits_dependencies_is_never_solved():
    cand = scored("r1", report({"t::a": P, "t::b": P, "t::c": P, "t::d": P}), BASE)
    assert cand.solved
    cand.dependency_edits = ["requirements.txt"]
    assert not cand.solved
    assert choose([cand]) is cand  # still the best attempt, shown as not verified
