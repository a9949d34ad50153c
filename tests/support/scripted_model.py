"""A deterministic in-process ChatModel for unit tests: scripted answers, recorded requests.

`ScriptedModel(answers)` hands out `answers` in order, n at a time (a callable instead picks
each answer from the request). Every request is recorded (messages, n, seed); usage is a
fixed number of tokens per answer and cost a fixed price per answer, so budgets are exact.
It satisfies `agent.protocols.ChatModel`: sample, preflight, aclose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.errors import ModelUnavailable
from agent.models import hints
from agent.models.hints import Hints
from agent.protocols import Completion, Usage

Answer = Callable[[list[dict], int], str]  # (messages, index in the request) -> answer


@dataclass
class Request:
    messages: list[dict]
    n: int
    seed: int | None
    hints: Hints = field(default_factory=Hints)  # the search's per-request hints

    @property
    def user(self) -> str:
        """The last user message (the prompt the loop wrote for this request)."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


@dataclass
class ScriptedModel:
    answers: Sequence[str] | Answer
    prompt_tokens: int = 100  # per request
    completion_tokens: int = 10  # per answer
    cost_per_answer_usd: float = 0.0
    unreachable: bool = False  # preflight raises ModelUnavailable
    requests: list[Request] = field(default_factory=list)
    preflights: int = 0
    closed: bool = False
    window: None = None  # no server window: the settings' budget alone sizes the prompt
    # the decode speed each answer reports (tokens/s); None: an instant answer, as replayed
    tokens_per_s: float | None = None

    def __post_init__(self) -> None:
        self._next = 0

    async def sample(self, messages: list[dict], n: int, *,
                     seed: int | None = None) -> list[Completion]:
        self.requests.append(Request(messages, n, seed, hints.current()))
        texts = []
        for i in range(n):
            if callable(self.answers):
                texts.append(self.answers(messages, i))
            else:
                if self._next >= len(self.answers):
                    raise AssertionError(f"the script has only {len(self.answers)} answers")
                texts.append(self.answers[self._next])
                self._next += 1
        # the request's prompt tokens ride on its first answer, as a real request splits them
        seconds = 0.0 if self.tokens_per_s is None else \
            self.completion_tokens / self.tokens_per_s
        return [Completion(t, "stop", Usage(self.prompt_tokens if i == 0 else 0,
                                            self.completion_tokens),
                           self.cost_per_answer_usd, f"scripted-{len(self.requests)}", seconds,
                           tokens_per_s=self.tokens_per_s)
                for i, t in enumerate(texts)]

    async def preflight(self) -> None:
        self.preflights += 1
        if self.unreachable:
            raise ModelUnavailable("cannot reach the model server at http://scripted/v1")

    async def aclose(self) -> None:
        self.closed = True
