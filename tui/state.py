"""The TUI's view model: a pure reducer from the core's events to what the screens show.

Nothing here touches Textual, the file system or the clock: `reduce(view, event, now)`
returns a new `RunView`, so every rule (which answer belongs to which candidate, what a
round's progress is, which patch may be applied) is unit-testable on recorded events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from agent import errors
from agent.events import (
    OWN_FORMATS,
    BaselineDone,
    CandidateState,
    CandidateUpdate,
    Event,
    Localized,
    ModelCall,
    ResultStatus,
    RoundFinished,
    RunError,
    RunFinished,
    RunStarted,
    Status,
)

# Re-exported: the screens and the tests read them here.
from agent.workspace import FileChange as FileChange
from agent.workspace import describe_changes as describe_changes

FINAL_STATES = frozenset({
    CandidateState.PASSED, CandidateState.FAILED, CandidateState.FORMAT_ERROR,
    CandidateState.PATCH_FAILED, CandidateState.TIMED_OUT, CandidateState.REJECTED,
    CandidateState.CANCELLED,
})

STATE_LABELS: dict[CandidateState, str] = {
    CandidateState.SAMPLING: "sampling…",
    CandidateState.APPLYING: "applying…",
    CandidateState.TESTING: "testing…",
    CandidateState.PASSED: "passed",
    CandidateState.FAILED: "failed",
    CandidateState.FORMAT_ERROR: "format error",
    CandidateState.PATCH_FAILED: "did not apply",
    CandidateState.TIMED_OUT: "timed out",
    CandidateState.REJECTED: "edited tests",
    CandidateState.CANCELLED: "cancelled",
}

# Which theme colour a state is drawn in (a `textual.theme.Theme` attribute name, or "").
STATE_TONES: dict[CandidateState, str] = {
    CandidateState.SAMPLING: "",
    CandidateState.APPLYING: "secondary",
    CandidateState.TESTING: "accent",
    CandidateState.PASSED: "success",
    CandidateState.FAILED: "warning",
    CandidateState.FORMAT_ERROR: "error",
    CandidateState.PATCH_FAILED: "error",
    CandidateState.TIMED_OUT: "error",
    CandidateState.REJECTED: "error",
    CandidateState.CANCELLED: "",
}

LOG_LINES = 200
FAILING_OUTCOMES = ("failed", "error")


class Phase(StrEnum):
    IDLE = "idle"  # nothing started yet (the setup screen)
    STARTING = "starting"  # snapshot and sandbox image, before the run's first event
    RUNNING = "running"
    STOPPING = "stopping"  # the user asked to stop after the current round
    FINISHED = "finished"
    ERROR = "error"
    INTERRUPTED = "interrupted"  # a trajectory that ends without run_finished


LIVE_PHASES = frozenset({Phase.STARTING, Phase.RUNNING, Phase.STOPPING})


@dataclass(frozen=True)
class CandidateView:
    id: str
    round: int
    parent: str | None
    state: CandidateState = CandidateState.SAMPLING
    tokens: int = 0
    targets_fixed: int = 0
    targets_total: int = 0
    regressions: int = 0
    edited_tests: tuple[str, ...] = ()
    patch: str = ""
    note: str = ""
    report: Mapping[str, Any] | None = None
    purpose: str = ""  # of the model call that produced it (propose, revise)
    messages: tuple[Mapping[str, str], ...] = ()
    answer: str | None = None
    finish_reason: str | None = None
    abandoned: bool = False  # the run ended (error, interrupted) before it had a result
    edit_format: str | None = None  # "mutation", "combination": Mulligan's own, no answer

    @property
    def own(self) -> bool:
        """A change Mulligan made itself: no model answer lands on it."""
        return self.edit_format in OWN_FORMATS

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def passed(self) -> bool:
        return self.state is CandidateState.PASSED

    @property
    def label(self) -> str:
        if self.abandoned and not self.final:
            return "abandoned"
        return STATE_LABELS.get(self.state, str(self.state))

    @property
    def fixed_text(self) -> str:
        if self.state in (CandidateState.FORMAT_ERROR, CandidateState.PATCH_FAILED) or (
                not self.final and not self.targets_fixed):
            return "-"
        return f"{self.targets_fixed}/{self.targets_total}"

    def tests(self) -> list[Mapping[str, Any]]:
        return list((self.report or {}).get("tests") or [])

    def failing_tests(self) -> list[Mapping[str, Any]]:
        return [t for t in self.tests() if t.get("outcome") in FAILING_OUTCOMES]


@dataclass(frozen=True)
class BaselineView:
    targets: tuple[str, ...]
    passing: tuple[str, ...]
    exit_code: int | None
    seconds: float
    report: Mapping[str, Any] = field(default_factory=dict)

    def message_for(self, nodeid: str) -> str:
        for test in self.report.get("tests") or []:
            if test.get("nodeid") == nodeid:
                return test.get("message") or ""
        return ""


@dataclass(frozen=True)
class RoundProgress:
    number: int
    total: int
    done: int
    passed: int
    finished: bool

    @property
    def label(self) -> str:
        return f"{self.done}/{self.total} tested" + (f", {self.passed} passed" if self.passed
                                                      else "")


@dataclass(frozen=True)
class ExtraCall:
    """A model call that is not a candidate's (e.g. sampling reproduction tests)."""

    purpose: str
    answers: int
    tokens: int


@dataclass(frozen=True)
class RunView:
    phase: Phase = Phase.IDLE
    run_id: str | None = None
    repo: str = ""
    model: str = ""
    base_url: str | None = None
    test_cmd: str = ""
    budget_candidates: int = 0
    budget_rounds: int = 0
    workers: int = 0
    issue: str | None = None
    status: str = ""
    log: tuple[str, ...] = ()
    baseline: BaselineView | None = None
    # the localization's ranked functions: "path:line-end function (signals)", best first
    suspects: tuple[str, ...] = ()
    candidates: Mapping[str, CandidateView] = field(default_factory=dict)
    finished_rounds: tuple[int, ...] = ()
    best: str | None = None
    solved: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    model_calls: int = 0
    extra_calls: tuple[ExtraCall, ...] = ()
    finished: RunFinished | None = None  # the run's last event, as it came
    error: str | None = None
    started_at: float | None = None  # the injected clock's time when the run began
    attempts: int = 0  # RunStarted events seen (a resumed trajectory holds several)

    # -- derived ---------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.phase in LIVE_PHASES

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def ordered(self) -> list[CandidateView]:
        """Candidates grouped by round, in the order they were announced."""
        return sorted(self.candidates.values(), key=lambda c: c.round)  # stable within a round

    def candidate(self, cid: str | None) -> CandidateView | None:
        return self.candidates.get(cid) if cid else None

    @property
    def chosen(self) -> str | None:
        """The run's choice when it has finished, else the best so far."""
        if self.finished is not None:
            return self.finished.chosen
        return self.best

    def rounds(self) -> list[RoundProgress]:
        by_round: dict[int, list[CandidateView]] = {}
        for cand in self.candidates.values():
            by_round.setdefault(cand.round, []).append(cand)
        return [RoundProgress(n, len(cs), sum(c.final for c in cs), sum(c.passed for c in cs),
                              n in self.finished_rounds)
                for n, cs in sorted(by_round.items())]

    def elapsed(self, now: float | None) -> float | None:
        if self.finished is not None:
            return self.finished.seconds
        if self.started_at is None or now is None:
            return None
        return max(0.0, now - self.started_at)

    def children(self, cid: str) -> list[CandidateView]:
        return [c for c in self.ordered if c.parent == cid]


# -- the reducer ----------------------------------------------------------------------------


def reduce(view: RunView, event: Event, now: float | None = None) -> RunView:
    """The view after `event`. Never mutates `view`; unknown events leave it as it is."""
    if isinstance(event, Status):
        return replace(view, status=event.message, log=_log(view.log, event.message))
    if isinstance(event, RunStarted):
        return replace(
            view, phase=Phase.STOPPING if view.phase is Phase.STOPPING else Phase.RUNNING,
            run_id=event.run_id, repo=event.repo, model=event.model, base_url=event.base_url,
            test_cmd=event.test_cmd, budget_candidates=event.candidates,
            budget_rounds=event.rounds, workers=event.workers, issue=event.issue,
            status="running the tests on the unmodified code (baseline)",
            log=_log(view.log, f"run {event.run_id} started"),
            baseline=None, suspects=(), candidates={}, finished_rounds=(), best=None, solved=False,
            prompt_tokens=0, completion_tokens=0, cost_usd=0.0, model_calls=0, extra_calls=(),
            finished=None, error=None,
            started_at=view.started_at if view.started_at is not None else now,
            attempts=view.attempts + 1)
    if isinstance(event, BaselineDone):
        baseline = BaselineView(tuple(event.targets), tuple(event.passing), event.exit_code,
                                event.seconds, dict(event.report or {}))
        line = (f"baseline: {len(event.targets)} failing, {len(event.passing)} passing "
                f"({event.seconds:.1f}s)")
        return replace(view, baseline=baseline, status=line, log=_log(view.log, line))
    if isinstance(event, Localized):
        suspects = tuple(suspect_line(s) for s in event.suspects)
        line = (f"localized: {suspects[0]}" if suspects else "localized: no function found")
        log = view.log
        top_lines = [f"  line {entry['path']}:{entry['line']} {entry['text']}"
                     for entry in event.lines[:3]]
        for entry in [line, *(f"  {i}. {s}" for i, s in enumerate(suspects[1:5], 2)),
                      *top_lines]:
            log = _log(log, entry)
        return replace(view, suspects=suspects, status=line, log=log)
    if isinstance(event, ModelCall):
        return _model_call(view, event)
    if isinstance(event, CandidateUpdate):
        return _candidate(view, event)
    if isinstance(event, RoundFinished):
        line = (f"round {event.round} done: best {event.best or '-'}"
                + (" (passes)" if event.solved else ""))
        return replace(view, finished_rounds=tuple(sorted({*view.finished_rounds, event.round})),
                       best=event.best, solved=event.solved, status=line,
                       log=_log(view.log, line))
    if isinstance(event, RunFinished):
        line = finish_line(event)
        return replace(view, phase=Phase.FINISHED, finished=event, status=line,
                       log=_log(view.log, line), best=event.chosen or view.best,
                       solved=event.status == ResultStatus.SOLVED)
    if isinstance(event, RunError):
        return replace(abandon(view), phase=Phase.ERROR, error=event.message,
                       status=f"error: {event.message}",
                       log=_log(view.log, f"error: {event.message}"))
    return view


def suspect_line(suspect: Mapping[str, Any]) -> str:
    """One ranked function as the TUI lists it."""
    signals = ", ".join(suspect.get("signals", ()))
    return (f"{suspect['path']}:{suspect['line']}-{suspect['end_line']} {suspect['function']}"
            + (f" ({signals})" if signals else ""))


def replay(events: Iterable[Event], now: float | None = None) -> RunView:
    """The view of a recorded run (a trajectory): a run that never finished is interrupted."""
    view = RunView()
    for event in events:
        view = reduce(view, event, now)
    if view.live:
        view = replace(abandon(view), phase=Phase.INTERRUPTED,
                       status="interrupted: the run ended before it finished (resume it)")
    return view


def abandon(view: RunView) -> RunView:
    """The view with every candidate still waiting for a result marked as abandoned."""
    if all(c.final for c in view.candidates.values()):
        return view
    return replace(view, candidates={cid: c if c.final else replace(c, abandoned=True)
                                     for cid, c in view.candidates.items()})


def finish_line(finish: RunFinished) -> str:
    if finish.status == ResultStatus.SOLVED:
        return f"solved: {finish.chosen} passes every test"
    if finish.status == ResultStatus.NOTHING_TO_FIX:
        return "nothing to fix: " + (finish.reason or "every test passes already")
    best = f"; best so far {finish.chosen}" if finish.chosen else ""
    return f"{finish.status}: {finish.reason or 'no candidate passed'}{best}"


def _log(log: tuple[str, ...], line: str) -> tuple[str, ...]:
    return (log + (line,))[-LOG_LINES:]


def _model_call(view: RunView, event: ModelCall) -> RunView:
    view = replace(view, prompt_tokens=view.prompt_tokens + event.prompt_tokens,
                   completion_tokens=view.completion_tokens + event.completion_tokens,
                   cost_usd=view.cost_usd + event.cost_usd, model_calls=view.model_calls + 1)
    waiting = [c for c in view.ordered if c.answer is None and not c.own]
    targets: list[CandidateView] = []
    if event.purpose in ("propose", "line"):
        targets = [c for c in waiting if c.parent is None]
    elif event.purpose == "revise":
        # The request continues the parent's conversation: its last assistant message is the
        # parent's answer, which tells whose children these answers are.
        said = next((m.get("content") for m in reversed(event.messages[:-1])
                     if m.get("role") == "assistant"), None)
        parents = {c.id for c in view.candidates.values() if c.answer == said}
        targets = [c for c in waiting if c.parent in parents] or \
            [c for c in waiting if c.parent is not None]
    if not targets:
        extra = ExtraCall(event.purpose, len(event.answers),
                          event.prompt_tokens + event.completion_tokens)
        return replace(view, extra_calls=view.extra_calls + (extra,))
    candidates = dict(view.candidates)
    messages = tuple(dict(m) for m in event.messages)
    for cand, answer, reason in zip(targets, event.answers, event.finish_reasons):
        candidates[cand.id] = replace(cand, purpose=event.purpose, messages=messages,
                                      answer=answer, finish_reason=reason)
    return replace(view, candidates=candidates)


def _candidate(view: RunView, event: CandidateUpdate) -> RunView:
    candidates = dict(view.candidates)
    old = candidates.get(event.id)
    base = old if old is not None and old.round == event.round else \
        CandidateView(event.id, event.round, event.parent)
    new = replace(base, parent=event.parent, state=CandidateState(event.state),
                  tokens=event.tokens or base.tokens, targets_fixed=event.targets_fixed,
                  targets_total=event.targets_total, regressions=event.regressions,
                  edited_tests=tuple(event.edited_tests), patch=event.patch or base.patch,
                  note=event.note, report=event.report if event.report is not None else
                  base.report, edit_format=event.edit_format or base.edit_format)
    candidates[event.id] = new
    view = replace(view, candidates=candidates)
    if new.final and (old is None or not old.final):
        line = f"{new.id}: {new.label}" + (f" ({new.fixed_text} fixed)" if new.state in (
            CandidateState.PASSED, CandidateState.FAILED) else "")
        view = replace(view, status=line, log=_log(view.log, line))
    elif new.state is CandidateState.TESTING and (old is None or old.state is not new.state):
        view = replace(view, status=f"testing {new.id} in the sandbox")
    elif new.state is CandidateState.SAMPLING and old is None:
        view = replace(view, status=f"round {new.round}: asking the model for candidates")
    return view


# -- decisions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applicable:
    patch: str | None  # None: this candidate cannot be applied
    why_not: str = ""
    warning: str = ""  # shown in the confirmation (e.g. a best-so-far that does not pass)


def applicable(view: RunView, cid: str | None) -> Applicable:
    """The patch that applying candidate `cid` would write: the chosen candidate (even a
    partial best), or any passing candidate."""
    cand = view.candidate(cid)
    if cand is None:
        return Applicable(None, "select a candidate first")
    if view.finished is not None and cid == view.finished.chosen and view.finished.patch:
        warning = "" if view.finished.status == ResultStatus.SOLVED else \
            f"{cid} does not pass every test: it is only the best so far"
        return Applicable(view.finished.patch, warning=warning)
    if not cand.passed:
        return Applicable(None, f"{cid} is {cand.label.rstrip('…')}: only a passing or the "
                                "chosen candidate can be applied (save it as a file instead)")
    if not cand.patch:
        return Applicable(None, f"{cid} has no patch")
    return Applicable(cand.patch)


def patch_of(view: RunView, cid: str | None) -> str | None:
    """The patch to save or copy for `cid` (any candidate that has one)."""
    if view.finished is not None and cid == view.finished.chosen and view.finished.patch:
        return view.finished.patch
    cand = view.candidate(cid)
    return cand.patch if cand is not None and cand.patch else None


# -- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorHelp:
    title: str
    message: str
    fixes: tuple[str, ...]


# What to do about each kind of error, most specific first (the first isinstance match wins).
_HELP: tuple[tuple[tuple[type[BaseException], ...], str, tuple[str, ...]], ...] = (
    ((errors.DockerUnavailable,), "Docker is not available", (
        "Start the Docker engine: sudo systemctl start docker (or run scripts/setup.sh as root).",
        "Check that it answers: docker info",
        "mulligan doctor checks Docker, the sandbox image, the model and git at once.")),
    ((errors.ImageMissing, errors.ImageBuildFailed), "The sandbox image is missing", (
        "Build the offline image: sudo bash scripts/setup.sh",
        "Or name an image you have: --image IMAGE (or MULLIGAN_IMAGE).")),
    ((errors.DiskFull,), "Docker is out of disk space", (
        "Free some: docker system prune", "Then start the run again.")),
    ((errors.ModelNotFound,), "The endpoint does not serve this model", (
        "Pick a model the endpoint serves: edit Model on the setup screen, or --model / "
        "MULLIGAN_MODEL.",
        "List what it serves: curl ENDPOINT/models")),
    ((errors.NoModelEndpoint,), "No model endpoint", (
        "Set the endpoint: x returns to the setup screen (or --base-url / OPENAI_BASE_URL, "
        "with OPENAI_API_KEY when it needs a key).",
        "Or install the offline local model once: mulligan model setup")),
    ((errors.ModelAuthError,), "The model endpoint rejected the API key", (
        "Set OPENAI_API_KEY to a key the endpoint accepts, then start again.",)),
    ((errors.ModelError,), "The model endpoint is not answering", (
        "Start the model server, or fix the endpoint: x returns to the setup screen (or "
        "--base-url / OPENAI_BASE_URL).",
        "OpenAI-compatible servers usually end in /v1, e.g. http://127.0.0.1:8000/v1",
        "mulligan doctor checks that the endpoint answers.")),
    ((errors.NoTests,), "No tests to run", (
        "Set the test command: Test command on the setup screen, --test-cmd, or test_cmd "
        "under [tool.mulligan] in pyproject.toml.",
        "Mulligan fixes failing tests: add a test that shows the bug, or give an issue "
        "statement so it writes one.")),
    ((errors.BaselineTimedOut,), "The tests take too long", (
        "Raise the limit with --timeout SECONDS, or narrow the test command.",)),
    ((errors.NotARepository,), "Not a git repository", (
        "Run mulligan inside a git checkout (git init && git add . && git commit makes one).",)),
    ((errors.NoSuchRun,), "No such run", ("mulligan runs lists the recent runs.",)),
    ((errors.ConfigError,), "A setting is not valid", (
        "Fix it on the setup screen, in the flags, or in [tool.mulligan] of pyproject.toml "
        "/ .mulligan.toml.",)),
)


def explain_error(error: BaseException | str) -> ErrorHelp:
    """A title and the steps that fix an error, by its type in the one error tree
    (agent.errors); a bare message, or an error outside the tree, gets the general help."""
    message = error if isinstance(error, str) else (str(error) or type(error).__name__)
    for kinds, title, fixes in _HELP:
        if isinstance(error, kinds):
            return ErrorHelp(title, message, fixes)
    return ErrorHelp("The run stopped with an error", message, (
        "mulligan doctor checks Docker, the sandbox image, the model and git.",
        "The trajectory of the run has every step up to the error (mulligan replay RUN).",
    ))
