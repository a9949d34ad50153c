"""What counts as a test file: the one rule the sandbox, the loop, the repo map and the hook share."""

from __future__ import annotations

import fnmatch
import shlex

TEST_PATTERNS = (
    "tests/*", "test/*", "*/tests/*", "*/test/*", "test_*.py", "*/test_*.py", "*_test.py",
    "conftest.py", "*/conftest.py",
)


def is_test_path(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in TEST_PATTERNS)


def uses_pytest(command: str) -> bool:
    return "pytest" in shlex.split(command) or "pytest" in command.split("-m ", 1)[-1][:6]
