"""Side by side on one machine and one model server: one greedy sample (`single`), Mulligan's
default search (`mulligan`), and Aider's sequential test-and-reflect loop, task by task (so
all three see the same load), on a slice of the public tasks.

    python bench/search_vs_aider.py --base-url http://127.0.0.1:PORT/v1 --model local \\
        --aider /work/aider-venv/bin/aider --every 10 --out docs/results/search-local

Writes OUT/bench/ (the `mulligan bench` results and report: solve rate, time to first fix,
tokens, model idle time), OUT/aider.jsonl (one line per task: solved, seconds) and
OUT/summary.md (the three side by side). Aider runs in a temporary git copy of each task with
`--auto-test --test-cmd "python -m pytest -q"`; its result is scored by running the task's
tests in that copy afterwards. Benchmarks never gate CI: this is a measurement script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = Path("/work/shared/benchmarks")


def task_slice(tasks_dir: Path, every: int, only: list[str] | None,
               offset: int = 0) -> list[Path]:
    found = sorted(p for p in tasks_dir.iterdir() if (p / "task.json").is_file())
    if only:
        return [p for p in found if p.name in only]
    return found[offset::every]


def run_mulligan(task: Path, args: argparse.Namespace, out: Path) -> None:
    cmd = [sys.executable, "-m", "agent.frontends.cli", "bench", str(task), "--strategy",
           "single,mulligan", "--model", args.model, "--base-url", args.base_url,
           "--workers", "1", "--sandbox-workers", "2", "--max-requests", "2",
           "--budget", "12", "--request-timeout", "1800", "--out", str(out / "bench")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-local"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=False)


def run_aider(task: Path, args: argparse.Namespace) -> dict:
    meta = json.loads((task / "task.json").read_text())
    with tempfile.TemporaryDirectory(prefix="aider-task-") as tmp:
        repo = Path(tmp) / task.name
        shutil.copytree(task, repo)
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
        subprocess.run(git + ["commit", "-qm", "task"], cwd=repo, check=True)
        modules = [p.name for p in repo.glob("*.py")]
        env = {**os.environ, "OPENAI_API_BASE": args.base_url, "OPENAI_API_KEY": "sk-local",
               "AIDER_ANALYTICS": "false"}
        cmd = [args.aider, "--model", f"openai/{args.model}", "--edit-format", "whole",
               "--auto-test", "--test-cmd", "python -m pytest -q", "--yes-always",
               "--no-git", "--no-auto-commits", "--no-show-model-warnings", "--no-pretty",
               "--no-stream", "--map-tokens", "0", "--no-check-update", "--no-analytics",
               "--message", meta["description"] + "\nFix it so that the tests pass.", *modules]
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True,
                                  timeout=args.aider_timeout, stdin=subprocess.DEVNULL)
            log = proc.stdout[-3000:] + proc.stderr[-2000:]
        except subprocess.TimeoutExpired:
            log = "timeout"
        seconds = time.monotonic() - started
        check = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                               cwd=repo, capture_output=True, text=True, timeout=120)
        return {"task": task.name, "solved": check.returncode == 0,
                "seconds": round(seconds, 1), "log_tail": log[-1500:]}


def summary(out: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from agent.frontends.bench.report import read_results

    recs = read_results(out / "bench" / "results.jsonl")
    aider = [json.loads(line) for line in (out / "aider.jsonl").read_text().splitlines()
             if line.strip()] if (out / "aider.jsonl").exists() else []
    tasks = sorted({r["task"] for r in recs} | {a["task"] for a in aider})
    rows = ["| task | single | s | mulligan | first fix s | model idle s | aider | s |",
            "|---|---|---|---|---|---|---|---|"]
    by = {(r["task"], r["strategy"]): r for r in recs}
    ai = {a["task"]: a for a in aider}
    for t in tasks:
        s, m, a = by.get((t, "single"), {}), by.get((t, "mulligan"), {}), ai.get(t, {})
        rows.append(f"| {t} | {'yes' if s.get('solved') else 'no'} | {s.get('seconds', '-')} "
                    f"| {'yes' if m.get('solved') else 'no'} | {m.get('first_fix_s', '-')} "
                    f"| {m.get('model_idle_s', '-')} "
                    f"| {'yes' if a.get('solved') else 'no'} | {a.get('seconds', '-')} |")

    def med(xs):
        xs = [x for x in xs if x is not None]
        return f"{statistics.median(xs):.1f}" if xs else "-"

    single = [r for r in recs if r["strategy"] == "single"]
    search = [r for r in recs if r["strategy"] == "mulligan"]
    easy = {r["task"] for r in single if r.get("solved")}
    head = [
        f"Tasks: {len(tasks)}. Solved: single {sum(bool(r.get('solved')) for r in single)}/"
        f"{len(single)}, mulligan {sum(bool(r.get('solved')) for r in search)}/{len(search)}, "
        f"aider {sum(a['solved'] for a in aider)}/{len(aider)}.",
        "",
        f"On the tasks one greedy sample solves: median time to first fix, single "
        f"{med(r.get('first_fix_s') for r in single if r['task'] in easy)} s, mulligan "
        f"{med(r.get('first_fix_s') for r in search if r['task'] in easy)} s.",
        f"Median wall time on solved tasks: aider {med(a['seconds'] for a in aider if a['solved'])}"
        f" s; mulligan's model idle while candidates were tested: mean "
        f"{statistics.fmean([r.get('model_idle_s') or 0 for r in search]) if search else 0:.1f}"
        " s per task.", ""]
    return "\n".join(["# Search vs single sample vs Aider (bundled local model)", "", *head,
                      *rows, ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", default="local")
    ap.add_argument("--aider", default="/work/aider-venv/bin/aider")
    ap.add_argument("--tasks-dir", type=Path, default=TASKS)
    ap.add_argument("--every", type=int, default=10, help="every k-th task (sorted by id)")
    ap.add_argument("--offset", type=int, default=0,
                    help="start at the k-th task: --every 6 --offset 3 is a slice disjoint from --every 6")
    ap.add_argument("--only", action="append", default=None)
    ap.add_argument("--aider-timeout", type=float, default=600)
    ap.add_argument("--no-aider", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/results/search-local")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    aider_log = args.out / "aider.jsonl"
    # Rerunning the same command resumes: `mulligan bench` skips what results.jsonl holds,
    # and Aider is not rerun on a task it already has a line for.
    aider_done = {json.loads(line)["task"] for line in aider_log.read_text().splitlines()
                  if line.strip()} if aider_log.exists() else set()
    for task in task_slice(args.tasks_dir, args.every, args.only, args.offset):
        print(f"== {task.name}: mulligan bench (single, mulligan)", flush=True)
        run_mulligan(task, args, args.out)
        if not args.no_aider and task.name not in aider_done:
            print(f"== {task.name}: aider", flush=True)
            record = run_aider(task, args)
            with aider_log.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(f"   aider: solved={record['solved']} in {record['seconds']}s", flush=True)
        (args.out / "summary.md").write_text(summary(args.out))
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
