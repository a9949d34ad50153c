"""The dependency layer: the repository's requirements installed on a base image, cached
by a hash of the dependency files so the second run of the same repository builds nothing."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from sandbox import requirements
from sandbox.errors import ImageMissing
from sandbox.layerbuild import BuildLimits, BuildNetwork, build_layer, build_plan, ca_digest
from sandbox.snapshot import Snapshot

OFFLINE_IMAGE = "mulligan/base:bookworm"
REGISTRY_IMAGE = "python:3.12-slim"
LAYER_REPO = "mulligan/deps"
# Bump when the recipe below changes, so cached layers are rebuilt.
RECIPE_VERSION = "2"
BUILD_SCRIPT = Path(__file__).with_name("images") / "build-offline-image.sh"


@dataclass(frozen=True)
class DependencySpec:
    """What the layer installs: requirement files and the pyproject's dependency list."""

    files: dict[str, bytes]
    pyproject_requirements: tuple[str, ...]
    roots: tuple[str, ...] = ()  # the files installed with -r; the others are their includes
    notes: tuple[str, ...] = ()  # include lines left out, and why

    @property
    def empty(self) -> bool:
        return not self.files and not self.pyproject_requirements

    def digest(self, base_image_id: str, *extra: str) -> str:
        """The cache key: the recipe, the base, the files, and `extra` (the CA bundle's
        digest, the build's network)."""
        h = hashlib.sha256(f"{RECIPE_VERSION}\0{base_image_id}\0".encode())
        for part in extra:
            if part:  # no CA bundle, the default network: the key of the plain layer
                h.update(part.encode() + b"\0")
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + self.files[path] + b"\0")
        h.update("\n".join(self.pyproject_requirements).encode())
        return h.hexdigest()[:16]


def detect_dependencies(snapshot: Snapshot) -> DependencySpec:
    by_path = {e.path: e for e in snapshot.entries()}

    def read(path: str) -> bytes | None:
        entry = by_path.get(path)
        return snapshot.read_blobs([entry]).get(path) if entry is not None else None

    chosen = requirements.plan(by_path, read)
    pyproject = read("pyproject.toml")
    wanted: list[str] = []
    if pyproject is not None:
        try:
            project = tomllib.loads(pyproject.decode()).get("project", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            project = {}
        wanted.extend(project.get("dependencies", []) or [])
        extras = project.get("optional-dependencies", {}) or {}
        wanted.extend(requirements.pyproject_extras(extras))
    # A project's own name among its extras (e.g. "pkg[test]") cannot be installed from PyPI.
    own = _canonical(project.get("name") or "") if pyproject is not None else ""
    wanted = [r for r in wanted if not own or _canonical(_req_name(r)) != own]
    return DependencySpec(chosen.files, tuple(dict.fromkeys(wanted)), chosen.roots,
                          chosen.notes)


LOCAL_REQUIREMENT = re.compile(rb"^\s*(-e\s|--editable\s|\.|/|file:)")


def _without_local_requirements(data: bytes) -> bytes:
    """Requirement lines naming the project itself (`-e .[test]`, `./pkg`) cannot install in
    a layer that holds only the dependency files; the sandbox imports the project from
    PYTHONPATH instead."""
    return b"".join(line for line in data.splitlines(keepends=True)
                    if not LOCAL_REQUIREMENT.match(line))


def _canonical(name: str) -> str:
    """PEP 503: "Demo_Pkg", "demo-pkg" and "demo.pkg" are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(requirement: str) -> str:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return found.group(1) if found else ""


def ensure_image(client: docker.DockerClient, base: str, snapshot: Snapshot, *,
                 ca_bundle: Path | None = None, pull: bool = True,
                 network: BuildNetwork | None = None, limits: BuildLimits | None = None,
                 log: Callable[[str], None] = lambda _line: None) -> str:
    """The tag of an image with `snapshot`'s dependencies on `base`, built when missing
    (sandbox/layerbuild.py: no network but the index, limits, no shell)."""
    network = network or BuildNetwork()
    base_image = _base_image(client, base, pull=pull, log=log)
    spec = detect_dependencies(snapshot)
    network_key = "" if network == BuildNetwork() else network.key()
    tag = f"{LAYER_REPO}:{spec.digest(base_image.id, ca_digest(ca_bundle), network_key)}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    log(f"building the dependency layer {tag} on {base}")
    files, plan = build_inputs(spec, ca_bundle)
    build_layer(client, base_image, tag, files, plan, limits=limits, network=network,
                log=lambda line: None if line.startswith(("Requirement already", "$ "))
                else log(line))
    return tag


def build_inputs(spec: DependencySpec, ca_bundle: Path | None
                 ) -> tuple[dict[str, bytes], dict]:
    """The files mounted into the build (relative to its folder) and its plan."""
    files: dict[str, bytes] = {}
    if ca_bundle is not None:
        files["ca-bundle.pem"] = Path(ca_bundle).read_bytes()
    for path, data in spec.files.items():
        files[f"deps/{path}"] = _without_local_requirements(data)
    if spec.pyproject_requirements:
        files["pyproject-requirements.txt"] = "\n".join(spec.pyproject_requirements).encode()
    plan = build_plan(spec.roots or sorted(spec.files), bool(spec.pyproject_requirements),
                      ca_bundle is not None)
    return files, plan


def resolve_base_image(client: docker.DockerClient, requested: str | None) -> str:
    """The base image to use: the requested one, or the first of the registry image and the
    offline image that is present locally, or the registry image to be pulled."""
    if requested:
        return requested
    for candidate in (REGISTRY_IMAGE, OFFLINE_IMAGE):
        try:
            client.images.get(candidate)
            return candidate
        except docker.errors.ImageNotFound:
            continue
    return REGISTRY_IMAGE


def _base_image(client: docker.DockerClient, base: str, *, pull: bool,
                log: Callable[[str], None]):
    try:
        return client.images.get(base)
    except docker.errors.ImageNotFound:
        pass
    if pull and base != OFFLINE_IMAGE:
        try:
            log(f"pulling {base}")
            return client.images.pull(base)
        except docker.errors.APIError:
            pass
    raise ImageMissing(
        f"base image {base!r} is not present and could not be pulled: with no registry, "
        f"build the offline image with `sudo bash {BUILD_SCRIPT}` and use --image {OFFLINE_IMAGE}")
