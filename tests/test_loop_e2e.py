"""End-to-end tests of the solve-test-revise loop: real git repositories in tmp_path, the
real Docker sandbox, and the scripted OpenAI-compatible server over real HTTP.

Most tests drive `Run` (the entry point every front end uses) in-process; Ctrl-C and
resume go through the `mulligan fix` command as a subprocess.
"""

# ruff: noqa: F811 - the fixtures imported from tests.support.sandbox_env are parameters
from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.candidate import Candidate
from agent.config import Settings
from agent.errors import ModelError
from agent.events import (BaselineDone, CandidateState, CandidateUpdate, EventBus, ModelCall,
                          ResultStatus, Status)
from agent.loop import REPRO_TEST_PATH, Result
from agent.models.client import ModelSettings, OpenAIChatModel
from agent.run import Run, RunRequest
from agent.trajectory import read_events, run_path
from sandbox.docker_backend import LABEL, DockerSandbox
from sandbox.reaper import OWNER_PID
from tests.support.openai_server import error
from tests.support.processes import sigint_default
from tests.support.sandbox_env import docker_client, docker_image, tree_digest  # noqa: F401

pytestmark = pytest.mark.docker

MODEL = "test-model"
ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost",
           "GIT_CONFIG_NOSYSTEM": "1"}

CALC_TESTS = (
    "from calc import add\n\n\n"
    "def test_add():\n    assert add(3, 3) == 6\n\n\n"
    "def test_zero():\n    assert add(0, 0) == 0\n"
)
TEST_ADD = "tests/test_calc.py::test_add"


# -- helpers -------------------------------------------------------------------------------


def make_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repository with `files` committed."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=GIT_ENV)
    return root


def calc_repo(tmp_path: Path, body: str = "    return a - b\n") -> Path:
    return make_repo(tmp_path / "repo", {"calc.py": "def add(a, b):\n" + body,
                                         "tests/test_calc.py": CALC_TESTS})


def sr(path: str, search: str, replace: str, prose: str = "Here is the change.") -> str:
    """A model answer with one SEARCH/REPLACE block."""
    return (f"{prose}\n\n{path}\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n"
            ">>>>>>> REPLACE\n```\n")


def settings(server, image: str, **overrides) -> Settings:
    # mutants 0: these tests follow the scripted answers; one-token mutants (which fix the
    # calculator's `a - b` by themselves) have their own test below
    values = {"model": MODEL, "base_url": server.base_url, "image": image, "candidates": 2,
              "rounds": 1, "beam": 1, "workers": 2, "test_timeout_s": 60.0, "mutants": 0}
    values.update(overrides)
    return Settings(**values)


async def run_loop(repo: Path, s: Settings, issue: str | None = None,
                   model=None) -> tuple[Result, list]:
    bus = EventBus()
    events: list = []
    bus.subscribe(events.append)
    result = await Run(RunRequest(repo, s, issue), bus, model).execute()
    assert not bus.errors, bus.errors
    return result, events


async def assert_applies(repo: Path, patch: str | None) -> None:
    """The patch is against the user's files as they are: git applies it."""
    assert patch is not None
    check = await asyncio.to_thread(
        subprocess.run, ["git", "apply", "--check", "-"], input=patch.encode(), cwd=repo,
        capture_output=True, check=False)
    assert check.returncode == 0, check.stderr


def by_id(result: Result) -> dict[str, Candidate]:
    return {c.id: c for c in result.candidates}


def last_user(request) -> str:
    return request.messages[-1]["content"]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "MULLIGAN_"))}
    env.update(MULLIGAN_HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """Trajectories and the repo-map cache go to the test's temp dir."""
    monkeypatch.setenv("MULLIGAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# -- selection -----------------------------------------------------------------------------


async def test_the_one_right_candidate_among_wrong_ones_is_chosen(tmp_path, openai_server,
                                                                  docker_image):
    repo = calc_repo(tmp_path)
    right = sr("calc.py", "    return a - b", "    return a + b")
    wrong = [sr("calc.py", "    return a - b", f"    return {expr}")
             for expr in ("a * b", "b - a", "abs(a - b)")]
    openai_server.script(wrong[0], wrong[1], right, wrong[2])

    # --keep-going: every sample of the round is tested, so the choice is among all four
    result, _ = await run_loop(repo, settings(openai_server, docker_image, candidates=4,
                                              rounds=2, keep_going=True, schedule="wide"))

    assert result.status is ResultStatus.SOLVED
    assert result.baseline is not None and result.baseline.targets == (TEST_ADD,)
    assert result.chosen is not None and result.chosen.answer == right
    assert result.patch is not None and "+    return a + b" in result.patch
    states = sorted(c.state for c in result.candidates)
    assert states == sorted([CandidateState.FAILED] * 3 + [CandidateState.PASSED])
    # four concurrent single-sample requests (each answer tested as soon as it is complete)
    assert [r.n for r in openai_server.chat_requests] == [1, 1, 1, 1]
    await assert_applies(repo, result.patch)


async def test_a_one_token_regression_the_model_misses_is_fixed_by_a_mutant(
        tmp_path, openai_server, docker_image):
    repo = calc_repo(tmp_path, "    return a + b - 1\n")
    wrong = sr("calc.py", "    return a + b - 1", "    return a + b + 1")
    openai_server.script(*[wrong] * 4)
    result, events = await run_loop(repo, settings(openai_server, docker_image, candidates=2,
                                                   rounds=2, schedule="wide", mutants=40))

    assert result.status is ResultStatus.SOLVED
    assert result.chosen is not None and result.chosen.fmt == "mutation"
    assert result.chosen.answer == "calc.py:2: return a + b - 1  ->  return a + b"
    assert "-    return a + b - 1\n+    return a + b\n" in (result.patch or "")
    assert result.chosen.confirmed  # the second opinion agreed, as for any winner
    assert len(openai_server.chat_requests) == 2  # round 1 only: no revision was needed
    notes = [e.message for e in events if isinstance(e, Status)]
    assert any("changes of the suspect lines" in n and "passed the failing tests" in n for n in notes)
    await assert_applies(repo, result.patch)


async def test_a_second_wrong_site_hidden_by_the_first_is_found_on_top_of_the_answer(
        tmp_path, openai_server, docker_image):
    """`fib(2)` is asserted before `fib(1)`: the traced baseline never reaches line 3. The
    answer fixes line 5 and moves the failure; the loop traces the answer in the sandbox and
    a mutant of line 3 on top of it passes."""
    repo = make_repo(tmp_path / "repo", {
        "fib.py": "def fib(n):\n    if n == 1:\n        return 1\n    if n == 2:\n"
                  "        return 2\n    return fib(n - 1) + fib(n - 2)\n",
        "tests/test_fib.py": "from fib import fib\n\n\ndef test_fib():\n"
                             "    assert fib(2) == 1\n    assert fib(1) == 0\n"
                             "    assert fib(5) == 3\n\n\ndef test_big():\n"
                             "    assert fib(3) > 0\n"})
    openai_server.script(sr("fib.py", "        return 2", "        return 1"))
    result, events = await run_loop(repo, settings(openai_server, docker_image, candidates=1,
                                                   rounds=1, schedule="narrow", mutants=40))

    assert result.status is ResultStatus.SOLVED, result.reason
    assert result.chosen is not None and result.chosen.fmt == "combination"
    assert result.chosen.answer.startswith("r1c1 + fib.py:3: return 1  ->  return 0")
    assert result.chosen.confirmed
    notes = [e.message for e in events if isinstance(e, Status)]
    assert any("on top of r1c1" in n and "passed the failing tests" in n for n in notes)
    await assert_applies(repo, result.patch)


async def test_round_two_succeeds_because_the_revise_prompt_carries_the_assertion(
        tmp_path, openai_server, docker_image):
    # The bug makes add(3, 3) == 5; the round-1 answer makes it 7. The scripted model only
    # answers right when it is told "assert 7 == 6", which only the candidate's own test
    # run can have produced.
    repo = calc_repo(tmp_path, "    return a + b - 1\n")
    wrong = sr("calc.py", "    return a + b - 1", "    return a + b + 1")
    fix_from_wrong = sr("calc.py", "    return a + b + 1", "    return a + b")

    def respond(body: dict) -> str:
        return fix_from_wrong if "assert 7 == 6" in body["messages"][-1]["content"] else wrong

    openai_server.script(*[respond] * 4)
    result, _ = await run_loop(repo, settings(openai_server, docker_image, candidates=2,
                                              rounds=2, beam=1))

    # two single-sample proposals (one change: tested once), then a round that revises it
    # with half its samples and asks the traced run's suspect line with the other half
    fresh = [r for r in openai_server.chat_requests if len(r.messages) == 2]
    lines = [r for r in fresh if "Where the bug probably is" in last_user(r)]
    proposes = [r for r in fresh if r not in lines]
    revises = [r for r in openai_server.chat_requests if len(r.messages) > 2]
    assert len(proposes) == 2 and revises and len(lines) == 1
    assert "Line 2:\n```python\n    return a + b - 1\n```" in last_user(lines[0])
    for propose in proposes:
        assert "assert 5 == 6" in last_user(propose)
        assert "assert 7 == 6" not in propose.prompt
    for revise in revises:
        assert "assert 7 == 6" in last_user(revise)
        assert revise.messages[-2] == {"role": "assistant", "content": wrong}
    cands = by_id(result)
    assert cands["r1c1"].state is CandidateState.FAILED
    assert result.status is ResultStatus.SOLVED
    assert result.chosen is not None and result.chosen.round == 2
    assert result.chosen.parent in ("r1c1", "r1c2")
    # the final patch is against the original files, not the parent's
    assert "-    return a + b - 1\n+    return a + b\n" in (result.patch or "")


async def test_a_candidate_that_edits_the_tests_is_rejected_even_though_they_pass(
        tmp_path, openai_server, docker_image):
    repo = calc_repo(tmp_path)
    cheat = sr("tests/test_calc.py", "    assert add(3, 3) == 6", "    assert add(3, 3) == 0")
    wrong = sr("calc.py", "    return a - b", "    return a * b")
    openai_server.script(cheat, wrong)

    result, events = await run_loop(repo, settings(openai_server, docker_image, candidates=2))

    # the two requests run side by side: which candidate got which answer is the server's
    # arrival order, so each is found by its answer
    [cheater] = [c for c in result.candidates if c.answer == cheat]
    [honest] = [c for c in result.candidates if c.answer == wrong]
    assert cheater.report is not None and cheater.report.passed  # its tests do pass
    assert cheater.state is CandidateState.REJECTED
    assert cheater.edited_tests == ["tests/test_calc.py"]
    assert result.status is ResultStatus.UNSOLVED
    assert result.chosen is not None and result.chosen.id == honest.id
    as_json = {c["id"]: c for c in result.to_json()["candidates"]}
    assert as_json[cheater.id]["state"] == "rejected"
    assert as_json[cheater.id]["edited_tests"] == ["tests/test_calc.py"]
    final = [e for e in events if isinstance(e, CandidateUpdate) and e.id == cheater.id][-1]
    assert final.state is CandidateState.REJECTED


async def test_budget_exhaustion_reports_the_best_partial_candidate(tmp_path, openai_server,
                                                                    docker_image):
    repo = make_repo(tmp_path / "repo", {
        "calc.py": "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a + b\n",
        "tests/test_calc.py": (
            "from calc import add, sub\n\n\n"
            "def test_add():\n    assert add(3, 3) == 6\n\n\n"
            "def test_sub():\n    assert sub(3, 3) == 0\n\n\n"
            "def test_same():\n    assert add(0, 0) == sub(0, 0)\n"),
    })
    partial = sr("calc.py", "    return a - b", "    return a + b")  # fixes add only
    wrong = sr("calc.py", "    return a - b", "    return a * b")
    openai_server.script(wrong, partial)

    result, _ = await run_loop(repo, settings(openai_server, docker_image, candidates=2,
                                              rounds=3, token_budget=1))

    assert result.status is ResultStatus.UNSOLVED
    assert "token budget of 1 spent" in result.reason
    # the round's two concurrent samples, and no revision was paid for
    assert [len(r.messages) for r in openai_server.chat_requests] == [2, 2]
    assert result.chosen is not None and result.chosen.answer == partial
    assert result.chosen.fixed == [TEST_ADD]
    assert [t.nodeid for t in result.chosen.still_failing] == ["tests/test_calc.py::test_sub"]
    assert result.patch is not None and "+    return a + b" in result.patch
    assert result.usage.total > 1


async def test_a_model_that_ignores_n_still_yields_n_candidates(tmp_path, openai_server,
                                                                 docker_image):
    repo = calc_repo(tmp_path)
    openai_server.honour_n = False
    answers = [sr("calc.py", "    return a - b", f"    return {expr}")
               for expr in ("a * b", "a + b", "b - a")]
    openai_server.script(*answers)

    result, _ = await run_loop(repo, settings(openai_server, docker_image, candidates=3,
                                              keep_going=True))

    assert len(result.candidates) == 3
    assert sorted(c.answer for c in result.candidates) == sorted(answers)
    assert all(c.report is not None for c in result.candidates)  # every one was tested
    assert [r.n for r in openai_server.chat_requests] == [1, 1, 1]  # one sample per request
    assert result.status is ResultStatus.SOLVED
    assert result.chosen is not None and "+    return a + b" in result.chosen.patch


async def test_a_format_error_becomes_feedback_in_the_next_rounds_prompt(
        tmp_path, openai_server, docker_image):
    repo = calc_repo(tmp_path)
    openai_server.script(
        "You should change the minus into a plus in add().",  # no edit blocks
        sr("calc.py", "    return a - b", "    return a + b"),
    )

    result, _ = await run_loop(repo, settings(openai_server, docker_image, candidates=1,
                                              rounds=2))

    first = by_id(result)["r1c1"]
    assert first.state is CandidateState.FORMAT_ERROR
    assert first.format_error and "No edits found" in first.format_error
    assert first.report is None  # nothing was sent to the sandbox for it
    _, revise = openai_server.chat_requests
    feedback = last_user(revise)
    assert "Your answer could not be used" in feedback
    assert first.format_error in feedback
    assert "def add(a, b):" in feedback  # the files are shown again
    assert result.status is ResultStatus.SOLVED
    assert result.chosen is not None and result.chosen.id == "r2c1"
    assert result.chosen.parent == "r1c1"


# -- no failing test -----------------------------------------------------------------------


async def test_an_issue_without_a_failing_test_is_reproduced_then_fixed(
        tmp_path, openai_server, docker_image):
    repo = make_repo(tmp_path / "repo", {
        "calc.py": "def add(a, b):\n    return a - b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_zero():\n"
                              "    assert add(0, 0) == 0\n",
    })
    issue = "add(2, 3) returns -1 instead of 5."

    def repro(name: str, expr: str) -> str:
        return (f"A test for the issue.\n\n{REPRO_TEST_PATH}\n```python\nfrom calc import add"
                f"\n\n\ndef {name}():\n    assert {expr}\n```\n")

    openai_server.script(
        repro("test_does_not_reproduce", "add(0, 0) == 0"),  # passes now: not kept
        repro("test_add_positive", "add(2, 3) == 5"),  # fails now: kept
        sr("calc.py", "    return a - b", "    return a * b"),
        sr("calc.py", "    return a - b", "    return a + b"),
    )

    result, events = await run_loop(repo, settings(openai_server, docker_image, candidates=2),
                                    issue=issue)

    reproduce, *proposes = openai_server.chat_requests
    assert "reproduces the issue" in last_user(reproduce) and issue in last_user(reproduce)
    repro_id = f"{REPRO_TEST_PATH}::test_add_positive"
    assert result.baseline is not None and result.baseline.targets == (repro_id,)
    assert len(proposes) == 2
    for propose in proposes:
        assert "test_add_positive" in last_user(propose)
        assert "test_does_not_reproduce" not in last_user(propose)
    assert any(isinstance(e, Status) and e.message.startswith("reproduced the issue")
               for e in events)
    baselines = [e for e in events if isinstance(e, BaselineDone)]
    assert [b.targets for b in baselines] == [[], [repro_id]]
    assert result.status is ResultStatus.SOLVED
    assert result.chosen is not None and "a + b" in result.chosen.answer
    assert "+    return a + b" in (result.patch or "")


async def test_nothing_failing_and_no_issue_is_nothing_to_fix(tmp_path, openai_server,
                                                              docker_image):
    repo = calc_repo(tmp_path, "    return a + b\n")
    result, _ = await run_loop(repo, settings(openai_server, docker_image))
    assert result.status is ResultStatus.NOTHING_TO_FIX
    assert result.patch is None and result.candidates == []
    assert openai_server.chat_requests == []  # the model was never asked


# -- Ctrl-C and resume (the command line) ---------------------------------------------------


def _stderr_reader(proc: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _start_slow_run(tmp_path, openai_server, docker_image, docker_client):
    """A CLI run whose two candidates sleep in their containers; returns once both run."""
    repo = calc_repo(tmp_path)
    # two different changes (the same change twice would be tested once)
    slow, slower = (sr("calc.py", "    return a - b", f"    import time\n    time.sleep({s})\n"
                                                       "    return a + b") for s in (300, 301))
    openai_server.script(slow, slower)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    before = tree_digest(repo)
    known = {c["Id"] for c in docker_client.api.containers(all=True, filters={"label": LABEL})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.frontends.cli", "fix", str(repo), "--json", "--model", MODEL,
         "--base-url", openai_server.base_url, "--image", docker_image, "--candidates", "2",
         "--rounds", "1", "--workers", "2", "--timeout", "600"],
        cwd=ROOT, env=cli_env(tmp_path, TMPDIR=str(tmpdir)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    lines = _stderr_reader(proc)
    seen: list[str] = []
    try:
        while True:
            line = lines.get(timeout=120)
            assert line is not None, f"mulligan ended before the baseline: {''.join(seen)}"
            seen.append(line)
            if line.startswith("baseline:"):
                break

        def running_candidates():
            by_session: dict[str, list] = {}
            # one list call, no inspect per container: other runs' containers come and go
            for c in docker_client.api.containers(filters={"label": f"{OWNER_PID}={proc.pid}"}):
                if c["Id"] not in known:
                    by_session.setdefault(c["Labels"][LABEL], []).append(c)
            # the run's containers are its two candidates: spares are made only for the
            # jobs announced, so none is left idle beside them
            return next((cs for cs in by_session.values() if len(cs) == 2
                         and all(_sleeping(docker_client, c["Id"]) for c in cs)), None)

        containers = wait_until(running_candidates, 120, "the two candidate containers")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    assert {c["Labels"][OWNER_PID] for c in containers} == {str(proc.pid)}
    return proc, lines, seen, containers, repo, before, tmpdir


def _sleeping(docker_client, cid: str) -> bool:
    """The candidate's code runs (its test sleeps), not a container waiting for a job."""
    try:
        top = docker_client.api.top(cid, ps_args="-o pid,args")
    except Exception:  # noqa: BLE001 -- removed meanwhile
        return False
    return any("-m pytest" in " ".join(p) for p in top.get("Processes") or [])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_while_candidates_test_cleans_up_and_exits_130(sig, tmp_path, openai_server,
                                                             docker_image, docker_client):
    proc, lines, seen, containers, repo, before, tmpdir = _start_slow_run(
        tmp_path, openai_server, docker_image, docker_client)
    sessions = {c["Labels"][LABEL] for c in containers}
    try:
        assert list(tmpdir.glob("mulligan-snap-*")), "the run's snapshot should exist now"
        signalled = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=90)  # stderr is drained by the reader thread
        stopped_s = time.monotonic() - signalled
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rest = []
    while (line := lines.get(timeout=10)) is not None:
        rest.append(line)
    err = "".join(seen + rest)

    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    # the terminal comes back at once (2 s on a quiet machine; loaded CI gets slack), and
    # removals still in flight then finish in a detached process
    assert stopped_s < 10, f"took {stopped_s:.1f}s to stop"

    def gone():
        return not [c for s in sessions for c in
                    docker_client.api.containers(all=True, filters={"label": f"{LABEL}={s}"})]

    wait_until(gone, 60, "the run's containers to be removed")
    assert not list(tmpdir.glob("mulligan-*"))
    assert tree_digest(repo) == before
    assert out.strip() == "" or json.loads(out)


def test_containers_of_a_killed_run_are_reaped_by_the_next(tmp_path, openai_server,
                                                          docker_image, docker_client):
    proc, lines, seen, containers, *_ = _start_slow_run(
        tmp_path, openai_server, docker_image, docker_client)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait()
    ids = {c["Id"] for c in containers}

    def present() -> set[str]:
        return {c["Id"] for c in docker_client.api.containers(all=True)}

    assert ids <= present()  # left behind by the killed run
    DockerSandbox(docker_image, client=docker_client).close()  # the next run starts
    wait_until(lambda: not ids & present(), 60, "the dead run's containers to be reaped")


def test_resume_repeats_no_finished_model_call_and_solves(tmp_path, openai_server,
                                                          docker_image):
    repo = calc_repo(tmp_path)
    wrong = sr("calc.py", "    return a - b", "    return a * b")
    s = settings(openai_server, docker_image, candidates=2, rounds=2, beam=1)

    # First run: round 1 is answered, every later request gets a 500 until retries run out.
    openai_server.script(wrong, wrong)
    openai_server.fallback = lambda body: error(500)
    model = OpenAIChatModel(ModelSettings(model=MODEL, base_url=openai_server.base_url,
                                          max_retries=1, retry_base_delay_s=0.01,
                                          max_concurrent_requests=2))
    first = Run(RunRequest(repo, s), EventBus(), model)

    async def go():
        try:
            return await first.execute()
        finally:
            await model.aclose()

    with pytest.raises(ModelError, match="kept failing"):
        asyncio.run(go())
    finished = [e for e in read_events(run_path(first.run_id)) if isinstance(e, ModelCall)]
    assert [c.purpose for c in finished] == ["propose", "propose"]  # one per sample
    finished_bodies = [c.messages for c in finished]
    assert openai_server.chat_requests[0].body["messages"] == finished_bodies[0]
    # round 2's requests (a line question and a revision) never got an answer
    unfinished = [r.body["messages"] for r in openai_server.chat_requests
                  if r.body["messages"] not in finished_bodies]
    assert any(len(b) == 4 for b in unfinished)  # the revision

    # Resume with a fresh script: only the unfinished revise call may reach the server.
    openai_server.reset()
    openai_server.fallback = None
    fix = sr("calc.py", "    return a * b", "    return a + b")
    openai_server.script(fix, fix)
    proc = subprocess.run(
        [sys.executable, "-m", "agent.frontends.cli", "fix", str(repo), "--json", "--resume",
         first.run_id, "--model", MODEL, "--base-url", openai_server.base_url, "--image",
         docker_image, "--candidates", "2", "--rounds", "2", "--beam", "1", "--workers", "2",
         "--timeout", "60", "--mutants", "0"],
        cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=240,
        check=False)

    assert proc.returncode == 0, proc.stderr
    bodies = [r.body["messages"] for r in openai_server.chat_requests]
    assert bodies, "the resumed run asked nothing"
    assert not any(b in finished_bodies for b in bodies)
    assert all(b in unfinished for b in bodies)  # only the unfinished round's samples
    out = json.loads(proc.stdout)
    assert out["run_id"] == first.run_id
    assert out["status"] == "solved"
    chosen = {c["id"]: c for c in out["candidates"]}[out["chosen"]]
    assert chosen["round"] == 2 and chosen["state"] == "passed"
    # the replayed round-1 answers were not lost: the round-1 candidates are in the result
    assert [c["id"] for c in out["candidates"] if c["round"] == 1] == ["r1c1", "r1c2"]
