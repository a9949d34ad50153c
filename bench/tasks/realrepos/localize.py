"""Measure localization on the real-repository tasks, no model needed: where does the
regressed function rank, by each signal and combined, where does its regressed line rank
among the suspect lines (the line question's order), and is it in the prompt?

    python bench/tasks/realrepos/localize.py [--tasks bench/out/realrepos] [--out FILE]
        [--evidence DIR]

Each task runs the production path (agent.loop.Solver with the Docker sandbox) up to the
first model call: baseline, traced run, ranking, the source the prompt would show. The
static-only and dynamic-only ranks are recomputed from the same evidence. One JSON line per
task goes to --out; a summary table to stdout. With --evidence, each task's spectrum, suspects
and suspect files are pickled there, so a change to the line ranking can be measured again
without Docker (`--replay DIR`, which also says where the mutant that restores the original
line comes among the mutants).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

import agent.loop as loop_module  # noqa: E402
from agent.config import Settings  # noqa: E402
from agent.context.repomap import RepoMap  # noqa: E402
from agent.environment import open_sandbox  # noqa: E402
from agent.context.localize import line_groups, mutation_order, rank_lines  # noqa: E402
from agent.edits.mutants import mutants  # noqa: E402
from agent.events import EventBus, Localized  # noqa: E402
from agent.loop import Solver  # noqa: E402
from sandbox.snapshot import Snapshot  # noqa: E402


class _Stop(Exception):
    """Raised by the stand-in model at the first model call: localization is done."""


class _NoModel:
    window = None

    async def sample(self, messages, n, seed=None):
        raise _Stop(messages)

    async def preflight(self):
        pass

    async def aclose(self):
        pass


def _rank(suspects, file: str, function: str) -> int | None:
    for index, s in enumerate(suspects, 1):
        if s.path == file and s.qualname == function:
            return index
    return None


def _line_rank(lines, file: str, line: int) -> int | None:
    return next((i for i, s in enumerate(lines, 1) if (s.path, s.line) == (file, line)), None)


def _original_line(regression: dict) -> str | None:
    """The line the regression changed, as it was (the first line `find` and `replace`
    differ in)."""
    pairs = zip(regression["find"].split("\n"), regression["replace"].split("\n"))
    return next((before for before, after in pairs if before != after), None)


def replay(evidence: Path) -> list[dict]:
    """The suspect-line ranking and the mutants recomputed from pickled evidence (no
    Docker): where the regressed line ranks, which line question shows it, and where the
    mutant that restores it comes among the mutants (the order `Solver._mutate` tests)."""
    regressions = {r["id"]: r for r in json.loads((HERE / "regressions.json").read_text())
                   ["regressions"]}
    rows = []
    for path in sorted(evidence.glob("*.pickle")):
        saved = pickle.loads(path.read_bytes())
        lines = rank_lines(saved["files"], saved["suspects"], saved["spectrum"])
        key = (saved["file"], saved["line"])
        groups = line_groups(lines)
        group = next((i for i, g in enumerate(groups, 1)
                      if key in {(s.path, s.line) for s in g}), None)
        found = mutants(saved["files"], mutation_order(saved["files"], saved["suspects"],
                                                       saved["spectrum"], lines), limit=1000)
        original = _original_line(regressions[path.stem]) if path.stem in regressions else None
        restoring = next((i for i, m in enumerate(found, 1)
                          if (m.path, m.line) == key and m.after == original), None)
        rows.append({"task": path.stem, "line_rank": _line_rank(lines, *key), "question": group,
                     "mutants": len(found), "restoring_mutant": restoring,
                     "top_lines": [f"{s.path}:{s.line}" for s in lines[:9]]})
    return rows


async def measure(task: Path, entry: dict, settings: Settings,
                  evidence: Path | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="rr-loc-"))
    repo = work / "repo"
    shutil.copytree(task, repo)
    snapshot = Snapshot.from_directory(repo)
    sandbox = open_sandbox(settings, snapshot)
    captured: dict = {}
    real_parse = loop_module.parse_trace

    def parse(output: str):
        captured["spectrum"] = spectrum = real_parse(output)
        return spectrum

    loop_module.parse_trace = parse
    bus = EventBus()
    events: list = []
    bus.subscribe(events.append)
    solver = Solver(settings, _NoModel(), sandbox, snapshot, bus, "loc", None, task.name,
                    RepoMap())
    started = time.monotonic()
    prompt = None
    try:
        await solver.run()
    except _Stop as stop:
        prompt = stop.args[0][-1]["content"]
    finally:
        loop_module.parse_trace = real_parse
        sandbox.close()
        snapshot.close()
        shutil.rmtree(work, ignore_errors=True)
    localized = next((e for e in events if isinstance(e, Localized)), None)
    file, function = entry["file"], entry["function"]
    suspects = solver.prompts.suspects
    focus = solver.prompts.focus(solver.baseline_report, solver.baseline_report.failing())
    static = solver.repo_map.localize(solver.base_files, focus, None)
    spectrum = captured.get("spectrum")
    dynamic = []
    if spectrum is not None:
        dynamic = [s for s in solver.repo_map.localize(solver.base_files, [], spectrum)
                   if "dynamic" in s.signals]
    line = solver.base_files[file].split("\n")[entry["line"] - 1]
    rank = _rank(suspects, file, function)
    if evidence is not None:
        evidence.mkdir(parents=True, exist_ok=True)
        shown = {s.path for s in suspects[:5]} | {file}
        (evidence / f"{task.name}.pickle").write_bytes(pickle.dumps({
            "files": {p: solver.base_files[p] for p in shown if p in solver.base_files},
            "suspects": suspects, "spectrum": spectrum, "file": file, "line": entry["line"]}))
    return {
        "task": task.name, "file": file, "function": function,
        "file_lines": entry.get("file_lines"),
        "rank": rank, "line_rank": _line_rank(solver.suspect_lines, file, entry["line"]),
        "rank_static": _rank(static, file, function),
        "rank_dynamic": _rank(dynamic, file, function),
        "signals": list(suspects[rank - 1].signals) if rank else [],
        "in_prompt": bool(prompt) and line.strip() in prompt and file in prompt,
        "prompt_chars": len(prompt or ""), "edit_format": solver.prompts.edit_format,
        "traced": bool(localized and localized.traced),
        "targets": len(solver.baseline.targets),
        "baseline_s": round(solver.baseline_report.wall_s, 1),
        "localize_s": round(localized.seconds, 1) if localized else None,
        "seconds": round(time.monotonic() - started, 1),
        "top": [f"{s.path}::{s.qualname}" for s in suspects[:5]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=Path, default=ROOT / "bench" / "out" / "realrepos")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "realrepos_localize.jsonl")
    p.add_argument("--image", default=None)
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--evidence", type=Path, default=None,
                   help="pickle each task's spectrum, suspects and files here")
    p.add_argument("--replay", type=Path, default=None,
                   help="only rerank suspect lines from pickled evidence (no Docker)")
    args = p.parse_args(argv)
    if args.replay is not None:
        rows = replay(args.replay)
        for row in rows:
            print(f"{row['task']:28} line rank {row['line_rank']} question {row['question']} "
                  f"restoring mutant {row['restoring_mutant']} of {row['mutants']}  "
                  f"{' '.join(row['top_lines'][:3])}")
        ranks = [r["line_rank"] for r in rows if r["line_rank"] is not None]
        restoring = [r["restoring_mutant"] for r in rows if r["restoring_mutant"]]
        cap = Settings.model_fields["mutants"].default
        print(f"{len(rows)} tasks: line in top 3 {sum(r <= 3 for r in ranks)}, top 9 "
              f"{sum(r <= 9 for r in ranks)}, ranked {len(ranks)}; the restoring mutant "
              f"among the first {cap} (the default --mutants) in {sum(r <= cap for r in restoring)}")
        return 0
    manifest = json.loads((args.tasks / "manifest.json").read_text())
    settings = Settings(model="none", test_cmd="python -m pytest -q tests", workers=2,
                        image=args.image, test_timeout_s=600)
    rows = []
    with args.out.open("a") as out:
        for task_id, entry in manifest.items():
            if args.only and task_id not in args.only:
                continue
            row = asyncio.run(measure(args.tasks / task_id, entry, settings, args.evidence))
            rows.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"{task_id:28} rank {row['rank']} (static {row['rank_static']}, dynamic "
                  f"{row['rank_dynamic']}) line rank {row['line_rank']} in prompt {row['in_prompt']} "
                  f"{row['localize_s']}s", flush=True)
    found = [r for r in rows if r["rank"] is not None]
    print(f"{len(rows)} tasks: top-1 {sum(r['rank'] == 1 for r in found)}, top-5 "
          f"{sum(r['rank'] <= 5 for r in found)}, in prompt {sum(r['in_prompt'] for r in rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
