"""The one test-path rule (sandbox/testpaths.py) and the static tamper review (sandbox/tamper.py)."""

from __future__ import annotations

import shlex

import pytest

from sandbox.tamper import review
from sandbox.testpaths import (
    infrastructure_edits,
    is_test_module,
    is_test_path,
    select_tests,
    shadowed_module,
    sole_source,
)


@pytest.mark.parametrize("path", [
    "tests/test_mod.py", "test/helpers.py", "testing/util.py", "pkg/tests/data.json",
    "test_x.py", "pkg/mod_test.py", "conftest.py", "deep/down/conftest.py", "app/tests.py",
    "pytest.ini", "tox.ini", "sitecustomize.py", "lib/usercustomize.py", "evil.pth",
    "x-1.0.dist-info/entry_points.txt", "web/app.spec.ts", "src/FooTest.java",
])
def test_test_paths(path):
    assert is_test_path(path)


@pytest.mark.parametrize("path", [
    "pkg/mod.py", "pkg/latest.py", "contest.py", "pkg/testing_utils.py", "setup.cfg",
    "pyproject.toml", "README.md",
])
def test_not_test_paths(path):
    assert not is_test_path(path)


def test_test_modules_are_what_pytest_collects():
    assert is_test_module("tests/test_a.py") and is_test_module("a_test.py")
    assert not is_test_module("tests/helpers.py") and not is_test_module("conftest.py")


def test_only_the_test_sections_of_pyproject_and_setup_cfg_count():
    old = '[project]\nname = "x"\nversion = "1"\n'
    version = infrastructure_edits({"pyproject.toml": old},
                         {"pyproject.toml": old.replace('"1"', '"2"')}, "pytest")
    assert version == []
    addopts = infrastructure_edits({"pyproject.toml": old},
                         {"pyproject.toml": old + '[tool.pytest.ini_options]\naddopts = "-p x"\n'},
                         "pytest")
    assert [e.path for e in addopts] == ["pyproject.toml"]
    assert "tool.pytest.ini_options" in addopts[0].reason
    cfg = "[metadata]\nname = x\n"
    assert infrastructure_edits({"setup.cfg": cfg}, {"setup.cfg": cfg + "version = 2\n"}, "pytest") == []
    assert infrastructure_edits({"setup.cfg": cfg}, {"setup.cfg": cfg + "[tool:pytest]\naddopts = -p x\n"},
                      "pytest")


def test_shadowing_new_modules_command_files_and_doctest_globs():
    edits = infrastructure_edits({}, {"pytest.py": "raise SystemExit(0)", "json/__init__.py": "",
                            "src/unittest.py": "", "calc_helpers.py": ""}, "pytest")
    assert {e.path for e in edits} == {"pytest.py", "json/__init__.py", "src/unittest.py"}
    assert shadowed_module("pkg/json.py") is None  # not top level: no shadowing
    script = infrastructure_edits({"check.sh": "pytest"}, {"check.sh": "exit 0"},
                        "./check.sh -q", {"check.sh"})
    assert [e.reason for e in script] == ["a file the test command runs"]
    docs = infrastructure_edits({"docs/usage.txt": ">>> 1\n1"}, {"docs/usage.txt": ">>> 1\n2"}, "pytest",
                      {"docs/usage.txt", "pytest.ini"},
                      {"pytest.ini": "[pytest]\naddopts = --doctest-glob=*.txt\n"})
    assert [e.path for e in docs] == ["docs/usage.txt"]


@pytest.mark.parametrize("code, reason", [
    ("import os\nos._exit(0)", "os._exit"),
    ("import os as o\no._exit(0)", "os._exit"),
    ("import sys\nsys.exit(0)", "sys.exit() at import"),
    ("raise SystemExit(0)", "SystemExit at import"),
    ("import atexit\natexit.register(print)", "atexit"),
    ("import _pytest.reports", "_pytest"),
    ("def pytest_runtest_makereport(item, call):\n    pass", "pytest hook"),
    ("import sys\nsys.modules['m'] = None", "sys.modules"),
    ("import sys\nsys.path.insert(0, '/tmp')", "sys.path"),
    ("import builtins\nbuiltins.len = None", "builtins"),
    ("m = __import__('o' + 's')", "computed module name"),
])
def test_tampering_that_the_patch_adds_is_flagged(code, reason):
    found = review({"m.py": "def f():\n    return 1\n"}, {"m.py": code + "\n\ndef f():\n    return 1\n"})
    assert any(reason in r for r in found), found


def test_honest_code_and_code_the_project_already_had_are_not_flagged():
    old = "import sys\n\n\ndef main():\n    sys.exit(run())\n\n\nsys.path.insert(0, '.')\n"
    new = old + "\n\ndef run():\n    return eval('1 + 1')\n"
    assert review({"cli.py": old}, {"cli.py": new}) == []
    assert review({}, {"tests/test_x.py": "import os\nos._exit(0)\n"}) == []  # a test edit


def test_sole_source_is_the_one_non_test_file_or_none():
    assert sole_source(["calc.py", "tests/test_calc.py", "conftest.py"]) == "calc.py"
    assert sole_source(["a.py", "b.py"]) is None
    assert sole_source(["tests/test_calc.py"]) is None


SELECTED = ["tests/test_a.py::test_one", "tests/sub/test_b.py::TestB::test_two"]


@pytest.mark.parametrize("command, expected", [
    # a path that holds every selected test is dropped: pytest would run all of it too
    ("python -m pytest -q tests", "python -m pytest -q"),
    ("pytest tests/ -x", "pytest -x"),
    ("pytest --rootdir=. .", "pytest --rootdir=."),
    ("python -m pytest -q", "python -m pytest -q"),
    # kept: an option's value, a path holding only some of them, a shell command, quoting
    ("python -m pytest -q -k tests tests", "python -m pytest -q -k tests tests"),
    ("python -m pytest -q tests/test_a.py", "python -m pytest -q tests/test_a.py"),
    ("python -m pytest -q tests other", "python -m pytest -q other"),
    ("cd src && pytest tests", "cd src && pytest tests"),
    ('python -m pytest "tests"', 'python -m pytest "tests"'),
])
def test_a_selection_narrows_the_command_only_where_that_is_safe(command, expected):
    ids = " ".join(shlex.quote(s) for s in SELECTED)
    assert select_tests(command, SELECTED) == f"{expected} {ids}"
    assert select_tests(command, []) == command
