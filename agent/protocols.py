"""The core's seams: what a model and a sandbox must offer the loop, and the model's values.

Every method the core calls on a backend is named here; the core calls nothing else (no
`getattr` probing). Backends are chosen at the edges (`agent.run`, `agent.environment`):
`agent.models.client.OpenAIChatModel` and `sandbox.docker_backend.DockerSandbox` are the real
ones, `agent.models.replay.ReplayModel` wraps a model for a resumed run, and tests use an
in-process fake of each (tests/support/fake_sandbox.py, tests/support/scripted_model.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agent.models.window import Window
    from sandbox.api import Job, Limits, TestReport


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def __radd__(self, other: object) -> Usage:  # so that sum(usages) works
        if other == 0:
            return self
        return self.__add__(other)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop", "length", ... ("unknown" when the server gave none)
    usage: Usage  # this choice's share of its request's usage (see agent.models.client)
    cost_usd: float
    request_id: str  # the completion id from the server (its x-request-id when none)
    seconds: float  # wall time of the request that produced it, retries included
    cached_tokens: int = 0  # prompt tokens the server reused from its cache (when it says)
    tokens_per_s: float | None = None  # the server's own decode speed for this request


@runtime_checkable
class ChatModel(Protocol):
    """Samples chat completions. One instance per event loop."""

    async def sample(
        self, messages: list[dict], n: int, *, seed: int | None = None
    ) -> list[Completion]:
        """``n`` completions of ``messages`` (exactly n, in order)."""
        ...

    async def preflight(self) -> None:
        """Fail fast (a ModelError) when the model cannot be reached at all; called once per
        run before the first sample. A model with nothing to check returns at once."""
        ...

    async def aclose(self) -> None:
        """Release connections and processes; the model is not used afterwards."""
        ...

    @property
    def window(self) -> Window | None:
        """The server's context window, where it reports one (known after preflight); the
        prompt is sized to fit it. None: unknown, the settings' budget alone decides."""
        ...


@runtime_checkable
class Sandbox(Protocol):
    """Runs a candidate's tests where it cannot reach anything outside."""

    def run(self, job: Job) -> TestReport:
        """Apply ``job.patch`` to the snapshot, run the test command, report per test. A
        candidate's failure (patch does not apply, timeout, crash) is a report, not an error;
        a SandboxError means the sandbox itself cannot run. Called from worker threads."""
        ...

    def prewarm(self, limits: Limits, count: int) -> None:
        """A hint: ``count`` jobs with these limits will follow soon (start them ahead where
        that saves time; a sandbox with nothing to prepare does nothing)."""
        ...

    def close(self) -> None:
        """Release everything the sandbox holds (containers, temp dirs); also on Ctrl-C."""
        ...


__all__ = ["ChatModel", "Completion", "Sandbox", "Usage"]
