"""Per-task table of a `mulligan bench` run on the real-repository tasks: solved (and by
which question: a line question or a function/file one, fresh or revised), time, where the
regressed function and line ranked in the run's own localization, whether the prompt
showed it, prompt and answer sizes, and what became of each candidate (format error, no
change, failed, passed).

    python bench/tasks/realrepos/report.py OUT [OUT ...] [--tasks bench/out/realrepos]

OUT is a `mulligan bench --out` folder (results.jsonl and trajectories/). The manifest
(where each regression is) is read for measurement only; it never reaches a prompt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _row(record: dict, out: Path, manifest: dict) -> dict:
    entry = manifest[record["task"]]
    events = _events(out / record["trajectory"])
    localized = next((e for e in events if e["kind"] == "localized"), None)
    suspects = localized["suspects"] if localized else []
    rank = next((i for i, s in enumerate(suspects, 1)
                 if s["path"] == entry["file"] and s["function"] == entry["function"]), None)
    lines = localized.get("lines", []) if localized else []
    line_rank = next((i for i, s in enumerate(lines, 1)
                      if s["path"] == entry["file"] and s["line"] == entry["line"]), None)
    calls = [e for e in events if e["kind"] == "model_call"]
    first_prompt = calls[0]["messages"][-1]["content"] if calls else ""
    final: dict[str, dict] = {}
    for e in events:
        if e["kind"] == "candidate":
            final[e["id"]] = e
    chosen = final.get(next((e.get("chosen") for e in events if e["kind"] == "run_finished"),
                            None) or "")
    # which question the solving candidate answered: a line question or a function/file one,
    # fresh or a revision
    solved_by = None
    if record["solved"] and chosen is not None:
        fmt = chosen.get("edit_format")
        solved_by = (fmt if fmt in ("line", "mutation") else "code") + \
            (" revision" if chosen.get("parent") else "")
    outcomes = Counter()
    for cand in final.values():
        note = cand.get("note") or ""
        if cand["state"] == "format_error":
            outcomes["no change" if "changed nothing" in note or "changes nothing" in note
                     else "format error"] += 1
        else:
            outcomes[cand["state"]] += 1
    return {
        "task": record["task"], "strategy": record["strategy"], "solved": record["solved"],
        "seconds": record["seconds"], "first_fix_s": record.get("first_fix_s"),
        "rank": rank, "line_rank": line_rank, "solved_by": solved_by, "in_prompt": entry["function"].split(".")[-1] in first_prompt
        and entry["file"] in first_prompt,
        "calls": len(calls),
        "prompt_tokens": calls[0]["prompt_tokens"] if calls else None,
        "answer_tokens": statistics.median(c["completion_tokens"] for c in calls) if calls
        else None,
        "outcomes": dict(outcomes),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outs", nargs="+", type=Path)
    p.add_argument("--tasks", type=Path, default=ROOT / "bench" / "out" / "realrepos")
    args = p.parse_args(argv)
    manifest = json.loads((args.tasks / "manifest.json").read_text())
    print("| run | task | strategy | solved | by | s | first fix s | rank | line rank | in prompt "
          "| calls | prompt tok | answer tok (median) | candidates |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for out in args.outs:
        if not (out / "results.jsonl").is_file():
            print(f"{out}: no results.jsonl (no job has finished there)", file=sys.stderr)
            continue
        records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()
                   if line.strip()]
        rows = [_row(r, out, manifest) for r in records if r["task"] in manifest]
        for r in sorted(rows, key=lambda r: r["task"]):
            cands = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))
            first_fix = f"{r['first_fix_s']:.0f}" if r["first_fix_s"] is not None else "-"
            print(f"| {out.name} | {r['task']} | {r['strategy']} | "
                  f"{'yes' if r['solved'] else 'no'} | {r['solved_by'] or '-'} | "
                  f"{r['seconds']:.0f} | {first_fix} | {r['rank'] or '-'} | "
                  f"{r['line_rank'] or '-'} | {'yes' if r['in_prompt'] else 'no'} | {r['calls']} | "
                  f"{r['prompt_tokens'] or '-'} | {r['answer_tokens'] or '-'} | {cands} |")
        solved = sum(r["solved"] for r in rows)
        secs = [r["seconds"] for r in rows]
        print(f"| {out.name} | **{len(rows)} tasks** | | **{solved}/{len(rows)}** | | "
              f"median {statistics.median(secs):.0f} | | | | | | | | |" if rows else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
