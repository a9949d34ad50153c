"""Mulligan's core: the protocols a backend implements and the public API front ends use.

    from agent import Run, RunRequest, Settings, EventBus
    result = await Run(RunRequest(repo, Settings(model=...)), EventBus()).execute()

The protocols and the error tree load with the package; the rest loads on first use, so
`import agent.events` (say) costs no more than that module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from agent.errors import MulliganError
from agent.protocols import ChatModel, Completion, Sandbox, Usage

_LAZY = {
    "Run": "agent.run",
    "RunRequest": "agent.run",
    "run_fix": "agent.run",
    "Result": "agent.loop",
    "Solver": "agent.loop",
    "Settings": "agent.config",
    "EventBus": "agent.events",
    "Event": "agent.events",
    "ResultStatus": "agent.events",
    "CandidateState": "agent.events",
    "Candidate": "agent.candidate",
}

if TYPE_CHECKING:
    from agent.candidate import Candidate
    from agent.config import Settings
    from agent.events import CandidateState, Event, EventBus, ResultStatus
    from agent.loop import Result, Solver
    from agent.run import Run, RunRequest, run_fix


def __getattr__(name: str) -> object:  # PEP 562: the public API, imported on first use
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["Candidate", "CandidateState", "ChatModel", "Completion", "Event", "EventBus",
           "MulliganError", "Result", "ResultStatus", "Run", "RunRequest", "Sandbox", "Settings",
           "Solver", "Usage", "run_fix"]
