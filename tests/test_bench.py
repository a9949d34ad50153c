"""`mulligan bench`: task loading and refusal of reference solutions, the pass@k estimator,
the report and plots, resume, a small end-to-end bench (scripted model, real sandbox) and
the Ray path on a local Ray instance."""

# ruff: noqa: F811 - the fixtures imported from tests.support.sandbox_env are parameters
from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from agent.config import Settings
from agent.frontends.bench import runner as bench
from agent.frontends.bench.runner import BenchConfig, Results, make_strategies, parse_strategy_names, run_bench
from agent.frontends.bench.report import pass_at_k, read_results, render_markdown, summarize, write_report
from agent.frontends.bench.tasks import BenchTask, ReferenceInputError, load_tasks
from agent.errors import ConfigError
from tests.support.sandbox_env import docker_image  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT.parent / "shared" / "benchmarks"
TWO = ("humanevalfix_003_below_zero", "quixbugs_gcd")
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost",
           "GIT_CONFIG_NOSYSTEM": "1"}

needs_public = pytest.mark.skipif(not (PUBLIC / "_fixes").is_dir(),
                                  reason=f"the public benchmark tasks are not at {PUBLIC}")


def write_task(root: Path, name: str = "t1", extra: dict[str, str] | None = None,
               description: str = "The function `add` in `calc.py` is buggy.") -> Path:
    task = root / name
    files = {"calc.py": "def add(a, b):\n    return a - b\n",
             "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n"
                                   "    assert add(2, 2) == 4\n",
             "pytest.ini": "[pytest]\ntestpaths = tests\n", **(extra or {})}
    for rel, text in files.items():
        (task / rel).parent.mkdir(parents=True, exist_ok=True)
        (task / rel).write_text(text)
    (task / "task.json").write_text(json.dumps({"id": name, "description": description,
                                                "test_command": "python -m pytest -q"}))
    return task


def git_repo(root: Path, files: dict[str, str]) -> tuple[Path, str]:
    root.mkdir(parents=True)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=GIT_ENV)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()
    return root, head


# -- task loading -------------------------------------------------------------------------------


def test_load_dir_task_and_folder_of_tasks(tmp_path):
    write_task(tmp_path / "set", "t1")
    write_task(tmp_path / "set", "t2")
    (tmp_path / "set" / "_fixes").mkdir()
    (tmp_path / "set" / "_fixes" / "t1.patch").write_text("--- a/calc.py\n+++ b/calc.py\n")
    tasks = load_tasks([tmp_path / "set"])
    assert [t.id for t in tasks] == ["t1", "t2"]  # _fixes next to the tasks is skipped
    t1 = tasks[0]
    assert t1.kind == "dir" and t1.test_cmd == "python -m pytest -q"
    assert "task.json" not in t1.files and "calc.py" in t1.files
    assert load_tasks([tmp_path / "set" / "t2"])[0].id == "t2"
    repo = t1.materialize(tmp_path / "m")
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()) == \
        ["calc.py", "pytest.ini", "tests/test_calc.py"]


@needs_public
def test_load_public_tasks():
    tasks = load_tasks([PUBLIC])
    assert len(tasks) == 60
    assert not any(t.id.startswith("_") for t in tasks)
    # HumanEvalFix's `solution.py` is the buggy module named by the issue, not a solution
    sol = next(t for t in tasks if t.id == "humanevalfix_121_solution")
    assert "solution.py" in sol.files


@pytest.mark.parametrize("extra,why", [
    ({"fix.patch": "x"}, "patch"),
    ({"notes/gold.diff": "x"}, "patch"),
    ({"_fixes/t1.patch": "x"}, "_fixes"),
    ({"reference_solution.py": "def add(a, b):\n    return a + b\n"}, "reference"),
    ({"fixed_calc.py": "x = 1\n"}, "fix"),
    ({"solution.py": "x = 1\n"}, "solution"),
    ({"correct_python_programs/calc.py": "x = 1\n"}, "correct_python_programs"),
    ({"notes.txt": "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n-    return a - b\n"
                   "+    return a + b\n"}, "diff"),
])
def test_reference_looking_task_files_are_refused(tmp_path, extra, why):
    task = write_task(tmp_path, "t1", extra)
    with pytest.raises(ReferenceInputError) as info:
        load_tasks([task])
    assert why in str(info.value) and "reference" in str(info.value)


def test_fixes_folder_and_patch_files_are_refused_as_tasks(tmp_path):
    fixes = tmp_path / "_fixes"
    fixes.mkdir()
    (fixes / "t1.patch").write_text("--- a/x\n+++ b/x\n")
    with pytest.raises(ReferenceInputError, match="folder of reference fixes, not tasks"):
        load_tasks([fixes])
    with pytest.raises(ReferenceInputError, match="patch file"):
        load_tasks([fixes / "t1.patch"])


@needs_public
def test_public_fixes_folder_is_refused():
    with pytest.raises(ReferenceInputError, match="_fixes"):
        load_tasks([PUBLIC / "_fixes"])


def test_named_by_issue_and_test_modules_are_accepted(tmp_path):
    task = write_task(tmp_path, "t1", {"solution.py": "x = 1\n",
                                       "tests/test_solution.py": "def test_x():\n    pass\n"},
                      description="The function `solution` in `solution.py` is buggy.")
    assert "solution.py" in load_tasks([task])[0].files


def test_load_swebench_jsonl(tmp_path):
    repo, head = git_repo(tmp_path / "clones" / "acme__calc",
                          {"calc.py": "def add(a, b):\n    return a - b\n"})
    test_patch = ("diff --git a/tests/test_calc.py b/tests/test_calc.py\nnew file mode 100644\n"
                  "--- /dev/null\n+++ b/tests/test_calc.py\n@@ -0,0 +1,4 @@\n"
                  "+from calc import add\n+\n+def test_add():\n+    assert add(2, 2) == 4\n")
    good = {"instance_id": "acme__calc-1", "repo": "acme/calc", "base_commit": head,
            "problem_statement": "add() subtracts",
            "FAIL_TO_PASS": '["tests/test_calc.py::test_add"]',
            "PASS_TO_PASS": [], "test_patch": test_patch, "image": "python:3.12-slim"}
    elsewhere = {**good, "instance_id": "other-1", "repo": "other/thing"}
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(elsewhere) + "\n")
    tasks = load_tasks([path], repos_dir=tmp_path / "clones")
    t, missing = tasks
    assert t.kind == "swebench" and t.unavailable is None and t.repo == str(repo.resolve())
    assert t.fail_to_pass == ("tests/test_calc.py::test_add",) and t.image == "python:3.12-slim"
    assert t.test_cmd == "python -m pytest -q tests/test_calc.py"
    out = t.materialize(tmp_path / "work")
    assert (out / "calc.py").read_text().endswith("a - b\n")
    assert (out / "tests" / "test_calc.py").is_file() and not (out / ".git").exists()
    assert missing.unavailable and "git clone https://github.com/other/thing" in missing.unavailable


@pytest.mark.parametrize("change,message", [
    ({"patch": "diff --git a/calc.py b/calc.py\n"}, "gold patch"),
    ({"FAIL_TO_PASS": []}, "FAIL_TO_PASS is empty"),
    ({"base_commit": "main"}, "not a commit hash"),
    ({"FAIL_TO_PASS": ["test_add (calc.tests.Calc)"]}, "give the instance a `test_cmd`"),
])
def test_swebench_jsonl_validation(tmp_path, change, message):
    inst = {"instance_id": "x-1", "repo": "acme/calc", "base_commit": "a" * 40,
            "problem_statement": "p", "FAIL_TO_PASS": ["t.py::a"], "PASS_TO_PASS": [], **change}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(inst) + "\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_tasks([path])
    path.write_text(json.dumps({"repo": "x"}) + "\n")
    with pytest.raises(ConfigError, match="missing instance_id"):
        load_tasks([path])


# -- strategies and pass@k ----------------------------------------------------------------------


def test_strategies_at_one_budget():
    shapes = {s.name: (s.candidates, s.rounds, s.beam, s.max_samples)
              for s in make_strategies(parse_strategy_names(["all"]), 8)}
    assert shapes == {"single": (1, 1, 1, 1), "best-of-n": (8, 1, 1, 8),
                      "revise-only": (1, 8, 1, 8), "mulligan": (4, 2, 2, 8)}
    assert parse_strategy_names(None) == ["single", "mulligan"]  # one alone measures nothing
    assert parse_strategy_names(["single,best-of-n", "single"]) == ["single", "best-of-n"]
    with pytest.raises(ConfigError, match="unknown strategy"):
        make_strategies(["beam"], 4)
    with pytest.raises(ConfigError, match="revise-only"):
        make_strategies(["revise-only"], 30)


def test_mutants_belong_to_the_mulligan_strategy_only():
    """The baselines measure the model alone: a mutant that fixes the task must not count as
    `single`'s greedy sample."""
    from agent.frontends.bench.job import _settings_for

    task = BenchTask("t", "dir", "fix it", "python -m pytest -q", "t")
    for cfg in (BenchConfig(), BenchConfig(mutants=7)):
        by = {s.name: _settings_for(cfg, task, s, "m", None).mutants
              for s in make_strategies(parse_strategy_names(["all"]), 8)}
        assert by.pop("mulligan") == (cfg.mutants or Settings.model_fields["mutants"].default)
        assert by == {"single": 0, "best-of-n": 0, "revise-only": 0}


def test_pass_at_k_estimator():
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 5, 3) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - 21 / 45)
    assert pass_at_k(4, 1, 4) == 1.0
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


# -- report --------------------------------------------------------------------------------------


def synthetic(task: str, strategy: str, solved: bool, n: int, c: int, samples: int,
              tokens: int, **extra) -> dict:
    params = {"single": (1, 1, 1), "best-of-n": (4, 1, 1), "revise-only": (1, 4, 1),
              "mulligan": (2, 2, 2)}[strategy]
    return {"task": task, "strategy": strategy, "status": "solved" if solved else "unsolved",
            "solved": solved, "loop_status": "solved" if c or solved else "unsolved",
            "params": dict(zip(("candidates", "rounds", "beam"), params)),
            "any_right": c > 0 or solved, "round1": {"n": n, "c": c}, "samples": samples,
            "samples_to_solve": samples if solved else None,
            "tokens_to_solve": tokens if solved else None, "tokens": tokens,
            "seconds": 3.0, "sandbox_seconds": 2.0, "cost_usd": 0.001, **extra}


SYNTHETIC = [
    synthetic("a", "single", True, 1, 1, 1, 800),
    synthetic("b", "single", False, 1, 0, 1, 900),
    synthetic("a", "best-of-n", True, 4, 2, 4, 1200),
    synthetic("b", "best-of-n", True, 4, 1, 4, 1300),
    synthetic("a", "revise-only", True, 1, 1, 1, 800),
    synthetic("b", "revise-only", False, 1, 0, 4, 6000),
    synthetic("a", "mulligan", True, 2, 1, 2, 1000, selected_format="mutation"),
    synthetic("b", "mulligan", False, 2, 0, 4, 3000, selected_is_reference=False),
]


def test_summary_and_markdown_from_synthetic_results():
    summary = summarize(SYNTHETIC)
    assert list(summary) == ["single", "best-of-n", "revise-only", "mulligan"]
    assert summary["best-of-n"]["solved"] == 2 and summary["single"]["solve_rate"] == 0.5
    assert summary["best-of-n"]["pass_at_k"][1] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert summary["best-of-n"]["pass_at_k"][4] == 1.0
    assert summary["mulligan"]["selection_accuracy"] == 1.0
    assert summary["revise-only"]["tokens_mean"] == 3400
    config = {"model": "scripted", "scripted_p": 0.3, "budget": 4,
              "model_label": "SCRIPTED MODEL (not a real model)"}
    md = render_markdown(SYNTHETIC, config, {"Solve rate vs samples": "solve_vs_samples.png"})
    assert "SCRIPTED MODEL (not a real model)" in md
    assert "| best-of-n | 4 cand x 1 rnd, beam 1 | 2/2 | 100.0% |" in md
    assert "| pass@1 | pass@2 | pass@3 | pass@4 |" in md
    assert "| best-of-n | 4 | 37.5% |" in md
    assert "## At equal tokens" in md and "![Solve rate vs samples](solve_vs_samples.png)" in md
    assert "| b | no | yes (4) | no | no |" in md
    assert "| a | yes (1) | yes (4) | yes (1) | yes (2, mutant) |" in md


def test_the_per_task_cell_says_which_fixes_mulligan_made_itself():
    records = [synthetic("a", "mulligan", True, 2, 1, 2, 1000, selected_format="combination"),
               synthetic("b", "mulligan", True, 2, 1, 2, 1000, selected_format="search-replace")]
    md = render_markdown(records, {"model": "scripted", "budget": 4}, {})
    assert "| a | yes (2, combination) |" in md
    assert "| b | yes (2) |" in md


def test_a_mutant_is_no_model_sample():
    """The bench compares strategies at equal model samples: a mutant costs none."""
    from agent.candidate import Candidate
    from agent.frontends.bench.job import _from_result
    from agent.result import Result, ResultStatus
    from sandbox.api import RunStatus, TestReport

    answer = Candidate("r1c1", 1, None, answer="wrong", fmt="whole_file")
    mutant = Candidate("m3", 1, None, answer="a.py:3: < -> <=", fmt="mutation")
    mutant.report = TestReport(RunStatus.COMPLETED, 0, 0.1)
    assert mutant.solved
    record = _from_result(Result("run", ResultStatus.SOLVED, mutant, "patch",
                                 [answer, mutant], None))
    assert (record["samples"], record["mutants"], record["samples_to_solve"]) == (1, 1, 1)
    assert record["selected_format"] == "mutation"


def test_report_shows_time_to_first_fix_and_model_idle_per_strategy():
    records = [
        synthetic("a", "single", True, 1, 1, 1, 800, first_fix_s=40.0, model_idle_s=0.0),
        synthetic("b", "single", False, 1, 0, 1, 900, first_fix_s=None, model_idle_s=0.0),
        synthetic("a", "mulligan", True, 2, 1, 2, 1000, first_fix_s=44.0, model_idle_s=3.0),
        synthetic("b", "mulligan", True, 2, 1, 4, 3000, first_fix_s=130.0, model_idle_s=5.0),
        synthetic("c", "mulligan", False, 2, 0, 4, 3000, first_fix_s=None, model_idle_s=7.0),
    ]
    summary = summarize(records)
    assert summary["single"]["first_fix_s_median"] == 40.0
    assert summary["mulligan"]["first_fix_s_median"] == 87.0  # solved tasks only
    assert summary["mulligan"]["model_idle_s_mean"] == 5.0
    md = render_markdown(records, {"model": "m", "budget": 4}, {})
    assert "time to first fix (median s)" in md
    assert "| single | 1 cand x 1 rnd, beam 1 | 1/2 | 50.0% | 40.0 |" in md
    assert "| mulligan | 2 cand x 2 rnd, beam 2 | 2/3 | 66.7% | 87.0 |" in md


def test_report_and_plots_written(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the `bench` extra)")
    with (tmp_path / "results.jsonl").open("w") as fh:
        for rec in SYNTHETIC:
            fh.write(json.dumps(rec) + "\n")
        fh.write('{"task": "cut by a cr')  # a crash mid-line is ignored
    report = write_report(tmp_path, {"model": "m", "scripted_p": None, "budget": 4})
    text = report.read_text()
    assert "SCRIPTED" not in text and "| single |" in text
    for png in ("solve_vs_samples.png", "solve_vs_tokens.png"):
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["strategies"]["mulligan"]["tasks"] == 2


# -- resume ---------------------------------------------------------------------------------------


def test_resume_skips_finished_jobs(tmp_path, monkeypatch):
    tasks = [BenchTask(name, "dir", "issue", "true", str(tmp_path / name), {"a.py": b"x = 1\n"})
             for name in ("t1", "t2")]
    cfg = BenchConfig(strategies=["single", "best-of-n"], budget=2, workers=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(cfg.to_json()))
    with (out / "results.jsonl").open("w") as fh:
        fh.write(json.dumps(synthetic("t1", "single", True, 1, 1, 1, 100)) + "\n")
        fh.write(json.dumps({"task": "t2", "strategy": "single", "status": "error",
                             "solved": False, "error": "Docker went away"}) + "\n")
    ran = []

    async def fake_job(task, strategy, cfg, trajectory, server=None, fix=None):
        ran.append((task.id, strategy.name))
        trajectory.parent.mkdir(parents=True, exist_ok=True)
        trajectory.write_text("{}\n")
        return synthetic(task.id, strategy.name, False, strategy.candidates, 0,
                         strategy.candidates, 50)

    monkeypatch.setattr(bench, "run_job", fake_job)
    records = run_bench(tasks, cfg, out)
    assert sorted(ran) == [("t1", "best-of-n"), ("t2", "best-of-n"), ("t2", "single")]
    assert len(records) == 4 and len(read_results(out / "results.jsonl")) == 4
    assert Results(out).done == {f"{t}\t{s}" for t in ("t1", "t2") for s in ("single",
                                                                           "best-of-n")}
    ran.clear()
    run_bench(tasks, cfg, out)  # everything done: nothing runs
    assert ran == []
    other = BenchConfig(strategies=["single"], budget=3)
    with pytest.raises(ConfigError, match="another configuration"):
        run_bench(tasks, other, out)


# -- end to end: scripted model, real sandbox -----------------------------------------------------


def _fix_lines(task_id: str) -> list[str]:
    patch = (PUBLIC / "_fixes" / f"{task_id}.patch").read_text()
    return [line[1:].strip() for line in patch.splitlines()
            if line.startswith("+") and not line.startswith("+++") and line[1:].strip()]


@needs_public
@pytest.mark.docker
def test_bench_end_to_end_scripted(tmp_path, docker_image):
    from agent.frontends.cli import main

    out = tmp_path / "out"
    argv = ["bench", str(PUBLIC), "--only", TWO[0], "--only", TWO[1], "--strategy",
            "single,best-of-n", "--budget", "2", "--scripted-p", "1.0", "--image", docker_image,
            "--workers", "2", "--sandbox-workers", "1", "--timeout", "60", "--out", str(out)]
    assert main(argv) == 0
    records = read_results(out / "results.jsonl")
    assert sorted((r["task"], r["strategy"]) for r in records) == sorted(
        (t, s) for t in TWO for s in ("single", "best-of-n"))
    for r in records:
        assert r["solved"] and r["status"] == "solved" and r["error"] is None
        assert r["verification"]["passed"] and r["verification"]["exit_code"] == 0
        assert r["scripted_p"] == 1.0 and "SCRIPTED" in r["model_label"]
        assert r["selected_is_reference"] is True and r["any_right"]
        assert r["round1"] == {"n": r["params"]["candidates"], "c": r["params"]["candidates"]}
        assert r["tokens"] > 0 and r["samples_to_solve"] == r["params"]["candidates"]
        # the trajectory is kept, and the reference fix never appeared in a prompt
        events = [json.loads(line) for line in (out / r["trajectory"]).read_text().splitlines()]
        kinds = [e["kind"] for e in events]
        assert "run_started" in kinds and kinds[-1] == "run_finished"
        prompts = "\n".join(m["content"] for e in events if e["kind"] == "model_call"
                            for m in e["messages"])
        assert prompts and not any(line in prompts for line in _fix_lines(r["task"]))
    report = (out / "report.md").read_text()
    assert "SCRIPTED MODEL (not a real model)" in report and "(p = 1.0)" in report
    assert "| single | 1 cand x 1 rnd, beam 1 | 2/2 | 100.0% |" in report
    assert "| best-of-n | 2 cand x 1 rnd, beam 1 | 2/2 | 100.0% |" in report
    if (out / "solve_vs_samples.png").is_file():
        assert (out / "solve_vs_tokens.png").is_file()
    # a rerun resumes: nothing left to do, the results stay as they were
    assert main(argv) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 4


@needs_public
@pytest.mark.docker
def test_bench_on_local_ray(tmp_path, docker_image):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tasks = load_tasks([PUBLIC / TWO[0]])
        cfg = BenchConfig(strategies=["single"], budget=1, scripted_p=1.0, image=docker_image,
                          sandbox_workers=1, test_timeout_s=60.0, ray="local",
                          model="scripted")
        records = run_bench(tasks, cfg, tmp_path / "out")
    finally:
        ray.shutdown()
    (rec,) = records
    assert rec["solved"] and rec["strategy"] == "single" and rec["node"]
    assert '"kind": "run_finished"' in (tmp_path / "out" / rec["trajectory"]).read_text()


def test_mutant_reach_says_which_reference_fixes_are_one_mutant_away(tmp_path):
    """bench/mutant_reach.py: the operators' reach over a tasks folder, no model."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from mutant_reach import main, reach

    for name, buggy, fixed in (("t_near", "    return a - b", "    return a + b"),
                               ("t_far", "    return a - b", "    return sum([a, b]) * 1")):
        task = tmp_path / name
        task.mkdir()
        (task / "task.json").write_text("{}")
        (task / "m.py").write_text(f"def f(a, b):\n{buggy}\n")
        (tmp_path / "_fixes").mkdir(exist_ok=True)
        (tmp_path / "_fixes" / f"{name}.patch").write_text(
            f"--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n def f(a, b):\n-{buggy}\n+{fixed}\n")
    rows = {r["task"]: r for r in reach(tmp_path)}
    assert rows["t_near"]["kind"] == "operator" and rows["t_near"]["position"] == 1
    assert rows["t_far"]["one_line"] and rows["t_far"]["kind"] is None
    assert main([str(tmp_path / "missing")]) == 2
