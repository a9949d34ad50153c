"""Building the dependency layer like a candidate runs: a container from the base image with
no network (the build proxy's socket is its only way out, to the package index only), all
capabilities dropped, wall-time, memory and process limits, nothing of the host's
environment, argument lists instead of a shell; then committed as the layer.

What the build reads (the requirement files, the CA bundle, its program) is bind-mounted
read-only from a private folder and so is not in the committed layer: the tests of a
candidate can never read the CA bundle or the build's plan."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests.exceptions
from docker.types import Mount

from sandbox.buildproxy import DEFAULT_INDEX_HOSTS, BuildProxy
from sandbox.errors import ImageBuildFailed
from sandbox.requirements import explain_failure

BUILD_SOURCE = Path(__file__).with_name("buildstep.py").read_text()
MOUNT = "/mulligan-build"  # in the build container only; never committed
BUILD_LABEL = "mulligan.layer-build"
PIP = ("python3", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
       "--no-input")


@dataclass(frozen=True)
class BuildLimits:
    """The dependency build's limits (docs/security.md)."""

    timeout_s: float = 900.0
    memory_mb: int = 2048
    pids: int = 512
    cpus: float = 2.0
    output_lines: int = 40  # the tail kept for the error message


@dataclass(frozen=True)
class BuildNetwork:
    """Where the build may connect: the index host names, chained through `upstream` (the
    host's HTTPS_PROXY, e.g. a TLS-intercepting one) when set."""

    hosts: tuple[str, ...] = DEFAULT_INDEX_HOSTS
    upstream: str | None = None

    def key(self) -> str:
        return f"{','.join(sorted(self.hosts))}|{self.upstream or ''}"


def ca_digest(ca_bundle: Path | None) -> str:
    """Part of the layer's cache key: another CA bundle is another build."""
    if ca_bundle is None:
        return ""
    return hashlib.sha256(Path(ca_bundle).read_bytes()).hexdigest()


def build_plan(requirement_files: Iterable[str], pyproject_requirements: bool,
               ca_bundle: bool) -> dict:
    """The steps as argument lists (file names are never seen by a shell)."""
    env = {"HTTPS_PROXY": "http://127.0.0.1:3128", "HTTP_PROXY": "http://127.0.0.1:3128",
           "https_proxy": "http://127.0.0.1:3128", "http_proxy": "http://127.0.0.1:3128",
           "NO_PROXY": "", "no_proxy": "", "HOME": "/tmp", "PIP_NO_INPUT": "1",
           "PIP_ROOT_USER_ACTION": "ignore",
           "PYTHONDONTWRITEBYTECODE": "1"}
    if ca_bundle:
        env["PIP_CERT"] = f"{MOUNT}/ca-bundle.pem"  # pip's CA for the index, build only
    steps = [[*PIP, "-r", path] for path in requirement_files]  # in the order given
    if pyproject_requirements:
        steps.append([*PIP, "-r", f"{MOUNT}/pyproject-requirements.txt"])
    return {"socket": f"{MOUNT}/proxy.sock", "cwd": f"{MOUNT}/deps", "env": env,
            "steps": steps, "ensure_pytest": [*PIP, "pytest"]}


def build_layer(client: docker.DockerClient, base_image, tag: str, files: Mapping[str, bytes],
                plan: dict, *, limits: BuildLimits | None = None,
                network: BuildNetwork | None = None,
                log: Callable[[str], None] = lambda _line: None) -> list[str]:
    """Run `plan` on `base_image` with `files` mounted at MOUNT and commit the result as
    `tag`. Returns the hosts the proxy refused. Raises ImageBuildFailed with the output's
    last lines."""
    limits, network = limits or BuildLimits(), network or BuildNetwork()
    with tempfile.TemporaryDirectory(prefix="mulligan-build-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)
        for name, data in files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (folder / "deps").mkdir(exist_ok=True)
        with BuildProxy(folder / "proxy.sock", network.hosts, network.upstream) as proxy:
            output = _run(client, base_image, tag, folder, plan, limits, log)
            refused = list(proxy.refused)
    if output is not None:
        hint = f" (the build proxy refused: {'; '.join(sorted(set(refused)))[:300]})" \
            if refused else ""
        failure = explain_failure(output.split(" | "))
        raise ImageBuildFailed(
            f"installing the repository's dependencies failed{hint}: {failure}; behind a "
            f"TLS-intercepting proxy pass --ca-bundle. Last lines: {output[-400:]}")
    return refused


def _run(client: docker.DockerClient, base_image, tag: str, folder: Path, plan: dict,
         limits: BuildLimits, log: Callable[[str], None]) -> str | None:
    """None when the build succeeded and was committed, else the output's tail."""
    container = client.containers.create(
        base_image.id, command=["python3", "-c", BUILD_SOURCE, json.dumps(plan)],
        user="0", network_mode="none", cap_drop=["ALL"],
        security_opt=["no-new-privileges"], mem_limit=f"{limits.memory_mb}m",
        memswap_limit=f"{limits.memory_mb}m", pids_limit=limits.pids,
        nano_cpus=int(limits.cpus * 1e9), labels={BUILD_LABEL: tag},
        mounts=[Mount(MOUNT, str(folder), type="bind", read_only=True)],
        environment={}, detach=True)
    try:
        container.start()
        try:
            status = container.wait(timeout=limits.timeout_s)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            container.kill()
            return f"the build ran past its {limits.timeout_s:.0f}s limit"
        text = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        lines = [line for line in text.splitlines() if line.strip()]
        for line in lines:
            log(line)
        container.reload()
        if container.attrs.get("State", {}).get("OOMKilled"):
            return f"the build ran out of its {limits.memory_mb} MB of memory"
        if status.get("StatusCode", 1) != 0:
            return " | ".join(lines[-limits.output_lines:])
        _commit(container, base_image, tag)
        return None
    finally:
        try:
            container.remove(force=True, v=True)
        except docker.errors.APIError:
            pass


def _commit(container, base_image, tag: str) -> None:
    """The container's files as `tag`, with the base image's configuration: not the build's
    command, user or labels (docker commit would otherwise keep them)."""
    base = base_image.attrs.get("Config") or {}
    repository, _, name = tag.rpartition(":")
    conf = {"Cmd": base.get("Cmd") or ["python3"], "Entrypoint": base.get("Entrypoint"),
            "Env": base.get("Env") or [], "WorkingDir": base.get("WorkingDir") or "/",
            "User": base.get("User") or "",
            "Labels": {**(base.get("Labels") or {}), "mulligan.layer": "deps"}}
    container.commit(repository=repository, tag=name, conf=conf)
