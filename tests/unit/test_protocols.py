"""Every backend offers every method the core calls (agent/protocols.py): checked on the
real classes, so a backend that lacks one fails here rather than in the middle of a run."""

from __future__ import annotations

import inspect

import pytest

from agent.models.client import ModelSettings, OpenAIChatModel
from agent.models.replay import ReplayModel
from agent.protocols import ChatModel, Sandbox
from tests.support.fake_sandbox import FakeSandbox
from tests.support.scripted_model import ScriptedModel


def test_the_models_are_chat_models():
    real = OpenAIChatModel(ModelSettings(model="m", base_url="http://127.0.0.1:9/v1"))
    for model in (real, ReplayModel(real, {}), ScriptedModel([])):
        assert isinstance(model, ChatModel), type(model).__name__
        for name in ("sample", "preflight", "aclose"):
            assert inspect.iscoroutinefunction(getattr(model, name)), name


@pytest.mark.parametrize("name", ["DockerSandbox", "FakeSandbox"])
def test_the_sandboxes_are_sandboxes(name):
    if name == "DockerSandbox":
        from sandbox.docker_backend import DockerSandbox as cls  # imported, never started
    else:
        cls = FakeSandbox
    assert issubclass(cls, Sandbox)
    assert inspect.signature(cls.prewarm).parameters.keys() == {"self", "limits", "count"}
