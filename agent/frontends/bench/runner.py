"""`mulligan bench`: measure what test-time compute buys, strategy against strategy.

    mulligan bench TASKS... [--strategy S ...] [--budget N] [--token-budget T] [--out DIR]

Each (task, strategy) pair is one *job*: the task's repository is materialized in a
temporary directory, the normal loop runs on it (`agent.run.Run`, the entry point of every
front end) with the strategy's shape, and the selected patch is then scored in a FRESH
sandbox run of the original task snapshot + patch (patches touching tests are rejected).
Jobs run in parallel up to --workers, or one Ray task each with --ray. Every finished job
appends one line to OUT/results.jsonl (a rerun skips the jobs already there: resume) and
keeps its trajectory under OUT/trajectories/TASK/STRATEGY.jsonl; OUT/report.md and the PNG
plots are rebuilt at the end (or alone with --report-only).

Strategies, at the same model and the same sample budget B (--budget):

* single: pass@1, one candidate, one round;
* best-of-n: B candidates in one round, no revision;
* revise-only: one candidate, then sequential retries from its failures (B rounds, beam 1),
  the way Aider's test loop works;
* mulligan: N candidates per round (--candidates, default 4) revised by a beam (--beam,
  default 2) for B // N rounds.

See docs/bench.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.frontends.bench.tasks import BenchTask, load_tasks
from agent.errors import ConfigError
from agent.events import ResultStatus

STRATEGIES = ("single", "best-of-n", "revise-only", "mulligan")
DEFAULT_BUDGET = 8
RESULTS = "results.jsonl"
CONFIG = "config.json"
TRAJECTORIES = "trajectories"
# Config fields that must match for a rerun to resume into the same OUT.
RESUME_KEYS = ("budget", "candidates", "beam", "token_budget", "model", "base_url",
               "scripted_p", "seed", "temperature", "image")
# Files a patch may not touch besides test files: they decide which tests run and how.
TEST_CONFIG_FILES = frozenset({"pytest.ini", "tox.ini", "setup.cfg", "noxfile.py",
                               ".pytest.ini", "pytest.toml"})


@dataclass(frozen=True)
class Strategy:
    name: str
    candidates: int
    rounds: int
    beam: int

    @property
    def max_samples(self) -> int:
        per_round = self.beam * max(1, self.candidates // self.beam)
        return self.candidates + (self.rounds - 1) * per_round


def make_strategies(names: Sequence[str], budget: int, candidates: int = 4,
                    beam: int = 2) -> list[Strategy]:
    """The strategies to compare at `budget` samples per task."""
    if budget < 1:
        raise ConfigError("--budget must be at least 1 sample")
    out = []
    for name in names:
        if name == "single":
            out.append(Strategy(name, 1, 1, 1))
        elif name == "best-of-n":
            if budget > 64:
                raise ConfigError("best-of-n takes at most 64 candidates: --budget <= 64")
            out.append(Strategy(name, budget, 1, 1))
        elif name == "revise-only":
            if budget > 20:
                raise ConfigError("revise-only runs one round per sample, at most 20: "
                                  "--budget <= 20")
            out.append(Strategy(name, 1, budget, 1))
        elif name == "mulligan":
            n = max(1, min(candidates, budget))
            rounds = max(1, budget // n)
            if rounds > 20:
                raise ConfigError("mulligan would need more than 20 rounds: raise --candidates")
            out.append(Strategy(name, n, rounds, max(1, min(beam, n))))
        else:
            raise ConfigError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)}, "
                              "or all)")
    return out


def parse_strategy_names(values: Sequence[str] | None) -> list[str]:
    names: list[str] = []
    for value in values or ["mulligan"]:
        for name in value.split(","):
            name = name.strip().lower()
            if not name:
                continue
            for one in (STRATEGIES if name == "all" else (name,)):
                if one not in names:
                    names.append(one)
    return names


@dataclass
class BenchConfig:
    strategies: list[str] = field(default_factory=lambda: ["mulligan"])
    budget: int = DEFAULT_BUDGET
    candidates: int = 4
    beam: int = 2
    token_budget: int | None = None
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    scripted_p: float | None = None
    fixes: str | None = None
    seed: int | None = 0
    temperature: float = 0.8
    image: str | None = None
    workers: int = 2  # jobs at once
    sandbox_workers: int = 2  # sandboxes at once within a job
    test_timeout_s: float = 120.0
    ray: str | None = None
    model_label: str = ""
    sources: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _settings_for(cfg: BenchConfig, task: BenchTask, strategy: Strategy, model: str,
                  base_url: str | None):
    """Settings for one job, from the bench's own flags and the environment only: a task's
    repository cannot change them (no `.mulligan.toml` is read, test edits are never
    allowed)."""
    from agent.config import Settings, env_settings

    env = env_settings()
    values: dict[str, Any] = {"api_key": env.get("api_key"), "ca_bundle": env.get("ca_bundle")}
    values.update(
        model=model, base_url=base_url, test_cmd=task.test_cmd,
        image=task.image or cfg.image or env.get("image"),
        candidates=strategy.candidates, rounds=strategy.rounds, beam=strategy.beam,
        workers=cfg.sandbox_workers, temperature=cfg.temperature, seed=cfg.seed,
        token_budget=cfg.token_budget, test_timeout_s=cfg.test_timeout_s,
        allow_test_edits=False)
    if cfg.scripted_p is not None:
        values["api_key"] = "scripted"
    return Settings(**{k: v for k, v in values.items() if v is not None})


# -- scoring --------------------------------------------------------------------------------


def touched_tests(patch: str) -> list[str]:
    """Test files and test configuration the patch edits (a scored patch may touch none)."""
    from sandbox.docker_backend import _patch_paths
    from sandbox.testpaths import is_test_path

    out = []
    for path in sorted(_patch_paths(patch)):
        name = path.rsplit("/", 1)[-1]
        pytest_config = name == "pyproject.toml" and "[tool.pytest" in patch
        if is_test_path(path) or name in TEST_CONFIG_FILES or pytest_config:
            out.append(path)
    return out


def verify_patch(task: BenchTask, patch: str | None, settings, workdir: Path,
                 baseline_tests: Sequence[str] = ()) -> dict:
    """Score a patch honestly: a fresh sandbox on a fresh materialization of the original
    task, the patch applied, the task's own test command. Passed only if the command passes
    and every required test (SWE-bench: FAIL_TO_PASS + PASS_TO_PASS; otherwise every test of
    the unmodified run) ran and passed."""
    started = time.monotonic()

    def done(passed: bool, reason: str, **extra: Any) -> dict:
        return {"passed": passed, "reason": reason,
                "seconds": round(time.monotonic() - started, 3), **extra}

    if not patch or not patch.strip():
        return done(False, "no patch was selected")
    touched = touched_tests(patch)
    if touched:
        return done(False, f"rejected: the patch edits test files {touched}")
    from agent.environment import limits_from, open_sandbox
    from sandbox.api import Job
    from sandbox.api import RunStatus
    from sandbox.snapshot import Snapshot

    repo = task.materialize(workdir)
    snapshot = Snapshot.from_directory(repo)
    try:
        sandbox = open_sandbox(settings.model_copy(update={"workers": 1}), snapshot)
        try:
            report = sandbox.run(Job(snapshot, patch, task.test_cmd, (), limits_from(settings)))
        finally:
            sandbox.close()
    finally:
        snapshot.close()
        shutil.rmtree(repo, ignore_errors=True)
    facts = {"exit_code": report.exit_code, "status": report.status.value,
             "tests": len(report.tests), "failing": [t.nodeid for t in report.failing()][:20]}
    if report.status is RunStatus.PATCH_FAILED:
        return done(False, f"the patch does not apply: {report.patch_error}", **facts)
    if report.changed_test_files:
        return done(False, f"rejected: test files changed {report.changed_test_files}", **facts)
    if not report.passed:
        return done(False, f"the tests fail ({report.status.value}, exit {report.exit_code})",
                    **facts)
    required = list(task.required_tests or baseline_tests)
    missing = [t for t in required if t not in report.tests or not report.tests[t].ok] \
        if report.tests or task.required_tests else []
    if missing:
        return done(False, f"{len(missing)} required test(s) did not pass: {missing[:5]}",
                    **facts)
    return done(True, "passes in a fresh sandbox", **facts)


# -- one job --------------------------------------------------------------------------------


def job_key(task_id: str, strategy: str) -> str:
    return f"{task_id}\t{strategy}"


def _model_name(cfg: BenchConfig, task: BenchTask, strategy: Strategy) -> str:
    from agent.frontends.bench.scripted import MODEL_PREFIX

    if cfg.scripted_p is None:
        return cfg.model
    return f"{MODEL_PREFIX}{cfg.scripted_p}/{task.id}/{strategy.name}"


async def run_job(task: BenchTask, strategy: Strategy, cfg: BenchConfig,
                  trajectory: Path, server=None, fix=None) -> dict:
    """Run the loop on one task with one strategy and score it; the result record."""
    from agent.frontends.bench.scripted import ScriptedResponder
    from agent.events import EventBus
    from agent.run import Run, RunRequest, model_from

    record: dict[str, Any] = {
        "task": task.id, "strategy": strategy.name, "kind": task.kind,
        "params": {"candidates": strategy.candidates, "rounds": strategy.rounds,
                   "beam": strategy.beam},
        "model": cfg.model, "scripted_p": cfg.scripted_p, "model_label": cfg.model_label,
    }
    started = time.monotonic()
    model_name = _model_name(cfg, task, strategy)
    responder = None
    if cfg.scripted_p is not None:
        responder = ScriptedResponder(fix, cfg.scripted_p, cfg.seed or 0, salt=strategy.name)
        server.register(model_name, responder)
        record["model"] = model_name
    base_url = server.base_url if server is not None else cfg.base_url
    trajectory.parent.mkdir(parents=True, exist_ok=True)
    trajectory.unlink(missing_ok=True)
    result = None
    with tempfile.TemporaryDirectory(prefix="mulligan-bench-") as tmp:
        try:
            settings = _settings_for(cfg, task, strategy, model_name, base_url)
            repo = task.materialize(Path(tmp) / "repo")
            model = model_from(settings)
            try:
                run = Run(RunRequest(repo, settings, task.issue), EventBus(), model)
                run.trajectory_path = trajectory
                result = await run.execute()
            finally:
                await model.aclose()
            baseline = list(result.baseline.targets + result.baseline.keep) \
                if result.baseline and result.baseline.per_test else []
            verification = await asyncio.to_thread(
                verify_patch, task,
                result.patch if result.status is not ResultStatus.NOTHING_TO_FIX else None,
                settings, Path(tmp) / "fresh", baseline)
        except Exception as exc:  # noqa: BLE001 - a benchmark records a failed job, goes on
            record.update(status=ResultStatus.ERROR.value, solved=False,
                          error=f"{type(exc).__name__}: {exc}",
                          loop_status=result.status.value if result else ResultStatus.ERROR.value)
            verification = None
        finally:
            if server is not None:
                server.unregister(model_name)
    record["seconds"] = round(time.monotonic() - started, 3)
    record["trajectory"] = f"{TRAJECTORIES}/{task.id}/{strategy.name}.jsonl"
    if result is not None:
        record.update(_from_result(result))
        if responder is not None:
            chosen = result.chosen
            record["selected_is_reference"] = bool(fix.matches(chosen.files if chosen else None))
            record["scripted"] = {"fix_answers": responder.fix_answers,
                                  "wrong_answers": responder.wrong_answers}
    if verification is not None:
        record["verification"] = verification
        record["solved"] = bool(verification["passed"])
        record["status"] = (ResultStatus.SOLVED if record["solved"]
                            else ResultStatus.UNSOLVED).value
        record["error"] = None
        if not record["solved"]:
            record["samples_to_solve"] = record["tokens_to_solve"] = None
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record


def _from_result(result) -> dict:
    cands = result.candidates
    rounds = sorted({c.round for c in cands})
    first_solved = min((c.round for c in cands if c.solved), default=None)

    def through(r: int, what: Callable[[Any], int]) -> int:
        return sum(what(c) for c in cands if c.round <= r)

    round1 = [c for c in cands if c.round == 1]
    return {
        "loop_status": result.status,
        "loop_reason": result.reason,
        "selected": result.chosen.id if result.chosen else None,
        "patch": result.patch,
        "any_right": any(c.solved for c in cands),
        "round1": {"n": len(round1), "c": sum(c.solved for c in round1)},
        "samples": len(cands),
        "rounds_used": rounds[-1] if rounds else 0,
        "samples_to_solve": through(first_solved, lambda _c: 1) if first_solved else None,
        "tokens_to_solve": through(first_solved, lambda c: c.tokens) if first_solved else None,
        "tokens": result.usage.total,
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "cost_usd": round(result.cost_usd, 6),
        "loop_seconds": round(result.seconds, 3),
        "sandbox_seconds": round(result.sandbox_seconds, 3),
        "candidates": [{"id": c.id, "round": c.round, "parent": c.parent,
                        "state": c.state.value, "tokens": c.tokens, "solved": c.solved,
                        "fixed": len(c.fixed), "regressions": len(c.regressions)}
                       for c in cands],
    }


# -- many jobs ------------------------------------------------------------------------------


class Results:
    """OUT/results.jsonl: appended and flushed per job; the keys already done (resume)."""

    def __init__(self, out: Path) -> None:
        self.path = out / RESULTS
        self.done: set[str] = set()
        if self.path.is_file():
            from agent.frontends.bench.report import read_results

            self.done = {job_key(r["task"], r["strategy"]) for r in read_results(self.path)
                         if r.get("status") != "error"}

    def append(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
        if record.get("status") != "error":
            self.done.add(job_key(record["task"], record["strategy"]))


def _check_resume(out: Path, cfg: BenchConfig) -> None:
    path = out / CONFIG
    if not path.is_file() or not (out / RESULTS).is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return
    diff = [k for k in RESUME_KEYS if old.get(k) != getattr(cfg, k)]
    if diff:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {getattr(cfg, k)!r}" for k in diff)
        raise ConfigError(f"{out} holds results of another configuration ({detail}): pass "
                          "another --out, or the same flags to resume")


def run_bench(tasks: Sequence[BenchTask], cfg: BenchConfig, out: Path,
              log: Callable[[str], None] = lambda _line: None) -> list[dict]:
    """Run every (task, strategy) job not already in OUT/results.jsonl; write the report."""
    from agent.frontends.bench.report import read_results, write_report

    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, cfg)
    strategies = make_strategies(cfg.strategies, cfg.budget, cfg.candidates, cfg.beam)
    if cfg.scripted_p is not None:
        from agent.frontends.bench.scripted import LABEL

        cfg.model_label = LABEL
    (out / CONFIG).write_text(json.dumps(cfg.to_json(), indent=2) + "\n", encoding="utf-8")
    results = Results(out)
    runnable = []
    for task in tasks:
        if task.unavailable:
            log(f"skipping {task.id}: {task.unavailable}")
        else:
            runnable.append(task)
    fixes = {}
    if cfg.scripted_p is not None:
        from agent.frontends.bench.scripted import load_fix

        fixes = {t.id: load_fix(t, Path(cfg.fixes) if cfg.fixes else None) for t in runnable}
    jobs = [(t, s) for t in runnable for s in strategies
            if job_key(t.id, s.name) not in results.done]
    skipped = len(runnable) * len(strategies) - len(jobs)
    if skipped:
        log(f"resuming: {skipped} job(s) already in {results.path}")
    if cfg.scripted_p is not None:
        log(f"model: {cfg.model_label} (p = {cfg.scripted_p})")
    counter = {"n": 0}

    def finished(record: dict) -> None:
        results.append(record)
        counter["n"] += 1
        what = record.get("status")
        if what == "error":
            what = f"ERROR {record.get('error')}"
        elif record.get("solved"):
            what = f"solved ({record.get('samples_to_solve')} samples)"
        log(f"[{counter['n']}/{len(jobs)}] {record['task']} {record['strategy']}: {what}, "
            f"{record.get('samples', 0)} samples, {record.get('tokens', 0)} tokens, "
            f"{record.get('seconds', 0):.1f}s")

    try:
        if jobs:
            if cfg.ray:
                _run_ray(jobs, cfg, out, fixes, finished)
            else:
                asyncio.run(_run_local(jobs, cfg, out, fixes, finished))
    finally:
        report = write_report(out, cfg.to_json())
        log(f"report: {report}")
    return read_results(out / RESULTS)


async def _run_local(jobs, cfg: BenchConfig, out: Path, fixes: dict,
                     finished: Callable[[dict], None]) -> None:
    server = None
    if cfg.scripted_p is not None:
        from agent.frontends.bench.scripted import ScriptedServer

        server = ScriptedServer().start()
    slots = asyncio.Semaphore(max(1, cfg.workers))

    async def one(task: BenchTask, strategy: Strategy) -> None:
        async with slots:
            path = out / TRAJECTORIES / task.id / f"{strategy.name}.jsonl"
            record = await run_job(task, strategy, cfg, path, server, fixes.get(task.id))
            finished(record)

    try:
        await asyncio.gather(*(one(t, s) for t, s in jobs))
    finally:
        if server is not None:
            server.stop()


def ray_job(task: BenchTask, strategy: Strategy, cfg_json: dict, fix) -> dict:
    """One job inside a Ray worker: the node's own Docker, its own scripted server; the
    trajectory comes back in the record for the driver to keep."""
    cfg = BenchConfig(**cfg_json)
    server = None
    if cfg.scripted_p is not None:
        from agent.frontends.bench.scripted import ScriptedServer

        server = ScriptedServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="mulligan-bench-ray-") as tmp:
            path = Path(tmp) / "trajectory.jsonl"
            record = asyncio.run(run_job(task, strategy, cfg, path, server, fix))
            record["trajectory_text"] = path.read_text(encoding="utf-8") if path.is_file() \
                else ""
            import socket

            record["node"] = socket.gethostname()
            return record
    finally:
        if server is not None:
            server.stop()


def _run_ray(jobs, cfg: BenchConfig, out: Path, fixes: dict,
             finished: Callable[[dict], None]) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'ray[default]' (on every node)") from None
    if not ray.is_initialized():
        address = None if cfg.ray in ("local", "") else cfg.ray
        ray.init(address=address, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=1)(ray_job)
    cfg_json = cfg.to_json()
    pending = {remote.remote(t, s, cfg_json, fixes.get(t.id)): (t, s) for t, s in jobs}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            task, strategy = pending.pop(ref)
            try:
                record = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a lost node fails one job, not the bench
                record = {"task": task.id, "strategy": strategy.name,
                          "status": ResultStatus.ERROR.value,
                          "solved": False, "error": f"ray: {type(exc).__name__}: {exc}"[:2000],
                          "model": cfg.model, "scripted_p": cfg.scripted_p}
            text = record.pop("trajectory_text", "")
            if text:
                path = out / TRAJECTORIES / task.id / f"{strategy.name}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            finished(record)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


# -- command line ---------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="compare strategies (single, best-of-n, revise-only, "
                       "mulligan) on a set of tasks",
                       description="Run the loop on benchmark tasks with several strategies "
                       "and report solve rates, pass@k, tokens, time and cost (docs/bench.md).")
    p.add_argument("tasks", nargs="*", type=Path, metavar="TASKS",
                   help="task directories, folders of them, or SWE-bench-style .jsonl files")
    p.add_argument("--strategy", action="append", default=None, metavar="S",
                   help=f"{', '.join(STRATEGIES)} or all; repeat or comma-separate "
                   "(default: mulligan)")
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                   help=f"samples per task per strategy (default {DEFAULT_BUDGET})")
    p.add_argument("--token-budget", type=int, default=None,
                   help="tokens per task per strategy: the loop stops sampling once spent")
    p.add_argument("--candidates", type=int, default=4, help="mulligan: candidates per round")
    p.add_argument("--beam", type=int, default=2, help="mulligan: candidates revised per round")
    p.add_argument("--out", type=Path, default=Path("mulligan-bench"),
                   help="output folder (default ./mulligan-bench); rerun to resume")
    p.add_argument("--workers", type=int, default=None,
                   help="jobs (task x strategy) at once (default: CPUs / 2)")
    p.add_argument("--sandbox-workers", type=int, default=2, help="sandboxes at once per job")
    p.add_argument("--model", default=None, help="model name (MULLIGAN_MODEL)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (OPENAI_BASE_URL)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image", default=None, help="sandbox base image")
    p.add_argument("--timeout", dest="test_timeout_s", type=float, default=120.0,
                   help="wall-time limit per test run, seconds")
    p.add_argument("--scripted-p", type=float, default=None, metavar="P",
                   help="no real model: a scripted server answers the reference fix with "
                   "probability P (labelled as such everywhere)")
    p.add_argument("--fixes", type=Path, default=None,
                   help="--scripted-p: folder of TASKID.patch (default: _fixes next to the tasks)")
    p.add_argument("--repos-dir", type=Path, default=None,
                   help="JSONL tasks: folder of local clones (owner__name or name)")
    p.add_argument("--only", action="append", default=None, metavar="ID",
                   help="only these task ids (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="run one Ray task per job (ADDRESS: auto, ray://host:10001, or local)")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild report.md and the plots from OUT/results.jsonl")
    p.set_defaults(handler=cmd_bench)


def _log(line: str) -> None:
    print(f"mulligan bench: {line}", file=sys.stderr, flush=True)


def cmd_bench(args: argparse.Namespace) -> int:
    from agent.config import env_settings

    out: Path = args.out
    if args.report_only:
        from agent.frontends.bench.report import write_report

        try:
            config = json.loads((out / CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ConfigError(f"{out}: no {CONFIG} (run a bench into it first)") from None
        _log(f"report: {write_report(out, config)}")
        return 0
    if args.scripted_p is not None and not 0.0 <= args.scripted_p <= 1.0:
        raise ConfigError("--scripted-p must be between 0 and 1")
    tasks = load_tasks(args.tasks, args.repos_dir)
    if args.only:
        wanted = set(args.only)
        unknown = wanted - {t.id for t in tasks}
        if unknown:
            raise ConfigError(f"--only: no such task(s): {', '.join(sorted(unknown))}")
        tasks = [t for t in tasks if t.id in wanted]
    if args.limit is not None:
        tasks = tasks[: max(0, args.limit)]
    env = env_settings()
    scripted = args.scripted_p is not None
    cfg = BenchConfig(
        strategies=parse_strategy_names(args.strategy), budget=args.budget,
        candidates=args.candidates, beam=args.beam, token_budget=args.token_budget,
        model=("scripted" if scripted else args.model or env.get("model") or "gpt-4o-mini"),
        base_url=None if scripted else (args.base_url or env.get("base_url")),
        scripted_p=args.scripted_p, fixes=str(args.fixes) if args.fixes else None,
        seed=args.seed, temperature=args.temperature, image=args.image,
        workers=args.workers or max(1, (os.cpu_count() or 2) // 2),
        sandbox_workers=args.sandbox_workers, test_timeout_s=args.test_timeout_s,
        ray=args.ray, sources=[str(p) for p in args.tasks])
    make_strategies(cfg.strategies, cfg.budget, cfg.candidates, cfg.beam)  # validate early
    if not scripted and cfg.base_url is None and not env.get("api_key"):
        raise ConfigError("mulligan bench needs a model endpoint: --base-url / OPENAI_BASE_URL "
                          "(and OPENAI_API_KEY), or --scripted-p P to measure without a model")
    records = run_bench(tasks, cfg, out, _log)
    errors = sum(r.get("status") == "error" for r in records)
    return 1 if records and errors == len(records) else 0
