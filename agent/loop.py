"""The solve-test-revise loop: baseline, propose N candidates, test them in parallel in the
sandbox, revise the best few with their failures (a beam search over patches), select."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.candidate import Baseline, Candidate, choose
from agent.config import Settings
from agent.context.localize import TRACE_ALL_BELOW_S, Suspect, parse_trace, trace_job
from agent.context.repomap import RepoMap, TracebackHit, parse_traceback_locations
from agent.edits import apply_edits, parse_answer, unified_diff
from agent.edits.grammar import grammar_for
from agent.errors import EditApplyError, FormatError, MulliganError, NoTests, BaselineTimedOut
from agent.events import (
    BaselineDone,
    CandidateState,
    CandidateUpdate,
    EventBus,
    Localized,
    ModelCall,
    ResultStatus,
    RoundFinished,
    RunFinished,
    RunStarted,
    Status,
)
from agent.models.replay import call_key
from agent.protocols import ChatModel, Completion, Sandbox, Usage
from agent.verdict import confirmed_winner, second_opinion_job, unsolved_detail
from prompts import render
from sandbox.api import Job, Limits, Outcome, RunStatus, TestReport
from sandbox.depfiles import changed_dependency_files
from sandbox.snapshot import Snapshot
from sandbox.testpaths import is_test_path

REPRO_TEST_PATH = "tests/test_mulligan_repro.py"
MESSAGE_CHARS = 1500
OUTPUT_CHARS = 3000
# Above this baseline suite time, candidates run the targets first and the rest only if
# the targets pass; below it one container start costs more than it saves.
TWO_PHASE_SUITE_S = 15.0


@dataclass
class Result:
    run_id: str
    status: ResultStatus
    chosen: Candidate | None
    patch: str | None  # against the user's files as snapshotted
    candidates: list[Candidate]
    baseline: Baseline | None
    usage: Usage = Usage()
    cost_usd: float = 0.0
    seconds: float = 0.0
    sandbox_seconds: float = 0.0
    reason: str = ""

    def to_json(self) -> dict:
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "patch": self.patch,
            "chosen": self.chosen.id if self.chosen else None,
            "reason": self.reason,
            "targets": list(self.baseline.targets) if self.baseline else [],
            "candidates": [
                {"id": c.id, "round": c.round, "parent": c.parent, "state": c.state.value,
                 "targets_fixed": len(c.fixed), "regressions": len(c.regressions),
                 "edited_tests": c.edited_tests, "rejection": c.rejection, "tokens": c.tokens}
                for c in self.candidates
            ],
            "totals": {"prompt_tokens": self.usage.prompt_tokens,
                       "completion_tokens": self.usage.completion_tokens,
                       "tokens": self.usage.total, "cost_usd": round(self.cost_usd, 6),
                       "seconds": round(self.seconds, 3),
                       "sandbox_seconds": round(self.sandbox_seconds, 3)},
        }


class BudgetExhausted(Exception):
    pass


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
        self.usage = Usage()
        self.cost = 0.0
        self.sandbox_seconds = 0.0
        self.started = time.monotonic()
        self.candidates: list[Candidate] = []
        self.limits = Limits(timeout_s=self.settings.test_timeout_s,
                             memory_mb=self.settings.memory_mb)
        self.stop_requested = False
        self.baseline: Baseline | None = None  # set by the baseline run
        self.suspects: list[Suspect] = []
        self._partial_sources = False  # a file was shown in part: never ask for whole files
        self._slots = asyncio.Semaphore(self.settings.workers)

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> Result:
        s = self.settings
        self.bus.emit(RunStarted(self.run_id, self.repo_label, s.model, s.base_url, s.test_cmd,
                                 s.candidates, s.rounds, s.workers, self.issue))
        self.original = self.snapshot.text_files()
        self.work = self.snapshot
        self.base_files = self.original
        report = await self._test("", select=())
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
        await self._localize()
        self.sandbox.prewarm(self.limits, s.workers)  # containers start while the model samples
        reason = f"no candidate passed in {s.rounds} round(s)"
        try:
            for round_no in range(1, s.rounds + 1):
                if self.stop_requested:
                    reason = "stopped by the user"
                    break
                if round_no == 1:
                    batch = await self._propose(round_no)
                else:
                    batch = await self._revise(round_no)
                await self._evaluate(batch)
                best = choose(self.candidates)
                solved = best is not None and best.solved
                self.bus.emit(RoundFinished(round_no, best.id if best else None, solved))
                if solved:
                    break
        except BudgetExhausted as exc:
            reason = str(exc)
        best = await confirmed_winner(  # a second opinion before "solved" (agent/verdict.py)
            self.candidates, self.baseline, lambda c: second_opinion_job(
                self.work, c, self.baseline, self.settings.test_cmd, self.limits),
            lambda job: asyncio.to_thread(self.sandbox.run, job), self.bus, self._record)
        if best is not None and best.solved:
            return self._finish(ResultStatus.SOLVED, best, "")
        if best is not None and best.dependency_edits and best.report is not None \
                and best.report.passed:
            reason = (f"dependencies changed: not verified (the best candidate edits "
                      f"{', '.join(best.dependency_edits)})")
        return self._finish(ResultStatus.UNSOLVED, best, reason + unsolved_detail(best))

    def _finish(self, status: ResultStatus, chosen: Candidate | None, reason: str) -> Result:
        patch = None
        if chosen is not None and chosen.files is not None:
            patch = unified_diff(self.original, chosen.files) or None
        seconds = time.monotonic() - self.started
        self.bus.emit(RunFinished(status, chosen.id if chosen else None, patch, self.usage.total,
                                  self.cost, seconds, reason))
        return Result(self.run_id, status, chosen, patch, self.candidates,
                      self.baseline, self.usage, self.cost, seconds,
                      self.sandbox_seconds, reason)

    # -- model calls ----------------------------------------------------------------------

    def _check_budget(self) -> None:
        s = self.settings
        if s.token_budget is not None and self.usage.total >= s.token_budget:
            raise BudgetExhausted(f"token budget of {s.token_budget} spent")
        if s.cost_budget_usd is not None and self.cost >= s.cost_budget_usd:
            raise BudgetExhausted(f"cost budget of ${s.cost_budget_usd} spent")
        if s.time_budget_s is not None and time.monotonic() - self.started >= s.time_budget_s:
            raise BudgetExhausted(f"time budget of {s.time_budget_s:.0f}s spent")

    async def _sample(self, purpose: str, messages: list[dict[str, str]], n: int,
                      seed: int | None) -> list[Completion]:
        self._check_budget()
        # the model's grammar seam (llama.cpp GBNF), where the client has one
        constrain = getattr(self.model, "constrain", None)
        if constrain is not None and self.settings.constrained_decoding:
            constrain(grammar_for(self.edit_format) if purpose != "reproduce" else None)
        completions = await self.model.sample(messages, n, seed=seed)
        usage = sum((c.usage for c in completions), Usage())
        cost = sum(c.cost_usd for c in completions)
        self.usage = self.usage + usage
        self.cost += cost
        self.bus.emit(ModelCall(call_key(messages, n, seed), purpose, messages, [c.text for c in completions],
                                [c.finish_reason for c in completions], usage.prompt_tokens,
                                usage.completion_tokens, cost,
                                max((c.seconds for c in completions), default=0.0)))
        return completions

    def _seed(self, round_no: int, index: int) -> int | None:
        return None if self.settings.seed is None else self.settings.seed + 1000 * round_no + index

    # -- context ----------------------------------------------------------------------------

    def _focus(self, report: TestReport | None, failing: Sequence) -> list[TracebackHit]:
        text = "\n".join(t.message for t in failing)
        if report is not None:
            text += "\n" + report.output
        return parse_traceback_locations(text, self.base_files.keys())

    async def _localize(self) -> None:
        """Rank the functions that may hold the bug: static signals, plus the lines the
        failing and some passing tests execute in a traced sandbox run (pytest only)."""
        started = time.monotonic()
        job = trace_job(self.work, self.settings.test_cmd, self.baseline.targets,
                        sorted(self.baseline.keep), self.limits,
                        whole_suite=self.baseline_report.wall_s < TRACE_ALL_BELOW_S)
        spectrum = None
        if job is not None:
            self.bus.emit(Status("localizing: tracing the failing tests"))
            report = await self._run_job(job)
            spectrum = parse_trace(report.output)
            if job.select and (spectrum is None or not spectrum.failing):
                # a sampled id pytest cannot find aborts the run: trace the whole suite
                job = trace_job(self.work, self.settings.test_cmd, self.baseline.targets, (),
                                self.limits, whole_suite=True)
                spectrum = parse_trace((await self._run_job(job)).output) if job else None
        focus = self._focus(self.baseline_report, self.baseline_report.failing())
        self.suspects = self.repo_map.localize(self.base_files, focus, spectrum)
        self.bus.emit(Localized([s.to_dict() for s in self.suspects], spectrum is not None,
                                time.monotonic() - started))

    def _context_budget(self) -> int:
        """Tokens of source per prompt: the setting, within the server's real window less
        the answer and the rest of the prompt (instructions, failures, repository map)."""
        budget = self.settings.context_tokens
        window = getattr(self.model, "window", None)
        if window is not None:
            answer = self.settings.max_tokens or 2048
            budget = min(budget, max(256, (window.tokens - answer) // 2))
        return budget

    def _sources(self, files: dict[str, str], focus: list[TracebackHit]) -> dict[str, str]:
        budget = self._context_budget()
        if self.suspects:
            sources, partial = self.repo_map.function_source(files, self.suspects,
                                                             token_budget=budget)
            if sources:
                self._partial_sources = self._partial_sources or partial
                return sources
        sources = self.repo_map.implicated_source(files, focus, token_budget=budget)
        if not sources:
            sources = {p: t for p, t in files.items() if p.endswith(".py") and not is_test_path(p)}
        total, kept = 0, {}
        for path, text in sources.items():
            total += len(text) // 4
            if kept and total > budget:
                break
            kept[path] = text
        return kept

    def _failure_views(self, cases: Sequence) -> list[dict[str, str]]:
        return [{"nodeid": c.nodeid, "message": _trim(c.message or "(no message)", MESSAGE_CHARS)}
                for c in cases][:10]

    # -- steps ----------------------------------------------------------------------------

    async def _propose(self, round_no: int) -> list[Candidate]:
        failing = [t for t in self.baseline_report.failing()] or []
        focus = self._focus(self.baseline_report, failing)
        sources = self._sources(self.base_files, focus)
        repo_map = self.repo_map.render(self.base_files, focus=focus,
                                        mentioned=_words(self.issue),
                                        token_budget=max(256, self._context_budget() // 4))
        failures = self._failure_views(failing)
        if not failures and self.baseline.targets:
            failures = [{"nodeid": t, "message": _trim(self.baseline_report.output, OUTPUT_CHARS)}
                        for t in self.baseline.targets]
        user = self._render("propose", issue=self.issue, failures=failures, repo_map=repo_map,
                            sources=sources)
        messages = [{"role": "system", "content": self._system(sources)},
                    {"role": "user", "content": user}]
        n = self.settings.candidates
        for i in range(n):
            self._announce(Candidate(f"r{round_no}c{i + 1}", round_no, None))
        completions = await self._sample("propose", messages, n, self._seed(round_no, 0))
        batch = []
        for i, completion in enumerate(completions):
            cand = Candidate(f"r{round_no}c{i + 1}", round_no, None, messages, completion.text,
                             completion.usage.total,
                             allow_test_edits=self.settings.allow_test_edits)
            self._apply(cand, self.base_files)
            batch.append(cand)
        return batch

    async def _revise(self, round_no: int) -> list[Candidate]:
        pool = [c for c in self.candidates if not c.solved]
        parents = sorted(pool, key=Candidate.rank_key, reverse=True)[: self.settings.beam]
        if not parents:
            return []
        per_parent = max(1, self.settings.candidates // len(parents))
        conversations = [parent.messages + [{"role": "assistant", "content": parent.answer},
                                            {"role": "user", "content": self._feedback(parent)}]
                         for parent in parents]
        for p_index, parent in enumerate(parents):
            for j in range(per_parent):
                self._announce(Candidate(f"r{round_no}c{p_index * per_parent + j + 1}",
                                         round_no, parent.id))
        answers = await asyncio.gather(*(
            self._sample("revise", messages, per_parent, self._seed(round_no, p_index))
            for p_index, messages in enumerate(conversations)))
        batch = []
        for p_index, (parent, messages, completions) in enumerate(
                zip(parents, conversations, answers)):
            base = parent.files if parent.files is not None else self.base_files
            for j, completion in enumerate(completions):
                cand = Candidate(f"r{round_no}c{p_index * per_parent + j + 1}", round_no,
                                 parent.id, messages, completion.text, completion.usage.total,
                                 allow_test_edits=self.settings.allow_test_edits)
                self._apply(cand, base)
                batch.append(cand)
        return batch

    def _feedback(self, parent: Candidate) -> str:
        if parent.format_error is not None or parent.files is None:
            focus = self._focus(self.baseline_report, self.baseline_report.failing())
            return self._render("format_error", error=parent.format_error or "no usable edits",
                                sources=self._sources(self.base_files, focus))
        if parent.dependency_edits and not parent.rejected:
            focus = self._focus(self.baseline_report, self.baseline_report.failing())
            return self._render("dependency_edit", files=parent.dependency_edits,
                                patch=parent.patch, sources=self._sources(self.base_files, focus))
        if parent.rejected:
            focus = self._focus(self.baseline_report, self.baseline_report.failing())
            return self._render("test_edit", files=parent.edited_tests, patch=parent.patch,
                                sources=self._sources(self.base_files, focus))
        report = parent.report
        assert report is not None
        focus = self._focus(report, parent.still_failing + parent.regressions)
        return self._render(
            "revise", patch=parent.patch, patch_error=report.patch_error,
            timed_out=report.status is RunStatus.TIMED_OUT,
            still_failing=self._failure_views(parent.still_failing),
            regressions=self._failure_views(parent.regressions),
            output=_trim(report.output, OUTPUT_CHARS),
            sources=self._sources(parent.files, focus))

    # -- prompts ----------------------------------------------------------------------------

    @property
    def edit_format(self) -> str:
        chosen = self.settings.edit_format or (
            "whole_file" if self.settings.model == "local" else "search_replace")
        if chosen == "whole_file" and self._partial_sources:
            return "function"  # a file shown in part cannot be given back whole
        return chosen

    def _render(self, name: str, **context: object) -> str:
        return render(name, lang=_lang, edit_format=self.edit_format, **context)

    def _system(self, sources: dict[str, str]) -> str:
        example = next(iter(sources), "path/to/file.py")
        return render("system", edit_format=self.edit_format, example_path=example)

    def _apply(self, cand: Candidate, base: dict[str, str]) -> None:
        try:
            edits = parse_answer(cand.answer, known_paths=base.keys(),
                                 functions=self.edit_format == "function")
            applied = apply_edits(base, edits)
        except (FormatError, EditApplyError) as exc:
            cand.format_error = str(exc)
            self._record(cand)
            return
        cand.files = applied.files
        cand.strategies = sorted({a.strategy.value for a in applied.applied})
        cand.patch = unified_diff(self.base_files, cand.files)
        if not cand.patch:
            cand.format_error = "the edits changed nothing"
            self._record(cand)
            return
        self.bus.emit(self._update(cand, CandidateState.APPLYING))

    async def _evaluate(self, batch: list[Candidate]) -> None:
        async def one(cand: Candidate) -> None:
            if cand.format_error is not None:
                return
            self.bus.emit(self._update(cand, CandidateState.TESTING))
            cand.report = await self._test_candidate(cand.patch)
            cand.score(self.baseline)
            cand.dependency_edits = changed_dependency_files(self.base_files, cand.files or {})
            self._record(cand)

        self.candidates.extend(batch)
        await asyncio.gather(*(one(c) for c in batch))

    async def _test_candidate(self, patch: str) -> TestReport:
        two_phase = (self.baseline.per_test and self.baseline.keep
                     and self.baseline_report.wall_s > TWO_PHASE_SUITE_S)
        if two_phase:
            first = await self._test(patch, select=self.baseline.targets)
            if not first.passed:
                return first
        return await self._test(patch, select=())

    async def _test(self, patch: str, select: Sequence[str]) -> TestReport:
        return await self._run_job(
            Job(self.work, patch, self.settings.test_cmd, tuple(select), self.limits))

    async def _run_job(self, job: Job) -> TestReport:
        async with self._slots:
            started = time.monotonic()
            report = await asyncio.to_thread(self.sandbox.run, job)
            self.sandbox_seconds += time.monotonic() - started
        return report

    async def _reproduce(self) -> None:
        """Sample reproduction tests for the issue; keep one that fails on the current code."""
        self.bus.emit(Status("no failing test: sampling tests that reproduce the issue"))
        repo_map = self.repo_map.render(self.base_files, mentioned=_words(self.issue),
                                        token_budget=max(256, self._context_budget() // 4))
        sources = self._sources(self.base_files, [])
        user = self._render("reproduce", issue=self.issue, repo_map=repo_map, sources=sources,
                            test_path=REPRO_TEST_PATH)
        messages = [{"role": "system", "content": self._system(sources)},
                    {"role": "user", "content": user}]
        completions = await self._sample("reproduce", messages, self.settings.candidates,
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
            report = await self._test(patch, select=tuple(sorted(added)))
            failing = [t for t in report.tests.values() if t.outcome is Outcome.FAILED]
            if report.status is RunStatus.COMPLETED and failing:
                self.work = self.snapshot.with_tree(self.snapshot.apply(patch))
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
                                      targets_total=len(self.baseline.targets)))

    def _update(self, cand: Candidate, state: CandidateState) -> CandidateUpdate:
        note = cand.format_error or (cand.report.patch_error if cand.report else None) or \
            cand.rejection or cand.second_opinion_note or ", ".join(cand.strategies)
        return CandidateUpdate(
            cand.id, cand.round, cand.parent, state, cand.tokens, len(cand.fixed),
            len(self.baseline.targets), len(cand.regressions), list(cand.edited_tests),
            cand.patch, note or "", cand.report.to_dict() if cand.report else None)

    def _record(self, cand: Candidate) -> None:
        self.bus.emit(self._update(cand, cand.state))


def _trim(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + "\n...\n" + text[-half:]


def _words(text: str | None) -> list[str]:
    import re

    return re.findall(r"[A-Za-z_][A-Za-z0-9_]{2,}", text or "")


def _lang(path: str) -> str:
    return {"py": "python", "js": "javascript", "ts": "typescript", "md": "markdown",
            "toml": "toml", "json": "json", "yml": "yaml", "yaml": "yaml"}.get(
        path.rsplit(".", 1)[-1], "")


__all__ = ["MulliganError", "Result", "Solver"]
