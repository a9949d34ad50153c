"""One bench job: the loop on one task with one strategy, and its patch scored afresh.

The task's repository is materialized in a temporary directory, the normal loop runs on it
(`agent.run.Run`, the entry point of every front end) with the strategy's shape, and the
selected patch is then scored in a FRESH sandbox run of the original task snapshot + patch
(patches touching tests are rejected).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.events import OWN_FORMATS, ResultStatus
from agent.frontends.bench.strategies import BenchConfig, Strategy
from agent.frontends.bench.tasks import BenchTask

TRAJECTORIES = "trajectories"
# Files a patch may not touch besides test files: they decide which tests run and how.
TEST_CONFIG_FILES = frozenset({"pytest.ini", "tox.ini", "setup.cfg", "noxfile.py",
                               ".pytest.ini", "pytest.toml"})


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
        workers=cfg.sandbox_workers, seed=cfg.seed,
        # `single` is one greedy sample: what a user gets without any search
        temperature=0.0 if strategy.name == "single" else cfg.temperature,
        token_budget=cfg.token_budget, test_timeout_s=cfg.test_timeout_s,
        max_requests=cfg.max_requests, request_timeout_s=cfg.request_timeout_s,
        context_tokens=cfg.context_tokens,
        # mutants are part of Mulligan's search; the other strategies measure the model alone
        mutants=cfg.mutants if strategy.name == "mulligan" else 0,
        allow_test_edits=False)
    if cfg.scripted_p is not None:
        values["api_key"] = "scripted"
    return Settings(**{k: v for k, v in values.items() if v is not None})


# -- scoring --------------------------------------------------------------------------------


def touched_tests(patch: str) -> list[str]:
    """Test files and test configuration the patch edits (a scored patch may touch none)."""
    from sandbox.diff import diff_paths
    from sandbox.testpaths import is_test_path

    out = []
    for path in sorted(set(diff_paths(patch))):
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
    from sandbox.api import Job, RunStatus
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
    from agent.events import EventBus
    from agent.frontends.bench.scripted import ScriptedResponder
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

    def answer(c) -> int:  # a sample is a model answer; Mulligan's own changes cost none
        return int(c.fmt not in OWN_FORMATS)

    samples = sum(map(answer, cands))
    return {
        "loop_status": result.status,
        "loop_reason": result.reason,
        "selected": result.chosen.id if result.chosen else None,
        "patch": result.patch,
        "any_right": any(c.solved for c in cands),
        "round1": {"n": len(round1), "c": sum(c.solved for c in round1)},
        "samples": samples,
        "mutants": len(cands) - samples,  # those that passed the failing tests
        "selected_format": result.chosen.fmt if result.chosen else None,
        "rounds_used": rounds[-1] if rounds else 0,
        "samples_to_solve": through(first_solved, answer) if first_solved else None,
        "tokens_to_solve": through(first_solved, lambda c: c.tokens) if first_solved else None,
        "tokens": result.usage.total,
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "cost_usd": round(result.cost_usd, 6),
        "loop_seconds": round(result.seconds, 3),
        "sandbox_seconds": round(result.sandbox_seconds, 3),
        "first_fix_s": None if result.first_fix_s is None else round(result.first_fix_s, 3),
        "model_idle_s": round(result.model_idle_s, 3),
        "cached_prompt_tokens": result.cached_prompt_tokens,
        "candidates": [{"id": c.id, "round": c.round, "parent": c.parent,
                        "state": c.state.value, "tokens": c.tokens, "solved": c.solved,
                        "fixed": len(c.fixed), "regressions": len(c.regressions)}
                       for c in cands],
    }
