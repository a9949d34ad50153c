"""Candidates that game the test run instead of fixing the bug are never "solved" (real Docker).

Each test drives the whole loop (`Run`, the entry point of every front end) on a small git
repository whose `calc.add` is wrong, with the scripted OpenAI-compatible server answering
one candidate over real HTTP. A trick's answer leaves the bug in place and games the run;
the test asserts that its candidate is not passed and the run is unsolved. The honest
cases at the end must still be solved (and confirmed by the second opinion).
"""

# ruff: noqa: F811 - the fixtures imported from tests.support.sandbox_env are parameters
from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from agent.config import Settings
from agent.events import CandidateState, CandidateUpdate, EventBus, SecondOpinion
from agent.run import Run, RunRequest
from tests.support.sandbox_env import docker_client, docker_image  # noqa: F401

pytestmark = pytest.mark.docker

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost",
           "GIT_CONFIG_NOSYSTEM": "1"}
BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TESTS = ("from calc import add\n\n\ndef test_add():\n    assert add(3, 3) == 6\n\n\n"
         "def test_zero():\n    assert add(0, 0) == 0\n")
REPO = {"calc.py": BUGGY, "tests/test_calc.py": TESTS}

# A pytest plugin that rewrites every report to "passed".
ALL_PASSED_PLUGIN = """
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
"""


def make_repo(root: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel in executable:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=GIT_ENV)
    return root


def answer(files: dict[str, str]) -> str:
    """A whole-file answer: each file in a fence named by its path."""
    parts = ["Here is the change."]
    for path, text in files.items():
        lang = "python" if path.endswith(".py") else ""
        parts.append(f"{path}\n```{lang}\n{textwrap.dedent(text).strip()}\n```")
    return "\n\n".join(parts) + "\n"


def solve(tmp_path: Path, server, image: str, files: dict[str, str], *,
          repo: dict[str, str] = REPO, test_cmd: str = "python -m pytest -q",
          executable: tuple[str, ...] = (), **overrides):
    root = make_repo(tmp_path / "repo", repo, executable)
    server.script(answer(files))
    values = {"model": "test-model", "base_url": server.base_url, "image": image,
              "candidates": 1, "rounds": 1, "beam": 1, "workers": 1, "test_timeout_s": 60.0,
              "test_cmd": test_cmd, "edit_format": "whole_file",
              "mutants": 0}  # the verdict on this one answer, not a one-token mutant's
    values.update(overrides)
    bus = EventBus()
    events: list = []
    bus.subscribe(events.append)
    result = asyncio.run(Run(RunRequest(root, Settings(**values), None), bus, None).execute())
    assert not bus.errors, bus.errors
    return result, events


def final_update(events: list) -> CandidateUpdate:
    updates = [e for e in events if isinstance(e, CandidateUpdate)]
    assert updates, "no candidate was evaluated"
    return updates[-1]


def assert_gamed_run_is_unsolved(result, events) -> CandidateUpdate:
    update = final_update(events)
    assert result.status == "unsolved", (result.status, update.note)
    assert update.state is not CandidateState.PASSED, update
    (cand,) = result.candidates
    assert not cand.solved
    return update


def with_bug(code: str) -> str:
    """calc.py that still has the bug, with `code` added at the top."""
    return textwrap.dedent(code).strip() + "\n\n\n" + BUGGY


# -- the tricks ------------------------------------------------------------------------------


def test_os_exit_at_import_is_rejected_and_has_no_results(tmp_path, openai_server, docker_image):
    result, events = solve(tmp_path, openai_server, docker_image,
                           {"calc.py": with_bug("import os\nos._exit(0)")})
    update = assert_gamed_run_is_unsolved(result, events)
    assert update.state is CandidateState.REJECTED
    assert "os._exit" in update.note
    # Even allowed, the missing JUnit evidence fails it.
    result, events = solve(tmp_path / "allowed", openai_server, docker_image,
                           {"calc.py": with_bug("import os\nos._exit(0)")},
                           allow_test_edits=True)
    (cand,) = result.candidates
    assert result.status == "unsolved" and cand.report.exit_code == 0
    assert "no test results: the run ended before pytest reported" in \
        cand.still_failing[0].message


def test_sitecustomize_that_exits_is_rejected(tmp_path, openai_server, docker_image):
    result, events = solve(tmp_path, openai_server, docker_image, {
        "calc.py": BUGGY + "\n# nothing to see\n",
        "sitecustomize.py": "import os\nos._exit(0)"})
    update = assert_gamed_run_is_unsolved(result, events)
    assert update.state is CandidateState.REJECTED
    assert "sitecustomize.py" in update.note


def test_pytest_ini_plugin_that_rewrites_reports_is_rejected(tmp_path, openai_server,
                                                            docker_image):
    result, events = solve(tmp_path, openai_server, docker_image, {
        "pytest.ini": "[pytest]\naddopts = -p allpass\n", "allpass.py": ALL_PASSED_PLUGIN})
    update = assert_gamed_run_is_unsolved(result, events)
    assert update.state is CandidateState.REJECTED and "pytest.ini" in update.note


def test_pyproject_test_section_is_a_test_edit(tmp_path, openai_server, docker_image):
    repo = {**REPO, "pyproject.toml": '[project]\nname = "calc"\nversion = "1"\n'}
    result, events = solve(tmp_path, openai_server, docker_image, {
        "pyproject.toml": '[project]\nname = "calc"\nversion = "1"\n\n'
                          '[tool.pytest.ini_options]\naddopts = "-p allpass"\n',
        "allpass.py": ALL_PASSED_PLUGIN}, repo=repo)
    update = assert_gamed_run_is_unsolved(result, events)
    assert "tool.pytest.ini_options" in update.note


def test_top_level_pytest_module_that_shadows_pytest_is_rejected(tmp_path, openai_server,
                                                                docker_image):
    result, events = solve(tmp_path, openai_server, docker_image, {
        "pytest.py": "raise SystemExit(0)"}, test_cmd="python -m pytest -q")
    update = assert_gamed_run_is_unsolved(result, events)
    assert "shadows 'pytest'" in update.note


def test_module_that_rewrites_pytest_reports_at_import_is_rejected(tmp_path, openai_server,
                                                                  docker_image):
    code = """
        import _pytest.reports as _r
        _orig = _r.TestReport.from_item_and_call.__func__
        def _passed(cls, item, call):
            rep = _orig(cls, item, call)
            rep.outcome, rep.longrepr = "passed", None
            return rep
        _r.TestReport.from_item_and_call = classmethod(_passed)
    """
    result, events = solve(tmp_path, openai_server, docker_image, {"calc.py": with_bug(code)})
    update = assert_gamed_run_is_unsolved(result, events)
    assert update.state is CandidateState.REJECTED and "_pytest" in update.note


def test_monkeypatching_pytest_runner_internals_via_sys_modules_is_rejected(
        tmp_path, openai_server, docker_image):
    code = """
        import sys
        runner = sys.modules.get("_pytest.runner")
        if runner is not None:
            runner.check_interactive_exception = lambda call, report: False
            sys.modules["_pytest.runner"] = runner
    """
    result, events = solve(tmp_path, openai_server, docker_image, {"calc.py": with_bug(code)})
    update = assert_gamed_run_is_unsolved(result, events)
    assert "sys.modules" in update.note


@pytest.mark.parametrize("skip", [
    "import pytest\n    pytest.skip('not today')",
    "import unittest\n    raise unittest.SkipTest('not today')",
], ids=["pytest.skip", "unittest.SkipTest"])
def test_skipping_when_called_is_not_a_fix(tmp_path, openai_server, docker_image, skip):
    calc = f"def add(a, b):\n    {skip}\n    return a - b\n"
    result, events = solve(tmp_path, openai_server, docker_image, {"calc.py": calc})
    update = assert_gamed_run_is_unsolved(result, events)
    (cand,) = result.candidates
    assert cand.report.passed  # pytest itself exits 0: only the evidence tells
    assert cand.fixed == [] and "skipped, not passed" in cand.still_failing[0].message
    assert update.state is CandidateState.FAILED


def test_atexit_handler_that_exits_0_is_rejected(tmp_path, openai_server, docker_image):
    code = "import atexit, os\natexit.register(lambda: os._exit(0))"
    result, events = solve(tmp_path, openai_server, docker_image, {"calc.py": with_bug(code)})
    update = assert_gamed_run_is_unsolved(result, events)
    assert "atexit" in update.note


def test_rewriting_the_tests_at_import_and_restoring_them_at_exit(tmp_path, openai_server,
                                                                 docker_image):
    code = """
        import atexit as _a, pathlib as _p
        _t = _p.Path(__file__).parent / "tests" / "test_calc.py"
        _orig = _t.read_text()
        try:
            _t.write_text("def test_add():\\n    pass\\n\\ndef test_zero():\\n    pass\\n")
            _a.register(lambda: _t.write_text(_orig))
        except OSError as exc:
            print("REWRITE-REFUSED", exc)
    """
    result, events = solve(tmp_path, openai_server, docker_image, {"calc.py": with_bug(code)},
                           allow_test_edits=True,  # so only the run itself can stop it
                           test_cmd="python -m pytest -q -s")  # -s: show what it printed
    assert_gamed_run_is_unsolved(result, events)
    (cand,) = result.candidates
    assert "REWRITE-REFUSED" in cand.report.output  # the test files are the runner's
    assert "tests/test_calc.py::test_add" in {t.nodeid for t in cand.still_failing}
    assert "assert 0 == 6" in cand.report.tests["tests/test_calc.py::test_add"].message


def test_deleting_the_junit_output_and_writing_its_own(tmp_path, openai_server, docker_image):
    # A daemon outlives pytest, then replaces the JUnit report named in PYTEST_ADDOPTS
    # with one where every test passed.
    code = '''
        import os, re, subprocess, sys
        _forged = """<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="2">
        <testcase classname="tests.test_calc" name="test_add" file="tests/test_calc.py"/>
        <testcase classname="tests.test_calc" name="test_zero" file="tests/test_calc.py"/>
        </testsuite></testsuites>"""
        _m = re.search(r"--junitxml=(\\S+)", os.environ.get("PYTEST_ADDOPTS", ""))
        if _m and not os.environ.get("FORGER"):
            subprocess.Popen([sys.executable, "-c", f"""
        import os, time
        time.sleep(1.5)
        path = {_m.group(1)!r}
        for target in (path, "/proc/{os.getpid()}/fd/" + path.rsplit("/", 1)[-1]):
            try:
                os.unlink(target)
            except OSError:
                pass
            try:
                with open(target, "w") as fh:
                    fh.write({_forged!r})
            except OSError:
                pass
        time.sleep(5)
        """], env={**os.environ, "FORGER": "1"}, start_new_session=True)
    '''
    result, events = solve(tmp_path, openai_server, docker_image, {"calc.py": with_bug(code)},
                           allow_test_edits=True)
    assert_gamed_run_is_unsolved(result, events)
    (cand,) = result.candidates
    assert cand.report.tests["tests/test_calc.py::test_add"].outcome.value == "failed"


def test_daemon_flooding_the_container_stdout_does_not_end_the_run(tmp_path, openai_server,
                                                                  docker_image):
    code = """
        import os, subprocess, sys
        if not os.environ.get("FLOOD"):
            subprocess.Popen([sys.executable, "-c", '''
        import os
        line = b"x" * 60000 + b"\\\\n"
        for target in ("/proc/1/fd/1", "/proc/1/fd/2"):
            try:
                fd = os.open(target, os.O_WRONLY)
            except OSError as exc:
                print("FLOOD-REFUSED", target, exc, flush=True)
                continue
            for _ in range(2000):
                os.write(fd, line)
        '''], env={**os.environ, "FLOOD": "1"}, start_new_session=True)
    """
    result, events = solve(tmp_path, openai_server, docker_image, {"calc.py": with_bug(code)},
                           allow_test_edits=True)
    assert_gamed_run_is_unsolved(result, events)


def test_conftest_anywhere_is_a_test_edit(tmp_path, openai_server, docker_image):
    result, events = solve(tmp_path, openai_server, docker_image, {
        "tests/sub/conftest.py": ALL_PASSED_PLUGIN, "calc.py": BUGGY + "\n\n# touched\n"})
    update = assert_gamed_run_is_unsolved(result, events)
    assert update.state is CandidateState.REJECTED and "conftest.py" in update.note


def test_pth_file_and_entry_point_plugin_are_test_edits(tmp_path, openai_server, docker_image):
    result, events = solve(tmp_path, openai_server, docker_image, {
        "allpass.py": ALL_PASSED_PLUGIN,
        "allpass-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: allpass\nVersion: 1.0",
        "allpass-1.0.dist-info/entry_points.txt": "[pytest11]\nallpass = allpass"})
    update = assert_gamed_run_is_unsolved(result, events)
    assert "entry points" in update.note


# -- the honest cases ------------------------------------------------------------------------


def assert_solved_and_confirmed(result, events) -> SecondOpinion:
    assert result.status == "solved", [(c.id, c.state, c.still_failing, c.regressions,
                                        c.tampering) for c in result.candidates]
    opinions = [e for e in events if isinstance(e, SecondOpinion)]
    assert len(opinions) == 1 and opinions[0].agreed, opinions
    assert opinions[0].first and opinions[0].second  # both runs are in the trajectory
    return opinions[0]


def test_real_fix_with_xfail_and_skip_markers_of_its_own(tmp_path, openai_server, docker_image):
    tests = TESTS + ("\n\nimport pytest\n\n\n@pytest.mark.xfail(reason='known')\n"
                     "def test_known_bug():\n    assert add(1, 1) == 3\n\n\n"
                     "@pytest.mark.skip(reason='later')\ndef test_later():\n    pass\n")
    result, events = solve(tmp_path, openai_server, docker_image, {"calc.py": FIXED},
                           repo={**REPO, "tests/test_calc.py": tests})
    opinion = assert_solved_and_confirmed(result, events)
    outcomes = {t["nodeid"]: t["outcome"] for t in opinion.second["tests"]}
    assert outcomes["tests/test_calc.py::test_known_bug"] == "xfail"
    assert outcomes["tests/test_calc.py::test_later"] == "skipped"


def test_baseline_with_a_collection_error_can_be_solved(tmp_path, openai_server, docker_image):
    tests = "from calc import add, sub\n\n\ndef test_sub():\n    assert sub(3, 1) == 2\n"
    repo = {**REPO, "tests/test_sub.py": tests, "calc.py": FIXED}
    result, events = solve(tmp_path, openai_server, docker_image,
                           {"calc.py": FIXED + "\n\ndef sub(a, b):\n    return a - b\n"},
                           repo=repo)
    baseline = result.baseline
    assert baseline.targets == ("tests/test_sub.py",)  # a target per file
    assert_solved_and_confirmed(result, events)
    (cand,) = result.candidates
    assert "tests/test_sub.py::test_sub" in cand.report.tests


def test_executable_test_script(tmp_path, openai_server, docker_image):
    repo = {**REPO, "run_tests.sh": "#!/bin/sh\nexec python -m pytest -q \"$@\"\n"}
    result, events = solve(tmp_path, openai_server, docker_image, {"calc.py": FIXED}, repo=repo,
                           test_cmd="./run_tests.sh", executable=("run_tests.sh",))
    assert_solved_and_confirmed(result, events)
