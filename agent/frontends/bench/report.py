"""What `mulligan bench` reports: the pass@k estimator, per-strategy summaries, solve-rate
curves over samples and tokens, the Markdown report and the PNG plots (matplotlib, imported
only here and only when plotting: `pip install 'mulligan[bench]'`)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from agent.trajectory import json_lines

STRATEGY_ORDER = ("single", "best-of-n", "revise-only", "mulligan")


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator (Chen et al., 2021): the probability that at least one
    of k samples drawn without replacement from n, of which c are correct, is correct:
    1 - C(n-c, k) / C(n, k), computed as a stable product."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass_at_k needs k <= n (n={n}, k={k})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def read_results(path: Path) -> list[dict]:
    """The results JSONL, keeping the last record per (task, strategy) (a resumed bench
    appends a retry after an errored one); a line cut by a crash is ignored."""
    latest: dict[tuple[str, str], dict] = {}
    if not path.is_file():
        return []
    for rec in json_lines(path):
        try:
            latest[(rec["task"], rec["strategy"])] = rec
        except (KeyError, TypeError):
            continue
    return list(latest.values())


def strategies_in(records: Iterable[dict]) -> list[str]:
    names = {r["strategy"] for r in records}
    ordered = [s for s in STRATEGY_ORDER if s in names]
    return ordered + sorted(names - set(ordered))


def _by_strategy(records: Sequence[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {s: [] for s in strategies_in(records)}
    for r in records:
        out[r["strategy"]].append(r)
    return out


def pass_at_k_curve(records: Sequence[dict]) -> dict[int, float]:
    """Mean pass@k over tasks from the round-1 candidates, for every k that every task with
    samples supports (k <= its n)."""
    usable = [r["round1"] for r in records if r.get("round1", {}).get("n", 0) > 0]
    if not usable:
        return {}
    kmax = min(u["n"] for u in usable)
    return {k: sum(pass_at_k(u["n"], u["c"], k) for u in usable) / len(usable)
            for k in range(1, kmax + 1)}


def solved_within(records: Sequence[dict], key: str, budget: float) -> float:
    """The fraction of tasks solved (fresh-verified) with `key` (samples_to_solve or
    tokens_to_solve: the cost through the round that found the patch) at most `budget`."""
    if not records:
        return 0.0
    hits = sum(1 for r in records if r.get("solved") and r.get(key) is not None
               and r[key] <= budget)
    return hits / len(records)


def summarize(records: Sequence[dict]) -> dict[str, dict]:
    out = {}
    for name, recs in _by_strategy(records).items():
        n = len(recs)
        solved = sum(bool(r.get("solved")) for r in recs)
        any_right = [r for r in recs if r.get("any_right")]
        params = recs[0].get("params", {}) if recs else {}
        refs = [r["selected_is_reference"] for r in recs
                if r.get("solved") and r.get("selected_is_reference") is not None]
        out[name] = {
            "params": params,
            "tasks": n,
            "solved": solved,
            "solve_rate": solved / n if n else 0.0,
            "errors": sum(r.get("status") == "error" for r in recs),
            "any_right": len(any_right),
            "selection_accuracy": (sum(bool(r.get("solved")) for r in any_right) / len(any_right)
                                   if any_right else None),
            "loop_solved_not_verified": sum(r.get("loop_status") == "solved"
                                            and not r.get("solved") for r in recs),
            "selected_is_reference": sum(refs) if refs else None,
            "samples_mean": _mean(r.get("samples", 0) for r in recs),
            "tokens_mean": _mean(r.get("tokens", 0) for r in recs),
            "tokens_total": sum(r.get("tokens", 0) for r in recs),
            "seconds_mean": _mean(r.get("seconds", 0.0) for r in recs),
            "sandbox_seconds_mean": _mean(r.get("sandbox_seconds", 0.0) for r in recs),
            "first_fix_s_median": _median(r["first_fix_s"] for r in recs
                                          if r.get("solved") and r.get("first_fix_s") is not None),
            "model_idle_s_mean": _mean(r.get("model_idle_s", 0.0) for r in recs),
            "cost_usd": sum(r.get("cost_usd", 0.0) for r in recs),
            "pass_at_k": pass_at_k_curve(recs),
        }
    return out


def _median(values: Iterable[float]) -> float | None:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _params(p: dict) -> str:
    if not p:
        return ""
    return f"{p.get('candidates')} cand x {p.get('rounds')} rnd, beam {p.get('beam')}"


def render_markdown(records: Sequence[dict], config: dict, plots: dict[str, str],
                    plot_note: str | None = None) -> str:
    summary = summarize(records)
    label = config.get("model_label") or config.get("model") or "?"
    lines = ["# Mulligan bench: what test-time compute buys", ""]
    if config.get("scripted_p") is not None:
        lines += [(f"> **{label}** (p = {config['scripted_p']}). These numbers measure the "
                  "machinery (sandbox, parsing, selection, revision) and how each strategy turns "
                  "per-sample accuracy into solved tasks. They say nothing about any real model."),
                  ""]
    tasks = sorted({r["task"] for r in records})
    lines += [
        f"- model: `{config.get('model')}`" + (f" at {config['base_url']}"
                                               if config.get("base_url") else ""),
        f"- tasks: {len(tasks)} ({', '.join(config.get('sources', [])) or '-'})",
        f"- budget: {config.get('budget')} samples per task per strategy"
        + (f"; token budget {config['token_budget']} per task" if config.get("token_budget")
           else ""),
        f"- sandbox image: `{config.get('image') or 'default'}`; {config.get('workers')} task(s) "
        f"in parallel, {config.get('sandbox_workers')} sandbox(es) per task"
        + (f"; Ray at {config['ray']}" if config.get("ray") else ""),
        ("- solved = the selected patch passes the task's tests in a fresh sandbox run of the "
        "original task snapshot + patch; patches that touch test files are rejected."),
        "",
        "## Solved per strategy",
        "",
        ("| strategy | shape | solved | solve rate | time to first fix (median s) "
         "| >=1 right | selection acc. | samples/task "
         "| tokens/task | tokens total | s/task | sandbox s/task | model idle s/task | cost $ "
         "| errors |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {_params(s['params'])} | {s['solved']}/{s['tasks']} "
            f"| {_pct(s['solve_rate'])} | {_secs(s['first_fix_s_median'])} "
            f"| {s['any_right']} | {_pct(s['selection_accuracy'])} "
            f"| {s['samples_mean']:.2f} | {s['tokens_mean']:.0f} | {s['tokens_total']} "
            f"| {s['seconds_mean']:.1f} | {s['sandbox_seconds_mean']:.1f} "
            f"| {s['model_idle_s_mean']:.1f} "
            f"| {s['cost_usd']:.4f} | {s['errors']} |")
    lines += ["", ("*>=1 right*: tasks where at least one candidate passed the tests inside the "
              "run; *selection accuracy*: of those, how often the selected patch passed the "
              "fresh scoring run; *time to first fix*: from the start of the run to the first "
              "candidate passing its tests, over the solved tasks; *model idle*: time no "
              "model request was in flight while candidates were tested.")]
    refs = {n: s["selected_is_reference"] for n, s in summary.items()
            if s["selected_is_reference"] is not None}
    if refs:
        lines += ["", "Solved tasks whose selected patch equals the reference fix (the scripted "
                  "model's wrong answers can pass weak tests): "
                  + ", ".join(f"{n} {v}/{summary[n]['solved']}" for n, v in refs.items()) + "."]
    # pass@k
    kmax = max((max(s["pass_at_k"]) for s in summary.values() if s["pass_at_k"]), default=0)
    if kmax:
        ks = [k for k in (1, 2, 3, 4, 5, 8, 10, 16, 20, 32, 64) if k <= kmax]
        lines += _section(
            "pass@k from the round-1 samples",
            "Unbiased estimator 1 - C(n-c,k)/C(n,k) over each task's n round-1 candidates (c of "
            "them passing the tests in the run), averaged over tasks.",
            ["strategy", "n", *(f"pass@{k}" for k in ks)],
            [[name, s["params"].get("candidates", "?"),
              *(_pct(s["pass_at_k"].get(k)) if k in s["pass_at_k"] else "" for k in ks)]
             for name, s in summary.items() if s["pass_at_k"]])
    # equal tokens
    levels = sorted({round(s["tokens_mean"]) for s in summary.values() if s["tokens_mean"] > 0})
    if levels:
        groups = _by_strategy(records)
        lines += _section(
            "At equal tokens",
            "Solve rate counting only tasks solved with at most T tokens spent through the round "
            "that found the patch (T = each strategy's mean spend per task).",
            ["strategy", *(f"T={t}" for t in levels)],
            [[name, *(_pct(solved_within(recs, "tokens_to_solve", t)) for t in levels)]
             for name, recs in groups.items()])
    if plots:
        lines += ["", "## Plots", ""]
        for title, rel in plots.items():
            lines.append(f"![{title}]({rel})")
    if plot_note:
        lines += ["", f"Plots: {plot_note}"]
    # per task
    names = list(summary)
    by_task: dict[str, dict[str, dict]] = {}
    for r in records:
        by_task.setdefault(r["task"], {})[r["strategy"]] = r
    lines += ["", "## Per task", "", "Cell: solved (model samples used to find it; `mutant`: the fix is a mutant of a suspect line, `combination`: two changes applied together) / unsolved / error.",
              "", "| task | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for task in tasks:
        cells = []
        for name in names:
            r = by_task[task].get(name)
            if r is None:
                cells.append("")
            elif r.get("status") == "error":
                cells.append("error")
            elif r.get("solved"):
                by = {"mutation": ", mutant", "combination": ", combination"}.get(
                    r.get("selected_format"), "")
                cells.append(f"yes ({r.get('samples_to_solve')}{by})")
            else:
                cells.append("no")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    errors = [r for r in records if r.get("status") == "error"]
    if errors:
        lines += ["", "## Errors", ""]
        for r in errors[:50]:
            lines.append(f"- {r['task']} / {r['strategy']}: {str(r.get('error'))[:300]}")
    return "\n".join(lines) + "\n"


def write_plots(records: Sequence[dict], out_dir: Path, config: dict) -> dict[str, str]:
    """solve_vs_samples.png and solve_vs_tokens.png in `out_dir`; {title: file name}.
    Raises ImportError when matplotlib is missing."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups = _by_strategy(records)
    scripted = config.get("scripted_p") is not None
    subtitle = (f"SCRIPTED model (not a real model), p = {config['scripted_p']}" if scripted
                else f"model {config.get('model')}")
    ntasks = len({r["task"] for r in records})
    colors = {name: f"C{i}" for i, name in enumerate(groups)}
    files = {}

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xmax = max((r.get("samples", 0) for r in records), default=1) or 1
    xs = list(range(xmax + 1))
    for name, recs in groups.items():
        ys = [solved_within(recs, "samples_to_solve", x) for x in xs]
        ax.step(xs, ys, where="post", color=colors[name], label=f"{name} (run, anytime)")
        ax.plot([xs[-1]], [ys[-1]], "s", color=colors[name], markersize=5)
        curve = pass_at_k_curve(recs)
        if len(curve) > 1:
            ks = sorted(curve)
            ax.plot(ks, [curve[k] for k in ks], "--o", color=colors[name], markersize=3,
                    alpha=0.8, label=f"{name}: pass@k of round-1 samples")
    ax.set_xlabel("samples per task (square: final solve rate)")
    files["Solve rate vs samples"] = _save(plt, fig, ax, out_dir / "solve_vs_samples.png",
                                           f"Solve rate vs samples\n{subtitle}", ntasks, 7)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    spent = [r.get("tokens", 0) for r in records if r.get("tokens")]
    solves = [r["tokens_to_solve"] for r in records if r.get("tokens_to_solve")]
    top = max(spent, default=1)
    low = max(1, int(0.8 * min(solves + spent, default=1)))
    points = sorted({low, *solves, top})
    for name, recs in groups.items():
        ys = [solved_within(recs, "tokens_to_solve", t) for t in points]
        ax.step(points, ys, where="post", color=colors[name], label=name)
        mean = _mean(r.get("tokens", 0) for r in recs)
        final = sum(bool(r.get("solved")) for r in recs) / len(recs) if recs else 0
        if mean > 0:
            ax.plot([mean], [final], "o", color=colors[name], markersize=5)
    ax.set_xscale("log")
    ax.set_xlim(low, top * 1.1)
    ax.set_xlabel("tokens per task (prompt + completion); dot = mean spend, final solve rate")
    files["Solve rate vs tokens"] = _save(plt, fig, ax, out_dir / "solve_vs_tokens.png",
                                          f"Solve rate vs tokens\n{subtitle}", ntasks, 8)
    return files


def _save(plt: Any, fig: Any, ax: Any, path: Path, title: str, ntasks: int,
          legend_size: int) -> str:
    """Finish a solve-rate plot (axis, title, legend), write it as PNG; its file name."""
    ax.set_ylabel(f"solve rate ({ntasks} tasks)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _section(title: str, note: str, header: Sequence[object],
             rows: Iterable[Sequence[object]]) -> list[str]:
    """A report section: a heading, a note, and a Markdown table."""
    def row(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    return ["", f"## {title}", "", note, "", row(header), "|" + "---|" * len(header),
            *(row(r) for r in rows)]


def write_report(out_dir: Path, config: dict, records: Sequence[dict] | None = None) -> Path:
    """report.md (and the plots when matplotlib is there) from OUT/results.jsonl."""
    if records is None:
        records = read_results(out_dir / "results.jsonl")
    plots: dict[str, str] = {}
    note = None
    if records:
        try:
            plots = write_plots(records, out_dir, config)
        except ImportError:
            note = "skipped: matplotlib is not installed (pip install 'mulligan[bench]')"
    path = out_dir / "report.md"
    path.write_text(render_markdown(records, config, plots, note), encoding="utf-8")
    (out_dir / "summary.json").write_text(json.dumps(
        {"config": config, "strategies": summarize(records)}, indent=2, default=_json_default)
        + "\n", encoding="utf-8")
    return path


def _json_default(obj: object) -> object:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return str(obj)
