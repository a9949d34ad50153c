"""`mulligan doctor`: check what a run needs and say in plain words how to fix what is missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import openai

from agent.config import Settings
from sandbox.docker_backend import connect
from sandbox.errors import DockerUnavailable
from sandbox.images import BUILD_SCRIPT, OFFLINE_IMAGE, REGISTRY_IMAGE, resolve_base_image


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(repo: Path, settings: Settings) -> Iterator[Check]:
    yield _check_git(repo)
    client = None
    try:
        client = connect()
        host = os.environ.get("DOCKER_HOST") or "local socket unix:///var/run/docker.sock"
        version = client.version().get("Version", "?")
        yield Check("docker engine", True, f"Docker {version} via {host}")
    except DockerUnavailable as exc:
        yield Check("docker engine", False, str(exc),
                    "run scripts/setup.sh as root, or start Docker and set DOCKER_HOST")
    if client is None:
        yield Check("sandbox image", False, "cannot check without a Docker engine")
    else:
        image = resolve_base_image(client, settings.image)
        try:
            client.images.get(image)
            yield Check("sandbox image", True, f"{image} present")
        except docker.errors.ImageNotFound:
            yield Check("sandbox image", False, f"{image} is not present",
                        f"docker pull {REGISTRY_IMAGE} where a registry is reachable, or "
                        f"sudo bash {BUILD_SCRIPT} to build {OFFLINE_IMAGE} offline")
    yield _check_model(settings)


def _check_git(repo: Path) -> Check:
    from sandbox.git import find_repo

    found = find_repo(repo)
    if found is not None:
        return Check("git repository", True, f"{found.working_tree_dir}")
    return Check("git repository", False, f"{repo} is not inside a git repository",
                 "run mulligan inside a repository, or `git init` one")


def _check_model(settings: Settings) -> Check:
    base = (settings.base_url or "https://api.openai.com/v1").rstrip("/")
    client = openai.OpenAI(base_url=base, api_key=settings.api_key or "sk-no-key",
                           timeout=5.0, max_retries=0)
    try:
        names = [m.id for m in client.models.list()]
    except openai.AuthenticationError:
        return Check("model endpoint", False, f"{base} refused the API key (401)",
                     "set OPENAI_API_KEY to a valid key")
    except openai.APIStatusError as exc:
        return Check("model endpoint", False, f"{base}/models answered {exc.status_code}",
                     "check OPENAI_BASE_URL: most servers expect it to end in /v1")
    except openai.APIError as exc:
        return Check("model endpoint", False, f"cannot reach {base}: {type(exc).__name__}",
                     "start your model server, or set OPENAI_BASE_URL / --base-url")
    if names and settings.model not in names:
        return Check("model endpoint", False,
                     f"{base} does not serve model {settings.model!r} (it has: "
                     f"{', '.join(names[:8])})", "pass --model with one of those")
    return Check("model endpoint", True, f"{base} answers; model {settings.model}")
