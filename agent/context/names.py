"""Path and name helpers shared by the context modules: test paths, module names, stopwords."""

from __future__ import annotations

import os
from collections.abc import Sequence

from agent.context.symbols import Symbol
from sandbox.testpaths import is_test_path  # noqa: F401 - the one rule, used via this module


def _normalize(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


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
