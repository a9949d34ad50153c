"""The Docker backend: one fresh, locked-down container per candidate."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from sandbox.api import Job, Limits, RunStatus, TestReport
from sandbox.diff import diff_paths
from sandbox.errors import DiskFull, DockerUnavailable, ImageMissing, SandboxError
from sandbox.junit import parse_junit
from sandbox.reaper import owner_labels, reap_orphans, remove_all, remove_detached
from sandbox.snapshot import PatchDoesNotApply
from sandbox.tamper import review
from sandbox.testpaths import (
    CONFIG_FILES,
    TEST_DIRS,
    TEST_PATTERNS,
    infrastructure_edits,
    is_test_path,
    select_tests,
    uses_pytest,
)

SANDBOX_UID = 1000
WORKDIR = "/workspace"
JUNIT_BYTES = 8 << 20
# The runner (root, these capabilities only) unpacks and guards; the tests run as SANDBOX_UID
# with none. See sandbox/runner.py for what each one is for.
RUNNER_CAPS = ["CHOWN", "SETUID", "SETGID", "SETPCAP", "KILL"]
# pytest writes its JUnit XML to this inherited pipe descriptor (a /dev/fd path); the second
# opinion uses another. Fixed, not random: pytest prints the path, and the output goes into
# prompts, which must repeat exactly for a resumed run to reuse its recorded model calls.
JUNIT_FDS = {False: 63, True: 137}
# Grace on top of the runner's own timeout before the host kills the container itself.
HOST_GRACE_S = 20.0
# How long close() waits for removals before handing the rest to a detached remover: the
# terminal comes back within two seconds even when a loaded daemon is slow to remove.
CLOSE_WAIT_S = 1.5
RUNNER_SOURCE = (Path(__file__).with_name("runner.py")).read_text()
LABEL = "mulligan.sandbox"


def connect(base_url: str | None = None, pool_size: int = 16) -> docker.DockerClient:
    """A Docker client, or DockerUnavailable with one line that says how to fix it."""
    host = base_url or os.environ.get("DOCKER_HOST")
    try:
        client = docker.DockerClient(base_url=host, max_pool_size=pool_size) if host else \
            docker.from_env(max_pool_size=pool_size)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(explain_docker_error(exc, host)) from None
    except requests.exceptions.RequestException as exc:
        raise DockerUnavailable(explain_docker_error(exc, host)) from None


def explain_docker_error(exc: Exception, host: str | None) -> str:
    text = str(exc)
    sock = "/var/run/docker.sock"
    where = host or f"unix://{sock}"
    if "Permission denied" in text or "PermissionError" in text:
        return (f"permission denied on the Docker socket ({where}): add your user to the "
                "'docker' group (sudo usermod -aG docker $USER) and log in again")
    if host is None and not Path(sock).exists():
        from shutil import which

        if which("dockerd") is None and which("docker") is None:
            return ("Docker is not installed: install it (Debian: sudo apt-get install docker.io, "
                    "or run scripts/setup.sh as root)")
        return ("the Docker daemon is not running (no socket at /var/run/docker.sock): start it "
                "(sudo systemctl start docker, or scripts/setup.sh as root)")
    return f"cannot reach the Docker daemon at {where}: {text.splitlines()[0][:200]}"


class DockerSandbox:
    """Runs each job in its own container: no network, capped resources, non-root, read-only
    root file system, the workspace on a size-limited tmpfs, removed on every exit path."""

    def __init__(self, image: str, *, client: docker.DockerClient | None = None,
                 workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.client = client or connect(pool_size=self.workers + 4)
        self.image = image
        self.session = secrets.token_hex(6)
        self._live: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        # Warm spares: containers already created and started, their runner blocked reading
        # its job from stdin. Each is still used for one candidate only, then removed.
        self._spares: dict[Limits, list[_Started]] = {}
        self._warm_target: dict[Limits, int] = {}
        self._pending: dict[Limits, int] = {}
        self._filler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mulligan-warm")
        self._image_plugins: list[str] | None = None  # pytest plugins installed in the image
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise ImageMissing(
                f"sandbox image {image!r} is not present: run scripts/setup.sh (builds the "
                f"offline image) or `docker pull {image}`") from None
        threading.Thread(target=reap_orphans, args=(self.client, LABEL), daemon=True,
                         name="mulligan-reap").start()  # of runs killed outright

    # -- public API -----------------------------------------------------------------------

    def run(self, job: Job) -> TestReport:
        started = time.monotonic()
        changed_tests = sorted({p for p in diff_paths(job.patch) if is_test_path(p)})
        try:
            tree = job.snapshot.apply(job.patch)
        except PatchDoesNotApply as exc:
            return TestReport(RunStatus.PATCH_FAILED, None, time.monotonic() - started,
                              patch_error=str(exc), changed_test_files=changed_tests)
        edits, tampering, protected = _inspect(job, tree)
        payload = job.snapshot.tar(tree)
        report = self._run_container(job, payload, started, protected)
        report.changed_test_files = sorted(set(changed_tests) | {e.path for e in edits}
                                           | set(report.changed_test_files))
        report.tampering = [str(e) for e in edits] + tampering + [
            f"{p} (changed while the tests ran)" for p in report.changed_test_files
            if p not in {e.path for e in edits} and p not in changed_tests]
        return report

    def run_many(self, jobs: Sequence[Job], workers: int | None = None
                 ) -> Iterator[tuple[int, TestReport]]:
        """Yield (index, report) as each job finishes, at most `workers` at a time."""
        pool = ThreadPoolExecutor(max_workers=max(1, workers or self.workers),
                                  thread_name_prefix="mulligan-sandbox")
        try:
            futures = {pool.submit(self.run, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def prewarm(self, limits: Limits, count: int) -> None:
        """Keep `count` started containers with these limits ready, so a candidate does not
        wait for a container to be created and started (most of the per-candidate cost)."""
        with self._lock:
            self._warm_target[limits] = max(0, count)
        self._refill(limits)

    def close(self) -> None:
        """Remove every container this sandbox still has (also on Ctrl-C)."""
        self._closed = True
        self._filler.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._spares.clear()
            live = list(self._live)
        left = remove_all(self.client, live, deadline_s=CLOSE_WAIT_S)
        remove_detached(left)
        with self._lock:
            self._live.difference_update(live)

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one container --------------------------------------------------------------------

    def _run_container(self, job: Job, payload: bytes, started: float,
                       protected: Sequence[str] = ()) -> TestReport:
        if self._closed:
            raise SandboxError("the sandbox was closed")
        limits = job.limits
        nonce = secrets.token_hex(16)
        command = job.test_command
        env = {
            "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": f"{WORKDIR}:{WORKDIR}/src", "PYTHONUNBUFFERED": "1",
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            **job.env,
        }
        junit_fd = None
        if uses_pytest(command):
            junit_fd = JUNIT_FDS[job.second_opinion]
            options = [f"--junitxml=/dev/fd/{junit_fd}", "-o junit_family=xunit1",
                       "-p no:cacheprovider"]
            if job.second_opinion:
                # Another runner: options in another order, and no auto-loaded plugins when
                # the image has none (so one the workspace planted is not loaded either).
                options.reverse()
                if self._image_plugins == []:
                    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
            env["PYTEST_ADDOPTS"] = " ".join(options) + " " + env.get("PYTEST_ADDOPTS", "")
            command = select_tests(command, job.select)
        header = {
            "command": command, "env": env, "workdir": WORKDIR, "nonce": nonce,
            "timeout_s": limits.timeout_s, "output_bytes": limits.output_bytes,
            "junit_fd": junit_fd, "junit_bytes": JUNIT_BYTES, "uid": SANDBOX_UID,
            "protected": sorted(protected), "test_dirs": sorted(TEST_DIRS),
            "test_patterns": list(TEST_PATTERNS),
        }
        started_container = self._take(limits)
        container, sock = started_container.container, started_container.sock
        try:
            raw = getattr(sock, "_sock", sock)
            try:
                raw.sendall(json.dumps(header).encode() + b"\n" + payload)
                raw.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the runner died before reading everything: reported as crashed below
            host_timeout = limits.timeout_s + HOST_GRACE_S
            exit_code, host_killed = None, False
            try:
                status = container.wait(timeout=host_timeout)
                exit_code = status.get("StatusCode")
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                host_killed = True
                try:
                    container.kill()
                except docker.errors.APIError:
                    pass  # it exited on its own meanwhile: its logs still say how it went
            finally:
                try:
                    sock.close()
                except OSError:
                    pass
            logs = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
            report = _report_from_logs(logs, nonce, exit_code, started)
            if self._image_plugins is None and report.status is not RunStatus.CRASHED:
                self._image_plugins = report.plugins
            if host_killed and report.status is RunStatus.CRASHED:
                return TestReport(RunStatus.TIMED_OUT, None, time.monotonic() - started,
                                  output="(killed by the host after the wall-time limit)")
            return report
        except docker.errors.APIError as exc:
            if self._closed:
                raise SandboxError("the sandbox was closed while a candidate ran") from None
            error = _api_error(exc)
            if isinstance(error, DiskFull):
                raise error from None
            # The container went away under us (removed, or raced its own exit): this
            # candidate has no verdict, the run goes on.
            return TestReport(RunStatus.CRASHED, None, time.monotonic() - started,
                              output=f"the sandbox container failed: {error}")
        finally:
            self._remove(container.id)

    # -- containers and warm spares ----------------------------------------------------------

    def _start(self, limits: Limits) -> _Started:
        """A new container with `limits`, started, its runner waiting for the job on stdin."""
        if self._closed:
            raise SandboxError("the sandbox was closed")
        tmpfs_opts = "rw,exec,nosuid,nodev,uid=0,gid=0,mode=1777"
        try:
            container = self.client.containers.create(
                self.image,
                command=["python3", "-I", "-c", RUNNER_SOURCE],
                stdin_open=True,
                user="0:0",  # the runner; the tests run as SANDBOX_UID (sandbox/runner.py)
                working_dir=WORKDIR,
                network_mode="bridge" if limits.network else "none",
                mem_limit=f"{limits.memory_mb}m",
                memswap_limit=f"{limits.memory_mb}m",
                nano_cpus=int(limits.cpus * 1e9),
                pids_limit=limits.pids,
                cap_drop=["ALL"],
                cap_add=RUNNER_CAPS,
                security_opt=["no-new-privileges"],
                read_only=True,
                tmpfs={WORKDIR: f"{tmpfs_opts},size={limits.workspace_mb}m",
                       "/tmp": f"{tmpfs_opts},size={limits.workspace_mb}m"},
                init=True,
                environment={"HOME": "/tmp"},
                labels={LABEL: self.session, **owner_labels()},
                log_config=docker.types.LogConfig(
                    type="json-file", config={"max-size": str(_log_bytes(limits)),
                                              "max-file": "1"}),
                ulimits=[docker.types.Ulimit(name="nofile", soft=1024, hard=1024)],
            )
        except docker.errors.ImageNotFound:
            raise ImageMissing(f"sandbox image {self.image!r} is not present") from None
        except docker.errors.APIError as exc:
            raise _api_error(exc) from None
        with self._lock:
            self._live.add(container.id)
        if self._closed:  # close() ran while this container was being created
            self._remove(container.id)
            raise SandboxError("the sandbox was closed")
        try:
            sock = self.client.api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
            container.start()
        except BaseException:
            self._remove(container.id)
            raise
        return _Started(container, sock)

    def _take(self, limits: Limits) -> _Started:
        with self._lock:
            spares = self._spares.get(limits)
            spare = spares.pop() if spares else None
            # a spare is made for one expected job: refilling beyond what prewarm() announced
            # would leave idle containers competing with the model on a small machine
            self._warm_target[limits] = max(0, self._warm_target.get(limits, 0) - 1)
        self._refill(limits)
        return spare if spare is not None else self._start(limits)

    def _refill(self, limits: Limits) -> None:
        with self._lock:
            if self._closed:
                return
            missing = (self._warm_target.get(limits, 0) - len(self._spares.get(limits, []))
                       - self._pending.get(limits, 0))
            if missing <= 0:
                return
            self._pending[limits] = self._pending.get(limits, 0) + missing
        for _ in range(missing):
            try:
                self._filler.submit(self._add_spare, limits)
            except RuntimeError:  # closed meanwhile
                return

    def _add_spare(self, limits: Limits) -> None:
        try:
            spare = self._start(limits)
        except Exception:  # a spare is an optimisation: a failure shows when it is needed
            spare = None
        with self._lock:
            self._pending[limits] -= 1
            wanted = len(self._spares.get(limits, [])) < self._warm_target.get(limits, 0)
            if spare is not None and not self._closed and wanted:  # else its job started first
                self._spares.setdefault(limits, []).append(spare)
                return
        if spare is not None:
            self._remove(spare.container.id)

    def _remove(self, cid: str) -> None:
        try:
            self.client.api.remove_container(cid, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise
        with self._lock:
            self._live.discard(cid)


@dataclass
class _Started:
    container: Any
    sock: Any


def _log_bytes(limits: Limits) -> int:
    """Room for the result line, which must never be rotated away: JSON escapes a byte as
    at most 6 ("\\u0001"), base64 adds a third, plus the runner's own lines."""
    return 8 * (limits.output_bytes + JUNIT_BYTES) + (1 << 20)


def _report_from_logs(logs: str, nonce: str, exit_code: int | None, started: float) -> TestReport:
    """The runner's result; anything that does not decode as one (cut, interleaved, forged)
    makes the run a crashed candidate, never an exception."""
    wall = time.monotonic() - started
    try:
        return _decode_result(logs, nonce, wall)
    except _NoResult:
        why = "without a result"
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        why = f"with an undecodable result ({type(exc).__name__})"
    return TestReport(RunStatus.CRASHED, exit_code, wall,
                      output=f"the sandbox runner ended {why} (exit {exit_code})\n"
                      + logs[-4000:])


class _NoResult(Exception):
    pass


def _decode_result(logs: str, nonce: str, wall: float) -> TestReport:
    lines = [line for line in logs.splitlines() if line.startswith(nonce + " ")]
    if len(lines) != 1:
        raise _NoResult
    result = json.loads(base64.b64decode(lines[0][len(nonce) + 1:], validate=True))
    junit = result["junit"]
    tests = parse_junit(junit) if isinstance(junit, str) else {}
    return TestReport(
        status=RunStatus.TIMED_OUT if result["timed_out"] else RunStatus.COMPLETED,
        exit_code=result["exit_code"],
        wall_s=wall,
        output=str(result["output"]),
        output_truncated=bool(result["truncated"]),
        tests=tests,
        changed_test_files=[str(p) for p in result["tests_changed_at_runtime"]],
        plugins=[str(p) for p in result["plugins"]],
        evidence=bool(tests) or isinstance(junit, str),
    )


def _inspect(job: Job, tree: str) -> tuple[list, list[str], list[str]]:
    """The patch's test edits and tampering, and the paths the runner must keep read-only
    (every test path of the patched tree and its test configuration)."""
    snap = job.snapshot
    old_entries = {e.path: e for e in snap.entries()}
    new_entries = {e.path: e for e in snap.entries(tree)}
    protected = [p for p in new_entries if is_test_path(p) or p in CONFIG_FILES]
    changed = sorted(p for p in set(old_entries) | set(new_entries)
                     if getattr(old_entries.get(p), "sha", None)
                     != getattr(new_entries.get(p), "sha", None))
    configs = [p for p in CONFIG_FILES if p in old_entries]
    old = snap.read_blobs([old_entries[p] for p in set(changed + configs) if p in old_entries])
    new = snap.read_blobs([new_entries[p] for p in changed if p in new_entries])
    text = lambda blob: blob.decode("utf-8", "replace") if blob is not None else None
    before = {p: text(old.get(p)) for p in changed}
    after = {p: text(new.get(p)) for p in changed}
    config = {p: text(old[p]) or "" for p in configs}
    edits = infrastructure_edits(before, after, job.test_command, set(old_entries), config)
    protected += [e.path for e in edits if e.path in new_entries]
    return edits, review(before, after), sorted(set(protected))


def _api_error(exc: docker.errors.APIError) -> SandboxError:
    text = str(exc)
    if "no space left on device" in text.lower():
        return DiskFull("Docker is out of disk space: free some (docker system prune) and retry")
    return SandboxError(f"Docker refused the sandbox container: {text.splitlines()[0][:300]}")
