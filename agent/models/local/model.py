"""The local model of one run: start its server when no endpoint is configured, and a
ChatModel wrapper that fails fast when the server dies."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cores import usable_cores
from agent.errors import ModelError, NoModelEndpoint
from agent.models.local import common
from agent.models.local.common import ENV_THREADS, LOCAL_MODEL_NAME, LOCAL_TIMEOUT_S, Log
from agent.models.local.server import LocalServer
from agent.models.local.weights import local_status
from agent.models.window import Window

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.models.client import ChatModel, Completion


# -- a model that notices the server dying ---------------------------------------------------


class WatchedModel:
    """Wraps a ChatModel talking to a LocalServer: a request fails at once with a clear
    ModelUnavailable when the server process exits, instead of retrying against a dead port.
    """

    def __init__(self, model: ChatModel, server: LocalServer, poll_s: float = 0.5) -> None:
        self.model = model
        self.server = server
        self.poll_s = poll_s

    async def sample(self, messages: list[dict], n: int, *,
                     seed: int | None = None) -> list[Completion]:
        self.server.check()
        task = asyncio.ensure_future(self.model.sample(messages, n, seed=seed))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.poll_s)
                if done:
                    break
                self.server.check()
        except BaseException:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        try:
            return task.result()
        except ModelError:
            self.server.check()
            raise

    async def preflight(self) -> None:
        self.server.check()
        await self.model.preflight()

    async def aclose(self) -> None:
        await self.model.aclose()

    @property
    def window(self) -> Window | None:
        return self.model.window


@dataclass
class LocalModel:
    """The local server of one run and the settings that point the model client at it."""

    server: LocalServer
    settings: Settings

    def watch(self, model: ChatModel) -> WatchedModel:
        return WatchedModel(model, self.server)

    async def aclose(self) -> None:
        self.server.stop()


def wants_local(settings: Settings) -> bool:
    """No endpoint configured: neither a base URL nor an API key."""
    return not settings.base_url and not settings.api_key


async def start_local_model(settings: Settings, log: Log = lambda _line: None,
                            root: Path | None = None) -> LocalModel | None:
    """Start the local model server when no endpoint is configured; None when one is.

    Raises ConfigError when neither an endpoint nor the local model is available, and
    ModelUnavailable when the server does not start.
    """
    if not wants_local(settings):
        return None
    st = local_status(root)
    if not st.ready:
        detail = f" ({'; '.join(st.problems)})" if st.problems else ""
        raise NoModelEndpoint("no model endpoint is configured: set OPENAI_BASE_URL/"
                              "OPENAI_API_KEY or run `mulligan model setup` for the local "
                              f"model{detail}")
    assert st.server is not None and st.weights is not None
    server = LocalServer(st.server, st.weights, parallel=min(16, max(1, settings.candidates)),
                         log_dir=common.logs_dir(root))
    threads_from = ENV_THREADS if os.environ.get(ENV_THREADS) else str(usable_cores())
    log(f"starting the local model ({st.weights.name}, {server.threads} thread(s): "
        f"{threads_from}; {server.parallel} slot(s))")
    await server.astart()
    log(f"local model ready in {server.started_s:.1f}s at {server.base_url}")
    local_settings = settings.model_copy(update={
        "model": LOCAL_MODEL_NAME, "base_url": server.base_url,
        "request_timeout_s": max(settings.request_timeout_s, LOCAL_TIMEOUT_S)})
    return LocalModel(server, local_settings)

