"""One llama-server process per run: thread choice, command line, start, readiness, stop."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from agent.cores import usable_cores
from agent.errors import ConfigError, ModelUnavailable
from agent.models.local.common import ENV_CTX, ENV_MODEL, ENV_SERVER, ENV_THREADS, LOCAL_MODEL_NAME

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
    """MULLIGAN_LOCAL_THREADS, else every core this process may use (affinity, cgroup quota).

    Decided from the machine, not from a load snapshot: a server started while something
    else was busy kept `-t 1` for its whole life and ran at half speed (measured). The
    search keeps sandboxes from starving it instead (agent.schedule).
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_THREADS):
        try:
            return max(1, int(env[ENV_THREADS]))
        except ValueError:
            raise ConfigError(f"{ENV_THREADS} must be a whole number, "
                              f"not {env[ENV_THREADS]!r}") from None
    return usable_cores().usable


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
        if "--cache-ram" in helptext:
            # The host-memory prompt cache is off: with a unified KV it can restore another
            # conversation's cells into a slot (llama.cpp #27148; seen here: a prompt answered
            # with the file of a different task). Each lineage keeps its own slot's cache.
            cmd += ["--cache-ram", "0"]
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

