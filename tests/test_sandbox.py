"""The Docker sandbox against hostile candidates, per-test outcomes and cleanup (real Docker).

Every hostile candidate is a real patch: the snapshot holds `m.py` and `tests/test_m.py`,
and the candidate's diff makes `m.py` do the hostile thing when the tests import it. The
hostile runs use `pytest -s` so that what the candidate saw reaches the report's output.
"""

# ruff: noqa: F811 - the fixtures imported from tests.support.sandbox_env are parameters
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import socket
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import docker
import docker.errors
import docker.models.containers
import pytest
import requests.exceptions

from sandbox.api import Job
from sandbox.docker_backend import DockerSandbox
from sandbox.errors import SandboxError
from sandbox.api import Limits, Outcome, RunStatus
from sandbox.api import TestReport as Report  # (a "Test*" name would be collected)
from sandbox.snapshot import Snapshot
from tests.support.sandbox_env import (  # noqa: F401
    docker_client,
    docker_image,
    make_patch,
    sandbox,
    session_containers,
    tree_digest,
)

pytestmark = pytest.mark.docker

BASE = {
    "m.py": "def value():\n    return 1\n\n\ndef double(x):\n    return x + x + 1\n",
    "tests/test_m.py": (
        "import m\n\n\ndef test_value():\n    assert m.value() == 1\n\n\n"
        "def test_double():\n    assert m.double(2) == 4\n"
    ),
}
FIXED_M = "def value():\n    return 1\n\n\ndef double(x):\n    return x + x\n"
HOSTILE_COMMAND = "python -m pytest -q -s -p no:cacheprovider"
# How far past its wall-time limit a run may end (container start, kill, removal; 2-core CI).
MARGIN_S = 6.0
PROBE = "PROBE "


def hostile(code: str) -> str:
    """A candidate diff whose m.py runs `code` at import, then defines the fixed module (so
    the tests pass unless the hostile code stops them)."""
    new = dict(BASE)
    new["m.py"] = textwrap.dedent(code).strip() + "\n\n\n" + FIXED_M
    return make_patch(BASE, new)


def benign() -> str:
    return make_patch(BASE, {**BASE, "m.py": FIXED_M})


def probe(report: Report) -> dict:
    """The JSON object that a candidate printed on its `PROBE ` line."""
    for line in report.output.splitlines():
        if line.startswith(PROBE):
            return json.loads(line[len(PROBE):])
    raise AssertionError(f"the candidate printed no probe line; output:\n{report.output[-3000:]}")


def file_sha(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def host_repo(tmp_path_factory):
    """The user's repository on the host: a git repo with BASE committed, an uncommitted
    change and an untracked file. Its full digest (including .git) must never change."""
    import subprocess

    repo = tmp_path_factory.mktemp("user-repo")
    for rel, text in BASE.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    env = {**os.environ, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x",
           "GIT_COMMITTER_NAME": "u", "GIT_COMMITTER_EMAIL": "u@x"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    (repo / "notes.txt").write_text("untracked notes\n")
    before = tree_digest(repo)
    yield repo
    assert tree_digest(repo) == before, "the user's repository changed on the host"


@pytest.fixture(scope="module")
def snap(host_repo):
    with Snapshot.from_directory(host_repo) as snapshot:
        yield snapshot


@pytest.fixture
def untouched(host_repo):
    """Asserts after the test that the host repository and /etc/passwd are byte-identical."""
    repo_before = tree_digest(host_repo)
    passwd_before = file_sha("/etc/passwd")
    yield
    assert tree_digest(host_repo) == repo_before, "the user's repository changed on the host"
    assert file_sha("/etc/passwd") == passwd_before


def run_hostile(sandbox: DockerSandbox, snap: Snapshot, code: str, limits: Limits) -> Report:
    started = time.monotonic()
    report = sandbox.run(Job(snap, hostile(code), test_command=HOSTILE_COMMAND, limits=limits))
    elapsed = time.monotonic() - started
    assert report.status is not RunStatus.PATCH_FAILED, report.patch_error
    assert elapsed <= limits.timeout_s + MARGIN_S, (
        f"the run took {elapsed:.1f}s with a {limits.timeout_s}s limit: {report.status}")
    return report


# -- hostile candidate code -----------------------------------------------------------------

RM_RF = """
import json, os, shutil, subprocess
proc = subprocess.run(["rm", "-rf", "--no-preserve-root", "/"], capture_output=True)
shutil.rmtree({repo!r}, ignore_errors=True)  # the user's repository, by its host path
shutil.rmtree("/workspace", ignore_errors=True)
print("PROBE " + json.dumps({{
    "rm_exit": proc.returncode,
    "etc_passwd_left": os.path.exists("/etc/passwd"),
    "python_left": os.path.exists("/usr/bin/python3"),
    "workspace_left": sorted(os.listdir("/workspace")),
    "tests_left": sorted(os.listdir("/workspace/tests")),
}}), flush=True)
"""

FORK_BOMB = """
import json, os, signal, time
children = []
while len(children) < 1000:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
print("PROBE " + json.dumps({"forked": len(children)}), flush=True)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
while True:  # the real bomb: every process forks forever, each in a session of its own
    try:
        if os.fork() == 0:
            os.setsid()
    except OSError:
        pass
"""

MEMORY_HOG = """
chunks = []
for i in range(64):
    chunks.append(b"\\x01" * (32 << 20))
    print("PROBE {\\"allocated_mb\\": %d}" % ((i + 1) * 32), flush=True)
print("ALLOCATED-ALL", flush=True)
"""

NETWORK = """
import json, os, socket
result = {{}}
for host, port in (("1.1.1.1", 53), ({gateway!r}, {port}), ("8.8.8.8", 443)):
    try:
        socket.create_connection((host, port), timeout=3).close()
        result[f"{{host}}:{{port}}"] = "CONNECTED"
    except OSError as exc:
        result[f"{{host}}:{{port}}"] = repr(exc)
try:
    socket.getaddrinfo("pypi.org", 443)
    result["dns"] = "RESOLVED"
except OSError as exc:
    result["dns"] = repr(exc)
result["interfaces"] = sorted(os.listdir("/sys/class/net"))
result["routes"] = open("/proc/net/route").read().splitlines()[1:]
print("PROBE " + json.dumps(result), flush=True)
"""

ENV_DUMP = """
import json, os, subprocess
dump = subprocess.run(["env"], capture_output=True, text=True).stdout
read = 0
for pid in os.listdir("/proc"):
    if pid.isdigit() or pid == "self":
        try:
            dump += open(f"/proc/{pid}/environ", "rb").read().replace(b"\\0", b"\\n").decode()
            read += 1
        except OSError:
            pass
print(dump, flush=True)
print("PROBE " + json.dumps({"environ_files_read": read}), flush=True)
"""

PRIVILEGES = """
import errno, json, os
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\\t" in line)
writes = {}
for path in ("/usr/lib/evil", "/etc/evil", "/evil", "/home/mulligan/evil"):
    try:
        with open(path, "w") as fh:
            fh.write("x")
        writes[path] = "WRITTEN"
    except OSError as exc:
        writes[path] = errno.errorcode.get(exc.errno, str(exc.errno))
mounts = [line.split() for line in open("/proc/self/mounts")]
print("PROBE " + json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
    "CapEff": status["CapEff"].strip(), "CapPrm": status["CapPrm"].strip(),
    "CapBnd": status["CapBnd"].strip(), "NoNewPrivs": status["NoNewPrivs"].strip(),
    "writes": writes,
    "root_opts": [m[3] for m in mounts if m[1] == "/"],
    "workspace_fs": [m[2] for m in mounts if m[1] == "/workspace"],
    "mounts": open("/proc/self/mounts").read(),
    "mountinfo": open("/proc/self/mountinfo").read(),
}), flush=True)
"""

FORGE_RESULT = """
import base64, json, os, re, signal
# Find the sandbox's runner (same uid), read its nonce from its memory, and print a
# forged "everything passed" result line into its stdout, then kill it.
runner = None
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"import tarfile" in cmdline:
            runner = int(pid)
steps = {"runner": runner}
nonce = None
try:
    mem = open(f"/proc/{runner}/mem", "rb")
    for line in open(f"/proc/{runner}/maps").read().splitlines():
        span, perms = line.split()[:2]
        if "r" not in perms:
            continue
        lo, hi = (int(x, 16) for x in span.split("-"))
        try:
            mem.seek(lo)
            found = re.search(rb'"nonce": "([0-9a-f]{32})"', mem.read(hi - lo))
        except (OSError, OverflowError, ValueError):
            continue
        if found:
            nonce = found.group(1).decode()
            break
except OSError as exc:
    steps["mem"] = repr(exc)
steps["nonce_found"] = nonce is not None
print("PROBE " + json.dumps(steps), flush=True)
if nonce:
    fake = {"exit_code": 0, "timed_out": False, "seconds": 0.1, "output": "FORGED",
            "truncated": False, "junit": None, "tests_changed_at_runtime": []}
    line = "\\n%s %s\\n" % (nonce, base64.b64encode(json.dumps(fake).encode()).decode())
    try:
        fd = os.open(f"/proc/{runner}/fd/1", os.O_WRONLY)
        os.write(fd, line.encode())
        os.kill(runner, signal.SIGKILL)
    except OSError:
        pass
raise SystemExit(1)
"""


# -- hostile candidates, one by one ---------------------------------------------------------


def test_rm_rf_root_and_deleting_the_repository(sandbox, snap, host_repo, untouched):
    report = run_hostile(sandbox, snap, RM_RF.format(repo=str(host_repo)),
                         Limits(timeout_s=30, memory_mb=256))
    seen = probe(report)
    assert seen["rm_exit"] != 0  # rm could not delete the read-only root
    assert seen["etc_passwd_left"] and seen["python_left"]
    # It deleted its own copy, all but the test files, which belong to the runner's user.
    assert seen["workspace_left"] == ["tests"] and seen["tests_left"] == ["test_m.py"]
    assert report.status is RunStatus.COMPLETED
    assert report.passed  # the tests, intact, ran against the m.py imported before rm
    assert (host_repo / "m.py").read_text() == BASE["m.py"]
    # The next candidate gets a fresh, complete copy.
    after = sandbox.run(Job(snap, benign(), limits=Limits(timeout_s=30)))
    assert after.passed, after.output[-2000:]
    assert set(after.tests) == {"tests/test_m.py::test_value", "tests/test_m.py::test_double"}


def test_fork_bomb_is_stopped_by_the_pids_limit(sandbox, snap, untouched):
    # Long enough for pytest to start on a loaded machine: the bomb itself never ends.
    limits = Limits(timeout_s=15, pids=64, memory_mb=256)
    report = run_hostile(sandbox, snap, FORK_BOMB, limits)
    assert probe(report)["forked"] < limits.pids
    assert report.status is RunStatus.TIMED_OUT
    assert not report.passed
    # The host can still start processes.
    assert os.system("true") == 0


def test_memory_hog_is_killed_and_reported_as_a_failure(sandbox, snap, untouched):
    limits = Limits(timeout_s=30, memory_mb=128)
    report = run_hostile(sandbox, snap, MEMORY_HOG, limits)
    assert "ALLOCATED-ALL" not in report.output
    allocated = [json.loads(line[len(PROBE):])["allocated_mb"]
                 for line in report.output.splitlines() if line.startswith(PROBE)]
    assert max(allocated, default=0) <= limits.memory_mb
    assert report.status in (RunStatus.COMPLETED, RunStatus.CRASHED)  # not a hang / timeout
    assert not report.passed
    assert report.exit_code != 0
    assert report.wall_s < limits.timeout_s


@pytest.mark.parametrize("code", [
    "while True:\n    pass\n",
    "import time\ntime.sleep(3600)\n",
    ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
     "while True:\n    time.sleep(0.01)\n"),
], ids=["busy-loop", "sleep", "ignores-sigterm"])
def test_endless_candidate_times_out(sandbox, snap, code, untouched):
    limits = Limits(timeout_s=3)
    report = run_hostile(sandbox, snap, code, limits)
    assert report.status is RunStatus.TIMED_OUT
    assert report.timed_out and not report.passed
    assert report.exit_code is None
    assert limits.timeout_s <= report.wall_s <= limits.timeout_s + MARGIN_S


def _bridge_gateway(client: docker.DockerClient) -> str:
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    gateway = config.get("Gateway")
    return gateway or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def test_network_is_unreachable(sandbox, snap, docker_client, untouched):
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    listener.settimeout(0)
    port = listener.getsockname()[1]
    gateway = _bridge_gateway(docker_client)
    try:
        report = run_hostile(sandbox, snap, NETWORK.format(gateway=gateway, port=port),
                             Limits(timeout_s=30, memory_mb=256))
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host
    finally:
        listener.close()
    seen = probe(report)
    for target in ("1.1.1.1:53", f"{gateway}:{port}", "8.8.8.8:443"):
        assert seen[target] != "CONNECTED", seen
        assert "unreachable" in seen[target].lower(), seen
    assert seen["dns"] != "RESOLVED"
    assert seen["interfaces"] == ["lo"]
    assert seen["routes"] == []
    assert report.passed  # the candidate itself ran to its end (its tests pass)


@pytest.mark.parametrize("kind", ["ascii", "binary"])
def test_output_flood_is_capped(sandbox, snap, kind, untouched):
    if kind == "ascii":  # 2 GiB of text
        code = "import os\nchunk = b'x' * (1 << 20)\nfor _ in range(2048):\n    os.write(1, chunk)\n"
    else:  # 256 MiB of bytes that are not UTF-8 text
        code = ("import os\nchunk = bytes(range(256)) * 4096\n"
                "for _ in range(256):\n    os.write(1, chunk)\n")
    limits = Limits(timeout_s=60)  # the default output cap (1 MiB)
    report = run_hostile(sandbox, snap, code, limits)
    assert report.status is RunStatus.COMPLETED, report.output[:300]
    assert report.output_truncated
    assert len(report.output.encode()) <= 3 * limits.output_bytes  # 3: U+FFFD replacements
    assert "2 passed" in report.output[-300:]  # pytest's summary, kept at the tail
    assert "bytes of output dropped" in report.output
    assert report.wall_s < 30


def test_output_cap_is_the_limit(sandbox, snap, untouched):
    code = "import os\nfor _ in range(4096):\n    os.write(1, b'y' * 65536)\n"
    limits = Limits(timeout_s=30, output_bytes=64 << 10)
    report = run_hostile(sandbox, snap, code, limits)
    assert report.output_truncated
    marker = len(f"\n... [{1 << 28} bytes of output dropped] ...\n")
    assert len(report.output.encode()) <= limits.output_bytes + marker
    assert "2 passed" in report.output[-300:]


def test_symlinks_out_of_the_workspace(sandbox, snap, untouched):
    canary_text = f"HOST-CANARY-{uuid.uuid4().hex}\n"
    # A real host file in a directory that also exists (writable) in the container.
    fd, canary = tempfile.mkstemp(prefix="mulligan-canary-", dir="/tmp")
    os.write(fd, canary_text.encode())
    os.close(fd)
    try:
        links = {"link_host": canary, "link_passwd": "/etc/passwd", "link_home": "/home"}
        patch = hostile("""
            import errno, json, os
            targets = {"link_host": "link_host", "link_passwd": "link_passwd",
                       "link_home_file": "link_home/mulligan/evil"}
            os.symlink("/etc/shadow", "runtime_shadow")
            targets["runtime_shadow"] = "runtime_shadow"
            result = {}
            for name, path in targets.items():
                try:
                    with open(path, "a") as fh:
                        fh.write("PWNED\\n")
                    result[name] = "WRITTEN"
                except OSError as exc:
                    result[name] = errno.errorcode.get(exc.errno, str(exc.errno))
            try:
                result["read_host"] = open("link_host").read()
            except OSError as exc:
                result["read_host"] = repr(exc)
            print("PROBE " + json.dumps(result), flush=True)
        """)
        for name, target in links.items():
            patch += (f"diff --git a/{name} b/{name}\nnew file mode 120000\n--- /dev/null\n"
                      f"+++ b/{name}\n@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n")
        report = sandbox.run(Job(snap, patch, test_command=HOSTILE_COMMAND,
                                 limits=Limits(timeout_s=30, memory_mb=256)))
        assert report.status is RunStatus.COMPLETED, report.patch_error or report.output[-2000:]
        seen = probe(report)
        assert seen["link_passwd"] in ("EROFS", "EACCES"), seen
        assert seen["link_home_file"] in ("EROFS", "EACCES"), seen
        assert seen["runtime_shadow"] in ("EROFS", "EACCES", "ENOENT"), seen
        assert canary_text.strip() not in report.output  # the host file is not visible
        assert Path(canary).read_text() == canary_text  # and not written
    finally:
        os.unlink(canary)


def test_host_environment_secrets_do_not_leak(sandbox, snap, monkeypatch, untouched):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-test")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-secret-test")
    report = run_hostile(sandbox, snap, ENV_DUMP, Limits(timeout_s=30, memory_mb=256))
    assert probe(report)["environ_files_read"] >= 2
    assert "PATH=" in report.output  # the dump did happen
    assert "sk-secret-test" not in report.output
    assert "ghp-secret-test" not in report.output
    assert "OPENAI_API_KEY" not in report.output


@pytest.mark.parametrize("code", [
    ("import os, signal, time\nos.kill(1, signal.SIGKILL)\nos.kill(1, signal.SIGTERM)\n"
     "time.sleep(30)\n"),
    ("import os, signal, time\nfor pid in os.listdir('/proc'):\n"
     "    if pid.isdigit() and int(pid) != os.getpid():\n"
     "        try:\n            os.kill(int(pid), signal.SIGKILL)\n"
     "        except OSError:\n            pass\ntime.sleep(30)\n"),
], ids=["kill-pid-1", "kill-everything"])
def test_killing_pid_1_is_reported_not_a_hang(sandbox, snap, code, untouched):
    limits = Limits(timeout_s=20, memory_mb=256)
    report = run_hostile(sandbox, snap, code, limits)
    assert report.status in (RunStatus.CRASHED, RunStatus.COMPLETED)
    assert not report.passed
    assert report.wall_s < limits.timeout_s  # ended with its container, not by the timeout


def test_candidate_cannot_forge_the_result(sandbox, snap, untouched):
    report = run_hostile(sandbox, snap, FORGE_RESULT, Limits(timeout_s=30, memory_mb=256))
    assert "FORGED" not in report.output, (
        f"a candidate read the runner's nonce from its memory and forged its result: {report}")
    assert not report.passed


def test_editing_the_tests_in_the_patch_is_reported(sandbox, snap):
    edited = BASE["tests/test_m.py"].replace("== 4", "== 5")
    report = sandbox.run(Job(snap, make_patch(BASE, {**BASE, "tests/test_m.py": edited}),
                             limits=Limits(timeout_s=30)))
    assert report.changed_test_files == ["tests/test_m.py"]
    assert report.passed  # the edited test passes: exactly why it must be flagged


def test_deleting_the_tests_in_the_patch_is_reported(sandbox, snap):
    report = sandbox.run(Job(snap, make_patch(BASE, {**BASE, "tests/test_m.py": None}),
                             limits=Limits(timeout_s=30)))
    assert report.changed_test_files == ["tests/test_m.py"]


def test_deleting_and_adding_tests_at_run_time_is_refused_or_reported(sandbox, snap):
    # The test files and the test directory belong to the runner's user: deleting one, or
    # planting a conftest.py among them, is refused. A new test-infrastructure file where
    # the candidate may write (the workspace root) is reported.
    code = """
        import os
        for action in (lambda: os.remove("tests/test_m.py"),
                       lambda: open("tests/conftest.py", "w").write("# planted\\n"),
                       lambda: open("conftest.py", "w").write("# planted\\n")):
            try:
                action()
            except OSError as exc:
                print("REFUSED", exc.errno, flush=True)
    """
    report = run_hostile(sandbox, snap, code, Limits(timeout_s=30, memory_mb=256))
    assert report.output.count("REFUSED 13") == 2, report.output[-2000:]  # EACCES
    assert report.changed_test_files == ["conftest.py"]
    assert set(report.tests) == {"tests/test_m.py::test_value", "tests/test_m.py::test_double"}


def test_candidate_runs_unprivileged_on_a_read_only_root(sandbox, snap, host_repo, untouched):
    report = run_hostile(sandbox, snap, PRIVILEGES, Limits(timeout_s=30, memory_mb=256))
    seen = probe(report)
    assert seen["uid"] != 0 and seen["euid"] != 0 and seen["gid"] != 0
    assert int(seen["CapEff"], 16) == 0
    assert int(seen["CapPrm"], 16) == 0
    assert int(seen["CapBnd"], 16) == 0
    assert seen["NoNewPrivs"] == "1"
    assert all(result in ("EROFS", "EACCES") for result in seen["writes"].values()), seen
    assert seen["root_opts"] and all(o.split(",")[0] == "ro" for o in seen["root_opts"])
    assert seen["workspace_fs"] == ["tmpfs"]  # a copy on a tmpfs, not a bind mount
    for text in (seen["mounts"], seen["mountinfo"]):
        assert str(host_repo) not in text
        assert host_repo.name not in text


def test_hostile_candidates_in_parallel_leave_a_benign_one_alone(
        sandbox, snap, host_repo, docker_client, untouched):
    short = Limits(timeout_s=3, pids=64, memory_mb=128)
    roomy = Limits(timeout_s=60)
    jobs = [
        Job(snap, benign(), limits=roomy),
        Job(snap, hostile(RM_RF.format(repo=str(host_repo))), HOSTILE_COMMAND,
            limits=Limits(timeout_s=30, memory_mb=256)),
        Job(snap, hostile(FORK_BOMB), HOSTILE_COMMAND, limits=short),
        Job(snap, hostile(MEMORY_HOG), HOSTILE_COMMAND, limits=Limits(timeout_s=30, memory_mb=128)),
        Job(snap, hostile("while True:\n    pass\n"), HOSTILE_COMMAND, limits=short),
        Job(snap, hostile(NETWORK.format(gateway=_bridge_gateway(docker_client), port=9)),
            HOSTILE_COMMAND, limits=Limits(timeout_s=30, memory_mb=256)),
        Job(snap, hostile("import os\nos.system('kill -9 -1')\nimport time\ntime.sleep(30)\n"),
            HOSTILE_COMMAND, limits=Limits(timeout_s=20, memory_mb=256)),
        Job(snap, benign(), limits=roomy),
    ]
    reports = dict(sandbox.run_many(jobs, workers=4))
    assert sorted(reports) == list(range(len(jobs)))
    for i in (0, 7):
        good = reports[i]
        assert good.passed, good.output[-2000:]
        assert {k: v.outcome for k, v in good.tests.items()} == {
            "tests/test_m.py::test_value": Outcome.PASSED,
            "tests/test_m.py::test_double": Outcome.PASSED,
        }
        assert good.changed_test_files == []
    assert reports[1].status is RunStatus.COMPLETED and probe(reports[1])["rm_exit"] != 0
    assert reports[2].status is RunStatus.TIMED_OUT
    assert not reports[3].passed and reports[3].status is not RunStatus.TIMED_OUT
    assert reports[4].status is RunStatus.TIMED_OUT
    assert all(v != "CONNECTED" for k, v in probe(reports[5]).items() if ":" in k)
    assert not reports[6].passed and reports[6].status is not RunStatus.TIMED_OUT


# -- reports ----------------------------------------------------------------------------------

OUTCOMES = """\
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")


def test_pass():
    assert True


def test_fail():
    assert 1 + 1 == 3, "arithmetic is broken"


def test_error(broken):
    pass


@pytest.mark.skip(reason="not today")
def test_skip():
    pass


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False


class TestGroup:
    def test_in_class(self):
        pass
"""


@pytest.fixture(scope="module")
def outcomes_snap():
    with Snapshot.from_files({"tests/test_outcomes.py": OUTCOMES, "m.py": "X = 1\n"}) as s:
        yield s


def test_per_test_outcomes(sandbox, outcomes_snap):
    report = sandbox.run(Job(outcomes_snap, limits=Limits(timeout_s=30)))
    assert report.status is RunStatus.COMPLETED
    assert report.exit_code == 1 and not report.passed
    f = "tests/test_outcomes.py::"
    assert {k: v.outcome for k, v in report.tests.items()} == {
        f + "test_pass": Outcome.PASSED,
        f + "test_fail": Outcome.FAILED,
        f + "test_error": Outcome.ERROR,
        f + "test_skip": Outcome.SKIPPED,
        f + "test_xfail": Outcome.XFAIL,
        f + "TestGroup::test_in_class": Outcome.PASSED,
    }
    assert "arithmetic is broken" in report.tests[f + "test_fail"].message
    assert "assert (1 + 1) == 3" in report.tests[f + "test_fail"].message
    assert "fixture exploded" in report.tests[f + "test_error"].message
    assert report.tests[f + "test_skip"].message == "not today"
    assert "known bug" in report.tests[f + "test_xfail"].message
    assert {t.nodeid for t in report.failing()} == {f + "test_fail", f + "test_error"}
    assert "1 failed" in report.output


def test_selected_tests_only(sandbox, outcomes_snap):
    report = sandbox.run(Job(outcomes_snap, select=("tests/test_outcomes.py::test_pass",),
                             limits=Limits(timeout_s=30)))
    assert report.passed
    assert list(report.tests) == ["tests/test_outcomes.py::test_pass"]


def test_non_pytest_command_reports_its_exit_status(sandbox, outcomes_snap):
    report = sandbox.run(Job(outcomes_snap, test_command="sh -c 'exit 3'",
                             limits=Limits(timeout_s=30)))
    assert report.status is RunStatus.COMPLETED
    assert report.exit_code == 3
    assert report.tests == {}
    assert not report.passed


def test_missing_test_command_exits_127(sandbox, outcomes_snap):
    report = sandbox.run(Job(outcomes_snap, test_command="no-such-test-runner --all",
                             limits=Limits(timeout_s=30)))
    assert report.status is RunStatus.COMPLETED
    assert report.exit_code == 127
    assert "not found" in report.output


def test_patch_that_does_not_apply(sandbox, outcomes_snap, docker_client):
    patch = make_patch({"m.py": "X = 2\n"}, {"m.py": "X = 3\n"})  # wrong context
    report = sandbox.run(Job(outcomes_snap, patch, limits=Limits(timeout_s=30)))
    assert report.status is RunStatus.PATCH_FAILED
    assert report.exit_code is None and not report.passed
    assert "m.py" in report.patch_error
    assert "patch does not apply" in report.patch_error or "patch failed" in report.patch_error


def test_large_junit_report_is_not_lost(sandbox):
    """A suite whose JUnit XML is a few MiB (within JUNIT_BYTES) still gives a report."""
    ids = ", ".join(f"pytest.param({i}, id='case{i}-' + 'x' * 3000)" for i in range(800))
    files = {"tests/test_big.py": (
        "import pytest\n\n\n"
        f"@pytest.mark.parametrize('i', [{ids}])\ndef test_case(i):\n    pass\n")}
    with Snapshot.from_files(files) as snapshot:
        report = sandbox.run(Job(snapshot, limits=Limits(timeout_s=60)))
    assert report.status is RunStatus.COMPLETED, report.output[:300]
    assert report.passed
    assert len(report.tests) == 800


# -- cleanup ----------------------------------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's directory for this test alone, so leftovers can be listed exactly."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.mark.parametrize("where", ["wait", "logs"])
def test_exception_mid_run_leaves_nothing(sandbox, docker_client, private_tmp, monkeypatch,
                                          where):
    seen: dict[str, str] = {}
    original = getattr(docker.models.containers.Container, where)

    def interrupted(self, *args, **kwargs):
        self.reload()
        seen["id"], seen["status"] = self.id, self.status
        if where == "logs":
            original(self, *args, **kwargs)
            raise RuntimeError("the host failed while reading the logs")
        raise KeyboardInterrupt  # Ctrl-C while the candidate runs

    monkeypatch.setattr(docker.models.containers.Container, where, interrupted)
    expected = KeyboardInterrupt if where == "wait" else RuntimeError
    with pytest.raises(expected), Snapshot.from_files(BASE) as snapshot:
        sandbox.run(Job(snapshot, benign(), limits=Limits(timeout_s=30)))
    assert seen["status"] in ("running", "exited")  # the container did exist mid-run
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(seen["id"])
    assert session_containers(docker_client, sandbox.session) == []
    assert list(private_tmp.iterdir()) == []


def _wait_for(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_ctrl_c_in_run_many_consumer_leaves_nothing(docker_client, docker_image, private_tmp):
    box = DockerSandbox(docker_image, client=docker_client, workers=4)
    started = time.monotonic()
    results = []
    with pytest.raises(KeyboardInterrupt), Snapshot.from_files(BASE) as snapshot:
        jobs = [Job(snapshot, benign(), limits=Limits(timeout_s=60))] + [
            Job(snapshot, test_command=f"sleep 30 # {i}", limits=Limits(timeout_s=60))
            for i in range(3)]
        with box:
            for index, report in box.run_many(jobs, workers=4):
                results.append((index, report))
                raise KeyboardInterrupt  # Ctrl-C while the sleepers are running
    assert [i for i, _ in results] == [0] and results[0][1].passed
    # Every container goes, well before the sleepers' 30 s could end.
    assert _wait_for(lambda: not session_containers(docker_client, box.session), 10), (
        [c.status for c in session_containers(docker_client, box.session)])
    assert time.monotonic() - started < 25
    assert list(private_tmp.iterdir()) == []


def test_close_while_run_many_is_in_flight(docker_client, docker_image, private_tmp):
    box = DockerSandbox(docker_image, client=docker_client, workers=3)
    outcome: dict[str, object] = {"reports": []}
    snapshot = Snapshot.from_files(BASE)
    jobs = [Job(snapshot, test_command=f"sleep 30 # {i}", limits=Limits(timeout_s=60))
            for i in range(6)]

    def consume():
        try:
            for item in box.run_many(jobs, workers=3):
                outcome["reports"].append(item)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            outcome["error"] = exc

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    try:
        assert _wait_for(lambda: any(c.status == "running" for c in
                                     session_containers(docker_client, box.session)), 30)
        box.close()
        closed_at = time.monotonic()
        consumer.join(timeout=15)
        assert not consumer.is_alive(), "run_many did not end after close()"
        # Every container goes, well before the candidates' 30 s sleep could end.
        assert _wait_for(lambda: not session_containers(docker_client, box.session), 10), (
            [c.status for c in session_containers(docker_client, box.session)])
        assert time.monotonic() - closed_at < 15
        error = outcome.get("error")
        assert error is None or isinstance(error, SandboxError), repr(error)
        assert all(not report.passed for _, report in outcome["reports"])
        with pytest.raises(SandboxError):
            box.run(jobs[0])
    finally:
        box.close()
        for container in session_containers(docker_client, box.session):
            container.remove(force=True)
        snapshot.close()
    assert list(private_tmp.iterdir()) == []


def test_result_line_is_tagged_with_the_nonce(sandbox, outcomes_snap):
    """A candidate printing a result-looking line cannot pose as the runner's result."""
    fake = base64.b64encode(json.dumps({"exit_code": 0, "timed_out": False, "output": "FAKE",
                                        "truncated": False, "junit": None}).encode()).decode()
    report = sandbox.run(Job(outcomes_snap, test_command=f"echo '{'0' * 32} {fake}'; exit 4",
                             limits=Limits(timeout_s=30)))
    assert report.status is RunStatus.COMPLETED
    assert report.exit_code == 4


def test_close_during_container_create_stops_that_candidate(sandbox, docker_client, monkeypatch):
    """close() that lands while a worker is inside containers.create() (the window between
    the closed check and the container joining the live set) must still stop it."""
    original = docker.models.containers.ContainerCollection.create

    def create_then_close(self, *args, **kwargs):
        container = original(self, *args, **kwargs)
        sandbox.close()  # e.g. Ctrl-C in the main thread at this moment
        return container

    monkeypatch.setattr(docker.models.containers.ContainerCollection, "create",
                        create_then_close)
    started = time.monotonic()
    with Snapshot.from_files(BASE) as snapshot:
        try:
            report = sandbox.run(Job(snapshot, test_command="sleep 20",
                                     limits=Limits(timeout_s=60)))
        except SandboxError:
            report = None
    assert time.monotonic() - started < 10, "the candidate ran on after close()"
    assert report is None or not report.passed
    assert session_containers(docker_client, sandbox.session) == []


def test_warm_spares_are_used_once_and_removed_at_close(docker_client, docker_image):
    """prewarm() starts containers ahead of time; each candidate still gets a container of
    its own (never one another candidate used), and close() removes the unused spares."""
    box = DockerSandbox(docker_image, client=docker_client, workers=2)
    limits = Limits(timeout_s=30)
    try:
        box.prewarm(limits, 2)
        assert _wait_for(lambda: len(box._spares.get(limits, [])) == 2, timeout=60)
        spare_ids = {s.container.id for s in box._spares[limits]}
        used = []
        original = box._take

        def take(lim):
            started = original(lim)
            used.append(started.container.id)
            return started

        box._take = take
        with Snapshot.from_files(BASE) as snapshot:
            first = box.run(Job(snapshot, benign(), limits=limits))
            second = box.run(Job(snapshot, hostile("open('m_marker', 'w').write('x')"),
                                 HOSTILE_COMMAND, limits=limits))
            third = box.run(Job(snapshot, make_patch(BASE, {
                **BASE, "m.py": "import os\nassert not os.path.exists('m_marker')\n" + FIXED_M}),
                limits=limits))
        assert first.passed and second.passed and third.passed, third.output[-2000:]
        assert used[0] in spare_ids  # the first candidate did not wait for a container
        assert len(set(used)) == 3  # one container per candidate, never reused
        # two jobs were announced and three ran: no spare is left idle afterwards
        assert box._spares.get(limits, []) == [] and box._warm_target[limits] == 0
        box.prewarm(limits, 2)  # the next batch announced: spares again
        assert _wait_for(lambda: len(box._spares.get(limits, [])) == 2, timeout=60)
    finally:
        box.close()
    assert session_containers(docker_client, box.session) == []


def test_host_timeout_racing_a_container_that_just_exited(sandbox, snap, monkeypatch):
    """The host's wait times out just as the container exits: killing it then fails with a
    Docker API error, which must not end the run; the container's own result still counts."""
    real_wait = docker.models.containers.Container.wait

    def late_wait(self, **kwargs):
        real_wait(self)  # the container has exited by now
        raise requests.exceptions.ReadTimeout("host timeout")

    monkeypatch.setattr(docker.models.containers.Container, "wait", late_wait)
    report = sandbox.run(Job(snap, benign(), limits=Limits(timeout_s=30)))
    assert report.status is RunStatus.COMPLETED and report.passed, report.output[-2000:]
