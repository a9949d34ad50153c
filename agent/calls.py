"""Every model call of a run, budgeted and accounted: the token, cost and time budgets are
checked before a request is sent, and each answer's usage, cost, cached prompt tokens and
speed are added up and published as a ModelCall event (the trajectory records it)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agent.config import Settings
from agent.events import EventBus, ModelCall
from agent.models.hints import Hints, hinted
from agent.models.replay import call_key
from agent.protocols import ChatModel, Completion, Usage
from agent.result import BudgetExhausted
from agent.schedule import Activity, Speed


@dataclass
class ModelCalls:
    model: ChatModel
    settings: Settings
    bus: EventBus
    activity: Activity
    speed: Speed  # the observed speed the schedule and the time estimate read
    started: float = field(default_factory=time.monotonic)
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    cached_tokens: int = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def time_left(self) -> float | None:
        if self.settings.time_budget_s is None:
            return None
        return max(0.01, self.settings.time_budget_s - self.elapsed())

    def check_budget(self) -> None:
        s = self.settings
        if s.token_budget is not None and self.usage.total >= s.token_budget:
            raise BudgetExhausted(f"token budget of {s.token_budget} spent")
        if s.cost_budget_usd is not None and self.cost >= s.cost_budget_usd:
            raise BudgetExhausted(f"cost budget of ${s.cost_budget_usd} spent")
        if s.time_budget_s is not None and self.elapsed() >= s.time_budget_s:
            raise BudgetExhausted(f"time budget of {s.time_budget_s:.0f}s spent")

    async def sample(self, purpose: str, messages: list[dict[str, str]], n: int,
                     seed: int | None, hints: Hints | None = None) -> list[Completion]:
        self.check_budget()
        self.activity.change(requests=1)
        try:
            with hinted(hints or Hints()):
                completions = await self.model.sample(messages, n, seed=seed)
        finally:
            self.activity.change(requests=-1)
        for c in completions:
            if c.seconds > 0:  # a replayed answer took no time
                self.speed.record_sample(c.seconds, c.tokens_per_s, c.usage.completion_tokens)
            self.cached_tokens += c.cached_tokens
        usage = sum((c.usage for c in completions), Usage())
        cost = sum(c.cost_usd for c in completions)
        self.usage = self.usage + usage
        self.cost += cost
        self.bus.emit(ModelCall(
            call_key(messages, n, seed), purpose, messages, [c.text for c in completions],
            [c.finish_reason for c in completions], usage.prompt_tokens,
            usage.completion_tokens, cost, max((c.seconds for c in completions), default=0.0),
            sum(c.cached_tokens for c in completions)))
        return completions
