"""Wiring from settings to a ready sandbox: connect, pick the base image, build the layer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.config import Settings
from agent.errors import WorkspaceError
from sandbox.docker_backend import DockerSandbox, connect
from sandbox.errors import ImageBuildFailed
from sandbox.images import ensure_image, resolve_base_image
from sandbox.api import Limits
from sandbox.snapshot import Snapshot


def open_sandbox(settings: Settings, snapshot: Snapshot,
                 log: Callable[[str], None] = lambda _line: None) -> DockerSandbox:
    client = connect(pool_size=settings.workers + 4)
    base = resolve_base_image(client, settings.image)
    ca = Path(settings.ca_bundle) if settings.ca_bundle else None
    if ca is not None and not ca.is_file():
        raise WorkspaceError(f"--ca-bundle {ca} is not a file")
    try:
        tag = ensure_image(client, base, snapshot, ca_bundle=ca, log=log)
    except ImageBuildFailed as exc:
        # The tests may need none of it: run them on the base image, where a dependency that
        # is really missing shows up as a clear baseline error instead of an abort.
        log(f"{exc}: running the tests without the dependency layer")
        tag = base
    return DockerSandbox(tag, client=client, workers=settings.workers)


def limits_from(settings: Settings) -> Limits:
    return Limits(timeout_s=settings.test_timeout_s, memory_mb=settings.memory_mb)
