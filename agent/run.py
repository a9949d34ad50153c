"""One run from start to finish, shared by every front end: snapshot, sandbox, model,
trajectory, solver, and cleanup on every exit path.

This is an edge: it picks the backends (the Docker sandbox, the OpenAI client, the bundled
local model), importing each only when the run needs it, so importing the core stays light.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import Settings
from agent.context.repomap import RepoMap
from agent.events import EventBus, RunError, Status
from agent.loop import Result, Solver
from agent.models.replay import ReplayModel
from agent.protocols import ChatModel, Sandbox
from agent.trajectory import (
    TrajectoryWriter,
    new_run_id,
    read_events,
    recorded_calls,
    run_path,
    runs_dir,
)
from sandbox.snapshot import Snapshot

if TYPE_CHECKING:
    from agent.models.client import OpenAIChatModel
    from agent.models.local import LocalModel


@dataclass(frozen=True)
class RunRequest:
    repo: Path
    settings: Settings
    issue: str | None = None
    resume: str | None = None  # a run id or trajectory path to continue
    staged: bool = False  # test the index (what a commit records) instead of the working tree


def model_from(settings: Settings) -> OpenAIChatModel:
    from agent.models.client import ModelSettings, OpenAIChatModel

    return OpenAIChatModel(ModelSettings(
        model=settings.model, base_url=settings.base_url, api_key=settings.api_key,
        temperature=settings.temperature, seed=settings.seed, max_tokens=settings.max_tokens,
        reasoning_effort=settings.reasoning_effort,
        max_completion_tokens=settings.max_completion_tokens,
        timeout_s=settings.request_timeout_s, prices=settings.prices or None,
        max_concurrent_requests=max(1, settings.candidates)))


def repomap_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("mulligan")) / "repomap"


class Run:
    """Holds a run's resources; `execute` always releases them (containers, temp dirs)."""

    def __init__(self, request: RunRequest, bus: EventBus, model: ChatModel | None = None, *,
                 snapshot: Snapshot | None = None, sandbox: Sandbox | None = None):
        """`snapshot` and `sandbox`, when given, are the caller's: used, never closed (the
        pre-commit hook has them open already, on the index being committed)."""
        self.request = request
        self.bus = bus
        self.model = model
        self.solver: Solver | None = None
        self._given_snapshot = snapshot
        self._given_sandbox = sandbox
        self.snapshot: Snapshot | None = None
        self.sandbox: Sandbox | None = None  # the sandbox this run opened (and closes)
        self.snapshot_tree: str | None = None
        self.local: LocalModel | None = None  # the local model server, when one was started
        recorded = {}
        if request.resume:
            path = run_path(request.resume)
            recorded = recorded_calls(read_events(path))
            self.run_id = path.parent.name
        else:
            self.run_id = new_run_id()
        self.recorded = recorded
        self.trajectory_path = runs_dir() / self.run_id / "trajectory.jsonl"

    def stop(self) -> None:
        """Finish after the current round and keep the best so far."""
        if self.solver is not None:
            self.solver.stop_requested = True

    async def execute(self) -> Result:
        writer = TrajectoryWriter(self.trajectory_path)
        self.bus.subscribe(writer)
        model = self.model
        settings = self.request.settings
        try:
            if model is None:  # no endpoint configured: start the local model (or ConfigError)
                from agent.models.local import start_local_model

                self.local = await start_local_model(
                    settings, lambda line: self.bus.emit(Status(line)))
                settings = self.local.settings if self.local is not None else settings
            take = Snapshot.from_index if self.request.staged else Snapshot.from_directory
            if model is None:
                model = model_from(settings)
                model = self.local.watch(model) if self.local is not None else model
            snapshot = self._given_snapshot
            if snapshot is None:
                snapshot = self.snapshot = take(self.request.repo)
            self.snapshot_tree = snapshot.tree
            sandbox = self._given_sandbox
            if sandbox is None:
                from agent.environment import open_sandbox

                self.bus.emit(Status("preparing the sandbox image"))
                sandbox = self.sandbox = await asyncio.to_thread(
                    open_sandbox, self.request.settings, snapshot,
                    lambda line: self.bus.emit(Status(line)))
            solver_model = ReplayModel(model, self.recorded) if self.recorded else model
            self.solver = Solver(settings, solver_model, sandbox, snapshot,
                                 self.bus, self.run_id, self.request.issue,
                                 str(self.request.repo), RepoMap(cache_dir=repomap_cache_dir()))
            return await self.solver.run()
        except Exception as exc:
            self.bus.emit(RunError(str(exc)))
            raise
        finally:
            if self.sandbox is not None:
                self.sandbox.close()
            if self.snapshot is not None:
                self.snapshot.close()
            if self.model is None and model is not None:  # the model this run made
                await model.aclose()
            if self.local is not None:
                await self.local.aclose()
            writer.close()



def run_fix(request: RunRequest, bus: EventBus, model: ChatModel | None = None) -> Result:
    return asyncio.run(Run(request, bus, model).execute())
