"""Session-scoped helpers for the tests that use the real Docker sandbox.

Docker is real in these tests (see DESIGN.md, "Testing"): when the engine or the offline
base image is missing, ``require_docker_image()`` runs ``scripts/setup.sh`` once (it
installs and starts Docker and builds the image) and, if that does not work, fails the
test session with the reason. It never skips.

Import the fixtures explicitly in a test module::

    from tests.support.sandbox_env import docker_client, sandbox  # noqa: F401
"""

from __future__ import annotations

import difflib
import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import docker
import docker.errors
import pytest

from sandbox.docker_backend import LABEL, DockerSandbox, connect
from sandbox.errors import SandboxError
from sandbox.images import OFFLINE_IMAGE

ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = ROOT / "scripts" / "setup.sh"
SETUP_TIMEOUT_S = 1800

_lock = threading.Lock()
_state: dict[str, str] = {}  # "image" once ready, or "error" once setup failed


def _image_ready() -> str | None:
    """None when Docker answers and the image is present, else why not."""
    try:
        client = connect()
    except SandboxError as exc:
        return str(exc)
    try:
        client.images.get(OFFLINE_IMAGE)
    except docker.errors.ImageNotFound:
        return f"the image {OFFLINE_IMAGE} is not present"
    except docker.errors.APIError as exc:
        return f"Docker error while looking for {OFFLINE_IMAGE}: {exc}"
    finally:
        client.close()
    return None


def require_docker_image() -> str:
    """The offline sandbox image's tag, with Docker answering and the image present.

    Runs ``bash scripts/setup.sh`` once per test session when either is missing; fails the
    test (never skips) with a clear message when that does not make them available.
    """
    with _lock:
        if "image" in _state:
            return _state["image"]
        if "error" not in _state:
            problem = _image_ready()
            if problem is not None:
                try:
                    proc = subprocess.run(
                        ["bash", str(SETUP_SCRIPT)],
                        check=False,
                        cwd=ROOT,
                        capture_output=True,
                        text=True,
                        timeout=SETUP_TIMEOUT_S,
                    )
                    detail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
                    setup = f"exit {proc.returncode}: " + "\n".join(detail)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    setup = f"could not run it: {exc}"
                problem_after = _image_ready()
                if problem_after is not None:
                    _state["error"] = (
                        f"the Docker sandbox tests need Docker and the image {OFFLINE_IMAGE}: "
                        f"{problem}; `bash {SETUP_SCRIPT}` did not fix it ({problem_after}).\n"
                        f"setup.sh said ({setup})"
                    )
            if "error" not in _state:
                _state["image"] = OFFLINE_IMAGE
                return OFFLINE_IMAGE
    pytest.fail(_state["error"], pytrace=False)


@pytest.fixture(scope="session")
def docker_image() -> str:
    return require_docker_image()


@pytest.fixture(scope="session")
def docker_client(docker_image: str) -> Iterator[docker.DockerClient]:
    client = connect(pool_size=32)
    try:
        yield client
    finally:
        client.close()


def session_containers(client: docker.DockerClient, session: str) -> list:
    """Containers (running or not) that a DockerSandbox with this session label made.
    Sparse: one listing, no inspect per container, which races the sandbox removing it."""
    return client.containers.list(all=True, sparse=True,
                                  filters={"label": f"{LABEL}={session}"})


@pytest.fixture
def sandbox(docker_client: docker.DockerClient, docker_image: str) -> Iterator[DockerSandbox]:
    """A DockerSandbox on the offline image; closed at teardown, which then asserts that
    no container with its session label is left."""
    box = DockerSandbox(docker_image, client=docker_client, workers=8)
    try:
        yield box
    finally:
        box.close()
        left = session_containers(docker_client, box.session)
        for container in left:  # do not leak them into the next test either
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
        assert not left, (
            f"containers left behind by sandbox session {box.session}: "
            f"{[(c.short_id, c.status) for c in left]}"
        )


# -- building candidates ----------------------------------------------------------------------


def make_patch(old: Mapping[str, str | None], new: Mapping[str, str | None]) -> str:
    """A git-style unified diff from `old` to `new` contents (None: the file is absent)."""
    parts = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        a = before.splitlines(keepends=True) if before is not None else []
        b = after.splitlines(keepends=True) if after is not None else []
        header = [f"diff --git a/{path} b/{path}\n"]
        if before is None:
            header.append("new file mode 100644\n")
        elif after is None:
            header.append("deleted file mode 100644\n")
        body = list(
            difflib.unified_diff(
                a,
                b,
                fromfile=f"a/{path}" if before is not None else "/dev/null",
                tofile=f"b/{path}" if after is not None else "/dev/null",
                lineterm="\n",
            )
        )
        for i, line in enumerate(body):
            if not line.endswith("\n"):
                body[i] = line + "\n\\ No newline at end of file\n"
        parts.append("".join(header + body))
    return "".join(parts)


def tree_digest(root: str | os.PathLike) -> dict[str, str]:
    """Every entry under `root` (including .git) with its kind, mode and content hash."""
    root = Path(root)
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if path.is_symlink():
                out[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                out[rel] = f"dir:{oct(st.st_mode)}"
            else:
                out[rel] = f"file:{oct(st.st_mode)}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    return out
