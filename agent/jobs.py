"""Sandbox jobs for the loop: at most `workers` at a time, off the event loop, timed and
counted as activity (the model's idle time is measured against them); a candidate's tests in
two phases on a slow suite."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from agent.candidate import Baseline
from agent.protocols import Sandbox
from agent.schedule import Activity, Speed
from agent.threads import in_daemon_thread
from sandbox.api import Job, Limits, TestReport
from sandbox.snapshot import Snapshot

# Above this baseline suite time, candidates run the targets first and the rest only if
# the targets pass; below it one container start costs more than it saves.
TWO_PHASE_SUITE_S = 15.0


@dataclass
class JobRunner:
    sandbox: Sandbox
    work: Snapshot  # the tree candidates apply to (a reproduction test joins it)
    test_cmd: str
    limits: Limits
    activity: Activity
    speed: Speed  # what one whole candidate run costs, for the next round's estimate
    workers: int = 1
    seconds: float = 0.0  # sandbox time spent, all jobs together
    _slots: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.resize(self.workers)

    def resize(self, workers: int) -> None:
        self.workers = workers
        self._slots = asyncio.Semaphore(workers)

    @contextlib.contextmanager
    def widened(self, workers: int) -> Iterator[None]:
        """At least `workers` sandboxes at once for a while: the model is idle, and the
        cores it would use may run tests too."""
        before = self.workers
        if workers > before:
            self.resize(workers)
        try:
            yield
        finally:
            if workers > before:
                self.resize(before)

    async def run(self, job: Job) -> TestReport:
        async with self._slots:
            started = time.monotonic()
            self.activity.change(tests=1)
            try:
                report = await in_daemon_thread(self.sandbox.run, job, name="mulligan-test")
            finally:
                self.activity.change(tests=-1)
            self.seconds += time.monotonic() - started
        return report

    async def test(self, patch: str, select: Sequence[str] = (),
                   limits: Limits | None = None) -> TestReport:
        started = time.monotonic()
        report = await self.run(Job(self.work, patch, self.test_cmd, tuple(select),
                                    limits or self.limits))
        if not select and patch:  # a whole candidate run: what the next round's tests cost
            self.speed.test_s.append(time.monotonic() - started)
        return report

    async def test_candidate(self, patch: str, baseline: Baseline,
                             baseline_report: TestReport) -> TestReport:
        if baseline.per_test and baseline.keep and baseline_report.wall_s > TWO_PHASE_SUITE_S:
            first = await self.test(patch, select=baseline.targets)
            if not first.passed:
                return first
        return await self.test(patch)
