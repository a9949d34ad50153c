"""A candidate patch, how it scores against the baseline, and how the best one is chosen."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agent.edits import normalize_diff
from agent.events import CandidateState
from sandbox.api import RunStatus, TestCase, TestReport

SUITE = "<test command>"  # the one pseudo-test of a command that reports no per-test results


@dataclass(frozen=True)
class Baseline:
    targets: tuple[str, ...]  # fail now, must pass (FAIL_TO_PASS)
    keep: tuple[str, ...]  # pass now, must keep passing (PASS_TO_PASS)
    per_test: bool  # whether the test command reports individual tests

    @classmethod
    def from_report(cls, report: TestReport) -> Baseline:
        if report.tests:
            return cls(tuple(t.nodeid for t in report.failing()),
                       tuple(sorted(report.passing_ids())), True)
        return cls(() if report.passed else (SUITE,), (), False)


@dataclass
class Candidate:
    id: str
    round: int
    parent: str | None
    messages: list[dict[str, str]] = field(default_factory=list)
    answer: str = ""
    tokens: int = 0
    files: dict[str, str] | None = None  # every text file after the edits; None: unusable answer
    patch: str = ""  # against the working base
    format_error: str | None = None
    strategies: list[str] = field(default_factory=list)
    report: TestReport | None = None
    fixed: list[str] = field(default_factory=list)
    still_failing: list[TestCase] = field(default_factory=list)
    regressions: list[TestCase] = field(default_factory=list)
    edited_tests: list[str] = field(default_factory=list)
    # Dependency files the patch changes: its tests ran on the layer of the old ones, so a
    # pass is "dependencies changed: not verified", never solved (docs/security.md).
    dependency_edits: list[str] = field(default_factory=list)
    allow_test_edits: bool = False

    def score(self, baseline: Baseline) -> None:
        report = self.report
        assert report is not None
        self.edited_tests = list(report.changed_test_files)
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
        self.fixed = [t for t in baseline.targets if t in tests and tests[t].ok]
        self.still_failing = [tests.get(t) or TestCase(t, _suite_outcome(report), "did not run")
                              for t in baseline.targets if t not in self.fixed]
        self.regressions = [tests.get(k) or TestCase(k, _suite_outcome(report), "did not run")
                            for k in baseline.keep if k not in tests or not tests[k].ok]

    @property
    def solved(self) -> bool:
        return (self.report is not None and self.report.passed and not self.still_failing
                and not self.regressions and not self.rejected and not self.dependency_edits)

    @property
    def rejected(self) -> bool:
        return bool(self.edited_tests) and not self.allow_test_edits

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


def _suite_outcome(report: TestReport):
    from sandbox.api import Outcome

    return Outcome.ERROR if report.status is not RunStatus.COMPLETED else Outcome.FAILED


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
