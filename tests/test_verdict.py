"""The winner's second opinion (agent/verdict.py), with the sandbox's reports scripted."""

from __future__ import annotations

import asyncio

from agent.candidate import Baseline, Candidate
from agent.events import EventBus, SecondOpinion
from agent.verdict import confirmed_winner, second_opinion_job, unsolved_detail
from sandbox.api import Limits, Outcome, RunStatus
from sandbox.api import TestCase as Case  # (a "Test*" name would be collected)
from sandbox.api import TestReport as Report  # (a "Test*" name would be collected)

BASE = Baseline(("t::a",), ("t::c",), True, collected=2)


def rep(a: Outcome) -> Report:
    tests = {"t::a": Case("t::a", a), "t::c": Case("t::c", Outcome.PASSED)}
    return Report(RunStatus.COMPLETED, 0 if a is Outcome.PASSED else 1, 0.1, tests=tests)


def cand(cid: str, patch: str) -> Candidate:
    c = Candidate(cid, 1, None, files={}, patch=patch)
    c.report = rep(Outcome.PASSED)
    c.score(BASE)
    return c


def test_a_disagreeing_second_opinion_moves_on_to_the_next_solved_candidate():
    first, second = cand("r1c1", "a"), cand("r1c2", "bb")
    verdicts = {"a": rep(Outcome.FAILED), "bb": rep(Outcome.PASSED)}
    jobs, events, recorded = [], [], []
    bus = EventBus()
    bus.subscribe(events.append)

    async def run(job):
        jobs.append(job)
        return verdicts[job.patch]

    winner = asyncio.run(confirmed_winner(
        [first, second], BASE, lambda c: second_opinion_job(None, c, BASE, "pytest", Limits()),
        run, bus, recorded.append))
    assert winner is second and winner.solved and winner.confirmed
    assert not first.solved and first.confirmed is False and recorded == [first]
    assert [j.patch for j in jobs] == ["a", "bb"]
    assert all(j.second_opinion and j.select == ("t::a", "t::c") for j in jobs)
    opinions = [e for e in events if isinstance(e, SecondOpinion)]
    assert [(o.candidate, o.agreed) for o in opinions] == [("r1c1", False), ("r1c2", True)]
    assert "t::a" in opinions[0].reason and opinions[0].first and opinions[0].second
    assert unsolved_detail(first).startswith("; r1c1 second opinion disagrees: t::a")
