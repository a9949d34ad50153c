"""Benchmark of the solve-test-revise loop on the public program-repair tasks.

    python bench/loop.py [--tasks ID ...] [--limit N] [--p 0.3] [--seed 0]
                         [--candidates 4] [--rounds 3]

THE MODEL IS SCRIPTED. The scripted OpenAI-compatible server of `mulligan bench
--scripted-p` (agent/frontends/bench/scripted.py, over real HTTP through the real `openai` client)
answers each choice with the task's reference fix with probability p (seeded), converted to
SEARCH/REPLACE blocks built from the patch hunks, and otherwise with a wrong but well-formed
edit (an operator or constant mutated near the bug). The figures measure the loop's machinery
(sandboxing, parsing and applying answers, context, selection, revision) and how often
the loop finds a passing patch when each sample is right with probability p; they say
nothing about any real model's ability to repair programs.

The tasks are loaded by agent/frontends/bench/tasks.py and the reference fixes
(`_fixes/TASKID.patch`) by agent/frontends/bench/scripted.py, used only to build the scripted answers;
they never enter a prompt, and the task's repository copy holds neither them nor
task.json. Everything else is the real thing: git snapshot, Docker sandbox (image
`mulligan/base:bookworm` unless --image says otherwise), parallel evaluation, beam revision.

Per task it reports: solved, wall time, sandbox time (wall-clock time with at least one
container job running, and the sum over jobs), model time (wall-clock time with a
request in flight), and Mulligan's own time = wall - sandbox - model (parsing, applying,
context, selection, events). A Markdown table goes to stdout, JSON to bench/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.frontends.bench.scripted import ScriptedFix, ScriptedResponder, ScriptedServer, load_fix
from agent.frontends.bench.tasks import BenchTask, load_task_dir
from agent.config import Settings
from agent.environment import open_sandbox
from agent.events import EventBus
from agent.loop import Solver
from agent.context.repomap import RepoMap
from agent.run import model_from
from sandbox.snapshot import Snapshot

BENCHMARKS = ROOT.parent / "shared" / "benchmarks"
OUT = ROOT / "bench" / "out"
MODEL = "scripted-reference-p"
LABEL = ("scripted model answering the reference fix with probability p "
         "(otherwise a wrong but well-formed edit); not a real model")
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
           "GIT_CONFIG_NOSYSTEM": "1"}


# -- the scripted model --------------------------------------------------------------------------


class RecordingResponder(ScriptedResponder):
    """agent/frontends/bench/scripted.py's responder, also keeping the reference-fix answers it gave
    (to tell a candidate that passes by luck, a mutant, from a reference fix)."""

    def __init__(self, fix: ScriptedFix, p: float, seed: int) -> None:
        super().__init__(fix, p, seed)
        self.fix_texts: set[str] = set()
        self._calls = threading.Lock()

    def __call__(self, messages: list[dict]) -> str:
        with self._calls:  # one at a time, so that the count says which kind this one was
            before = self.fix_answers
            answer = super().__call__(messages)
            if self.fix_answers != before:
                self.fix_texts.add(answer)
        return answer


def load(task_dir: Path) -> tuple[BenchTask, ScriptedFix]:
    """A task (its files as the agent sees them) and its reference fix from `_fixes/`."""
    task = load_task_dir(task_dir)
    return task, load_fix(task)


# -- timing ------------------------------------------------------------------------------------


class Intervals:
    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def add(self, start: float, end: float) -> None:
        with self.lock:
            self.spans.append((start, end))

    @property
    def total(self) -> float:
        return sum(b - a for a, b in self.spans)


def union_seconds(*groups: Intervals) -> float:
    spans = sorted(s for g in groups for s in g.spans)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in spans:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


class TimedSandbox:
    def __init__(self, inner, spans: Intervals) -> None:
        self.inner = inner
        self.spans = spans

    def run(self, job):
        start = time.monotonic()
        try:
            return self.inner.run(job)
        finally:
            self.spans.add(start, time.monotonic())

    def prewarm(self, limits, count):
        self.inner.prewarm(limits, count)

    def close(self):
        self.inner.close()


class TimedModel:
    def __init__(self, inner, spans: Intervals) -> None:
        self.inner = inner
        self.spans = spans

    async def sample(self, messages, n, *, seed=None):
        start = time.monotonic()
        try:
            return await self.inner.sample(messages, n, seed=seed)
        finally:
            self.spans.add(start, time.monotonic())

    async def preflight(self):
        await self.inner.preflight()

    async def aclose(self):
        await self.inner.aclose()

    @property
    def window(self):
        return self.inner.window


# -- one task ----------------------------------------------------------------------------------


@dataclass
class TaskResult:
    task: str
    status: str
    solved: bool
    matches_reference: bool
    chosen: str | None
    rounds_used: int
    candidates: int
    fix_answers: int
    wrong_answers: int
    lucky_passes: int  # "wrong" mutants that nevertheless pass the task's tests
    setup_s: float
    wall_s: float
    sandbox_s: float  # wall-clock with a container job running
    sandbox_sum_s: float  # summed over jobs (they run in parallel)
    model_s: float
    own_s: float
    sandbox_jobs: int
    tokens: int
    states: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def make_repo(task: BenchTask, work: Path) -> Path:
    """A git repository holding the task's buggy files (no task.json, no fix)."""
    repo = task.materialize(work / task.id)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "task"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True, env=GIT_ENV)
    return repo


async def run_task(task: BenchTask, fix: ScriptedFix, repo: Path, args: argparse.Namespace,
                   server: ScriptedServer, work: Path) -> TaskResult:
    responder = RecordingResponder(fix, args.p, args.seed)
    server.register(MODEL, responder)
    settings = Settings(model=MODEL, base_url=server.base_url, image=args.image,
                        test_cmd=task.test_cmd, candidates=args.candidates, rounds=args.rounds,
                        beam=args.beam, workers=args.workers, test_timeout_s=args.timeout,
                        seed=args.seed)
    box_spans, model_spans = Intervals(), Intervals()
    started = time.monotonic()
    snapshot = Snapshot.from_directory(repo)
    sandbox = model = None
    try:
        sandbox = await asyncio.to_thread(open_sandbox, settings, snapshot)
        model = model_from(settings)
        solver = Solver(settings, TimedModel(model, model_spans), TimedSandbox(sandbox, box_spans),
                        snapshot, EventBus(), f"bench-{task.id}", task.issue, str(repo), {},
                        RepoMap(cache_dir=work / "repomap"))
        setup = time.monotonic() - started
        t0 = time.monotonic()
        try:
            result = await solver.run()
            error = None
        except Exception as exc:  # noqa: BLE001 - a benchmark records failures, goes on
            result, error = None, f"{type(exc).__name__}: {exc}"
        wall = time.monotonic() - t0
    finally:
        if sandbox is not None:
            sandbox.close()
        snapshot.close()
        if model is not None:
            await model.aclose()
        server.unregister(MODEL)
    box_s = union_seconds(box_spans)
    model_s = union_seconds(model_spans)
    own = wall - union_seconds(box_spans, model_spans)
    if result is None:
        return TaskResult(task.id, "error", False, False, None, 0, 0, responder.fix_answers,
                          responder.wrong_answers, 0, setup, wall, box_s, box_spans.total, model_s,
                          own, len(box_spans.spans), 0, error=error)
    chosen = result.chosen
    matches = bool(chosen and fix.matches(chosen.files))
    states: dict[str, int] = {}
    for c in result.candidates:
        states[c.state.value] = states.get(c.state.value, 0) + 1
    lucky = sum(c.solved and c.answer not in responder.fix_texts for c in result.candidates)
    return TaskResult(
        task.id, result.status, result.status == "solved", result.status == "solved" and matches,
        chosen.id if chosen else None, max((c.round for c in result.candidates), default=0),
        len(result.candidates), responder.fix_answers, responder.wrong_answers, lucky, setup, wall,
        box_s, box_spans.total, model_s, own, len(box_spans.spans), result.usage.total, states)


# -- report ------------------------------------------------------------------------------------


def markdown(rows: list[TaskResult], totals: dict, config: dict) -> str:
    setup = (f"p = {config['p']}, seed {config['seed']}, {config['candidates']} candidates x "
             f"{config['rounds']} rounds, beam {config['beam']}, {config['workers']} workers, "
             f"image {config['image']}, {len(rows)} tasks")
    header = ("| task | solved | rounds | cands | fix answers | wall s | sandbox s | "
              "sandbox sum s | model s | own s | own % |")
    out = [f"### Mulligan loop benchmark — {LABEL}", "", setup, "", header,
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        solved = "yes" if r.solved else ("ERROR" if r.error else "no")
        out.append(f"| {r.task} | {solved} | {r.rounds_used} | {r.candidates} | {r.fix_answers} "
                   f"| {r.wall_s:.1f} | {r.sandbox_s:.1f} | {r.sandbox_sum_s:.1f} "
                   f"| {r.model_s:.2f} | {r.own_s:.2f} | {pct(r.own_s, r.wall_s)} |")
    t = totals
    out.append(f"| **total** | **{t['solved']}/{t['tasks']}** | | {t['candidates']} "
               f"| {t['fix_answers']} | {t['wall_s']:.1f} | {t['sandbox_s']:.1f} "
               f"| {t['sandbox_sum_s']:.1f} | {t['model_s']:.2f} | {t['own_s']:.2f} "
               f"| {pct(t['own_s'], t['wall_s'])} |")
    out += ["", (f"solved {t['solved']}/{t['tasks']} ({100 * t['solve_rate']:.0f}%); chosen "
            f"patch equals the reference fix in {t['matches_reference']} of them; "
            f"{t['lucky_passes']} candidates meant to be wrong passed the tests anyway; "
            f"{t['errors']} errors; median wall {t['median_wall_s']:.1f}s per task; "
            f"Mulligan's own time {pct(t['own_s'], t['wall_s'])} of the loop's wall time "
            f"({t['own_s'] / max(1, t['tasks']):.2f}s per task); setup (snapshot, image check) "
            f"{t['setup_s']:.1f}s in all; whole benchmark {t['bench_s']:.0f}s.")]
    return "\n".join(out)


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "-"


def summarize(rows: list[TaskResult], bench_s: float) -> dict:
    walls = sorted(r.wall_s for r in rows)
    n = len(rows)
    return {
        "tasks": n, "solved": sum(r.solved for r in rows),
        "solve_rate": sum(r.solved for r in rows) / n if n else 0.0,
        "matches_reference": sum(r.matches_reference for r in rows),
        "errors": sum(r.error is not None for r in rows),
        "candidates": sum(r.candidates for r in rows),
        "fix_answers": sum(r.fix_answers for r in rows),
        "wrong_answers": sum(r.wrong_answers for r in rows),
        "lucky_passes": sum(r.lucky_passes for r in rows),
        "wall_s": sum(r.wall_s for r in rows), "setup_s": sum(r.setup_s for r in rows),
        "sandbox_s": sum(r.sandbox_s for r in rows),
        "sandbox_sum_s": sum(r.sandbox_sum_s for r in rows),
        "model_s": sum(r.model_s for r in rows), "own_s": sum(r.own_s for r in rows),
        "sandbox_jobs": sum(r.sandbox_jobs for r in rows),
        "tokens": sum(r.tokens for r in rows),
        "median_wall_s": walls[n // 2] if n else 0.0, "bench_s": bench_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", type=Path, default=BENCHMARKS)
    parser.add_argument("--tasks", nargs="*", default=None, help="task ids (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    parser.add_argument("--p", type=float, default=0.3,
                        help="probability that a sampled answer is the reference fix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--beam", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=60.0, help="per test run, seconds")
    parser.add_argument("--image", default="mulligan/base:bookworm")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    ids = args.tasks or sorted(p.name for p in args.benchmarks.iterdir()
                               if (p / "task.json").is_file())
    if args.limit is not None:
        ids = ids[: args.limit]
    tasks = [load(args.benchmarks / i) for i in ids]
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config["tasks"] = ids
    config["model"] = LABEL

    rows: list[TaskResult] = []
    bench_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mulligan-bench-") as tmp, \
            ScriptedServer() as server:
        for i, (task, fix) in enumerate(tasks, 1):
            repo = make_repo(task, Path(tmp))
            row = asyncio.run(run_task(task, fix, repo, args, server, Path(tmp)))
            rows.append(row)
            shutil.rmtree(Path(tmp) / task.id, ignore_errors=True)
            print(f"[{i}/{len(tasks)}] {task.id}: {row.status} in {row.wall_s:.1f}s "
                  f"(sandbox {row.sandbox_s:.1f}s, model {row.model_s:.2f}s, own "
                  f"{row.own_s:.2f}s){' ' + row.error if row.error else ''}",
                  file=sys.stderr, flush=True)
    totals = summarize(rows, time.monotonic() - bench_start)
    print(markdown(rows, totals, config))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"loop-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"label": LABEL, "config": config, "totals": totals,
                                "tasks": [asdict(r) for r in rows]}, indent=2) + "\n")
    print(f"\nJSON: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
