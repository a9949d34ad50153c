"""How many reference fixes are one mutant away, no model and no sandbox needed.

    python bench/mutant_reach.py [../shared/benchmarks] [--json OUT]

For every task whose reference fix (`_fixes/<task>.patch`) changes one line, are the fixed
line's text (or the same code, spaces aside) among the mutants of the buggy line
(agent/edits/mutants.py), by which kind of change, and where among that line's mutants;
and how many mutants the whole buggy file has (the screening's cost if every line were
suspect). A measure of the operators' reach, not of a run: a run mutates only the lines the
failing tests execute, in the order localization ranks them. The fixes are read here only
to score the mutants; nothing reaches a model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from unidiff import PatchSet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.context.localize import SuspectLine  # noqa: E402
from agent.edits.mutants import Mutant, mutants  # noqa: E402
from agent.novelty import semantic_key  # noqa: E402


def reach(tasks_dir: Path) -> list[dict]:
    rows = []
    for task in sorted(p for p in tasks_dir.iterdir() if (p / "task.json").exists()):
        fix = tasks_dir / "_fixes" / f"{task.name}.patch"
        if not fix.exists():
            continue
        patched = PatchSet(fix.read_text())
        if len(patched) != 1:
            rows.append({"task": task.name, "one_line": False})
            continue
        changed = patched[0]
        removed = [line for hunk in changed for line in hunk if line.is_removed]
        added = [line for hunk in changed for line in hunk if line.is_added]
        source = (task / changed.path).read_text()
        lines = source.split("\n")
        every = [SuspectLine(changed.path, n, text, 1.0, "") for n, text in enumerate(lines, 1)
                 if text.strip()]
        found = mutants({changed.path: source}, every, limit=100_000)
        row = {"task": task.name, "one_line": len(removed) == 1 and len(added) == 1,
               "file_mutants": len(found)}
        if row["one_line"]:
            number, target = removed[0].source_line_no, added[0].value.rstrip("\n")
            own = [m for m in found if m.line == number]
            base = {changed.path: source}
            fixed = Mutant(changed.path, number, lines[number - 1], target, "").apply(base)
            wanted = semantic_key(base, fixed)  # the same change, spaces and comments aside
            hit = next(((i, m) for i, m in enumerate(own, 1) if m.after == target), None) or \
                next(((i, m) for i, m in enumerate(own, 1)
                      if semantic_key(base, m.apply(base)) == wanted), None)
            row.update({"line_mutants": len(own), "position": hit[0] if hit else None,
                        "kind": hit[1].operator if hit else None})
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tasks", nargs="?", type=Path, default=ROOT.parent / "shared" / "benchmarks")
    p.add_argument("--json", type=Path, default=None, help="write one JSON row per task here")
    args = p.parse_args(argv)
    if not args.tasks.is_dir():
        print(f"mutant_reach: no tasks folder at {args.tasks}", file=sys.stderr)
        return 2
    rows = reach(args.tasks)
    one_line = [r for r in rows if r["one_line"]]
    reached = [r for r in one_line if r["kind"]]
    for r in one_line:
        where = f"{r['kind']} ({r['position']} of {r['line_mutants']})" if r["kind"] else "-"
        print(f"{r['task']:45} {where}")
    print(f"\n{len(rows)} tasks, {len(one_line)} with a one-line fix; one mutant away: "
          f"{len(reached)}; mutants of the whole buggy files: "
          f"{sum(r.get('file_mutants', 0) for r in rows)}")
    print("by kind: " + ", ".join(f"{k} {n}" for k, n in
                                   Counter(r["kind"] for r in reached).most_common()))
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
