"""The dependency layer: what is detected, what goes into the build context, and the cache
(the builds are real and offline: only requirements the base image already satisfies)."""

# ruff: noqa: F811 - the fixtures imported from tests.support.sandbox_env are parameters
from __future__ import annotations

import io
import tarfile
import time
import uuid

import docker
import docker.errors
import docker.models.containers
import docker.models.images
import pytest

from sandbox.api import Job
from sandbox.docker_backend import DockerSandbox
from sandbox.errors import ImageBuildFailed, ImageMissing
from sandbox.images import (
    LAYER_REPO,
    OFFLINE_IMAGE,
    REGISTRY_IMAGE,
    DependencySpec,
    build_inputs,
    detect_dependencies,
    ensure_image,
    resolve_base_image,
)
from sandbox.api import Limits
from sandbox.snapshot import Snapshot
from tests.support.sandbox_env import docker_client, docker_image  # noqa: F401

PYPROJECT = """\
[project]
name = "demo"
version = "0.1"
dependencies = ["requests>=2", "attrs"]

[project.optional-dependencies]
test = ["pytest>=7", "demo[docs]"]
tests = ["hypothesis"]
testing = ["coverage"]
dev = ["ruff", "attrs"]
docs = ["sphinx"]
"""


def spec_of(files: dict[str, str | bytes]) -> DependencySpec:
    with Snapshot.from_files(files) as snap:
        return detect_dependencies(snap)


def untar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


# -- detection and the build context (no Docker) --------------------------------------------


def test_requirement_files_are_detected():
    spec = spec_of({
        "requirements.txt": "requests\n", "requirements-dev.txt": "pytest\n",
        "requirements/test.txt": "hypothesis\n", "requirements/nested/x.txt": "no\n",
        "docs/requirements.txt": "sphinx\n", "requirements.in": "no\n", "app.py": "x = 1\n",
    })
    # the test requirements (and the project's own requirements.txt), not the dev/docs ones
    assert set(spec.files) == {"requirements.txt", "requirements/test.txt"}
    assert spec.roots == ("requirements.txt", "requirements/test.txt")
    assert spec.pyproject_requirements == ()
    assert not spec.empty


def test_pyproject_dependencies_and_test_extras():
    spec = spec_of({"pyproject.toml": PYPROJECT, "demo/__init__.py": ""})
    assert spec.files == {}  # the pyproject itself is not a requirements file
    # the test extras; the dev extra only where no test extra exists
    assert spec.pyproject_requirements == (
        "requests>=2", "attrs", "pytest>=7", "hypothesis", "coverage")
    assert "sphinx" not in spec.pyproject_requirements  # not a test extra
    assert not any(r.startswith("demo") for r in spec.pyproject_requirements)


def test_dependencies_that_share_a_prefix_with_the_project_are_kept():
    """Only the project's own name (e.g. "jupyter[test]") is dropped, not every requirement
    that starts with the same letters ("jupyterlab", "jupyter-core")."""
    spec = spec_of({"pyproject.toml": (
        '[project]\nname = "jupyter"\nversion = "1"\n'
        'dependencies = ["jupyterlab>=4", "jupyter-core", "notebook"]\n'
        '[project.optional-dependencies]\ntest = ["jupyter[docs]", "pytest"]\n')})
    assert spec.pyproject_requirements == ("jupyterlab>=4", "jupyter-core", "notebook", "pytest")


def test_own_name_is_recognised_after_normalisation():
    """PEP 503: "Demo_Pkg", "demo-pkg" and "demo.pkg" are one project; its self-reference in
    an extra cannot be installed from an index and must be dropped."""
    spec = spec_of({"pyproject.toml": (
        '[project]\nname = "Demo_Pkg"\nversion = "1"\ndependencies = []\n'
        '[project.optional-dependencies]\ntest = ["demo-pkg[docs]", "demo.pkg[extra]", "pytest"]\n')})
    assert spec.pyproject_requirements == ("pytest",)


def test_no_dependency_files_and_a_broken_pyproject():
    assert spec_of({"a.py": "x = 1\n"}).empty
    broken = spec_of({"pyproject.toml": "[project\nname = ", "requirements.txt": "six\n"})
    assert broken.pyproject_requirements == ()
    assert set(broken.files) == {"requirements.txt"}


def test_digest_follows_the_dependency_files_and_the_base():
    base = {"requirements.txt": "requests\n", "pyproject.toml": PYPROJECT, "app.py": "x = 1\n"}
    digest = spec_of(base).digest("sha256:base")
    assert spec_of({**base, "app.py": "x = 2\n"}).digest("sha256:base") == digest
    assert spec_of({**base, "requirements.txt": "requests<3\n"}).digest("sha256:base") != digest
    assert spec_of({**base, "pyproject.toml": PYPROJECT.replace("attrs", "six")}
                   ).digest("sha256:base") != digest
    assert spec_of(base).digest("sha256:other") != digest


def test_build_inputs_mount_the_ca_bundle_and_use_no_shell(tmp_path):
    ca = tmp_path / "corp-ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB-test\n-----END CERTIFICATE-----\n")
    spec = DependencySpec({"requirements.txt": b"requests\n", "requirements/test.txt": b"x\n"},
                          ("attrs",))
    files, plan = build_inputs(spec, ca)
    assert files["ca-bundle.pem"] == ca.read_bytes()
    assert files["deps/requirements.txt"] == b"requests\n"
    assert files["deps/requirements/test.txt"] == b"x\n"
    assert files["pyproject-requirements.txt"] == b"attrs"
    assert plan["env"]["PIP_CERT"] == "/mulligan-build/ca-bundle.pem"
    assert all(isinstance(step, list) for step in plan["steps"])  # argument lists, no shell
    assert [step[-1] for step in plan["steps"]] == [
        "requirements.txt", "requirements/test.txt", "/mulligan-build/pyproject-requirements.txt"]
    assert "PIP_CERT" not in build_inputs(spec, None)[1]["env"]


def test_the_ca_bundle_is_part_of_the_cache_key(tmp_path):
    from sandbox.layerbuild import ca_digest

    one, two = tmp_path / "one.pem", tmp_path / "two.pem"
    one.write_bytes(b"one")
    two.write_bytes(b"two")
    spec = DependencySpec({"requirements.txt": b"requests\n"}, ())
    keys = {spec.digest("sha256:base", ca_digest(ca)) for ca in (None, one, two)}
    assert len(keys) == 3


# -- real builds ------------------------------------------------------------------------------


@pytest.fixture
def built_tags(docker_client):
    tags: list[str] = []
    yield tags
    for tag in tags:
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


@pytest.mark.docker
def test_ensure_image_builds_once_then_hits_the_cache(docker_client, docker_image, built_tags,
                                                      tmp_path, monkeypatch):
    ca = tmp_path / "corp-ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB-layer-test\n-----END CERTIFICATE-----\n")
    unique = uuid.uuid4().hex  # a dependency file no earlier run has built
    files = {
        # Installable with no network: the base image already satisfies them.
        "requirements.txt": f"# {unique}\npytest\n",
        "pyproject.toml": '[project]\nname = "demo"\nversion = "0"\ndependencies = []\n'
                          '[project.optional-dependencies]\ntest = ["pytest>=7"]\n',
        "m.py": "def f():\n    return 1\n",
        "tests/test_m.py": "from m import f\n\n\ndef test_f():\n    assert f() == 1\n",
    }
    with Snapshot.from_files(files) as snap:
        lines: list[str] = []
        tag = ensure_image(docker_client, docker_image, snap, ca_bundle=ca, pull=False,
                           log=lines.append)
        built_tags.append(tag)
        assert tag.startswith(LAYER_REPO + ":")
        assert any(line.startswith("building the dependency layer") for line in lines)
        image = docker_client.images.get(tag)
        assert image.labels.get("mulligan.layer") == "deps"
        created = image.attrs["Created"]

        # Second call: same tag, nothing built.
        def no_build(*args, **kwargs):
            raise AssertionError("ensure_image built again instead of using the cache")

        monkeypatch.setattr(docker.models.containers.ContainerCollection, "create", no_build)
        started = time.monotonic()
        again: list[str] = []
        assert ensure_image(docker_client, docker_image, snap, ca_bundle=ca, pull=False,
                            log=again.append) == tag
        assert time.monotonic() - started < 5
        assert again == []
        assert docker_client.images.get(tag).attrs["Created"] == created
        monkeypatch.undo()

        # The layer is a working sandbox image, and the CA bundle (used by the build only)
        # is not in it: the candidates' tests cannot read it.
        with DockerSandbox(tag, client=docker_client, workers=1) as box:
            report = box.run(Job(snap, limits=Limits(timeout_s=60)))
            assert report.passed, report.output[-2000:]
            assert list(report.tests) == ["tests/test_m.py::test_f"]
            cat = box.run(Job(snap, test_command="grep -rlq MIIB-layer-test /opt /mulligan-build "
                              "/etc /usr /tmp /root && echo FOUND || echo CLEAN",
                              limits=Limits(timeout_s=120)))
            assert "CLEAN" in cat.output and "FOUND" not in cat.output, cat.output[-500:]


@pytest.mark.docker
def test_ensure_image_reports_a_failed_install(docker_client, docker_image):
    files = {"requirements.txt": f"# {uuid.uuid4().hex}\nthis is not a requirement!!!\n"}
    with Snapshot.from_files(files) as snap, pytest.raises(ImageBuildFailed) as failure:
        ensure_image(docker_client, docker_image, snap, pull=False)
    message = str(failure.value)
    assert "Invalid requirement" in message
    assert "installing from requirements.txt failed" in message
    assert "--ca-bundle" in message


@pytest.mark.docker
def test_missing_base_image_says_how_to_build_it(docker_client, docker_image):
    with Snapshot.from_files({"a.py": "x = 1\n"}) as snap, pytest.raises(ImageMissing) as missing:
        ensure_image(docker_client, "mulligan/no-such-base:never", snap, pull=False)
    assert "build-offline-image.sh" in str(missing.value)


@pytest.mark.docker
def test_resolve_base_image(docker_client, docker_image):
    assert resolve_base_image(docker_client, "my/image:1") == "my/image:1"
    try:
        docker_client.images.get(REGISTRY_IMAGE)
        expected = REGISTRY_IMAGE
    except docker.errors.ImageNotFound:
        expected = OFFLINE_IMAGE  # present: the docker_image fixture made sure of it
    assert resolve_base_image(docker_client, None) == expected


def test_local_requirement_lines_are_left_out_of_the_layer():
    """`-e .[test]` and local paths name the project itself, which is not in the build
    context: they are dropped from the layer's copy; index requirements are kept."""
    from sandbox.images import _without_local_requirements

    text = b"-e .[test]\nrequests>=2\n./local\n--editable ../x\nfile:foo\n/abs/pkg\npytest\n"
    assert _without_local_requirements(text) == b"requests>=2\npytest\n"
