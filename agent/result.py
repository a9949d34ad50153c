"""What a run ends with: its status, the chosen patch, every candidate, totals."""

from __future__ import annotations

from dataclasses import dataclass

from agent.candidate import Baseline, Candidate
from agent.events import ResultStatus
from agent.protocols import Usage


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
    first_fix_s: float | None = None  # from the start of the run to the first passing test
    model_idle_s: float = 0.0  # no model request in flight while candidates were tested
    cached_prompt_tokens: int = 0

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
                       "sandbox_seconds": round(self.sandbox_seconds, 3),
                       "first_fix_s": None if self.first_fix_s is None
                       else round(self.first_fix_s, 3),
                       "model_idle_s": round(self.model_idle_s, 3),
                       "cached_prompt_tokens": self.cached_prompt_tokens},
        }


class BudgetExhausted(Exception):
    pass
