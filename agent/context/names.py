"""Path and name helpers shared by the context modules: test paths, module names, stopwords."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from agent.context.symbols import Symbol


def _normalize(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


_TEST_DIRS = {"test", "tests", "__tests__", "spec", "specs"}


def is_test_path(path: str) -> bool:
    """Whether `path` looks like a test file (tests/…, test_*.py, *_test.go, *.spec.ts, …)."""
    parts = _normalize(path).split("/")
    name = parts[-1]
    if any(part in _TEST_DIRS for part in parts[:-1]):
        return True
    stem = name.split(".", 1)[0]
    if name == "conftest.py" or stem in ("test", "tests"):
        return True
    if stem.startswith("test_") or stem.endswith(("_test", "_tests")):
        return True
    if ".test." in name or ".spec." in name:
        return True
    return bool(re.search(r"[a-z0-9]Tests?$", stem))  # FooTest.java


def _module_name(path: str) -> str:
    """pkg/sub/mod.py -> pkg.sub.mod; pkg/__init__.py -> pkg."""
    stem = os.path.splitext(_normalize(path))[0]
    return stem.removesuffix("/__init__").replace("/", ".")


def _module_matches(path: str, module: str) -> bool:
    name = _module_name(path)
    return name == module or name.endswith("." + module)


def _innermost(symbols: Sequence[Symbol], line: int) -> Symbol | None:
    best: Symbol | None = None
    for symbol in symbols:
        if symbol.line <= line <= symbol.end_line and (best is None or symbol.line >= best.line):
            best = symbol
    return best


def _short_decorator(text: str) -> str:
    """`@pytest.mark.parametrize("x", [1, 2, 3])` -> `@pytest.mark.parametrize(...)`."""
    if len(text) <= 32 or "(" not in text:
        return text
    return text.split("(", 1)[0] + "(...)"


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


_STOPWORDS = {
    "the", "and", "for", "with", "this", "that", "from", "when", "then", "than", "should",
    "would", "could", "error", "errors", "value", "values", "data", "test", "tests", "file",
    "files", "none", "true", "false", "self", "list", "dict", "type", "name", "line",
}  # fmt: skip
