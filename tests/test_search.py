"""The search's decisions (agent.schedule, agent.novelty, the streaming loop): width, stop when
solved, no question asked twice, prompt-cache hints. Real HTTP to the scripted OpenAI server,
an in-process sandbox that judges a patch by its text (no Docker: these are the loop's
decisions, the sandbox has its own tests)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.candidate import Candidate
from agent.config import Settings
from agent.events import (CandidateState, CandidateUpdate, EventBus, ModelCall, ResultStatus,
                          Status)
import agent.loop as loop_module
from agent.loop import Solver
from agent.models.client import ModelSettings, OpenAIChatModel
from agent.novelty import NO_CHANGE, Revisions, Variant, semantic_key
from agent.schedule import SLOW_PROMPT_TOKENS, Planner, Schedule, ServerInfo, Speed, probe
from sandbox.api import Outcome, RunStatus, TestCase, TestReport
from sandbox.snapshot import Snapshot
from tests.support.openai_server import stall

MODEL = "test-model"
BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
TARGET = "tests/test_calc.py::test_add"
FILES = {"calc.py": BUGGY, "tests/test_calc.py": TEST}


def whole(body: str) -> str:
    return f"calc.py\n```python\n{body}```\n"


RIGHT = whole("def add(a, b):\n    return a + b\n")
RIGHT_REFORMATTED = whole("def add(a,b):\n\n    # fixed\n    return (a + b)\n")
WRONG = whole("def add(a, b):\n    return a * b\n")
NOOP = whole("\n\ndef add(a, b):\n    return a - b\n")  # the original, blank lines added


class JudgingSandbox:
    """Passes a patch that makes `add` add; records every candidate job it runs (the winner's
    second opinion, agent/verdict.py, apart)."""

    def __init__(self) -> None:
        self.jobs: list[str] = []
        self.second_opinions: list[str] = []
        self.lock = threading.Lock()

    def run(self, job) -> TestReport:
        with self.lock:
            (self.second_opinions if job.second_opinion else self.jobs).append(job.patch)
        ok = "a + b" in job.patch
        outcome = Outcome.PASSED if ok else Outcome.FAILED
        message = "" if ok else "assert add(2, 3) == 5"
        return TestReport(RunStatus.COMPLETED, 0 if ok else 1, 0.01,
                          tests={TARGET: TestCase(TARGET, outcome, message)})

    def prewarm(self, limits, count: int) -> None:
        self.announced = count

    def close(self) -> None:
        pass

    @property
    def candidate_jobs(self) -> list[str]:
        return [p for p in self.jobs if p]


@pytest.fixture
async def solver_for():
    """Builds a Solver over the scripted server; every model it made is closed afterwards
    (an unclosed client is closed by the garbage collector on some later test's loop), and
    every snapshot's private object store is removed."""
    models: list[OpenAIChatModel] = []
    snapshots: list[Snapshot] = []

    def make(server, sandbox, **overrides) -> tuple[Solver, list]:
        values = {"model": MODEL, "base_url": server.base_url, "candidates": 4, "rounds": 3,
                  "beam": 2, "workers": 2, "seed": 100, "edit_format": "whole_file"}
        values.update(overrides)
        settings = Settings(**values)
        model = OpenAIChatModel(ModelSettings(model=MODEL, base_url=server.base_url,
                                              temperature=settings.temperature, max_retries=0))
        models.append(model)
        bus = EventBus()
        events: list = []
        bus.subscribe(events.append)
        snapshot = Snapshot.from_files(FILES)
        snapshots.append(snapshot)
        return Solver(settings, model, sandbox, snapshot, bus, "run-test"), events

    yield make
    for model in models:
        await model.aclose()
    for snapshot in snapshots:
        snapshot.close()


def serve_as(monkeypatch: pytest.MonkeyPatch, info: ServerInfo) -> None:
    """The scripted server, as the loop's probe sees it (a llama.cpp server, its slots)."""
    monkeypatch.setattr(loop_module, "probe", lambda _base_url: info)


def by_seed(answers: dict[int, object]):
    """A scripted answer per request seed: concurrent requests arrive in any order."""
    return lambda request: answers[request["seed"]]


def seeds(round_no: int, count: int, base: int = 100) -> list[int]:
    return [base + 1000 * round_no + i for i in range(count)]


# -- width ----------------------------------------------------------------------------------


def test_width_policy_follows_the_server():
    api = ServerInfo(llama_cpp=False, slots=None, local=False)
    cpu = ServerInfo(llama_cpp=True, slots=4, local=True)
    assert not Planner(Schedule.AUTO, 4, api).narrow()  # an API: all four at once
    slow = Planner(Schedule.AUTO, 4, cpu)
    assert slow.narrow() and slow.greedy_first()  # unknown speed on llama.cpp: narrow first
    slow.speed.record_sample(10.0, 12.0, 120)
    assert slow.narrow()  # 12 tokens/s: a CPU
    fast = Planner(Schedule.AUTO, 4, cpu, Speed())
    fast.speed.record_sample(1.0, 400.0, 400)
    assert not fast.narrow()  # batching hardware: wide
    assert Planner(Schedule.NARROW, 4, api).narrow()  # pinned by --schedule
    assert not Planner(Schedule.WIDE, 4, cpu).narrow()
    assert not Planner(Schedule.NARROW, 1, cpu).greedy_first()  # one sample: nothing to widen
    cpu_server = Planner(Schedule.AUTO, 8, ServerInfo(True, 2, True))
    assert cpu_server.sequential() and cpu_server.parallel() == 1  # one cached slot
    assert cpu_server.slot(0) == cpu_server.slot(1) == 0
    cpu_server.speed.record_sample(1.0, 400.0, 400)  # it turned out to be a GPU
    assert not cpu_server.sequential() and cpu_server.parallel() == 2  # its slots bound it
    assert cpu_server.slot(1) == 1
    assert Planner(Schedule.NARROW, 4, api).parallel() == 4  # an API has no slot to reuse


def test_mutants_go_first_only_where_reading_the_first_prompt_is_slow():
    cpu = Planner(Schedule.AUTO, 4, ServerInfo(True, 1, True))
    assert cpu.mutants_first(SLOW_PROMPT_TOKENS) and not cpu.mutants_first(1500)
    api = Planner(Schedule.AUTO, 4, ServerInfo(False, None, False))
    assert not api.mutants_first(50_000)  # an API reads a long prompt in seconds
    gpu = Planner(Schedule.AUTO, 4, ServerInfo(True, 4, True))
    gpu.speed.record_sample(1.0, 400.0, 400)
    assert not gpu.mutants_first(50_000)


def test_sandboxes_leave_the_model_its_cores():
    local = Planner(Schedule.AUTO, 4, ServerInfo(True, 4, True))
    assert local.sandboxes(workers=2, cores=2) == 1  # a small machine: one at a time
    assert local.sandboxes(workers=8, cores=16) == 8
    remote = Planner(Schedule.AUTO, 4, ServerInfo(True, 4, False))
    assert remote.sandboxes(workers=2, cores=2) == 2  # the model computes elsewhere


class PropsHandler(BaseHTTPRequestHandler):
    def log_message(self, *_args) -> None:
        pass

    def do_GET(self) -> None:
        body = {"/props": {"total_slots": 3, "default_generation_settings": {}}}.get(self.path)
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write(json.dumps(body or {"error": "not found"}).encode())


def test_probe_reads_llama_cpp_slots_and_treats_others_as_an_api(openai_server):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), PropsHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        info = probe(f"http://127.0.0.1:{httpd.server_address[1]}/v1")
        assert info == ServerInfo(llama_cpp=True, slots=3, local=True)
    finally:
        httpd.shutdown()
    assert probe(openai_server.base_url) == ServerInfo(False, None, True)
    assert probe(None) == ServerInfo(False, None, False)


# -- novelty --------------------------------------------------------------------------------


def test_semantic_key_ignores_layout_and_comments():
    base = {"calc.py": BUGGY}
    assert semantic_key(base, {"calc.py": "\n\n" + BUGGY + "\n# note\n"}) is None
    a = semantic_key(base, {"calc.py": "def add(a, b):\n    return a + b\n"})
    b = semantic_key(base, {"calc.py": "def add(a,b):\n    # fixed\n    return (a + b)\n"})
    c = semantic_key(base, {"calc.py": "def add(a, b):\n    return b + a\n"})
    assert a is not None and a == b and a != c
    assert semantic_key(base, {"calc.py": BUGGY, "new.py": "x = 1\n"}) is not None


def test_revision_ties_go_to_the_newest_least_revised_and_questions_are_not_repeated():
    pool = [Candidate(f"r1c{i}", 1, None, patch="x") for i in range(1, 4)]
    revisions = Revisions()
    keys = {c.id: c.id for c in pool}
    assert [c.id for c in revisions.parents(pool, 2, keys)] == ["r1c3", "r1c2"]
    revisions.mark(pool[2], "r1c3", "feedback")
    assert [c.id for c in revisions.parents(pool, 2, keys)] == ["r1c2", "r1c1"]
    assert not revisions.is_new("r1c3", "feedback") and revisions.is_new("r1c3", "other")
    same = {**keys, "r1c2": "r1c3"}  # two candidates with one change: one parent
    assert [c.id for c in revisions.parents(pool, 3, same)] == ["r1c2", "r1c1"]
    assert revisions.variant() is None
    no_lines = (Variant.LINES,)
    tested = Candidate("r1c1", 1, None, patch="x", report=TestReport(RunStatus.COMPLETED, 1, 0.1))
    revisions.progress([tested])  # a first round that fixed nothing: the line question next,
    assert revisions.variant() is Variant.LINES
    assert revisions.variant(skip=no_lines) is None  # or, without one, its answers revised
    revisions.progress([])  # a round without progress: ask another question
    assert revisions.variant() is Variant.SPELL_OUT
    assert revisions.variant(skip=no_lines) is Variant.SPELL_OUT
    revisions.progress([])
    assert revisions.variant() is Variant.FAULTY_LINE


def test_a_first_round_that_fixed_a_target_or_gave_no_usable_answer_is_revised_first():
    fixed_one = Candidate("r1c1", 1, None, patch="x", fixed=["t::a"],
                          report=TestReport(RunStatus.COMPLETED, 1, 0.1))
    revisions = Revisions()
    assert revisions.progress([fixed_one])
    assert revisions.variant() is None
    unusable = Candidate("r1c1", 1, None, format_error="No edits found")
    revisions = Revisions()
    revisions.progress([unusable])  # format feedback first
    assert revisions.variant() is None
    copied = Candidate("r1c1", 1, None, format_error="same code", changes_nothing=True)
    revisions = Revisions()
    revisions.progress([copied])  # a copy is an answer: the line question next
    assert revisions.variant() is Variant.LINES


# -- the streaming loop ---------------------------------------------------------------------


async def test_narrow_asks_one_greedy_sample_first_and_stops_when_it_passes(openai_server, solver_for):
    openai_server.script(RIGHT)
    sandbox = JudgingSandbox()
    solver, events = solver_for(openai_server, sandbox, schedule="narrow")
    result = await solver.run()
    assert result.status is ResultStatus.SOLVED and "+    return a + b" in result.patch
    chats = openai_server.chat_requests
    assert len(chats) == 1 and chats[0].body["temperature"] == 0.0  # greedy
    assert len(sandbox.candidate_jobs) == 1
    assert result.first_fix_s is not None and result.first_fix_s <= result.seconds
    assert any(isinstance(e, Status) and e.message.startswith("search: narrow") for e in events)


async def test_narrow_widens_after_a_failed_greedy_sample(openai_server, solver_for):
    first, rest = seeds(1, 1)[0], seeds(1, 4)[1:]
    openai_server.fallback = by_seed({first: WRONG, rest[0]: WRONG, rest[1]: RIGHT,
                                      rest[2]: WRONG})
    sandbox = JudgingSandbox()
    solver, _ = solver_for(openai_server, sandbox, schedule="narrow", rounds=1)
    result = await solver.run()
    assert result.status is ResultStatus.SOLVED
    temps = [r.body["temperature"] for r in openai_server.chat_requests]
    assert temps[0] == 0.0 and all(t == 0.8 for t in temps[1:]) and len(temps) == 4
    assert all(r.body.get("n", 1) == 1 for r in openai_server.chat_requests)


async def test_stop_when_solved_cancels_outstanding_requests(openai_server, solver_for):
    s = seeds(1, 4)
    openai_server.fallback = by_seed({s[0]: RIGHT, s[1]: stall(60, WRONG),
                                      s[2]: stall(60, WRONG), s[3]: stall(60, WRONG)})
    sandbox = JudgingSandbox()
    solver, events = solver_for(openai_server, sandbox, schedule="wide", rounds=1)
    started = time.monotonic()
    result = await asyncio.wait_for(solver.run(), 30)
    assert time.monotonic() - started < 30  # did not wait for the stalled answers
    assert result.status is ResultStatus.SOLVED
    assert [c.id for c in result.candidates] == ["r1c1"]
    assert len([e for e in events if isinstance(e, ModelCall)]) == 1
    final = {e.id: e.state for e in events if isinstance(e, CandidateUpdate)}
    assert final == {"r1c1": CandidateState.PASSED, "r1c2": CandidateState.CANCELLED,
                     "r1c3": CandidateState.CANCELLED, "r1c4": CandidateState.CANCELLED}


async def test_keep_going_samples_the_whole_round(openai_server, solver_for):
    s = seeds(1, 3)
    openai_server.fallback = by_seed({s[0]: RIGHT, s[1]: RIGHT_REFORMATTED, s[2]: WRONG})
    sandbox = JudgingSandbox()
    solver, _ = solver_for(openai_server, sandbox, schedule="wide", rounds=1, candidates=3,
                           keep_going=True)
    result = await solver.run()
    assert result.status is ResultStatus.SOLVED and len(result.candidates) == 3
    # RIGHT and RIGHT_REFORMATTED are one change (AST-equal): tested once, both vote
    assert len(sandbox.candidate_jobs) == 2
    assert sum(c.solved for c in result.candidates) == 2


async def test_a_no_op_answer_is_format_feedback_not_a_failed_candidate(openai_server, solver_for):
    openai_server.fallback = lambda req: NOOP if req["messages"][-1]["role"] == "user" and \
        len(req["messages"]) == 2 else (RIGHT if "Your answer changes nothing" in
                                        req["messages"][-1]["content"] else WRONG)
    sandbox = JudgingSandbox()
    solver, _ = solver_for(openai_server, sandbox, schedule="wide", candidates=2, beam=1,
                           rounds=2)
    result = await solver.run()
    round1 = [c for c in result.candidates if c.round == 1]
    assert all(c.changes_nothing and c.format_error == NO_CHANGE for c in round1)
    assert all("a - b" not in p or "a + b" in p for p in sandbox.candidate_jobs)  # never tested
    assert result.status is ResultStatus.SOLVED  # the revision was told its answer changed nothing


async def test_a_round_without_progress_changes_the_question(openai_server, solver_for):
    openai_server.fallback = lambda req: WRONG
    sandbox = JudgingSandbox()
    solver, events = solver_for(openai_server, sandbox, schedule="wide", candidates=2, beam=2,
                                rounds=3)
    result = await solver.run()
    assert result.status is ResultStatus.UNSOLVED
    calls = [e for e in events if isinstance(e, ModelCall)]
    # no revision question is asked twice
    revise_prompts = [json.dumps(c.messages) for c in calls if c.purpose == "revise"]
    assert revise_prompts and len(revise_prompts) == len(set(revise_prompts)) * 2  # 2 per parent
    # round 2 revises the one distinct wrong change once (identical parents ask one
    # question); round 3, after no progress, is a fresh proposal with the failure spelled out
    round3 = [c for c in calls if c.purpose == "propose"][-1]
    assert "spelled out" in round3.messages[-1]["content"]
    assert len(sandbox.candidate_jobs) == 1  # one distinct wrong change, tested once


async def test_llama_cpp_requests_keep_each_lineage_on_its_slot(openai_server, solver_for,
                                                                monkeypatch):
    s = seeds(1, 2)
    openai_server.fallback = by_seed({s[0]: WRONG, s[1]: WRONG, **{
        x: RIGHT for x in seeds(2, 2)}})
    sandbox = JudgingSandbox()
    solver, _ = solver_for(openai_server, sandbox, schedule="wide", candidates=2, beam=1,
                           rounds=2)
    serve_as(monkeypatch, ServerInfo(llama_cpp=True, slots=2, local=False))
    result = await solver.run()
    assert result.status is ResultStatus.SOLVED
    bodies = [r.body for r in openai_server.chat_requests]
    assert all(b.get("cache_prompt") is True for b in bodies)
    assert sorted(b["id_slot"] for b in bodies[:2]) == [0, 1]
    revision = [b for b in bodies if len(b["messages"]) > 2]
    parent_slot = {b["id_slot"] for b in revision}
    assert len(parent_slot) == 1  # a revision stays on its parent's slot


async def test_a_cpu_llama_cpp_server_gets_one_request_at_a_time_on_one_slot(
        openai_server, solver_for, monkeypatch):
    # parallel answers on a CPU share its cores and each new slot reads the prompt again
    lock = threading.Lock()
    overlap = threading.Event()
    inflight = {"now": 0, "most": 0}

    def answer(_request):
        with lock:
            inflight["now"] += 1
            inflight["most"] = max(inflight["most"], inflight["now"])
            if inflight["now"] > 1:
                overlap.set()
        overlap.wait(0.5)  # a parallel client would send its next request meanwhile
        with lock:
            inflight["now"] -= 1
        return WRONG

    openai_server.fallback = answer
    sandbox = JudgingSandbox()
    solver, _ = solver_for(openai_server, sandbox, schedule="auto", candidates=3, rounds=1)
    serve_as(monkeypatch, ServerInfo(llama_cpp=True, slots=4, local=True))
    result = await solver.run()
    assert result.status is ResultStatus.UNSOLVED
    bodies = [r.body for r in openai_server.chat_requests]
    assert len(bodies) == 3
    assert [b["id_slot"] for b in bodies] == [0, 0, 0]
    assert inflight["most"] == 1
