"""The TUI, driven like a user drives it: Textual's Pilot against the real core, the real
Docker sandbox and the scripted OpenAI-compatible server, in a real git repository. Plus the
pure view-model reducer (tui/state.py) on a recorded run."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Group
from rich.syntax import Syntax
from rich.text import Text
from textual.widgets import Input, Static

from agent import errors
from agent.events import (CandidateState, CandidateUpdate, Localized, ModelCall, ResultStatus,
                          RunError, RunFinished, RunStarted)
from tests.support.openai_server import stall
from tests.support.sandbox_env import docker_image  # noqa: F401 - a fixture
from tui import demo
from tui.app import MulliganApp, find_repo
from tui.screens import (
    ConfirmApplyScreen,
    ConfirmScreen,
    ErrorScreen,
    FatalErrorScreen,
    InspectScreen,
    RunScreen,
    RunsScreen,
    SavePatchScreen,
    SetupScreen,
)
from tui.state import (
    FileChange,
    Phase,
    RunView,
    applicable,
    describe_changes,
    explain_error,
    patch_of,
    reduce,
    replay,
)
from tui.widgets import CandidateTable

IMAGE = "mulligan/base:bookworm"
CALC = "def add(a, b):\n    return a - b\n"
TESTS = ("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
         "def test_zero():\n    assert add(0, 0) == 0\n")
GOOD = ("The operator is wrong: add instead of subtracting.\n\ncalc.py\n```python\n"
        "<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n```\n")
BAD = ("Maybe it should multiply.\n\ncalc.py\n```python\n<<<<<<< SEARCH\n    return a - b\n"
       "=======\n    return a * b\n>>>>>>> REPLACE\n```\n")
TARGET = "tests/test_calc.py::test_add"
RUN_TIMEOUT_S = 180.0
SIZE = (120, 40)


# -- fixtures and helpers -------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with a bug (`add` subtracts) and a failing pytest test."""
    monkeypatch.setenv("MULLIGAN_HOME", str(tmp_path / "home"))
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "MULLIGAN_MODEL", "MULLIGAN_IMAGE",
                "MULLIGAN_TEST_CMD", "MULLIGAN_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "repo"
    (root / "tests").mkdir(parents=True)
    (root / "calc.py").write_text(CALC)
    (root / "tests" / "test_calc.py").write_text(TESTS)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.email=dev@example.com", "-c", "user.name=dev", "commit", "-qm", "init")
    return root


def flags(server, **overrides) -> dict:
    # mutants 0: the flows below follow the scripted answers (a one-token mutant would fix
    # the calculator by itself)
    return {"model": "test-model", "base_url": server.base_url, "image": IMAGE,
            "candidates": 2, "rounds": 2, "workers": 2, "mutants": 0, **overrides}


async def wait_for(pilot, predicate: Callable[[], object], what: str,
                   timeout: float = RUN_TIMEOUT_S) -> None:
    """Poll app state (bounded), letting the app process messages in between."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            app = pilot.app
            raise AssertionError(f"timed out waiting for {what}: phase {app.view.phase}, "
                                 f"status {app.view.status!r}, notes {app.notes}, "
                                 f"errors {app.errors}")
        await pilot.pause(0.05)


async def run_to_end(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: not app.running and not app.view.live
                   and app.view.phase is not Phase.IDLE, "the run to end")
    await pilot.pause()


def plain(widget: Static) -> str:
    """The text a Static shows (Text, Syntax or a Group of them)."""
    def flatten(item) -> str:
        if isinstance(item, Syntax):
            return item.code
        if isinstance(item, Text):
            return item.plain
        if isinstance(item, Group):
            return "\n".join(flatten(r) for r in item.renderables)
        return str(item)
    return flatten(widget.content)


# -- a run, start to apply ------------------------------------------------------------------


async def test_run_from_start_to_apply(repo: Path, openai_server, docker_image):  # noqa: F811
    openai_server.script(BAD, GOOD)
    calc = repo / "calc.py"
    app = MulliganApp(repo, flags=flags(openai_server, rounds=3, schedule="narrow"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen), "the setup screen")
        screen = app.screen
        assert screen.query_one("#in-model", Input).value == "test-model"
        assert screen.query_one("#in-base_url", Input).value == openai_server.base_url
        assert screen.query_one("#in-test_cmd", Input).value == "python -m pytest -q"
        assert screen.query_one("#in-candidates", Input).value == "2"
        assert str(repo) in plain(screen.query_one("#setup-repo", Static))
        # edit the budget before starting: 3 rounds -> 1
        await pilot.click("#in-rounds")
        await pilot.press("home", "ctrl+k", "1")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        await wait_for(pilot, lambda: app.view.baseline is not None, "the baseline")
        assert app.view.budget_rounds == 1 and app.settings.rounds == 1
        assert app.view.baseline.targets == (TARGET,)
        assert TARGET in plain(app.screen.query_one("#baseline", Static))
        await run_to_end(pilot)

        view = app.view
        assert view.phase is Phase.FINISHED, view.status
        assert view.finished.status is ResultStatus.SOLVED and view.finished.chosen == "r1c2"
        assert view.candidate("r1c1").state is CandidateState.FAILED
        assert view.candidate("r1c2").state is CandidateState.PASSED
        assert view.candidate("r1c2").targets_fixed == 1
        assert view.tokens > 0
        table = app.screen.query_one(CandidateTable)
        assert table.row_count == 2
        assert app.screen.selected == "r1c2"  # the cursor moved to the chosen candidate
        assert "solved" in plain(app.screen.query_one("#status", Static))

        # apply, but cancel at the confirmation: nothing is written
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmApplyScreen), "the modal")
        assert app.screen.changes == [FileChange("calc.py", "modified", 1, 1)]
        assert "calc.py" in plain(app.screen.query_one("#apply-files", Static))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        await pilot.pause()
        assert calc.read_text() == CALC and app.applied == []

        # apply and confirm
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmApplyScreen), "the modal")
        assert calc.read_text() == CALC  # still unchanged while the modal asks
        await pilot.press("y")
        await wait_for(pilot, lambda: app.applied, "the patch to be applied")
        assert calc.read_text() == CALC.replace("a - b", "a + b")
        assert git(repo, "diff", "--cached") == ""  # the index is left alone
        assert any("Applied r1c2" in message for _, message in app.notes)

        # save it as a patch file, and copy it
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, SavePatchScreen), "the save modal")
        target = Path(app.screen.query_one(Input).value)
        assert target.parent == app.trajectory.parent and target.name == "r1c2.patch"
        await pilot.press("enter")
        await wait_for(pilot, lambda: target.is_file(), "the patch file")
        assert target.read_text() == view.finished.patch
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == view.finished.patch


async def test_stop_early_keeps_the_best_so_far(repo: Path, openai_server,
                                                docker_image):  # noqa: F811
    # the first round's answers come slowly, so "stop" lands while round 1 is going
    # narrow: the greedy first sample answers slowly, so "stop" lands while it is going
    openai_server.script(stall(1.5, BAD), "no edits in this answer")
    app = MulliganApp(repo, flags=flags(openai_server, rounds=4, schedule="narrow"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.view.candidates, "round 1's candidates")
        assert app.screen.check_action("stop", ()) is True
        await pilot.press("s")
        await pilot.pause()
        assert app.view.phase is Phase.STOPPING
        assert "stopping" in plain(app.screen.query_one("#status", Static))
        assert app.screen.check_action("stop", ()) is None  # shown, but disabled now
        await run_to_end(pilot)

        view = app.view
        assert view.finished is not None
        assert view.finished.status is ResultStatus.UNSOLVED
        assert view.finished.reason == "stopped by the user"
        assert view.finished.chosen == "r1c1"  # the best so far is kept
        assert sorted(view.candidates) == ["r1c1"]  # no widening, no second round
        assert len(openai_server.chat_requests) == 1
        assert app.screen.selected == "r1c1"
        # the best so far can still be applied, with a warning that it does not pass
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmApplyScreen), "the modal")
        assert "does not pass" in app.screen.warning
        await pilot.press("escape")
        await pilot.pause()
        assert (repo / "calc.py").read_text() == CALC


async def test_inspect_a_candidate(repo: Path, openai_server, docker_image):  # noqa: F811
    openai_server.script(BAD, GOOD)
    # narrow: r1c1 is sampled and tested alone first, so both have a verdict to inspect
    app = MulliganApp(repo, flags=flags(openai_server, schedule="narrow"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await run_to_end(pilot)
        assert app.screen.selected == "r1c2"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen), "the inspector")
        screen = app.screen
        assert screen.cid == "r1c2"
        diff = screen.query_one("#diff-body", Static)
        assert isinstance(diff.content, Syntax) and diff.content.lexer is not None
        assert "+    return a + b" in plain(diff) and "-    return a - b" in plain(diff)
        assert "passed" in plain(screen.query_one("#inspect-head", Static))

        await pilot.press("4")
        answer = plain(screen.query_one("#answer-body", Static))
        assert "The operator is wrong" in answer and ">>>>>>> REPLACE" in answer
        await pilot.press("3")
        prompt = plain(screen.query_one("#prompt-body", Static))
        assert "── system" in prompt and "── user" in prompt
        assert "test_add" in prompt  # the failing test is in the prompt
        await pilot.press("2")
        assert f"✓ {TARGET}" in plain(screen.query_one("#tests-body", Static))

        # the previous candidate: the failing one, with its failure message
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert screen.cid == "r1c1"
        tests = plain(screen.query_one("#tests-body", Static))
        assert f"✗ {TARGET}" in tests and "assert 6 == 5" in tests
        assert "Maybe it should multiply" in plain(screen.query_one("#answer-body", Static))
        assert "a * b" in plain(screen.query_one("#diff-body", Static))
        # a failing candidate that is not the chosen one cannot be applied
        assert screen.check_action("apply", ()) is None
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")


async def test_a_mutant_that_fixes_the_bug_is_shown_and_inspected_like_any_candidate(
        repo: Path, openai_server, docker_image):  # noqa: F811
    openai_server.script(BAD, BAD, BAD)
    # narrow: the greedy answer (BAD) fails, then the suspect line's one-token changes
    app = MulliganApp(repo, flags=flags(openai_server, schedule="narrow", mutants=40))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await run_to_end(pilot)
        chosen = app.view.finished.chosen
        assert chosen is not None and chosen.startswith("m")
        assert app.screen.selected == chosen
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen), "the inspector")
        assert "+    return a + b" in plain(app.screen.query_one("#diff-body", Static))
        await pilot.press("4")  # its "answer": which line changed how
        assert "return a - b  ->  return a + b" in plain(
            app.screen.query_one("#answer-body", Static))
        assert len(openai_server.chat_requests) == 1


async def test_apply_is_refused_when_the_tree_changed(repo: Path, openai_server,
                                                      docker_image):  # noqa: F811
    openai_server.script(BAD, GOOD)
    app = MulliganApp(repo, flags=flags(openai_server))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await run_to_end(pilot)
        assert app.view.finished.status is ResultStatus.SOLVED
        edited = CALC + "# a change made while the run was going\n"
        (repo / "calc.py").write_text(edited)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmApplyScreen), "the modal")
        await pilot.press("y")
        await wait_for(pilot, lambda: any(s == "error" for s, _ in app.notes), "a refusal")
        message = next(m for s, m in app.notes if s == "error")
        assert "changed since the run's snapshot" in message
        assert "Save it (w)" in message
        assert (repo / "calc.py").read_text() == edited
        assert app.applied == []


async def test_open_an_interrupted_run_and_resume_it(repo: Path, openai_server,
                                                     docker_image):  # noqa: F811
    openai_server.script(BAD, GOOD)
    first = MulliganApp(repo, flags=flags(openai_server))
    async with first.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await run_to_end(pilot)
        run_id = first.view.run_id
        trajectory = first.trajectory
    assert first.view.finished.status is ResultStatus.SOLVED and run_id
    requests = len(openai_server.chat_requests)

    # cut the trajectory as if the process had been killed while round 1 was tested
    lines = trajectory.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    cut = next(i for i, r in enumerate(records)
               if r["kind"] == "candidate" and r["state"] in ("passed", "failed"))
    trajectory.write_text("\n".join(lines[:cut]) + "\n")

    app = MulliganApp(repo, flags=flags(openai_server), open_run=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        await pilot.pause()
        assert app.view.phase is Phase.INTERRUPTED and app.view.run_id == run_id
        assert [c.label for c in app.view.ordered] == ["abandoned", "abandoned"]
        assert "interrupted" in plain(app.screen.query_one("#status", Static))
        assert app.screen.check_action("resume", ()) is True
        await pilot.press("r")
        await wait_for(pilot, lambda: app.view.attempts == 1 and app.view.live, "the resume")
        await run_to_end(pilot)
        assert app.view.finished.status is ResultStatus.SOLVED
        assert len(openai_server.chat_requests) == requests  # the recorded answers were reused
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmApplyScreen), "the modal")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.applied, "the patch to be applied")
        assert (repo / "calc.py").read_text() == CALC.replace("a - b", "a + b")


async def test_a_finished_run_opened_from_its_trajectory(repo: Path, openai_server,
                                                         docker_image):  # noqa: F811
    openai_server.script(BAD, GOOD)
    first = MulliganApp(repo, flags=flags(openai_server))
    async with first.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await run_to_end(pilot)
    app = MulliganApp(repo, open_run=str(first.trajectory))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.view.phase is Phase.FINISHED, "the recorded run")
        await pilot.pause()
        assert app.view.finished.chosen == "r1c2"
        assert app.screen.query_one(CandidateTable).row_count == 2
        # its snapshot is unknown, so applying asks to resume first; nothing is written
        await pilot.press("a")
        await wait_for(pilot, lambda: any(s == "error" for s, _ in app.notes), "a refusal")
        assert "resume it (r)" in app.notes[-1][1]
        assert (repo / "calc.py").read_text() == CALC

    # the same run, picked from the recent runs on the setup screen
    app = MulliganApp(repo, flags=flags(openai_server))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), "the run picker")
        assert [r[0] for r in app.screen.runs] == [first.view.run_id]
        assert app.screen.runs[0][1] == "solved"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.view.phase is Phase.FINISHED, "the picked run")
        assert isinstance(app.screen, RunScreen) and app.view.run_id == first.view.run_id


async def test_quit_while_running_cancels_the_run(repo: Path, openai_server,
                                                  docker_image):  # noqa: F811
    openai_server.script(stall(3.0, [BAD, GOOD]))
    app = MulliganApp(repo, flags=flags(openai_server))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.view.candidates, "round 1's candidates")
        thread = app._run_thread
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("n")  # not yet
        await pilot.pause()
        assert app.running and not isinstance(app.screen, ConfirmScreen)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: not thread.is_alive(), "the run to be cancelled", 60)
    assert not thread.is_alive()
    assert app.view.finished is None


# -- errors are screens that say how to fix them ---------------------------------------------


async def test_model_endpoint_down(repo: Path, docker_image):  # noqa: F811
    app = MulliganApp(repo, flags={"model": "test-model", "base_url": "http://127.0.0.1:9/v1",
                                   "image": IMAGE, "candidates": 1, "rounds": 1, "workers": 1})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), "the error screen")
        assert app.errors[-1].title == "The model endpoint is not answering"
        assert "127.0.0.1:9" in plain(app.screen.query_one("#error-message", Static))
        assert app.view.phase is Phase.ERROR
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        assert all(c.label == "abandoned" for c in app.view.candidates.values())
        # back to the setup screen to fix the endpoint
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen), "the setup screen")


async def test_docker_missing(repo: Path, openai_server, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{repo.parent}/no-docker.sock")
    app = MulliganApp(repo, flags=flags(openai_server))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), "the error screen",
                       timeout=60)
        assert app.errors[-1].title == "Docker is not available"
        assert any("systemctl start docker" in fix for fix in app.errors[-1].fixes)
    assert openai_server.chat_requests == []


async def test_no_tests_found(repo: Path, openai_server, docker_image):  # noqa: F811
    (repo / "tests" / "test_calc.py").unlink()
    git(repo, "-c", "user.email=dev@example.com", "-c", "user.name=dev", "commit", "-qam", "-")
    app = MulliganApp(repo, flags=flags(openai_server))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), "the error screen")
        assert app.errors[-1].title == "No tests to run"
        assert "--test-cmd" in " ".join(app.errors[-1].fixes)


async def test_outside_a_git_repository(tmp_path: Path):
    repo, problem = find_repo(tmp_path)
    assert repo is None and "not inside a git repository" in str(problem)
    app = MulliganApp(None, startup_error=problem)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, FatalErrorScreen), "the error")
        assert app.errors[-1].title == "Not a git repository"
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 2


async def test_invalid_budget_is_refused_on_the_setup_screen(repo: Path, openai_server):
    app = MulliganApp(repo, flags=flags(openai_server))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#in-candidates")
        await pilot.press("home", "ctrl+k", "9", "9")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, SetupScreen)
        assert any("candidates must be a whole number" in m for _, m in app.notes)
        assert not app.running


# -- the view model, on a recorded run (no Docker) -------------------------------------------


def test_reducer_on_a_recorded_run():
    view = replay(demo.demo_events())
    assert view.phase is Phase.FINISHED and view.solved
    assert view.run_id == demo.RUN_ID and view.test_cmd == demo.TEST_CMD
    assert view.baseline.targets == (demo.TWO, demo.ONE)
    assert [c.id for c in view.ordered] == ["r1c1", "r1c2", "r1c3", "r1c4",
                                            "r2c1", "r2c2", "r2c3", "r2c4"]
    assert [(r.number, r.done, r.total, r.passed) for r in view.rounds()] == [
        (1, 4, 4, 0), (2, 4, 4, 2)]
    assert view.chosen == "r2c1"
    assert view.candidate("r2c1").parent == "r1c3"
    assert view.children("r1c1") == [view.candidate("r2c3"), view.candidate("r2c4")]
    labels = {c.id: c.label for c in view.ordered}
    assert labels == {"r1c1": "failed", "r1c2": "format error", "r1c3": "failed",
                      "r1c4": "did not apply", "r2c1": "passed", "r2c2": "passed",
                      "r2c3": "failed", "r2c4": "edited tests"}
    # every answer went to its own candidate, revisions by their parent's conversation
    for cid, answer in demo.ANSWERS.items():
        assert view.candidate(cid).answer == answer, cid
    assert view.candidate("r2c3").messages[-2]["content"] == demo.ANSWERS["r1c1"]
    assert view.candidate("r2c1").purpose == "revise"
    assert view.prompt_tokens == 812 + 1011 * 2 and view.model_calls == 3
    assert view.elapsed(None) == pytest.approx(19.6)
    assert view.candidate("r1c3").failing_tests()[0]["nodeid"] == demo.EMPTY


def test_the_suspects_and_a_line_question_reach_the_view():
    suspect = {"path": "pkg/core.py", "function": "check", "line": 10, "end_line": 14,
               "score": 1.0, "signals": ["dynamic"]}
    line = {"path": "pkg/core.py", "line": 11, "function": "check", "score": 1.0,
            "text": "if label[1:3] == '--':"}
    view = reduce(RunView(), Localized([suspect], True, 2.0, [line]))
    assert view.suspects == ("pkg/core.py:10-14 check (dynamic)",)
    assert "  line pkg/core.py:11 if label[1:3] == '--':" in view.log
    view = reduce(view, CandidateUpdate("r2c1", 2, None, CandidateState.SAMPLING))
    asked = [{"role": "user", "content": "Line 11: ..."}]
    view = reduce(view, ModelCall("k", "line", asked, ["`if label[2:4] == '--':`"], ["stop"],
                                  50, 12, 0.0, 3.0))
    assert view.candidate("r2c1").answer == "`if label[2:4] == '--':`"  # a root candidate's
    assert view.candidate("r2c1").purpose == "line"


def test_a_model_answer_never_lands_on_a_mutant_announced_before_it():
    view = reduce(RunView(), CandidateUpdate("m3", 1, None, CandidateState.SAMPLING,
                                             edit_format="mutation"))
    view = reduce(view, CandidateUpdate("r1c2", 1, None, CandidateState.SAMPLING))
    asked = [{"role": "user", "content": "Fix the bug."}]
    view = reduce(view, ModelCall("k", "propose", asked, ["the answer"], ["stop"],
                                  50, 12, 0.0, 3.0))
    assert view.candidate("r1c2").answer == "the answer"
    assert view.candidate("m3").answer is None and view.candidate("m3").own


def test_reducer_while_running_and_after_an_error():
    view = RunView(phase=Phase.STARTING, started_at=100.0)
    for event in demo.mid_run_events():
        view = reduce(view, event, now=101.0)
    assert view.phase is Phase.RUNNING and view.live
    assert view.elapsed(142.0) == pytest.approx(42.0)
    assert [(r.done, r.total) for r in view.rounds()] == [(4, 4), (2, 4)]
    assert view.candidate("r2c1").state is CandidateState.TESTING
    assert view.chosen == "r1c3"  # the best so far
    assert replay(demo.mid_run_events()).phase is Phase.INTERRUPTED
    failed = reduce(view, RunError("cannot reach the model server"))
    assert failed.phase is Phase.ERROR
    assert failed.candidate("r2c1").label == "abandoned"
    assert failed.candidate("r2c2").label == "passed"
    assert view.candidate("r2c1").label == "testing…"  # the reducer never mutates


def test_a_resumed_trajectory_shows_the_last_attempt():
    events = demo.mid_run_events()
    started = next(e for e in events if isinstance(e, RunStarted))
    view = replay([*events, started, CandidateUpdate("r1c1", 1, None, CandidateState.SAMPLING)])
    assert view.attempts == 2
    assert list(view.candidates) == ["r1c1"] and view.baseline is None


def test_which_patch_apply_save_and_copy_use():
    view = replay(demo.demo_events())
    assert applicable(view, "r2c1").patch == demo.PATCHES["r2c1"]  # the chosen one
    assert applicable(view, "r2c2").patch == demo.PATCHES["r2c2"]  # any passing one
    refused = applicable(view, "r1c1")
    assert refused.patch is None and "only a passing or the chosen" in refused.why_not
    assert applicable(view, None).patch is None
    assert patch_of(view, "r1c1") == demo.PATCHES["r1c1"]  # can still be saved
    assert patch_of(view, "r1c2") is None  # a format error has no patch
    unsolved = reduce(replay(demo.mid_run_events()),
                      RunFinished(ResultStatus.UNSOLVED, "r1c3", demo.PATCHES["r1c3"], 1, 0.0, 3.0,
                                  "stopped by the user"))
    assert "does not pass" in applicable(unsolved, "r1c3").warning
    assert describe_changes(demo.PATCHES["r2c1"], ["calc.py"]) == [
        FileChange("calc.py", "modified", 1, 1)]
    added = ("diff --git a/new.py b/new.py\nnew file mode 100644\n--- /dev/null\n"
             "+++ b/new.py\n@@ -0,0 +1 @@\n+x = 1\n")
    assert describe_changes(added) == [FileChange("new.py", "added", 1, 0)]
    deleted = ("diff --git a/old.py b/old.py\ndeleted file mode 100644\n--- a/old.py\n"
               "+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n")
    assert describe_changes(deleted, ["old.py"]) == [FileChange("old.py", "deleted", 0, 1)]
    assert describe_changes("not a diff", ["a.py"]) == [FileChange("a.py", "modified", 0, 0)]


@pytest.mark.parametrize(("message", "kind", "title"), [
    ("the Docker daemon is not running (no socket at /var/run/docker.sock): start it",
     errors.DockerUnavailable, "Docker is not available"),
    ("cannot reach the model server at http://x/v1: connection refused — is it running?",
     errors.ModelUnavailable, "The model endpoint is not answering"),
    ("model 'gpt-9' is not available at http://x/v1 (it serves: a, b)", errors.ModelNotFound,
     "The endpoint does not serve this model"),
    ("no tests found by 'python -m pytest -q'", errors.NoTests, "No tests to run"),
    (("no model endpoint is configured: set OPENAI_BASE_URL/OPENAI_API_KEY or run `mulligan "
     "model setup` for the local model"), errors.NoModelEndpoint, "No model endpoint"),
    ("/tmp is not inside a git repository (run `git init` first)", errors.NotARepository,
     "Not a git repository"),
    ("no run 'x': no trajectory at /h/runs/x/trajectory.jsonl", errors.NoSuchRun,
     "No such run"),
    ("something odd", RuntimeError, "The run stopped with an error"),
    # by type, not by wording: a message that reads like another kind changes nothing
    ("invalid setting: the Docker daemon timed out", errors.ConfigError,
     "A setting is not valid"),
    ("the model server at http://x/v1 rejected the API key (HTTP 401)", errors.ModelAuthError,
     "The model endpoint rejected the API key"),
    ("the Docker daemon is not running", None, "The run stopped with an error"),
])
def test_errors_are_explained(message: str, kind: type[BaseException] | None, title: str):
    help = explain_error(message if kind is None else kind(message))
    assert help.title == title and help.message == message and help.fixes


async def test_demo_screens_render_without_a_run():
    app = MulliganApp(Path(demo.REPO), events=demo.demo_events())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen", 10)
        await pilot.pause()
        assert app.screen.selected == "r2c1"
        await pilot.press("ctrl+t")  # light theme
        await pilot.pause()
        assert not app.current_theme.dark
        assert app.screen.query_one(CandidateTable).row_count == 8
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, InspectScreen), "the inspector", 10)
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert app.screen.cid == "r2c2"


def test_the_cli_opens_the_tui(capsys: pytest.CaptureFixture[str]):
    from agent.frontends.cli import build_parser, cmd_tui, main

    args = build_parser().parse_args(["tui", "some/repo", "--run", "20250101-x", "--rounds", "2",
                                      "--base-url", "http://127.0.0.1:1/v1"])
    assert args.handler is cmd_tui
    assert (args.path, args.run, args.rounds, args.base_url) == (
        "some/repo", "20250101-x", 2, "http://127.0.0.1:1/v1")
    # plain `mulligan` opens the TUI only in a terminal; here (no tty) it prints the usage
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err
