"""What the hook tests: its own `hook_*` settings, the paths being committed, and the
related tests of those paths."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError
from agent.frontends.hook_git import _git
from sandbox.testpaths import CONFIG_FILES, is_test_module

if TYPE_CHECKING:
    from agent.config import Settings

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# A change to test infrastructure other than a test module can affect every test.
FULL_SUITE_FILES = CONFIG_FILES


@dataclass(frozen=True)
class HookConfig:
    tests: str = "all"  # all | related
    mode: str = "blocking"  # blocking | advisory
    candidates: int = 2
    rounds: int = 2


HOOK_CHOICES = {"tests": ("all", "related"), "mode": ("blocking", "advisory")}
HOOK_RANGES = {"candidates": (1, 16), "rounds": (1, 5)}


def hook_config(values: Mapping[str, Any]) -> HookConfig:
    """From the `hook_*` keys of `[tool.mulligan]` / .mulligan.toml (prefix removed)."""
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key in HOOK_CHOICES:
            if value not in HOOK_CHOICES[key]:
                raise ConfigError(f"invalid setting hook_{key}: one of "
                                  f"{', '.join(map(repr, HOOK_CHOICES[key]))}, not {value!r}")
        elif key in HOOK_RANGES:
            low, high = HOOK_RANGES[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"invalid setting hook_{key}: an integer from {low} to "
                                  f"{high}, not {value!r}")
        else:
            raise ConfigError(f"unknown setting hook_{key}")
        checked[key] = value
    return HookConfig(**checked)


def load_config(repo: Path, environ: Mapping[str, str] | None = None
                ) -> tuple[Settings, HookConfig]:
    """The run settings and the hook's own (the `hook_*` keys of the same tables)."""
    from agent.config import file_settings, load_settings

    values = file_settings(repo)
    hook = hook_config({k[len("hook_"):]: v for k, v in values.items() if k.startswith("hook_")})
    environ = dict(environ) if environ is not None else None
    return load_settings(repo, environ=environ), hook


# -- what is being committed ---------------------------------------------------------------


def staged_paths(top: Path, env: Mapping[str, str]) -> list[str]:
    """Paths the commit changes (added, modified or deleted) against HEAD."""
    command = ["diff-index", "--cached", "--name-only", "-z", "--no-renames"]
    proc = _git([*command, "HEAD"], top, env, check=False)
    if proc.returncode != 0:  # no commit yet: everything staged is new
        proc = _git([*command, EMPTY_TREE], top, env)
    return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def related_tests(changed: Iterable[str], paths: Iterable[str]) -> list[str]:
    """The test files to run for the staged `changed` paths, among `paths`: staged test files,
    and for a staged `m.py` (or package `m/__init__.py`) every `test_m.py` / `m_test.py`.
    Empty when none is found or a conftest.py / pytest.ini changed: run the full suite."""
    present = set(paths)
    by_name: dict[str, list[str]] = {}
    for path in present:
        name = posixpath.basename(path)
        if is_test_module(name):
            by_name.setdefault(name, []).append(path)
    selected: set[str] = set()
    for path in changed:
        name = posixpath.basename(path)
        if name in FULL_SUITE_FILES:
            return []
        if not name.endswith(".py"):
            continue
        if is_test_module(name):
            if path in present:
                selected.add(path)
            continue
        stem = name[:-3]
        if stem == "__init__":
            stem = posixpath.basename(posixpath.dirname(path))
        for test_name in (f"test_{stem}.py", f"{stem}_test.py"):
            selected.update(by_name.get(test_name, ()))
    return sorted(selected)


def select_tests(settings: Settings, config: HookConfig, changed: Iterable[str],
                 paths: Iterable[str]) -> tuple[str, str]:
    """The command the hook runs, and a few words on what it covers."""
    from sandbox.testpaths import uses_pytest

    if config.tests != "related":
        return settings.test_cmd, "the full suite"
    if not uses_pytest(settings.test_cmd):
        return settings.test_cmd, "the full suite: related tests need pytest"
    tests = related_tests(changed, paths)
    if not tests:
        return settings.test_cmd, "the full suite: no related tests found"
    return (settings.test_cmd + " " + " ".join(shlex.quote(t) for t in tests),
            f"related tests: {', '.join(tests)}")
