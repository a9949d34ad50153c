"""A candidate patch, how it scores against the baseline, and how the best one is chosen.

A pass rests on evidence, not on the exit code. When the baseline has per-test results a
candidate is solved only when (1) every target appears in its own results as PASSED
(skipped, xfailed, missing and "not run" are not fixed; a target that is a file whose
collection failed is fixed when that file's tests are collected and all pass); (2) every
test that PASSED in the baseline PASSES again, and one that the baseline skipped or xfailed
appears again as passed, skipped or xfailed; (3) the run collected no fewer tests than the
baseline; (4) the run exited 0; and (5) the patch neither edits test infrastructure nor adds
code that games the run (sandbox/testpaths.py, sandbox/tamper.py), unless test edits are
allowed. A run with no per-test results where the baseline had them has failed. Only for a
test command that never reports per-test results does the exit code decide.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agent.edits import normalize_diff
from agent.edits.lines import LineTarget
from agent.events import CandidateState
from sandbox.api import Outcome, RunStatus, TestCase, TestReport

SUITE = "<test command>"  # the one pseudo-test of a command that reports no per-test results
COLLECTED = "<tests collected>"  # the pseudo-test of a run that collected fewer tests
NO_RESULTS = "no test results: the run ended before pytest reported"
STILL_OK = (Outcome.PASSED, Outcome.SKIPPED, Outcome.XFAIL)  # for a test skipped in the baseline


@dataclass(frozen=True)
class Baseline:
    targets: tuple[str, ...]  # fail now, must pass (FAIL_TO_PASS); a file: its collection failed
    keep: tuple[str, ...]  # pass now, must keep passing (PASS_TO_PASS)
    per_test: bool  # whether the test command reports individual tests
    skipped: tuple[str, ...] = ()  # of keep, those skipped or xfailed now: may stay so
    collected: int = 0  # how many tests the baseline run reported

    @classmethod
    def from_report(cls, report: TestReport) -> Baseline:
        if report.tests:
            skipped = tuple(sorted(t.nodeid for t in report.tests.values()
                                   if t.outcome in (Outcome.SKIPPED, Outcome.XFAIL)))
            return cls(tuple(t.nodeid for t in report.failing()),
                       tuple(sorted(report.passing_ids())), True, skipped, len(report.tests))
        return cls(() if report.passed else (SUITE,), (), False)


@dataclass
class Candidate:
    id: str
    round: int
    parent: str | None
    messages: list[dict[str, str]] = field(default_factory=list)
    answer: str = ""
    shown: tuple[str, ...] = ()  # the source files its prompt showed
    fmt: str | None = None  # the edit format its prompt asked for; None: the run's
    lines: tuple[LineTarget, ...] = ()  # the suspect lines a line question named
    tokens: int = 0
    files: dict[str, str] | None = None  # every text file after the edits; None: unusable answer
    patch: str = ""  # against the working base
    format_error: str | None = None
    # The answer is the code it started from (byte for byte, or AST-equal): the revision is
    # told so and shown the failures again, not asked to mind the format.
    changes_nothing: bool = False
    strategies: list[str] = field(default_factory=list)
    report: TestReport | None = None
    fixed: list[str] = field(default_factory=list)
    still_failing: list[TestCase] = field(default_factory=list)
    regressions: list[TestCase] = field(default_factory=list)
    edited_tests: list[str] = field(default_factory=list)
    # Dependency files the patch changes: its tests ran on the layer of the old ones, so a
    # pass is "dependencies changed: not verified", never solved (docs/security.md).
    dependency_edits: list[str] = field(default_factory=list)
    tampering: list[str] = field(default_factory=list)  # why it is suspect, one reason a line
    allow_test_edits: bool = False
    second_opinion: TestReport | None = None  # the winner's confirming run (agent/verdict.py)
    confirmed: bool | None = None  # None: no second opinion yet; False: it disagreed
    second_opinion_note: str = ""

    def score(self, baseline: Baseline) -> None:
        report = self.report
        assert report is not None
        self.edited_tests = list(report.changed_test_files)
        self.tampering = list(report.tampering)
        if baseline.per_test and not report.tests and report.status is not RunStatus.PATCH_FAILED:
            why = NO_RESULTS if report.status is RunStatus.COMPLETED else \
                f"{NO_RESULTS} ({report.status.value})"
            outcome = _suite_outcome(report)
            self.fixed = []
            self.still_failing = [TestCase(SUITE, outcome, f"{why}\n{report.output[-2000:]}")]
            self.regressions = [TestCase(k, outcome, why) for k in baseline.keep]
            return
        if not baseline.per_test or not report.tests:
            ok = report.passed
            self.fixed = list(baseline.targets) if ok else []
            self.still_failing = [] if ok else [TestCase(SUITE, _suite_outcome(report),
                                                         report.output[-2000:])]
            self.regressions = []
            if not ok and baseline.keep:
                self.regressions = [TestCase(k, _suite_outcome(report)) for k in baseline.keep]
            return
        tests = report.tests
        missing = _suite_outcome(report)
        self.fixed, self.still_failing = [], []
        for target in baseline.targets:
            case = _target_case(target, tests, missing)
            if case is None:
                self.fixed.append(target)
            else:
                self.still_failing.append(case)
        allowed_skips = set(baseline.skipped)
        self.regressions = []
        for k in baseline.keep:
            case = tests.get(k)
            allowed = STILL_OK if k in allowed_skips else (Outcome.PASSED,)
            if case is None:
                self.regressions.append(TestCase(k, missing, "did not run"))
            elif case.outcome not in allowed:
                self.regressions.append(case if case.outcome not in STILL_OK else TestCase(
                    k, case.outcome, f"{case.outcome.value} now, passed in the baseline "
                    f"{case.message}".strip()))
        if len(tests) < baseline.collected:
            self.regressions.append(TestCase(
                COLLECTED, Outcome.ERROR,
                f"{len(tests)} tests reported, fewer than the baseline's {baseline.collected}"))

    @property
    def solved(self) -> bool:
        return (self.report is not None and self.report.passed and not self.still_failing
                and not self.regressions and not self.rejected and self.confirmed is not False
                and not self.dependency_edits)

    @property
    def rejected(self) -> bool:
        return bool(self.edited_tests or self.tampering) and not self.allow_test_edits

    @property
    def rejection(self) -> str:
        """Why it is rejected, in one line for every front end ("" when it is not)."""
        if not self.rejected:
            return ""
        reasons = self.tampering or [f"{p} (edits a test file)" for p in self.edited_tests]
        more = f" (+{len(reasons) - 2} more)" if len(reasons) > 2 else ""
        return "rejected: " + "; ".join(reasons[:2]) + more

    @property
    def state(self) -> CandidateState:
        if self.format_error is not None:
            return CandidateState.FORMAT_ERROR
        if self.report is None:
            return CandidateState.TESTING
        if self.report.status is RunStatus.PATCH_FAILED:
            return CandidateState.PATCH_FAILED
        if self.rejected:
            return CandidateState.REJECTED
        if self.report.status is RunStatus.TIMED_OUT:
            return CandidateState.TIMED_OUT
        return CandidateState.PASSED if self.solved else CandidateState.FAILED

    def rank_key(self) -> tuple:
        """Higher is better: solved, targets fixed, fewer regressions, usable, smaller."""
        return (self.solved, not self.rejected, len(self.fixed), -len(self.regressions),
                self.format_error is None and self.report is not None, -len(self.patch))


def _suite_outcome(report: TestReport) -> Outcome:
    return Outcome.ERROR if report.status is not RunStatus.COMPLETED else Outcome.FAILED


def _target_case(target: str, tests: dict[str, TestCase], missing: Outcome) -> TestCase | None:
    """None when the target is fixed, else the case that says why not."""
    case = tests.get(target)
    if case is not None:
        if case.outcome is Outcome.PASSED and "::" in target:
            return None
        if case.outcome is Outcome.PASSED:  # a file-level target reported as one passing item
            return None
        why = f"{case.outcome.value}, not passed" if case.outcome in STILL_OK else case.message
        return TestCase(target, case.outcome, why or case.outcome.value)
    if "::" not in target:  # a module whose collection failed in the baseline
        inside = [c for nid, c in tests.items() if nid.startswith(target + "::")]
        if inside and all(c.outcome is Outcome.PASSED for c in inside):
            return None
        bad = next((c for c in inside if c.outcome is not Outcome.PASSED), None)
        if bad is not None:
            return TestCase(target, bad.outcome, f"{bad.nodeid}: {bad.message or bad.outcome}")
    return TestCase(target, missing, "did not run")


def choose(candidates: list[Candidate]) -> Candidate | None:
    """The solved candidate most others agree on (same normalized diff), then the smallest;
    when none is solved, the best partial one."""
    solved = [c for c in candidates if c.solved]
    if solved:
        votes = Counter(normalize_diff(c.patch) for c in solved)
        return max(solved, key=lambda c: (votes[normalize_diff(c.patch)], -len(c.patch),
                                          -_order(c.id)))
    usable = [c for c in candidates if c.report is not None or c.format_error is not None]
    return max(usable, key=Candidate.rank_key) if usable else None


def _order(cid: str) -> int:
    digits = "".join(ch if ch.isdigit() else " " for ch in cid).split()
    return int("".join(d.zfill(4) for d in digits) or 0)
