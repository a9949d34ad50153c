"""Typed events the core emits; front ends (console, TUI, CI, trajectory) subscribe to them."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar


class CandidateState(StrEnum):
    SAMPLING = "sampling"
    APPLYING = "applying"
    TESTING = "testing"
    PASSED = "passed"
    FAILED = "failed"
    FORMAT_ERROR = "format_error"  # the answer could not be parsed or applied
    PATCH_FAILED = "patch_failed"  # the diff did not apply in the sandbox
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"  # it edited tests
    CANCELLED = "cancelled"  # not finished: another candidate passed first, or the run stopped


# Edit formats of the changes Mulligan makes itself (agent/edits/mutants.py,
# agent/edits/combine.py): no model answer, so no conversation to revise and no sample spent.
OWN_FORMATS = frozenset({"mutation", "combination"})


class ResultStatus(StrEnum):
    """How a run ended (Result.status, RunFinished.status; JSON carries the value)."""

    SOLVED = "solved"  # a candidate passes every target and keeps every passing test
    UNSOLVED = "unsolved"  # none did (the best partial candidate may still be offered)
    NOTHING_TO_FIX = "nothing_to_fix"  # every test passes already
    ERROR = "error"  # the run could not finish (front ends report it; the loop raises)


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_id: str
    repo: str
    model: str
    base_url: str | None
    test_cmd: str
    candidates: int
    rounds: int
    workers: int
    issue: str | None = None


@dataclass(frozen=True)
class Status(Event):
    """A line of progress that is not about one candidate (image build, phase change)."""

    kind: ClassVar[str] = "status"
    message: str


@dataclass(frozen=True)
class BaselineDone(Event):
    kind: ClassVar[str] = "baseline_done"
    targets: list[str]
    passing: list[str]
    exit_code: int | None
    seconds: float
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Localized(Event):
    """The functions most likely to hold the bug, best first (see agent/context/localize.py):
    each a dict with path, function, line, end_line, score and the signals that named it."""

    kind: ClassVar[str] = "localized"
    suspects: list[dict[str, Any]]
    traced: bool  # whether the dynamic signal (a traced test run) was available
    seconds: float = 0.0
    lines: list[dict[str, Any]] = field(default_factory=list)  # suspect lines, best first


@dataclass(frozen=True)
class ModelCall(Event):
    """One request to the model and its answers: enough to replay or resume it."""

    kind: ClassVar[str] = "model_call"
    key: str
    purpose: str
    messages: list[dict[str, str]]
    answers: list[str]
    finish_reasons: list[str]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    seconds: float
    cached_prompt_tokens: int = 0  # of prompt_tokens, read from the server's prompt cache


@dataclass(frozen=True)
class CandidateUpdate(Event):
    kind: ClassVar[str] = "candidate"
    id: str
    round: int
    parent: str | None
    state: CandidateState
    tokens: int = 0
    targets_fixed: int = 0
    targets_total: int = 0
    regressions: int = 0
    edited_tests: list[str] = field(default_factory=list)
    patch: str = ""
    note: str = ""  # format feedback, patch error, strategies used
    report: dict[str, Any] | None = None
    edit_format: str | None = None  # the format its question asked for ("line": a line question)


@dataclass(frozen=True)
class RoundFinished(Event):
    kind: ClassVar[str] = "round_finished"
    round: int
    best: str | None
    solved: bool


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: ResultStatus
    chosen: str | None
    patch: str | None
    tokens: int
    cost_usd: float
    seconds: float
    reason: str = ""


@dataclass(frozen=True)
class SecondOpinion(Event):
    """The winner's confirming run in a fresh container with another runner (agent/verdict.py)."""

    kind: ClassVar[str] = "second_opinion"
    candidate: str
    agreed: bool
    seconds: float
    reason: str = ""
    first: dict[str, Any] | None = None  # the two reports
    second: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunError(Event):
    kind: ClassVar[str] = "error"
    message: str


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out to subscribers; thread-safe, and a failing subscriber never stops the run."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        with self._lock:
            for subscriber in list(self._subscribers):
                try:
                    subscriber(event)
                except Exception as exc:  # a display bug must not lose the run
                    self.errors.append(f"{type(exc).__name__}: {exc}")


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (RunStarted, Status, BaselineDone, Localized, ModelCall,
                              CandidateUpdate, RoundFinished, RunFinished, SecondOpinion, RunError)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    data = dict(data)
    cls = EVENT_TYPES[data.pop("kind")]
    if cls is CandidateUpdate:
        data["state"] = CandidateState(data["state"])
    elif cls is RunFinished:
        data["status"] = ResultStatus(data["status"])
    return cls(**data)
