"""The second opinion: the winner is rerun once with another runner before it is called solved.

The first verdict comes from the runner's usual configuration; a candidate that games it
(a plugin or hook that rewrites reports, code that reads where the JUnit XML goes, a
result that depends on which tests ran with it) has to game a second one too. The rerun
uses a fresh container, the tests selected by node id (the baseline's targets and kept
tests, not the whole-suite default), the JUnit XML on another descriptor, the runner's
options in another order, and no auto-loaded pytest plugins where the image has none (so
the baseline needed none). The verdict must be the same: solved again, scored against the
same baseline. Both reports go into the trajectory (a SecondOpinion event).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from agent.candidate import Baseline, Candidate, choose
from agent.events import EventBus, SecondOpinion
from sandbox.api import Job, Limits, TestReport
from sandbox.snapshot import Snapshot

MAX_SELECT = 400  # more node ids than this: select their files instead (command-line length)
MAX_TRIES = 3  # solved candidates to try when a second opinion disagrees


def second_opinion_job(work: Snapshot, cand: Candidate, baseline: Baseline, test_command: str,
                       limits: Limits) -> Job:
    return Job(work, cand.patch, test_command, _selection(baseline), limits, second_opinion=True)


def _selection(baseline: Baseline) -> tuple[str, ...]:
    if not baseline.per_test:
        return ()
    ids = sorted(set(baseline.targets) | set(baseline.keep))
    if len(ids) > MAX_SELECT:
        ids = sorted({i.split("::", 1)[0] for i in ids})
    return tuple(ids)


def disagreement(cand: Candidate, second: TestReport, baseline: Baseline) -> str:
    """Why the second run's verdict differs from the first's ("" when it is the same)."""
    shadow = Candidate(cand.id, cand.round, cand.parent, patch=cand.patch,
                       allow_test_edits=cand.allow_test_edits)
    shadow.report = second
    shadow.score(baseline)
    if shadow.solved:
        return ""
    if shadow.rejected:
        return shadow.rejection
    bad = (shadow.still_failing + shadow.regressions)[:1]
    if bad:
        first_line = (bad[0].message or bad[0].outcome.value).strip().splitlines()
        return f"{bad[0].nodeid}: {first_line[0][:200] if first_line else bad[0].outcome.value}"
    return f"the rerun ended {second.status.value} with exit {second.exit_code}"


async def confirmed_winner(candidates: Sequence[Candidate], baseline: Baseline,
                           job_for: Callable[[Candidate], Job],
                           run: Callable[[Job], Awaitable[TestReport]], bus: EventBus,
                           record: Callable[[Candidate], None]) -> Candidate | None:
    """choose(), but a solved winner must be confirmed by its second opinion; one that is
    not loses its solved verdict and the next solved candidate is tried."""
    for _ in range(MAX_TRIES):
        best = choose(list(candidates))
        if best is None or not best.solved or best.confirmed:
            return best
        started = time.monotonic()
        second = await run(job_for(best))
        reason = disagreement(best, second, baseline)
        best.second_opinion = second
        best.confirmed = not reason
        if reason:
            best.second_opinion_note = f"second opinion disagrees: {reason}"
        bus.emit(SecondOpinion(best.id, best.confirmed, time.monotonic() - started, reason,
                               best.report.to_dict() if best.report else None, second.to_dict()))
        if not best.confirmed:
            record(best)
    return choose([c for c in candidates if not c.solved or c.confirmed])


def unsolved_detail(best: Candidate | None) -> str:
    """What the run's reason adds when the best candidate was turned down by a verdict rule,
    so every front end that shows the reason shows why (CLI, TUI, CI comment, hook)."""
    if best is None:
        return ""
    why = best.rejection or best.second_opinion_note
    return f"; {best.id} {why}" if why else ""
