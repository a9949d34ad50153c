"""Node ids from pytest's JUnit XML (sandbox/junit.py) are pytest's own, also for tests a
class inherits from a base in another module and for test folders that are not packages:
the baseline's targets, the second opinion's selection and the screening of mutants run
tests by these ids."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sandbox.junit import parse_junit

FILES = {
    # a package of tests whose base class lives in __init__.py (cachetools' layout)
    "tests/__init__.py": "class Base:\n    def test_shared(self):\n        assert self.value == 1\n",
    "tests/test_a.py": ("from tests import Base\n\n\nclass TestA(Base):\n    value = 1\n\n\n"
                        "class TestB(Base):\n    value = 2\n\n\ndef test_plain():\n    pass\n"),
    # a folder that is not a package: modules are named by their file alone
    "other/base_checks.py": "class Mixin:\n    def test_inherited(self):\n        pass\n",
    "other/test_d.py": ("from base_checks import Mixin\n\n\nclass TestD(Mixin):\n"
                        "    def test_own(self):\n        pass\n\n\ndef test_function():\n"
                        "    pass\n"),
}


def test_node_ids_match_pytest_for_inherited_tests_and_plain_folders(tmp_path: Path):
    for rel, text in FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    run = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests", "other"]
    collected = subprocess.run([*run, "--collect-only", "-q"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120, check=False)
    expected = {line for line in collected.stdout.splitlines() if "::" in line}
    assert len(expected) == 6, collected.stdout
    subprocess.run([*run, "-q", "--junitxml=out.xml", "-o", "junit_family=xunit1"],
                   cwd=tmp_path, env=env, capture_output=True, timeout=120, check=False)
    cases = parse_junit((tmp_path / "out.xml").read_text())
    assert set(cases) == expected
    assert not cases["tests/test_a.py::TestA::test_shared"].outcome.value == "failed"
    assert cases["tests/test_a.py::TestB::test_shared"].outcome.value == "failed"
