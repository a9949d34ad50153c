"""The solve-test-revise loop: baseline, then candidates streamed into the sandbox (each
sample tested as soon as its answer is complete, the search stopped when one passes), the
best few revised with their failures (a beam search over patches that never asks the same
question twice), select. Width and sandboxes follow agent.schedule."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent.calls import ModelCalls
from agent.candidate import Baseline, Candidate, choose
from agent.config import Settings
from agent.context.localize import (
    TRACE_ALL_BELOW_S,
    Spectrum,
    SuspectLine,
    line_groups,
    mutation_order,
    parse_trace,
    rank_lines,
    reached_lines,
    trace_job,
)
from agent.context.repomap import RepoMap
from agent.context.tracebacks import got_further
from agent.cores import usable_cores
from agent.edits import apply_edits, parse_answer, unified_diff
from agent.edits.combine import merge
from agent.edits.grammar import grammar_for
from agent.edits.lines import LineTarget, line_edits, retarget
from agent.edits.mutants import mutants
from agent.errors import (
    BaselineTimedOut,
    EditApplyError,
    FormatError,
    ModelAuthError,
    ModelError,
    ModelNotFound,
    MulliganError,
    NoTests,
)
from agent.events import (
    OWN_FORMATS,
    BaselineDone,
    CandidateState,
    CandidateUpdate,
    EventBus,
    Localized,
    ResultStatus,
    RoundFinished,
    RunFinished,
    RunStarted,
    Status,
)
from agent.jobs import JobRunner
from agent.models.hints import Hints
from agent.models.window import estimate_tokens
from agent.novelty import NO_CHANGE, Revisions, Variant, semantic_key
from agent.prompting import OUTPUT_CHARS, Prompter, quote, words
from agent.protocols import ChatModel, Sandbox
from agent.result import BudgetExhausted, Result
from agent.schedule import Activity, Ask, Planner, RequestGate, Schedule, ServerInfo, probe
from agent.verdict import confirmed_winner, second_opinion_job, unsolved_detail
from sandbox.api import Limits, Outcome, RunStatus, TestCase, TestReport
from sandbox.depfiles import changed_dependency_files
from sandbox.snapshot import Snapshot
from sandbox.testpaths import is_test_path, sole_source

REPRO_TEST_PATH = "tests/test_mulligan_repro.py"
MUTANT_TIMEOUT_MIN_S = 10.0  # the screening's time limit is never shorter than this
# A round's combinations screened at most (three answers with the likeliest mutants): about
# a round of answers' time on a CPU where nothing passes, far less where one does.
COMBINATIONS_PER_ROUND = 40
# A corrected line with a sentence or two before it is well under this; seen without it: the
# bundled model ran on to 2,048 tokens (six minutes on two cores) in one line answer.
LINE_ANSWER_TOKENS = 384
# Changes that moved the failure, traced again a round to mutate a second site on top of
# (a traced run each; most accidental ones are dropped by the passing tests it also runs).
SECOND_SITES_PER_ROUND = 5
TRACED_FAILURES = 10  # a partial fix's failing tests traced at most (and broken at most)


@dataclass(frozen=True)
class Offer:
    """A change Mulligan made itself (a mutant, a combination), screened against the failing
    tests before it becomes a candidate."""

    id: str
    round: int
    fmt: str  # one of OWN_FORMATS
    describe: str
    operator: str
    files: dict[str, str]
    key: str | None  # semantic_key: None where it changes nothing
    patch: str


@dataclass(frozen=True)
class Partial:
    """A change that may have fixed one site of two (the failing tests fail differently
    with it), to trace again and mutate on top of (`Solver._second_site`)."""

    label: str  # how a combination on top of it names it: an answer's id, a mutant's change
    files: dict[str, str]
    patch: str
    report: TestReport
    failing: list[TestCase]


@dataclass
class Solver:
    settings: Settings
    model: ChatModel
    sandbox: Sandbox
    snapshot: Snapshot
    bus: EventBus
    run_id: str
    issue: str | None = None
    repo_label: str = ""
    repo_map: RepoMap = field(default_factory=RepoMap)

    def __post_init__(self) -> None:
        self.prompts = Prompter(self.settings, self.repo_map, self.model)
        self.candidates: list[Candidate] = []
        self.limits = Limits(timeout_s=self.settings.test_timeout_s,
                             memory_mb=self.settings.memory_mb)
        self.stop_requested = False
        self.baseline: Baseline | None = None  # set by the baseline run
        self.server = ServerInfo(False, None, False)
        self.planner = Planner(Schedule(self.settings.schedule), self.settings.candidates,
                               self.server)
        self.revisions = Revisions()
        self.keys: dict[str, str] = {}  # candidate id -> semantic key of its change
        self.tested: dict[str, asyncio.Future[Candidate]] = {}  # key -> the one tested
        self.duplicates: set[str] = set()  # candidates whose change was tested already
        self.lineage: dict[str, int] = {}  # candidate id -> server slot of its conversation
        self.activity = Activity()
        self.calls = ModelCalls(self.model, self.settings, self.bus, self.activity,
                                self.planner.speed)
        self.jobs = JobRunner(self.sandbox, self.snapshot, self.settings.test_cmd, self.limits,
                              self.activity, self.planner.speed, self.settings.workers)
        self.first_fix_s: float | None = None
        self.suspect_lines: list[SuspectLine] = []  # set by localization
        self.mutation_lines: list[SuspectLine] = []  # likewise: the lines mutants come from
        self.lines_asked: dict[tuple[SuspectLine, ...], int] = {}  # question -> times asked
        self.long_answers = False  # the greedy answer took long to write (Planner.long_answers)
        self.mutated = False  # the suspect lines' mutants were screened (once a run)
        self.mutant_offers: list[Offer] = []  # those mutants, for combinations
        self.screened: set[str] = set()  # keys screened against the failing tests
        self.combined = 0  # combinations made so far (their ids)
        self.retraced: set[str] = set()  # Partial labels traced again (_second_site)
        self.further: list[Partial] = []  # screened changes whose failing tests got further
        self.reached: set[tuple[str, str]] = set()  # (path, text) of lines failing tests ran

    # The working base (a reproduction test joins it) is what prompts are built from.
    @property
    def base_files(self) -> dict[str, str]:
        return self.prompts.base_files

    @base_files.setter
    def base_files(self, files: dict[str, str]) -> None:
        self.prompts.base_files = files

    @property
    def baseline_report(self) -> TestReport | None:
        return self.prompts.baseline_report

    @baseline_report.setter
    def baseline_report(self, report: TestReport) -> None:
        self.prompts.baseline_report = report

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> Result:
        s = self.settings
        self.bus.emit(RunStarted(self.run_id, self.repo_label, s.model, s.base_url, s.test_cmd,
                                 s.candidates, s.rounds, s.workers, self.issue))
        self.original = self.snapshot.text_files()
        self.base_files = self.original
        report = await self.jobs.test("")
        if report.exit_code == 127 and not report.tests:
            raise NoTests(f"the test command was not found in the sandbox: {s.test_cmd!r} "
                              f"({report.output.strip().splitlines()[-1][:200] if report.output.strip() else 'exit 127'})")
        if report.status is RunStatus.TIMED_OUT:
            raise BaselineTimedOut(f"the unmodified tests timed out after {s.test_timeout_s:.0f}s: "
                              "raise --timeout or narrow --test-cmd")
        if report.exit_code == 5 and not report.tests and not self.issue:
            raise NoTests(f"no tests found by {s.test_cmd!r}")
        self.baseline = Baseline.from_report(report)
        self.baseline_report = report
        self.bus.emit(BaselineDone(list(self.baseline.targets), list(self.baseline.keep),
                                   report.exit_code, report.wall_s, report.to_dict()))
        if not self.baseline.targets and not self.issue:
            return self._finish(ResultStatus.NOTHING_TO_FIX, None, "every test passes already")
        await self.model.preflight()  # an unreachable server fails now, before any sampling
        if not self.baseline.targets:
            try:
                await self._reproduce()
            except BudgetExhausted as exc:
                return self._finish(ResultStatus.UNSOLVED, None, str(exc))
            if not self.baseline.targets:
                return self._finish(ResultStatus.UNSOLVED, None,
                                    "no sampled test reproduced the issue on the current code")
        self.server = await asyncio.to_thread(probe, s.base_url)
        self.planner = Planner(Schedule(s.schedule), s.candidates, self.server,
                               max_requests=s.max_requests)
        workers = self.planner.sandboxes(s.workers, usable_cores().usable)
        self.jobs.speed = self.calls.speed = self.planner.speed
        self.jobs.resize(workers)
        self._requests = RequestGate(self.planner.parallel)
        self.bus.emit(Status(self.planner.describe(workers)))
        await self._localize()
        reason = f"no candidate passed in {s.rounds} round(s)"
        try:
            for round_no in range(1, s.rounds + 1):
                if self.stop_requested:
                    reason = "stopped by the user"
                    break
                self._expect(round_no)
                if round_no == 1:
                    await self._first_round()
                else:
                    await self._stream(self._revisions(round_no))
                if not self._enough_passing() and not self.stop_requested:
                    await self._combine(round_no)
                best = choose(self.candidates)
                solved = self._enough_passing() or (
                    self.settings.keep_going and best is not None and best.solved)
                self.revisions.progress(self.candidates)
                self.bus.emit(RoundFinished(round_no, best.id if best else None,
                                            best is not None and best.solved))
                if solved:
                    break
        except BudgetExhausted as exc:
            reason = str(exc)
        best = await confirmed_winner(  # a second opinion before "solved" (agent/verdict.py)
            self.candidates, self.baseline, lambda c: second_opinion_job(
                self.jobs.work, c, self.baseline, self.settings.test_cmd, self.limits),
            lambda job: asyncio.to_thread(self.sandbox.run, job), self.bus, self._record)
        if best is not None and best.solved:
            return self._finish(ResultStatus.SOLVED, best, "")
        if best is not None and best.dependency_edits and best.report is not None \
                and best.report.passed:
            reason = (f"dependencies changed: not verified (the best candidate edits "
                      f"{', '.join(best.dependency_edits)})")
        return self._finish(ResultStatus.UNSOLVED, best, reason + unsolved_detail(best))

    async def _first_round(self) -> None:
        """Round 1. Narrow: one greedy sample, then (if it fails) the suspect lines'
        mutants and their combinations with that answer, then the rest of the round; wide:
        the whole round, then the mutants (and after every round, combinations). On a
        sequential server a long first prompt has the mutants go first (Planner.mutants_first)."""
        asks = self._proposals(1)
        if self.planner.mutants_first(estimate_tokens(asks[0].messages)) and \
                await self._mutate():
            return
        if not self.planner.greedy_first():
            if not await self._stream(asks) and not self.stop_requested:
                await self._mutate()
            return
        asks[0].temperature = 0.0  # an easy bug costs one sample
        if await self._stream(asks[:1]) or self.stop_requested or await self._mutate() or \
                await self._combine(1):  # the greedy answer may have fixed one site of two
            return
        rest = asks[1:]
        self.long_answers = self.planner.long_answers()
        # A greedy answer that copied the code back is the model's likeliest answer to that
        # question: sampled again it copies again (seen: three of three, 384 tokens each).
        copied = any(c.changes_nothing for c in self.candidates if c.id == asks[0].id)
        if self.suspect_lines and (self.long_answers or copied):
            rest = self._line_asks(1, len(rest), first=2)
            why = "answers are long here" if self.long_answers else \
                "the first answer changed nothing"
            self.bus.emit(Status(f"{why}: asking about the suspect lines first"))
        await self._stream(rest)

    def _finish(self, status: ResultStatus, chosen: Candidate | None, reason: str) -> Result:
        patch = None
        if chosen is not None and chosen.files is not None:
            patch = unified_diff(self.original, chosen.files) or None
        calls = self.calls
        seconds = calls.elapsed()
        self.bus.emit(RunFinished(status, chosen.id if chosen else None, patch, calls.usage.total,
                                  calls.cost, seconds, reason))
        return Result(self.run_id, status, chosen, patch, self.candidates,
                      self.baseline, calls.usage, calls.cost, seconds,
                      self.jobs.seconds, reason, self.first_fix_s, self.activity.idle_s,
                      calls.cached_tokens)

    # -- model calls ----------------------------------------------------------------------

    def _seed(self, round_no: int, index: int) -> int | None:
        return None if self.settings.seed is None else self.settings.seed + 1000 * round_no + index

    # -- context ----------------------------------------------------------------------------

    async def _localize(self) -> None:
        """Rank the functions that may hold the bug: static signals, plus the lines the
        failing and some passing tests execute in a traced sandbox run (pytest only)."""
        started = time.monotonic()
        spectrum = await self._trace(self.baseline.targets,
                                     status="localizing: tracing the failing tests")
        focus = self.prompts.focus(self.baseline_report, self.baseline_report.failing())
        self.prompts.suspects = self.repo_map.localize(self.base_files, focus, spectrum)
        self.suspect_lines = rank_lines(self.base_files, self.prompts.suspects, spectrum)
        self.reached = reached_lines(self.base_files, spectrum)
        self.mutation_lines = mutation_order(self.base_files, self.prompts.suspects, spectrum,
                                             self.suspect_lines)
        self.bus.emit(Localized([s.to_dict() for s in self.prompts.suspects], spectrum is not None,
                                time.monotonic() - started,
                                [line.to_dict() for line in self.suspect_lines]))

    async def _trace(self, targets: list[str], patch: str = "",
                     status: str | None = None) -> Spectrum | None:
        """The lines the failing `targets` (and a sample of passing tests) execute, with
        `patch` applied; None where the test command is not pytest or the run has no trace."""
        job = trace_job(self.jobs.work, self.settings.test_cmd, targets,
                        sorted(self.baseline.keep), self.limits, patch=patch,
                        whole_suite=self.baseline_report.wall_s < TRACE_ALL_BELOW_S)
        if job is None:
            return None
        if status:
            self.bus.emit(Status(status))
        spectrum = parse_trace((await self.jobs.run(job)).output)
        if job.select and (spectrum is None or not spectrum.failing):
            # a sampled id pytest cannot find aborts the run: trace the whole suite
            job = trace_job(self.jobs.work, self.settings.test_cmd, targets, (), self.limits,
                            patch=patch, whole_suite=True)
            spectrum = parse_trace((await self.jobs.run(job)).output) if job else None
        return spectrum

    # -- steps ----------------------------------------------------------------------------

    def _proposals(self, round_no: int, variant: Variant | None = None) -> list[Ask]:
        messages, sources, fmt = self._question(variant)
        return [Ask(f"r{round_no}c{i + 1}", round_no, None, messages, self.base_files,
                    self._seed(round_no, i), lineage=i, fmt=fmt, shown=tuple(sources))
                for i in range(self.settings.candidates)]

    def _line_asks(self, round_no: int, count: int | None = None, first: int = 1) -> list[Ask]:
        """Line repair: each ask names a few suspect lines (the least asked first, best
        first among them) and wants one of them corrected; a new question is asked greedily,
        one asked before at the sampling temperature."""
        groups = line_groups(self.suspect_lines)
        order = sorted(groups, key=lambda g: self.lines_asked.get(g, 0))  # stable: rank kept
        asks = []
        count = self.settings.candidates if count is None else count
        picks = [order[i % len(order)] for i in range(count)] if order else []
        context = self._context() if picks else None  # one for every question of the batch
        for i, group in enumerate(picks):  # fewer questions than samples: again, sampled
            shown = sorted(group, key=lambda line: line.line)
            messages, _, _ = self._question(None, shown, context)
            temperature = 0.0 if group not in self.lines_asked else None
            self.lines_asked[group] = self.lines_asked.get(group, 0) + 1
            index = first - 1 + i
            asks.append(Ask(f"r{round_no}c{index + 1}", round_no, None, messages, self.base_files,
                            self._seed(round_no, index), "line", temperature, lineage=index,
                            fmt="line",
                            shown=(group[0].path,),
                            lines=tuple(LineTarget(g.path, g.line, g.text) for g in group)))
        return asks

    def _context(self) -> tuple[dict[str, str], str, list[dict[str, str]]]:
        """What every fresh question shows: the sources, the repository map, the failures."""
        failing = [t for t in self.baseline_report.failing()] or []
        focus = self.prompts.focus(self.baseline_report, failing)
        sources = self.prompts.sources(self.base_files, focus)
        repo_map = self.repo_map.render(self.base_files, focus=focus,
                                        mentioned=words(self.issue),
                                        token_budget=max(256, self.prompts.context_budget() // 4))
        failures = self.prompts.failure_views(failing)
        if not failures and self.baseline.targets:
            failures = [{"nodeid": t, "message": quote(self.baseline_report.output, OUTPUT_CHARS)}
                        for t in self.baseline.targets]
        return sources, repo_map, failures

    def _question(self, variant: Variant | None, lines: list[SuspectLine] | None = None,
                  context: tuple[dict[str, str], str, list[dict[str, str]]] | None = None
                  ) -> tuple[list[dict[str, str]], dict[str, str], str]:
        """A fresh question's messages, the sources it shows and its edit format (a line
        question's with `lines`). Every fresh question shares one prefix (the system prompt
        of the run's format, failures, map, source), so a server's prompt cache reads it once."""
        sources, repo_map, failures = context or self._context()
        # after the sources: a file shown in part is never asked for whole
        run_format = self.prompts.edit_format
        fmt = "line" if lines else \
            self.prompts.other_format() if variant is Variant.OTHER_FORMAT else run_format
        user = self.prompts.render("propose", fmt=fmt, issue=self.issue, failures=failures,
                                   repo_map=repo_map, sources=sources, lines=lines or [])
        if variant is Variant.SPELL_OUT:
            user += "\n" + self.prompts.render("variant", variant=variant.value, failures=failures)
        messages = [{"role": "system", "content": self.prompts.system(
                        sources, run_format if lines else fmt)},
                    {"role": "user", "content": user}]
        return messages, sources, fmt

    def _revisions(self, round_no: int) -> list[Ask]:
        """Revise the best distinct candidates; a round after one without progress asks a
        different question (agent.novelty.Variant); a question already asked is not asked.
        A line round revises tested candidates with up to half its samples (an answer that
        only copied the code back is not worth revising) and asks line questions with the rest."""
        variant = self.revisions.variant(skip=() if self.suspect_lines else (Variant.LINES,))
        if variant not in (None, Variant.LINES) and self.long_answers and \
                any(g not in self.lines_asked for g in line_groups(self.suspect_lines)):
            variant = Variant.LINES  # new line questions before another minutes-long answer
        if variant is Variant.LINES:
            n = self.settings.candidates
            # after minutes-long code answers only line candidates are worth revising here
            revisions = self._revise(round_no, None, n // 2, tested_only=True,
                                     lines_only=self.long_answers)
            asks = self._line_asks(round_no, n - len(revisions)) + revisions
            for index, ask in enumerate(asks):  # numbered in the order they are asked
                ask.id, ask.seed = f"r{round_no}c{index + 1}", self._seed(round_no, index)
            return asks
        if variant in (Variant.SPELL_OUT, Variant.OTHER_FORMAT):
            return self._proposals(round_no, variant)
        asks = self._revise(round_no, variant, self.settings.candidates)
        if not asks:  # every question was asked: a fresh proposal, spelled out
            return self._proposals(round_no, Variant.SPELL_OUT)
        return asks

    def _revise(self, round_no: int, variant: Variant | None, count: int, *,
                tested_only: bool = False, lines_only: bool = False) -> list[Ask]:
        """Up to `count` revisions of the best parents (`tested_only`: of candidates that ran
        the tests; `lines_only`: of line answers), each with its own feedback; none where
        every question was asked before."""
        if count <= 0:
            return []
        pool = [c for c in self.candidates if not c.solved and c.id not in self.duplicates
                and (c.report is not None or not tested_only)
                and (c.fmt == "line" or not lines_only)
                and c.fmt not in OWN_FORMATS]  # no conversation to continue
        parents = self.revisions.parents(pool, min(self.settings.beam, count), self.keys)
        temperature = min(1.5, self.settings.temperature + 0.4) \
            if variant is Variant.HOTTER else None
        asks: list[Ask] = []
        questions = []
        for parent in parents:
            base = parent.files if parent.files is not None else self.base_files
            targets = retarget(parent.lines, base, self.base_files)
            if parent.fmt == "line" and not targets:
                continue  # its change moved the lines the question named
            feedback = self.prompts.feedback(parent)
            if variant is Variant.FAULTY_LINE:
                feedback += "\n" + self.prompts.render("variant", variant=variant.value, failures=[])
            key = self.keys.get(parent.id, parent.id)
            if not self.revisions.is_new(key, feedback) and temperature is None:
                continue  # this parent was asked exactly this already
            self.revisions.mark(parent, key, feedback)
            questions.append((parent, base, targets, parent.messages + [
                {"role": "assistant", "content": parent.answer},
                {"role": "user", "content": feedback}]))
        if not questions:
            return []
        per_parent = max(1, count // len(questions))
        for p_index, (parent, base, targets, messages) in enumerate(questions):
            for j in range(per_parent):
                index = p_index * per_parent + j
                ask = Ask(f"r{round_no}c{index + 1}", round_no, parent,
                          messages, base, self._seed(round_no, index),
                          "revise", temperature, self.lineage.get(parent.id, p_index),
                          fmt=parent.fmt, shown=parent.shown,
                          lines=targets)
                asks.append(ask)
        return asks

    async def _stream(self, asks: list[Ask]) -> bool:
        """Sample each ask as its own request and test each answer as soon as it is complete;
        when enough candidates pass, cancel what is still outstanding. True: solved."""
        if not asks:
            return False
        # containers start while the model samples, one per job announced
        self.sandbox.prewarm(self.limits, min(self.jobs.workers, len(asks)))
        done = asyncio.Event()
        failed: list[BaseException] = []
        spent: list[BudgetExhausted] = []

        def lost(error: BaseException) -> None:
            if isinstance(error, ModelError) and \
                    not isinstance(error, (ModelAuthError, ModelNotFound)):
                failed.append(error)  # one lost sample; the others still count
                self.bus.emit(Status(f"a sample was lost: {error}"))
            elif isinstance(error, BudgetExhausted):
                spent.append(error)  # no new request; the answers paid for are still tested
            else:
                raise error

        await self._race([self._one(ask, done) for ask in asks], done, lost,
                         deadline=self.calls.time_left)
        if spent:
            raise spent[0]
        if failed and len(failed) == len(asks):
            raise failed[0]  # every request failed: the model is not usable
        return done.is_set()

    async def _race(self, jobs: list[Awaitable[None]], done: asyncio.Event,
                    on_error: Callable[[BaseException], None] | None = None, *,
                    deadline: Callable[[], float | None] = lambda: None,
                    stoppable: bool = False) -> None:
        """Run jobs side by side until all finish or `done` is set (or, when stoppable, the
        user asks to stop); whatever is left is cancelled on the way out, so the server stops
        generating when the client goes away. A job's error goes to on_error (which raises
        what is fatal), or is raised. `deadline`: seconds left, None for no limit."""
        tasks = [asyncio.ensure_future(job) for job in jobs]
        waiter = asyncio.ensure_future(done.wait())
        try:
            pending = set(tasks)
            while pending and not done.is_set() and not (stoppable and self.stop_requested):
                left = deadline()
                finished, pending = await asyncio.wait(pending | {waiter}, timeout=left,
                                                       return_when=asyncio.FIRST_COMPLETED)
                pending.discard(waiter)
                for task in finished - {waiter}:
                    error = task.exception()
                    if error is not None:
                        if on_error is None:
                            raise error
                        on_error(error)
                if left is not None and not finished:
                    raise BudgetExhausted(f"time budget of {self.settings.time_budget_s:.0f}s "
                                          "spent")
        finally:
            for task in [*tasks, waiter]:
                task.cancel()
            await asyncio.gather(*tasks, waiter, return_exceptions=True)

    async def _one(self, ask: Ask, done: asyncio.Event) -> None:
        self._announce(Candidate(ask.id, ask.round, ask.parent.id if ask.parent else None,
                                 fmt=ask.fmt))
        try:
            await self._answer(ask, done)
        except asyncio.CancelledError:
            self._cancelled(ask.id, ask.round, ask.parent.id if ask.parent else None, ask.fmt)
            raise

    def _cancelled(self, cid: str, round_no: int, parent: str | None, fmt: str | None) -> None:
        """A candidate stopped before its verdict: not one of the result, shown as such."""
        cand = next((c for c in self.candidates if c.id == cid), None)
        if cand is None or (cand.report is None and cand.format_error is None):
            if cand is not None:
                self.candidates.remove(cand)
            self.bus.emit(CandidateUpdate(cid, round_no, parent, CandidateState.CANCELLED,
                                          targets_total=len(self.baseline.targets),
                                          edit_format=fmt))

    async def _answer(self, ask: Ask, done: asyncio.Event) -> None:
        grammar = grammar_for(ask.fmt or self.prompts.edit_format) \
            if self.settings.constrained_decoding and ask.purpose != "reproduce" else None
        hints = Hints(temperature=ask.temperature, extra_body={
            "cache_prompt": True, "id_slot": self.planner.slot(ask.lineage)}
            if self.server.llama_cpp else {}, grammar=grammar,
            max_tokens=LINE_ANSWER_TOKENS if ask.fmt == "line" else None)
        async with self._requests:
            completion = (await self.calls.sample(ask.purpose, ask.messages, 1, ask.seed, hints))[0]
        cand = Candidate(ask.id, ask.round, ask.parent.id if ask.parent else None,
                         ask.messages, completion.text, shown=ask.shown, fmt=ask.fmt,
                         lines=ask.lines,
                         tokens=completion.usage.total,
                         allow_test_edits=self.settings.allow_test_edits)
        self.lineage[cand.id] = self.planner.slot(ask.lineage)
        self.candidates.append(cand)
        self._apply(cand, ask.base)
        if cand.format_error is not None:
            return
        await self._test(cand, done)

    async def _test(self, cand: Candidate, done: asyncio.Event) -> None:
        """Test an applied candidate once per distinct change (a repeat takes the verdict of
        the first); set `done` when enough candidates pass."""
        key = semantic_key(self.base_files, cand.files or {})
        if key is None:  # the same code as the original: feedback, not a failed candidate
            cand.changes_nothing, cand.format_error = True, NO_CHANGE
            self._record(cand)
            return
        self.keys[cand.id] = key
        first = self.tested.get(key)
        if first is not None:  # the same change again: its verdict, without a container
            self.duplicates.add(cand.id)
            earlier = await asyncio.shield(first)
            cand.report = earlier.report
            cand.score(self.baseline)
            cand.strategies = [*cand.strategies, f"same change as {earlier.id}"]
            self._record(cand)
        else:
            self.tested[key] = asyncio.get_running_loop().create_future()
            try:
                self.bus.emit(self._update(cand, CandidateState.TESTING))
                cand.report = await self.jobs.test_candidate(cand.patch, self.baseline,
                                                             self.baseline_report)
                cand.score(self.baseline)
                self._record(cand)
            finally:
                if cand.report is None:
                    self.tested.pop(key).cancel()
                else:
                    self.tested[key].set_result(cand)
        if cand.solved and self.first_fix_s is None:
            self.first_fix_s = self.calls.elapsed()
        if self._enough_passing():
            done.set()

    def _enough_passing(self) -> bool:
        """Stop when solved: at least --min-passing distinct passing changes (for the vote),
        never early with --keep-going."""
        if self.settings.keep_going:
            return False
        passing = {self.keys.get(c.id, c.id) for c in self.candidates if c.solved}
        return len(passing) >= self.settings.min_passing

    async def _mutate(self) -> bool:
        """Screen mutants of the executed lines (agent/edits/mutants.py) against the
        failing tests, the line questions' lines first (mutation_order). Cheap next to a
        model answer on a CPU: no tokens, one short sandbox run each. Once a run. True:
        solved."""
        if self.mutated or not self.settings.mutants or not self.mutation_lines:
            return False
        self.mutated = True
        self.mutant_offers = await asyncio.to_thread(self._prepare_mutants, self.mutation_lines)
        return await self._screen(self.mutant_offers, "changes of the suspect lines")

    def _prepare_mutants(self, lines: list[SuspectLine]) -> list[Offer]:
        """Each mutant with its files, semantic key and patch (parsing a large file for each
        is seconds of CPU: done off the event loop, before any screening starts)."""
        return [self._offer(f"m{index + 1}", 1, "mutation", mutant.describe(), mutant.operator,
                            mutant.apply(self.base_files))
                for index, mutant in enumerate(mutants(self.base_files, lines,
                                                       self.settings.mutants))]

    def _offer(self, cid: str, round_no: int, fmt: str, describe: str, operator: str,
               files: dict[str, str]) -> Offer:
        return Offer(cid, round_no, fmt, describe, operator, files,
                     semantic_key(self.base_files, files), unified_diff(self.base_files, files))

    async def _combine(self, round_no: int) -> bool:
        """Bugs with two faulty sites: the round's best distinct answers applied two at a
        time, and each with the mutants, where they change different lines
        (agent/edits/combine.py), screened like the mutants. What was screened before is
        not again. True: solved."""
        if not self.settings.mutants:
            return False
        pool = self._combinable()
        offers = await asyncio.to_thread(self._prepare_combinations, round_no, pool)
        return await self._screen(offers, "combinations of answers with each other and with "
                                  "changes of the suspect lines") or \
            await self._second_site(round_no, pool)

    async def _second_site(self, round_no: int, pool: list[Candidate]) -> bool:
        """A bug whose first faulty site hides the second: a failing test stops at its first
        wrong result, so the traced run never reached the other site (seen: `fibfib`, two
        wrong base cases asserted one after the other; the answer that fixed one moved the
        failure to the other, whose line no failing test had executed). The answers that
        changed how the failing tests fail, breaking no passing test (the most promising
        first), then the screened mutants whose failing test got further, are traced
        themselves, and the mutants of the lines their failing tests now execute are
        screened on top of them: up to SECOND_SITES_PER_ROUND a round, each once. True:
        solved."""
        answers = [p for p in (self._partial(c, c.id) for c in pool) if p is not None]
        partials = [p for p in answers + self.further if p.label not in self.retraced]
        for partial in partials[:SECOND_SITES_PER_ROUND]:
            self.retraced.add(partial.label)
            offers = await self._on_top_of(partial, round_no)
            if await self._screen(offers, "changes of the lines the failing tests now "
                                  f"execute, on top of {partial.label}"):
                return True
        return False

    async def _on_top_of(self, partial: Partial, round_no: int) -> list[Offer]:
        """Mutants of the lines the failing tests execute with `partial` applied and did
        not before (by text: an answer may move lines), on top of it. None where the traced
        run shows it breaking another passing test: then it fixed no site, it moved the
        failure."""
        failing = [case.nodeid for case in partial.failing][:TRACED_FAILURES]  # never empty
        spectrum = await self._trace(failing, partial.patch)
        if spectrum is None or not spectrum.failing or any(
                failed and nodeid in self.baseline.keep and nodeid not in failing
                for nodeid, failed, _ in spectrum.tests):
            return []
        files = partial.files
        suspects = self.repo_map.localize(files, self.prompts.focus(partial.report,
                                                                    partial.failing), spectrum)
        lines = [line for line in mutation_order(files, suspects, spectrum,
                                                 rank_lines(files, suspects, spectrum))
                 if (line.path, line.text.strip()) not in self.reached]
        found = await asyncio.to_thread(mutants, files, lines,
                                        min(self.settings.mutants, COMBINATIONS_PER_ROUND))
        offers = [self._offer(f"x{self.combined + i + 1}", round_no, "combination",
                              f"{partial.label} + {m.describe()}", "combination",
                              m.apply(files))
                  for i, m in enumerate(found)]
        self.combined += len(offers)
        return offers

    def _partial(self, cand: Candidate, label: str) -> Partial | None:
        """A tested change as a partial fix: it fixed some of the failing tests or let one
        get further (a later line of the test fails) and broke no passing test; or it fixed
        them all and broke a few passing tests (seen: `len(arr) == 1` for `== 0` fixed the
        recursion and broke the empty list, where `<= 1` was the fix). None otherwise."""
        report = cand.report
        if report is None or cand.files is None or report.status is not RunStatus.COMPLETED:
            return None
        if cand.regressions:
            if cand.still_failing or len(cand.regressions) > TRACED_FAILURES:
                return None
            return Partial(label, cand.files, cand.patch or "", report, cand.regressions)
        if self._progressed(bool(cand.fixed), cand.still_failing):
            return Partial(label, cand.files, cand.patch or "", report, cand.still_failing)
        return None

    def _note_progress(self, offer: Offer, report: TestReport) -> None:
        """Keep a screened mutant whose failing tests all ran and that fixed some of them or
        let one get further: a site of two fixed, perhaps (`_second_site`). A changed value
        alone is no sign: nearly every mutant changes one."""
        if report.status is not RunStatus.COMPLETED or \
                any(target not in report.tests for target in self.baseline.targets):
            return
        failing = [report.tests[t] for t in self.baseline.targets if not report.tests[t].ok]
        if self._progressed(len(failing) < len(self.baseline.targets), failing):
            self.further.append(Partial(offer.describe, offer.files, offer.patch, report,
                                        failing))

    def _progressed(self, fixed_some: bool, failing: list[TestCase]) -> bool:
        """Some failing tests still fail, and either others were fixed or one of them now
        fails at a later line of the test than it did at the baseline."""
        before = self.baseline_report.tests
        return bool(failing) and (fixed_some or any(
            case.nodeid in before and got_further(before[case.nodeid].message, case.message,
                                                  case.nodeid.split("::", 1)[0])
            for case in failing))

    def _combinable(self, size: int = 3) -> list[Candidate]:
        """The distinct model answers that ran the tests, most promising first (more targets
        fixed, fewer regressions, then the newest)."""
        seen: set[str] = set()
        pool = []
        for cand in reversed(self.candidates):
            key = self.keys.get(cand.id)
            if cand.report is None or cand.files is None or cand.fmt in OWN_FORMATS or \
                    cand.rejected or cand.dependency_edits or key is None or key in seen:
                continue
            seen.add(key)
            pool.append(cand)
        pool.sort(key=lambda c: (-len(c.fixed), len(c.regressions)))  # stable: newest first
        return pool[:size]

    def _prepare_combinations(self, round_no: int, pool: list[Candidate]) -> list[Offer]:
        pairs = [(a, b.files, b.id) for a, b in itertools.combinations(pool, 2)]
        # mutant-major: the likeliest mutant on every answer before the next one
        pairs += [(a, m.files, m.describe) for m in self.mutant_offers for a in pool]
        offers: list[Offer] = []
        keys: set[str] = set()
        for a, files, what in pairs:
            if len(offers) >= min(self.settings.mutants, COMBINATIONS_PER_ROUND):
                break
            both = merge(self.base_files, a.files or {}, files)
            if both is None:
                continue
            offer = self._offer(f"x{self.combined + len(offers) + 1}", round_no, "combination",
                                f"{a.id} + {what}", "combination", both)
            key = offer.key
            if key is None or key in keys or key in self.tested or key in self.screened:
                continue
            keys.add(key)
            offers.append(offer)
        self.combined += len(offers)
        return offers

    async def _screen(self, offers: list[Offer], what: str) -> bool:
        """Screen changes Mulligan made itself against the failing tests, in order; one that
        passes them becomes a candidate and is tested whole like any other (never revised:
        there is no conversation to continue). True: solved."""
        if not offers:
            return False
        self.bus.emit(Status(f"testing {len(offers)} {what} against the failing tests"))
        started = time.monotonic()
        done = asyncio.Event()
        passed: list[str] = []
        # a mutant can loop forever (a `while` condition turned around): the failing tests
        # alone take less than the whole suite did, so twice its time is plenty
        limits = dataclasses.replace(self.limits, timeout_s=min(
            self.limits.timeout_s, max(MUTANT_TIMEOUT_MIN_S, 2 * self.baseline_report.wall_s)))

        async def screen(offer: Offer) -> None:
            budget = self.settings.time_budget_s
            if budget is not None and self.calls.elapsed() >= budget:
                return  # the time budget is spent: no new container
            if offer.key is None or offer.key in self.tested or offer.key in self.screened:
                return
            self.screened.add(offer.key)
            report = await self.jobs.test(offer.patch, select=self.baseline.targets,
                                          limits=limits)
            if not report.passed:
                if offer.fmt == "mutation":
                    self._note_progress(offer, report)
                return
            if done.is_set():
                return
            passed.append(offer.describe)
            cand = Candidate(offer.id, offer.round, None, answer=offer.describe, fmt=offer.fmt,
                             files=offer.files, patch=offer.patch,
                             strategies=[f"{offer.operator}: {offer.describe}"],
                             allow_test_edits=self.settings.allow_test_edits)
            self.candidates.append(cand)
            self._announce(cand)
            try:
                await self._test(cand, done)
            except asyncio.CancelledError:
                self._cancelled(cand.id, cand.round, None, cand.fmt)
                raise
            partial = self._partial(cand, offer.describe) \
                if offer.fmt == "mutation" and not cand.solved else None
            if partial is not None:
                self.further.append(partial)

        # no answer is being written meanwhile (Mulligan's own changes are screened between
        # the model's answers): the cores a local model would use run sandboxes too
        idle = self.activity.requests == 0
        with self.jobs.widened(min(self.settings.workers, usable_cores().usable) if idle
                               else self.jobs.workers):
            self.sandbox.prewarm(limits, min(self.jobs.workers, len(offers)))
            await self._race([screen(offer) for offer in offers], done, stoppable=True)
        loose = "; the failing tests do not tell these apart: read the patch before applying" \
            if len(passed) > 1 else ""
        self.bus.emit(Status(f"{what}: {len(passed)} of {len(offers)} passed the "
                             f"failing tests ({time.monotonic() - started:.0f}s){loose}"))
        return done.is_set()

    def _expect(self, round_no: int) -> None:
        expected = self.planner.speed.expected_round_s(self.settings.candidates,
                                                       self.planner.parallel())
        if expected is not None:
            left = self.calls.time_left()
            note = f"; {left:.0f}s of the time budget left" if left is not None else ""
            self.bus.emit(Status(f"round {round_no}: expected ~{expected:.0f}s (measured "
                                 f"{self.planner.speed.decode or 0:.0f} tokens/s){note}"))

    def _apply(self, cand: Candidate, base: dict[str, str]) -> None:
        try:
            if cand.fmt == "line":
                edits = line_edits(cand.answer, cand.lines, base)
            else:
                edits = parse_answer(cand.answer, known_paths=base.keys(),
                                     functions=(cand.fmt or self.prompts.edit_format) == "function",
                                     default_path=sole_source(cand.shown))
            applied = apply_edits(base, edits)
        except (FormatError, EditApplyError) as exc:
            cand.format_error = str(exc)
            self._record(cand)
            return
        cand.files = applied.files
        cand.strategies = sorted({a.strategy.value for a in applied.applied})
        cand.patch = unified_diff(self.base_files, cand.files)
        cand.dependency_edits = changed_dependency_files(self.base_files, cand.files)
        if not cand.patch:
            cand.changes_nothing, cand.format_error = True, NO_CHANGE
            self._record(cand)
            return
        self.bus.emit(self._update(cand, CandidateState.APPLYING))

    async def _reproduce(self) -> None:
        """Sample reproduction tests for the issue; keep one that fails on the current code."""
        self.bus.emit(Status("no failing test: sampling tests that reproduce the issue"))
        repo_map = self.repo_map.render(self.base_files, mentioned=words(self.issue),
                                        token_budget=max(256, self.prompts.context_budget() // 4))
        sources = self.prompts.sources(self.base_files, [])
        user = self.prompts.render("reproduce", issue=self.issue, repo_map=repo_map, sources=sources,
                            test_path=REPRO_TEST_PATH)
        messages = [{"role": "system", "content": self.prompts.system(sources)},
                    {"role": "user", "content": user}]
        completions = await self.calls.sample("reproduce", messages, self.settings.candidates,
                                         self._seed(0, 0))
        for completion in completions:
            try:
                edits = parse_answer(completion.text, known_paths=[REPRO_TEST_PATH])
                files = apply_edits(self.base_files, edits).files
            except (FormatError, EditApplyError):
                continue
            added = {p: t for p, t in files.items() if p not in self.base_files and is_test_path(p)}
            if not added:
                continue
            patch = unified_diff(self.base_files, {**self.base_files, **added})
            report = await self.jobs.test(patch, select=tuple(sorted(added)))
            failing = [t for t in report.tests.values() if t.outcome is Outcome.FAILED]
            if report.status is RunStatus.COMPLETED and failing:
                self.jobs.work = self.snapshot.with_tree(self.snapshot.apply(patch))
                self.base_files = {**self.base_files, **added}
                self.baseline = dataclasses.replace(  # keeps what the baseline skipped
                    self.baseline, targets=tuple(t.nodeid for t in failing), per_test=True)
                self.baseline_report = report
                self.bus.emit(Status(f"reproduced the issue with {len(failing)} failing test(s) "
                                     f"in {', '.join(sorted(added))}"))
                self.bus.emit(BaselineDone(list(self.baseline.targets), list(self.baseline.keep),
                                           report.exit_code, report.wall_s, report.to_dict()))
                return

    # -- events -----------------------------------------------------------------------------

    def _announce(self, cand: Candidate) -> None:
        self.bus.emit(CandidateUpdate(cand.id, cand.round, cand.parent, CandidateState.SAMPLING,
                                      targets_total=len(self.baseline.targets),
                                      edit_format=cand.fmt))

    def _update(self, cand: Candidate, state: CandidateState) -> CandidateUpdate:
        note = cand.format_error or (cand.report.patch_error if cand.report else None) or \
            cand.rejection or cand.second_opinion_note or ", ".join(cand.strategies)
        return CandidateUpdate(
            cand.id, cand.round, cand.parent, state, cand.tokens, len(cand.fixed),
            len(self.baseline.targets), len(cand.regressions), list(cand.edited_tests),
            cand.patch, note or "", cand.report.to_dict() if cand.report else None, cand.fmt)

    def _record(self, cand: Candidate) -> None:
        self.bus.emit(self._update(cand, cand.state))


__all__ = ["MulliganError", "Result", "Solver"]
