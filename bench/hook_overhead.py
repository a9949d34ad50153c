"""What the pre-commit hook costs on top of the tests when nothing is wrong.

A temporary repository with a passing pytest suite (``--tests`` tests) gets the hook
installed; then, interleaved ``--reps`` times, each on a fresh one-line staged change:

* ``no hook``: ``git commit --no-verify`` -- git's own cost;
* ``sandbox``: the same tests on the same staged snapshot in the sandbox, in this process
  (``DockerSandbox.run(Job)``: container create, start, the tests, removal) -- the tests'
  own cost, which the hook cannot avoid;
* ``sandbox + open``: the same with the snapshot taken and the sandbox opened each time
  (``Snapshot`` + ``open_sandbox``), as a process that starts cold has to;
* ``hook``: ``git commit`` through the installed hook (a new Python process, imports,
  settings, snapshot of the index, Docker connection, the same test run);
* ``skip``: ``MULLIGAN_SKIP=1 git commit`` -- the hook script when skipped.

Overhead = median(hook) - median(no hook) - median(sandbox). Wall time moves with the
machine's load, so the CPU time of the commit's processes (git, the hook, its git calls;
not the container, which runs under the Docker daemon) is reported too: `hook cpu` minus
`no hook cpu` is the hook's own work. Needs Docker and the sandbox
image (``MULLIGAN_IMAGE``, default mulligan/base:bookworm); no model is contacted::

    python bench/hook_overhead.py --reps 7 --tests 50
    python bench/hook_overhead.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODULE = "def add(a, b):\n    return a + b\n"


def suite(n: int) -> str:
    cases = "".join(f"\n\ndef test_add_{i}():\n    assert add({i}, 1) == {i + 1}\n"
                    for i in range(n))
    return "from calc import add\n" + cases


def git(repo: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_commit(repo: Path, env: dict[str, str], n: int, *args: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of git and everything it ran) of one commit."""
    with (repo / "calc.py").open("a") as fh:
        fh.write(f"# change {n}\n")
    git(repo, env, "add", "calc.py")
    cpu, started = children_cpu(), time.perf_counter()
    proc = subprocess.run(["git", "commit", "-q", "-m", f"change {n}", *args], cwd=repo,
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"git commit {' '.join(args)} failed:\n{proc.stderr}")
    return seconds, cpu


def sandbox_times(repo: Path, env: dict[str, str], n: int) -> tuple[float, float]:
    """(the test run alone, snapshot + open + test run) on a fresh staged change."""
    from agent.config import load_settings
    from agent.environment import limits_from, open_sandbox
    from sandbox.api import Job
    from sandbox.snapshot import Snapshot

    with (repo / "calc.py").open("a") as fh:
        fh.write(f"# sandbox {n}\n")
    git(repo, env, "add", "calc.py")
    started = time.perf_counter()
    settings = load_settings(repo, environ=env)
    with Snapshot.from_index(repo) as snapshot:
        sandbox = open_sandbox(settings, snapshot)
        try:
            run_started = time.perf_counter()
            report = sandbox.run(Job(snapshot, "", settings.test_cmd,
                                     limits=limits_from(settings)))
            run_s = time.perf_counter() - run_started
        finally:
            sandbox.close()
    total = time.perf_counter() - started
    git(repo, env, "commit", "-q", "--no-verify", "-m", f"sandbox {n}")
    if not report.passed:
        raise SystemExit(f"the suite does not pass in the sandbox:\n{report.output[-2000:]}")
    return run_s, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tests", type=int, default=20, help="tests in the passing suite")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mulligan-hook-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        gitconfig = Path(tmp, "gitconfig")
        gitconfig.write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n")
        env.update(GIT_CONFIG_GLOBAL=str(gitconfig), GIT_CONFIG_NOSYSTEM="1",
                   MULLIGAN_HOME=str(Path(tmp, "home")), MULLIGAN_HOOK_NONINTERACTIVE="1",
                   MULLIGAN_IMAGE=os.environ.get("MULLIGAN_IMAGE", "mulligan/base:bookworm"))
        os.environ.update({k: env[k] for k in ("MULLIGAN_IMAGE", "MULLIGAN_HOME")})
        repo = Path(tmp, "repo")
        (repo / "tests").mkdir(parents=True)
        (repo / "calc.py").write_text(MODULE)
        (repo / "tests" / "test_calc.py").write_text(suite(args.tests))
        git(repo, env, "init", "-q")
        git(repo, env, "add", "-A")
        git(repo, env, "commit", "-q", "-m", "init")
        subprocess.run([sys.executable, "-m", "agent.frontends.hook", "install"], cwd=repo, env=env,
                       check=True, capture_output=True)

        timed_commit(repo, env, -1)  # warm-up: builds the dependency layer once
        sandbox_times(repo, env, -1)
        rows: dict[str, list[float]] = {name: [] for name in (
            "no hook", "sandbox", "sandbox + open", "hook", "skip", "no hook cpu", "hook cpu")}
        for n in range(args.reps):
            wall, cpu = timed_commit(repo, env, 3 * n, "--no-verify")
            rows["no hook"].append(wall)
            rows["no hook cpu"].append(cpu)
            run_s, total = sandbox_times(repo, env, n)
            rows["sandbox"].append(run_s)
            rows["sandbox + open"].append(total)
            wall, cpu = timed_commit(repo, env, 3 * n + 1)
            rows["hook"].append(wall)
            rows["hook cpu"].append(cpu)
            rows["skip"].append(timed_commit(repo, {**env, "MULLIGAN_SKIP": "1"}, 3 * n + 2)[0])

    med = {name: statistics.median(values) for name, values in rows.items()}
    overhead = med["hook"] - med["no hook"] - med["sandbox"]
    result = {"reps": args.reps, "tests": args.tests,
              "median_s": {k: round(v, 4) for k, v in med.items()},
              "all_s": {k: [round(x, 4) for x in v] for k, v in rows.items()},
              "overhead_s": round(overhead, 4),
              "hook_cpu_s": round(med["hook cpu"] - med["no hook cpu"], 4),
              "load_average": os.getloadavg()[0],
              "overhead_vs_cold_sandbox_s": round(med["hook"] - med["no hook"]
                                                  - med["sandbox + open"], 4)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.tests} passing tests, {args.reps} reps (median, min-max), seconds; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs:")
    for name, values in rows.items():
        print(f"  {name:15} {med[name]:7.3f}   ({min(values):.3f}-{max(values):.3f})")
    print(f"hook overhead = hook - no hook - sandbox = {overhead:.3f}s "
          f"({overhead / med['hook']:.0%} of the hooked commit)")
    print(f"hook CPU = hook cpu - no hook cpu = {med['hook cpu'] - med['no hook cpu']:.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
