"""`mulligan bench`: run many jobs (locally or on Ray), resumably, and its command line.

It measures what test-time compute buys, strategy against strategy:

    mulligan bench TASKS... [--strategy S ...] [--budget N] [--token-budget T] [--out DIR]

Each (task, strategy) pair is one *job* (job.py; the strategies are in strategies.py). Jobs
run in parallel up to --workers, or one Ray task each with --ray. Every finished job appends
one line to OUT/results.jsonl (a rerun skips the jobs already there: resume) and keeps its
trajectory under OUT/trajectories/TASK/STRATEGY.jsonl; OUT/report.md and the PNG
plots are rebuilt at the end (or alone with --report-only).

See docs/bench.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.errors import ConfigError
from agent.events import ResultStatus
from agent.frontends.bench.job import TRAJECTORIES, job_key, run_job
from agent.frontends.bench.strategies import (
    DEFAULT_BUDGET,
    STRATEGIES,
    BenchConfig,
    Strategy,
    make_strategies,
    parse_strategy_names,
)
from agent.frontends.bench.tasks import BenchTask, load_tasks

RESULTS = "results.jsonl"
CONFIG = "config.json"
# Config fields that must match for a rerun to resume into the same OUT.
RESUME_KEYS = ("budget", "candidates", "beam", "token_budget", "model", "base_url",
               "scripted_p", "seed", "temperature", "image")


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
                   "(default: single,mulligan)")
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
    p.add_argument("--max-requests", type=int, default=None,
                   help="model requests at once per job (default: the server's slots)")
    p.add_argument("--request-timeout", type=float, default=None,
                   help="seconds per model request (default 120)")
    p.add_argument("--model", default=None, help="model name (MULLIGAN_MODEL)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (OPENAI_BASE_URL)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image", default=None, help="sandbox base image")
    p.add_argument("--timeout", dest="test_timeout_s", type=float, default=120.0,
                   help="wall-time limit per test run, seconds")
    p.add_argument("--context-tokens", type=int, default=None,
                   help="source tokens per prompt (default: the run's own, 6000)")
    p.add_argument("--mutants", type=int, default=None, metavar="N",
                   help="mutants of the suspect lines per run (default 150; 0: none)")
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
        max_requests=args.max_requests, request_timeout_s=args.request_timeout,
        context_tokens=args.context_tokens, mutants=args.mutants, ray=args.ray,
        sources=[str(p) for p in args.tasks])
    make_strategies(cfg.strategies, cfg.budget, cfg.candidates, cfg.beam)  # validate early
    if not scripted and cfg.base_url is None and not env.get("api_key"):
        raise ConfigError("mulligan bench needs a model endpoint: --base-url / OPENAI_BASE_URL "
                          "(and OPENAI_API_KEY), or --scripted-p P to measure without a model")
    records = run_bench(tasks, cfg, out, _log)
    errors = sum(r.get("status") == "error" for r in records)
    return 1 if records and errors == len(records) else 0
