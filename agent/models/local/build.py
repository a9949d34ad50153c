"""Building `llama-server` from the llama.cpp sources in the pinned llama-cpp-python sdist, and
`setup` (weights plus server) behind `mulligan model setup`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.models.local import common
from agent.models.local.common import (
    ENV_MODEL,
    ENV_SERVER,
    Log,
    SetupError,
    models_dir,
    server_path,
)
from agent.models.local.weights import (
    DEFAULT_WEIGHTS,
    Fetch,
    LocalStatus,
    WeightsSpec,
    _check_space,
    _disk_errors,
    _locked,
    _sha256_file,
    assemble_weights,
    local_status,
    pip_fetch,
)

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
LLAMA_CPP_PYTHON_SDIST = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
LLAMA_CPP_PYTHON_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",  # portable: AVX2/FMA baseline, not this machine's extensions
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # never download the web UI at build time
    "-DBUILD_SHARED_LIBS=OFF",
)

BUILD_DISK_BYTES = 500_000_000  # sdist 77 MB + sources 176 MB + build tree 89 MB (measured)


def _run_logged(cmd: list[str], logfile: Path, log: Log, label: str,
                env: dict[str, str] | None = None) -> None:
    """Run a build step, appending its output to `logfile` and echoing progress lines."""
    last_pct = -100
    with logfile.open("a") as lf:
        lf.write(f"\n$ {' '.join(cmd)}\n")
        lf.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, bufsize=1)
        assert proc.stdout is not None
        tail: list[str] = []
        try:
            for line in proc.stdout:
                lf.write(line)
                tail = (tail + [line.rstrip()])[-20:]
                if line.startswith("[") and "%]" in line[:8]:
                    try:
                        pct = int(line[1:line.index("%")])
                    except ValueError:
                        continue
                    if pct >= last_pct + 10:
                        last_pct = pct
                        log(f"{label}: {pct}%")
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if code != 0:
        problem = next((ln for ln in reversed(tail) if "error" in ln.lower()), None)
        problem = problem or (tail[-1] if tail else f"exit {code}")
        if "No space left" in "\n".join(tail):
            raise SetupError(f"disk full while building llama-server (log: {logfile})")
        raise SetupError(f"{label} failed: {problem.strip()[:300]} (full log: {logfile})")


def _fetch_sdist(dest: Path, log: Log) -> Path:
    """Download the pinned llama-cpp-python sdist with pip (hash-checked by pip)."""
    dest.mkdir(parents=True, exist_ok=True)
    req = dest / "requirements.txt"
    req.write_text(f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} "
                   f"--hash=sha256:{LLAMA_CPP_PYTHON_SHA256}\n")
    log(f"llama-server: downloading the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist "
        "with pip (sources of llama.cpp, ~77 MB)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=llama-cpp-python",
           "--require-hashes", "--disable-pip-version-check", "--no-input",
           "--progress-bar", "off", "-r", str(req), "-d", str(dest)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    path = dest / LLAMA_CPP_PYTHON_SDIST
    if proc.returncode != 0 or not path.is_file():
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise SetupError("pip could not download the llama-cpp-python sdist: "
                         + (lines[-1].strip() if lines else f"exit {proc.returncode}"))
    return path


def _extract_llama_cpp(sdist: Path, dest: Path) -> Path:
    """Extract the sdist's vendor/llama.cpp into dest; return the source directory."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            parts = m.name.split("/")
            if len(parts) > 3 and parts[1:3] == ["vendor", "llama.cpp"]:
                m.name = "/".join(parts[3:])
                members.append(m)
        if not members:
            raise SetupError(f"{sdist} has no vendor/llama.cpp")
        kwargs: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=members, **kwargs)
    if not (dest / "CMakeLists.txt").is_file():
        raise SetupError(f"{sdist}: vendor/llama.cpp has no CMakeLists.txt")
    return dest


def _server_works(binary: Path) -> str | None:
    """None when `binary --version` runs, else why not."""
    try:
        proc = subprocess.run([str(binary), "--version"], check=False, capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode != 0:
        if proc.returncode == -signal.SIGILL:
            return "it stops with SIGILL: this CPU lacks AVX2/FMA"
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit {proc.returncode}"
    return None


def build_server(root: Path | None = None, *, sdist: Path | None = None,
                 source: Path | None = None, jobs: int | None = None,
                 log: Log = lambda _line: None, keep_build: bool = False) -> Path:
    """Compile llama-server (once) into the cache; return its path.

    `source` is a llama.cpp source tree, `sdist` a llama-cpp-python sdist; with neither,
    the pinned sdist is downloaded with pip. An interrupted build resumes (the build tree
    is kept until the binary is in place).
    """
    root = root or common.cache_root()
    target = server_path(root)
    build = root / "build"
    missing = [tool for tool in ("cmake", "make") if shutil.which(tool) is None]
    if not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler")
    if missing:
        raise SetupError(f"building llama-server needs {', '.join(missing)} (Debian: apt-get "
                         f"install cmake make g++), or set {ENV_SERVER} to an existing "
                         "llama-server binary")
    with _locked(root / ".build.lock"), _disk_errors(build):
        _check_space(root, BUILD_DISK_BYTES, "building llama-server")
        logfile = build / "build.log"
        build.mkdir(parents=True, exist_ok=True)
        src = build / "llama.cpp"
        tree = build / "tree"
        if source is not None:
            src = Path(source)
            if not (src / "CMakeLists.txt").is_file():
                raise SetupError(f"{source} is not a llama.cpp source tree (no CMakeLists.txt)")
        elif not (src / "CMakeLists.txt").is_file() or not (build / ".extracted").exists():
            if sdist is None:
                sdist = build / LLAMA_CPP_PYTHON_SDIST
                if not sdist.is_file() or _sha256_file(sdist) != LLAMA_CPP_PYTHON_SHA256:
                    sdist = _fetch_sdist(build, log)
            if sdist.name == LLAMA_CPP_PYTHON_SDIST and \
                    _sha256_file(sdist) != LLAMA_CPP_PYTHON_SHA256:
                raise SetupError(f"{sdist} does not match the pinned sha256 of "
                                 f"{LLAMA_CPP_PYTHON_SDIST}")
            log(f"llama-server: extracting vendor/llama.cpp from {sdist.name}")
            _extract_llama_cpp(sdist, src)
            (build / ".extracted").write_text(str(sdist) + "\n")
        jobs = jobs or min(2, os.cpu_count() or 1)
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        log(f"llama-server: configuring (cmake; log: {logfile})")
        started = time.monotonic()
        _run_logged([*nice, "cmake", "-S", str(src), "-B", str(tree), *CMAKE_FLAGS],
                    logfile, log, "llama-server: cmake")
        log(f"llama-server: compiling with {jobs} job(s); this takes 15-25 minutes on 2 cores")
        _run_logged([*nice, "cmake", "--build", str(tree), "--target", "llama-server",
                     "-j", str(jobs)], logfile, log, "llama-server: compiling")
        built = tree / "bin" / "llama-server"
        if not built.is_file():
            raise SetupError(f"the build finished without {built} (log: {logfile})")
        problem = _server_works(built)
        if problem is not None:
            raise SetupError(f"the built llama-server does not run: {problem}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        shutil.copy2(built, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, target)
        log(f"llama-server: built in {time.monotonic() - started:.0f}s -> {target}")
        if not keep_build:
            for path in (tree, build / "llama.cpp", build / LLAMA_CPP_PYTHON_SDIST,
                         build / "requirements.txt", build / ".extracted"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        return target


def setup(root: Path | None = None, *, spec: WeightsSpec = DEFAULT_WEIGHTS,
          fetch: Fetch = pip_fetch, wheel_dirs: Sequence[Path] = (),
          sdist: Path | None = None, source: Path | None = None, jobs: int | None = None,
          build: bool = True, log: Log = lambda _line: None,
          environ: dict[str, str] | None = None) -> LocalStatus:
    """`mulligan model setup`: the weights, then the server binary. Idempotent."""
    root = root or common.cache_root()
    env = os.environ if environ is None else environ
    started = time.monotonic()
    early = local_status(root, spec, env).problems  # a bad MULLIGAN_* path: say so at once
    if early:
        raise SetupError("; ".join(early))
    if env.get(ENV_MODEL):
        log(f"weights: using {ENV_MODEL}={env[ENV_MODEL]} (not hash-checked)")
    else:
        assemble_weights(models_dir(root), spec, fetch=fetch, wheel_dirs=wheel_dirs, log=log)
    st = local_status(root, spec, env)
    if st.server is not None:
        problem = _server_works(st.server)
        if problem is None:
            log(f"llama-server: {st.server} ({st.server_from})")
        elif st.server_from == ENV_SERVER:
            raise SetupError(f"{ENV_SERVER}={st.server} does not run: {problem}")
        else:
            log(f"llama-server: {st.server} does not run ({problem}); building it")
            st.server = None
    if st.server is None and not any(p.startswith(ENV_SERVER) for p in st.problems):
        if not build:
            raise SetupError("llama-server is not installed and --no-build was given")
        build_server(root, sdist=sdist, source=source, jobs=jobs, log=log)
    st = local_status(root, spec, env)
    if st.problems:
        raise SetupError("; ".join(st.problems))
    log(f"setup finished in {time.monotonic() - started:.0f}s")
    return st
