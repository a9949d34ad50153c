"""Resume: a ChatModel wrapper that answers requests a run already made from its trajectory.

A resumed run asks the same questions as the run it continues (same settings, same seeds,
same prompts), so each request is looked up by its key (`call_key`): a recorded answer is
reused, in the order it was recorded, and only requests never answered reach the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from agent.events import ModelCall
from agent.models.window import Window
from agent.protocols import ChatModel, Completion, Usage

REPLAYED = "replayed"  # the request_id of a Completion that came from a trajectory


def call_key(messages: list[dict], n: int, seed: int | None) -> str:
    """The identity of one model request, as recorded in ModelCall.key."""
    return hashlib.sha256(json.dumps([messages, n, seed]).encode()).hexdigest()[:24]


class ReplayModel:
    """:class:`ChatModel` that replays ``recorded`` calls (by key) before asking ``model``."""

    def __init__(self, model: ChatModel, recorded: Mapping[str, Sequence[ModelCall]]) -> None:
        self.model = model
        self._queues = {key: list(calls) for key, calls in recorded.items()}

    @property
    def replaying(self) -> bool:
        return bool(self._queues)

    async def sample(self, messages: list[dict], n: int, *,
                     seed: int | None = None) -> list[Completion]:
        queue = self._queues.get(call_key(messages, n, seed))
        if not queue:
            return await self.model.sample(messages, n, seed=seed)
        call = queue.pop(0)
        # The request's usage and cost were billed once: they ride on its first answer.
        return [Completion(text, reason,
                           Usage(call.prompt_tokens, call.completion_tokens) if i == 0
                           else Usage(0, 0),
                           call.cost_usd if i == 0 else 0.0, REPLAYED, 0.0)
                for i, (text, reason) in enumerate(zip(call.answers, call.finish_reasons))]

    async def preflight(self) -> None:
        """A resumed run may finish from its trajectory alone: the server is not required."""
        if not self.replaying:
            await self.model.preflight()

    async def aclose(self) -> None:
        await self.model.aclose()

    @property
    def window(self) -> Window | None:
        return self.model.window
