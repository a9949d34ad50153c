"""What `mulligan bench` compares: the strategies at one sample budget, and the bench's config.

Strategies, at the same model and the same sample budget B (--budget):

* single: pass@1, one candidate, one round;
* best-of-n: B candidates in one round, no revision;
* revise-only: one candidate, then sequential retries from its failures (B rounds, beam 1),
  the way Aider's test loop works;
* mulligan: N candidates per round (--candidates, default 4) revised by a beam (--beam,
  default 2) for B // N rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from agent.errors import ConfigError

STRATEGIES = ("single", "best-of-n", "revise-only", "mulligan")
# With no --strategy: one greedy sample against the default search (one strategy alone
# measures nothing).
DEFAULT_STRATEGIES = ("single", "mulligan")
DEFAULT_BUDGET = 8


@dataclass(frozen=True)
class Strategy:
    name: str
    candidates: int
    rounds: int
    beam: int

    @property
    def max_samples(self) -> int:
        per_round = self.beam * max(1, self.candidates // self.beam)
        return self.candidates + (self.rounds - 1) * per_round


def make_strategies(names: Sequence[str], budget: int, candidates: int = 4,
                    beam: int = 2) -> list[Strategy]:
    """The strategies to compare at `budget` samples per task."""
    if budget < 1:
        raise ConfigError("--budget must be at least 1 sample")
    out = []
    for name in names:
        if name == "single":
            out.append(Strategy(name, 1, 1, 1))
        elif name == "best-of-n":
            if budget > 64:
                raise ConfigError("best-of-n takes at most 64 candidates: --budget <= 64")
            out.append(Strategy(name, budget, 1, 1))
        elif name == "revise-only":
            if budget > 20:
                raise ConfigError("revise-only runs one round per sample, at most 20: "
                                  "--budget <= 20")
            out.append(Strategy(name, 1, budget, 1))
        elif name == "mulligan":
            n = max(1, min(candidates, budget))
            rounds = max(1, budget // n)
            if rounds > 20:
                raise ConfigError("mulligan would need more than 20 rounds: raise --candidates")
            out.append(Strategy(name, n, rounds, max(1, min(beam, n))))
        else:
            raise ConfigError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)}, "
                              "or all)")
    return out


def parse_strategy_names(values: Sequence[str] | None) -> list[str]:
    names: list[str] = []
    for value in values or DEFAULT_STRATEGIES:
        for name in value.split(","):
            name = name.strip().lower()
            if not name:
                continue
            for one in (STRATEGIES if name == "all" else (name,)):
                if one not in names:
                    names.append(one)
    return names


@dataclass
class BenchConfig:
    strategies: list[str] = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    budget: int = DEFAULT_BUDGET
    candidates: int = 4
    beam: int = 2
    token_budget: int | None = None
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    scripted_p: float | None = None
    fixes: str | None = None
    seed: int | None = 0
    temperature: float = 0.8
    image: str | None = None
    workers: int = 2  # jobs at once
    sandbox_workers: int = 2  # sandboxes at once within a job
    max_requests: int | None = None  # model requests at once within a job (a shared server)
    request_timeout_s: float | None = None  # per model request (a slow CPU server needs more)
    test_timeout_s: float = 120.0
    context_tokens: int | None = None  # source tokens per prompt (None: the run's default)
    mutants: int | None = None  # mutants of the suspect lines per run (None: the run's default, 150)
    ray: str | None = None
    model_label: str = ""
    sources: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)
