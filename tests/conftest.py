import sys
from pathlib import Path

import pytest

# `tests.support` must be importable under plain `pytest` too (tests/ is not a package).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.openai_server import ScriptedOpenAIServer


@pytest.fixture
def openai_server():
    """A scripted OpenAI-compatible server on 127.0.0.1 (see tests/support/openai_server.py).

    Knows the model "test-model"; script answers with ``openai_server.script(...)``; the
    received requests are in ``openai_server.requests``. Stopped at teardown.
    """
    with ScriptedOpenAIServer(models=["test-model"], max_lifetime_s=300.0) as server:
        yield server


# -- the `docker` marker --------------------------------------------------------------------
# `python -m pytest -m "not docker"` is the fast suite: it must start no container. A test
# that takes a Docker fixture is marked `docker` here; every test not marked gets a Docker
# host that does not exist, so one that reaches Docker another way fails loudly instead of
# silently making the fast suite slow (mark it `@pytest.mark.docker`).

DOCKER_FIXTURES = frozenset({"docker_image", "docker_client", "sandbox"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(autouse=True)
def _no_docker_unless_marked(request, monkeypatch, tmp_path_factory):
    if request.node.get_closest_marker("docker") is None:
        sock = tmp_path_factory.getbasetemp() / "no-docker-for-unmarked-tests.sock"
        monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")


@pytest.fixture(autouse=True)
def _private_trust_list(tmp_path_factory, monkeypatch):
    """Every test (and its subprocesses) sees an empty list of trusted repositories, never
    the developer's own (agent/trust.py reads MULLIGAN_CONFIG_DIR)."""
    monkeypatch.setenv("MULLIGAN_CONFIG_DIR", str(tmp_path_factory.mktemp("mulligan-config")))
