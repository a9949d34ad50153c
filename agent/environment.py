"""Wiring from settings to a ready sandbox: connect, pick the base image, build the layer."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from agent.config import Settings
from agent.errors import WorkspaceError
from sandbox.api import Limits
from sandbox.buildproxy import DEFAULT_INDEX_HOSTS
from sandbox.docker_backend import DockerSandbox, connect
from sandbox.errors import ImageBuildFailed
from sandbox.images import ensure_image, resolve_base_image
from sandbox.layerbuild import BuildNetwork
from sandbox.snapshot import Snapshot


def open_sandbox(settings: Settings, snapshot: Snapshot,
                 log: Callable[[str], None] = lambda _line: None) -> DockerSandbox:
    ca = Path(settings.ca_bundle) if settings.ca_bundle else None
    if ca is not None:
        check_ca_bundle(ca)  # before anything else: a bad bundle is a usage error
    client = connect(pool_size=settings.workers + 4)
    base = resolve_base_image(client, settings.image)
    try:
        tag = ensure_image(client, base, snapshot, ca_bundle=ca, network=build_network(),
                           log=log)
    except ImageBuildFailed as exc:
        # The tests may need none of it: run them on the base image, where a dependency that
        # is really missing shows up as a clear baseline error instead of an abort.
        log(f"{exc}: running the tests without the dependency layer")
        tag = base
    return DockerSandbox(tag, client=client, workers=settings.workers)


def check_ca_bundle(path: Path) -> None:
    """A CA bundle is PEM certificates: anything else (a key, /proc/self/environ, a config
    file) is refused before it reaches a build."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
    except OSError as exc:
        raise WorkspaceError(f"--ca-bundle {path}: cannot read it ({exc.strerror})") from None
    if b"-----BEGIN CERTIFICATE-----" not in head or b"PRIVATE KEY-----" in head:
        raise WorkspaceError(f"--ca-bundle {path} is not a PEM certificate bundle")


def build_network(environ: Mapping[str, str] | None = None) -> BuildNetwork:
    """Where the dependency build may connect: the index hosts (MULLIGAN_BUILD_HOSTS, comma
    separated, from the user's environment, never from a repository), through the host's
    HTTPS_PROXY when one is set."""
    environ = os.environ if environ is None else environ
    hosts = tuple(h.strip() for h in environ.get("MULLIGAN_BUILD_HOSTS", "").split(",")
                  if h.strip()) or DEFAULT_INDEX_HOSTS
    upstream = environ.get("HTTPS_PROXY") or environ.get("https_proxy") or None
    return BuildNetwork(hosts, upstream)


def limits_from(settings: Settings) -> Limits:
    return Limits(timeout_s=settings.test_timeout_s, memory_mb=settings.memory_mb)
