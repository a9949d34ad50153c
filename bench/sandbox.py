"""Benchmark: what the Docker sandbox costs compared with running the tests on the host.

On a generated repository with ~20 fast pytest tests, measures (each several times, the
median reported):

  (a) the tests run directly on the host: `python -m pytest -q` in a subprocess;
  (b) one candidate in the sandbox (snapshot patch + container + pytest + report);
  (c) 8 candidates one after another, and 8 through `run_many` with workers=2 and 8;

then prints a table, the ratios (b)/(a) and parallel/sequential against the issue's targets
((b)/(a) <= 1.5, 8 in parallel <= 0.6 x sequential), and a breakdown of where one
candidate's time goes (snapshot apply/tar, container create, attach, start, wait, logs,
remove).

    python bench/sandbox.py [--repeat 5] [--tests 20] [--image mulligan/base:bookworm]
                            [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

# Run as `python bench/sandbox.py`, this file's folder comes first on sys.path and its name
# would hide the `sandbox` package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import docker.models.containers

from sandbox.api import Job
from sandbox.diff import unified_diff
from sandbox.docker_backend import DockerSandbox, connect
from sandbox.images import OFFLINE_IMAGE
from sandbox.api import Limits
from sandbox.snapshot import Snapshot

CANDIDATES = 8
LIMITS = Limits(timeout_s=120)


# -- the repository ----------------------------------------------------------------------------


def make_repo(root: Path, n_tests: int) -> tuple[str, list[str]]:
    """A small package with `n_tests` fast tests (one of them failing); returns m.py's
    text and CANDIDATES different patches that fix it."""
    src = (
        "def add(a, b):\n    return a + b\n\n\n"
        "def mul(a, b):\n    return a * b\n\n\n"
        "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n\n\n"
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2) + 1  # the bug\n"
    )
    tests = ["from calc import add, clamp, fib, mul\n\n"]
    for i in range(n_tests - 1):
        kind = i % 3
        if kind == 0:
            tests.append(f"\ndef test_add_{i}():\n    assert add({i}, {i + 1}) == {2 * i + 1}\n")
        elif kind == 1:
            tests.append(f"\ndef test_mul_{i}():\n    assert mul({i}, 3) == {3 * i}\n")
        else:
            tests.append(f"\ndef test_clamp_{i}():\n    assert clamp({i}, 0, 10) == {min(i, 10)}\n")
    tests.append("\ndef test_fib():\n    assert [fib(n) for n in range(8)] == "
                 "[0, 1, 1, 2, 3, 5, 8, 13]\n")
    (root / "tests").mkdir(parents=True)
    (root / "calc.py").write_text(src)
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "test_calc.py").write_text("".join(tests))
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    patches = []
    for i in range(CANDIDATES):
        fixed = src.replace("fib(n - 2) + 1  # the bug", f"fib(n - 2)  # fix {i}")
        patches.append(unified_diff({"calc.py": src}, {"calc.py": fixed}))
    return src, patches


# -- measurements -------------------------------------------------------------------------------


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def host_pytest(repo: Path, bare: bool = False) -> None:
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"} if bare else None
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          check=False, cwd=repo, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or "passed" not in proc.stdout:
        raise SystemExit(f"host pytest did not run: {proc.stdout[-500:]}{proc.stderr[-500:]}")


def check(report, expect_pass: bool = True) -> None:
    if report.passed != expect_pass:
        raise SystemExit(f"unexpected sandbox result {report.status} {report.exit_code}:\n"
                         f"{report.output[-1500:]}")


class PhaseProfiler:
    """Wraps the Docker calls that the sandbox makes and records how long each takes."""

    PHASES = ("apply", "tar", "create", "attach", "start", "send+wait", "logs", "remove")

    def __init__(self, box: DockerSandbox, snapshot: Snapshot) -> None:
        self.box, self.snapshot = box, snapshot
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()
        self._local = threading.local()

    def _add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.samples[phase].append(seconds)
        self._local.run = getattr(self._local, "run", 0.0) + seconds

    def _wrap(self, phase: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(phase, time.perf_counter() - start)
        return wrapper

    @contextmanager
    def active(self):
        api = self.box.client.api
        C = docker.models.containers.Container
        CC = docker.models.containers.ContainerCollection
        saved = [(C, "start", C.start), (C, "wait", C.wait), (C, "logs", C.logs),
                 (CC, "create", CC.create)]
        C.start = self._wrap("start", C.start)
        C.wait = self._wrap("send+wait", C.wait)  # stdin is sent (sendall) just before
        C.logs = self._wrap("logs", C.logs)
        CC.create = self._wrap("create", CC.create)
        api.attach_socket = self._wrap("attach", api.attach_socket)
        api.remove_container = self._wrap("remove", api.remove_container)
        self.snapshot.apply = self._wrap("apply", self.snapshot.apply)
        self.snapshot.tar = self._wrap("tar", self.snapshot.tar)
        try:
            yield self
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)
            for obj, name in ((api, "attach_socket"), (api, "remove_container"),
                              (self.snapshot, "apply"), (self.snapshot, "tar")):
                vars(obj).pop(name, None)

    def run_one(self, job: Job) -> tuple[float, float, float]:
        """One candidate: (total seconds, seconds inside the profiled calls, pytest's own)."""
        self._local.run = 0.0
        start = time.perf_counter()
        report = self.box.run(job)
        total = time.perf_counter() - start
        check(report)
        found = re.search(r"passed in ([0-9.]+)s", report.output)
        return total, self._local.run, float(found.group(1)) if found else float("nan")


def ready(box: DockerSandbox, count: int, timeout: float = 120.0) -> None:
    """Wait (bounded) until `count` warm spares are started."""
    deadline = time.monotonic() + timeout
    while len(box._spares.get(LIMITS, [])) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tests", type=int, default=20)
    parser.add_argument("--image", default=OFFLINE_IMAGE)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    client = connect(pool_size=32)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mulligan-bench-") as tmp:
        repo = Path(tmp) / "repo"
        _, patches = make_repo(repo, args.tests)
        snapshot = Snapshot.from_directory(repo)
        jobs = [Job(snapshot, patch, limits=LIMITS) for patch in patches]
        # The host runs the same files as a candidate: the repository with the first fix.
        host_repo = snapshot.materialize(Path(tmp) / "host", snapshot.apply(patches[0]))
        try:
            with ExitStack() as stack:
                box = stack.enter_context(
                    DockerSandbox(args.image, client=client, workers=CANDIDATES))
                # Warm up: page cache, the image's layers, Python's imports on both sides.
                host_pytest(host_repo)
                check(box.run(jobs[0]))

                true_job = Job(snapshot, patches[0], test_command="true", limits=LIMITS)

                def sequential():
                    for job in jobs:
                        check(box.run(job))

                def parallel(workers: int) -> Callable[[], None]:
                    def go():
                        for _, report in box.run_many(jobs, workers=workers):
                            check(report)
                    return go

                # A second sandbox with warm spares, as the loop uses it: containers are
                # started while the model samples, so only the wait for them to be ready
                # (outside the timing) separates one candidate from the next.
                warm_box = stack.enter_context(
                    DockerSandbox(args.image, client=client, workers=CANDIDATES))
                warm_box.prewarm(LIMITS, CANDIDATES)

                def warm_parallel():
                    for _, report in warm_box.run_many(jobs, workers=CANDIDATES):
                        check(report)

                scenarios = {
                    "host": lambda: host_pytest(host_repo),
                    "host_bare": lambda: host_pytest(host_repo, bare=True),
                    "one": lambda: check(box.run(jobs[0])),
                    "one_true": lambda: check(box.run(true_job)),
                    "seq8": sequential,
                    "par8_w2": parallel(2),
                    "par8_w8": parallel(8),
                    "one_warm": lambda: check(warm_box.run(jobs[0])),
                    "par8_warm": warm_parallel,
                }
                # Interleaved (one of each per round), so that a change in the machine's load
                # during the run touches every scenario alike and the ratios stay fair.
                results: dict[str, list[float]] = {key: [] for key in scenarios}
                for _ in range(args.repeat):
                    for key, fn in scenarios.items():
                        if key.endswith("_warm"):
                            ready(warm_box, CANDIDATES)  # started during the model call
                        results[key].extend(timed(fn, 1))

                profiler = PhaseProfiler(box, snapshot)
                with profiler.active():
                    singles = [profiler.run_one(jobs[i % CANDIDATES])
                               for i in range(max(args.repeat, 5))]
                    single_phases = {k: list(v) for k, v in profiler.samples.items()}
                    profiler.samples.clear()
                    for _, report in box.run_many(jobs, workers=8):
                        check(report)
                    parallel_phases = {k: list(v) for k, v in profiler.samples.items()}
        finally:
            snapshot.close()

    labels = {
        "host": "(a) host: python -m pytest -q",
        "host_bare": "(a') host, plugin autoload off",
        "one": "(b) 1 candidate in the sandbox",
        "one_true": "(b0) 1 candidate, test command `true`",
        "seq8": "(c) 8 candidates, sequential",
        "par8_w2": "(c) 8 candidates, run_many workers=2",
        "par8_w8": "(c) 8 candidates, run_many workers=8",
        "one_warm": "(b') 1 candidate, warm spare container",
        "par8_warm": "(c') 8 candidates, workers=8, warm spares",
    }
    print(f"\nsandbox bench: {args.tests} tests, image {args.image}, {os.cpu_count()} CPUs, "
          f"median of {args.repeat}; load average before {load_before[0]:.1f}, "
          f"after {os.getloadavg()[0]:.1f} (the figures are only meaningful near 0)")
    print(f"{'scenario':<40} {'median s':>9} {'min s':>7} {'max s':>7}")
    for key, label in labels.items():
        xs = results[key]
        print(f"{label:<40} {median(xs):>9.3f} {min(xs):>7.3f} {max(xs):>7.3f}")
    med = {k: median(v) for k, v in results.items()}
    ratios = {
        "one/host": med["one"] / med["host"],
        "one/host_bare": med["one"] / med["host_bare"],
        "par8_w2/seq8": med["par8_w2"] / med["seq8"],
        "par8_w8/seq8": med["par8_w8"] / med["seq8"],
    }
    print(f"\n(b)/(a)                 = {ratios['one/host']:.2f}   (target <= 1.5)")
    print(f"(b)/(a')                = {ratios['one/host_bare']:.2f}   (same host pytest, "
          "without this environment's plugins)")
    print(f"8 parallel w=2 / seq    = {ratios['par8_w2/seq8']:.2f}   (target <= 0.6)")
    print(f"8 parallel w=8 / seq    = {ratios['par8_w8/seq8']:.2f}   (target <= 0.6)")
    print(f"(b')/(a)  warm spare    = {med['one_warm'] / med['host']:.2f}")
    print(f"(b')/(a') warm spare    = {med['one_warm'] / med['host_bare']:.2f}")
    print(f"8 warm w=8 / seq        = {med['par8_warm'] / med['seq8']:.2f}")

    totals = [t for t, _, _ in singles]
    inside = [p for p, _, _ in singles]
    pytest_s = [s for _, _, s in singles]
    print(f"\nwhere one candidate's time goes (median of {len(singles)} runs, "
          f"total {median(totals) * 1000:.0f} ms):")
    for phase in PhaseProfiler.PHASES:
        xs = single_phases.get(phase, [])
        print(f"  {phase:<10} {median(xs) * 1000:>7.1f} ms")
    print(f"  {'other':<10} {(median(totals) - median(inside)) * 1000:>7.1f} ms"
          "  (report parsing, threads, Python)")
    print(f"  (pytest's own time inside the container: {median(pytest_s) * 1000:.0f} ms of "
          "send+wait, which also holds runc start-up, the runner and the tar upload)")
    print("\n8 candidates with workers=8, per call (median / max ms):")
    for phase in PhaseProfiler.PHASES:
        xs = parallel_phases.get(phase, [])
        if xs:
            print(f"  {phase:<10} {median(xs) * 1000:>7.1f} / {max(xs) * 1000:>7.1f}")

    if args.json:
        args.json.write_text(json.dumps({
            "samples": results, "median": med, "ratios": ratios,
            "single_phases_ms": {k: median(v) * 1000 for k, v in single_phases.items()},
            "parallel_phases_ms": {k: median(v) * 1000 for k, v in parallel_phases.items()},
            "cpus": os.cpu_count(), "tests": args.tests, "image": args.image,
            "load_before": load_before[0], "load_after": os.getloadavg()[0],
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
