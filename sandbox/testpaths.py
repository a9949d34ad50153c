"""What counts as a test file: the one rule the sandbox, the loop, the repo map and the hook share.

"Test" here means everything that decides how the tests run, not only the test modules: a
candidate that edits any of it could make a failing fix look verified. By name alone
(`is_test_path`): test modules and test directories of the common layouts, `conftest.py`
anywhere, pytest/tox/nose config files, `sitecustomize`/`usercustomize`/`*.pth` (imported by
every Python start), and installed-distribution metadata (entry points load pytest plugins).
By content (`infrastructure_edits`): the test sections of `pyproject.toml` and `setup.cfg`,
doctest files named by the configuration, the test command's own files, and new top-level modules
that would shadow the standard library, pytest or its usual plugins.
"""

from __future__ import annotations

import configparser
import fnmatch
import posixpath
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

TEST_DIRS = frozenset({"test", "tests", "testing", "__tests__", "spec", "specs"})
# Files that configure the test run as a whole.
CONFIG_FILES = frozenset({"pytest.ini", ".pytest.ini", "tox.ini", "noxfile.py", "conftest.py",
                          "sitecustomize.py", "usercustomize.py", ".coveragerc", "nose.cfg",
                          "setup.cfg", "pyproject.toml"})
# Of CONFIG_FILES, these two mostly hold other things: only their test sections count.
SECTIONED = frozenset({"setup.cfg", "pyproject.toml"})
SETUP_CFG_SECTIONS = ("tool:pytest", "pytest", "coverage:", "nosetests", "tox", "testenv")
PYPROJECT_SECTIONS = ("tool.pytest", "tool.coverage", "tool.tox", "tool.hatch.envs")
# Names of the test runner and its usual companions, which a new top-level module must not take.
TEST_DEPENDENCIES = frozenset({
    "pytest", "_pytest", "py", "pluggy", "iniconfig", "packaging", "attr", "attrs",
    "exceptiongroup", "tomli", "tomllib", "more_itertools", "zipp", "importlib_metadata",
    "typing_extensions", "mock", "hypothesis", "coverage", "xdist", "execnet", "nose",
    "unittest2", "tox", "nox", "setuptools", "pkg_resources", "_distutils_hack", "pip",
})
# Shell words that run a file given next to them (`bash run_tests.sh`, `make test`).
_RUNNERS = {"make": "Makefile", "tox": "tox.ini", "nox": "noxfile.py"}

# Glob patterns the in-container runner uses to notice test files created at run time.
TEST_PATTERNS = (
    "tests/*", "test/*", "testing/*", "*/tests/*", "*/test/*", "*/testing/*", "test_*.py",
    "*/test_*.py", "*_test.py", "tests.py", "*/tests.py", "conftest.py", "*/conftest.py",
    "pytest.ini", "tox.ini", "sitecustomize.py", "*/sitecustomize.py", "usercustomize.py",
    "*/usercustomize.py", "*.pth", "*.dist-info/*", "*.egg-info/*",
)


def is_test_path(path: str) -> bool:
    """Whether `path` is a test file or test infrastructure, judged by its name alone."""
    parts = posixpath.normpath(path.replace("\\", "/")).lstrip("./").split("/")
    name = parts[-1]
    if any(part in TEST_DIRS for part in parts[:-1]):
        return True
    if any(part.endswith((".dist-info", ".egg-info")) for part in parts[:-1]):
        return True
    if name in CONFIG_FILES and name not in SECTIONED:
        return True
    if name.endswith(".pth"):
        return True
    stem = name.split(".", 1)[0]
    if stem in ("test", "tests"):  # Django's tests.py, a test.sh next to the code
        return True
    if stem.startswith("test_") or stem.endswith(("_test", "_tests")):
        return True
    if ".test." in name or ".spec." in name:
        return True
    return bool(re.search(r"[a-z0-9]Tests?$", stem))  # FooTest.java


def sole_source(paths: Iterable[str]) -> str | None:
    """The one file of `paths` that is not a test file, or None when there are none or
    several (an answer that names no file edits the one source its prompt showed)."""
    sources = [p for p in paths if not is_test_path(p)]
    return sources[0] if len(sources) == 1 else None


def is_test_module(path: str) -> bool:
    """Whether pytest collects `path` as a test module by default (test_*.py, *_test.py)."""
    name = posixpath.basename(path)
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def uses_pytest(command: str) -> bool:
    return "pytest" in shlex.split(command) or "pytest" in command.split("-m ", 1)[-1][:6]


# pytest flags that take no value: a path after one of them is a path, not its value.
_PYTEST_SWITCHES = frozenset({"-q", "-qq", "-v", "-vv", "-x", "-s", "-l", "--quiet",
                              "--verbose", "--exitfirst", "--showlocals", "--strict-markers",
                              "--no-header", "--no-summary", "-ra", "-rA"})


def select_tests(command: str, select: Sequence[str]) -> str:
    """`command` running only the node ids `select`. pytest runs the union of its
    arguments, so a path already in the command (`pytest -q tests`) that holds every
    selected test is dropped; anything else (a value of an option, a shell command,
    paths that hold only some of the tests) is kept, and the run is a superset."""
    if not select:
        return command
    words = command.split()
    try:
        if shlex.split(command) != words:
            words = []  # quoting or escapes: not a simple command, leave it whole
    except ValueError:
        words = []
    if any(w in ("&&", "||", ";", "|") or w.startswith(("$", "`")) for w in words):
        words = []
    ids = " ".join(shlex.quote(s) for s in select)
    entry = next((i for i, w in enumerate(words) if posixpath.basename(w) == "pytest"), None)
    if entry is None:
        return f"{command} {ids}"
    files = {s.split("::", 1)[0] for s in select}
    kept = words[:entry + 1]
    for word in words[entry + 1:]:
        path = posixpath.normpath(word.rstrip("/"))
        holds_all = not word.startswith("-") and all(
            f == path or f.startswith(path + "/") or path == "." for f in files)
        after_switch = kept[-1] in _PYTEST_SWITCHES or \
            kept[-1].startswith("-") and "=" in kept[-1]  # `--rootdir=.`: self-contained
        if holds_all and (after_switch or len(kept) == entry + 1):
            continue  # the selection narrows this path: drop it
        kept.append(word)
    return f"{' '.join(kept)} {ids}"


@dataclass(frozen=True)
class InfraEdit:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


def command_files(command: str, paths: set[str]) -> set[str]:
    """The repository files the test command itself runs or reads (./run_tests.sh, Makefile)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    found = set()
    for word in words:
        if word in _RUNNERS and _RUNNERS[word] in paths:
            found.add(_RUNNERS[word])
        for candidate in (word, word.split("=", 1)[-1]):
            norm = posixpath.normpath(candidate).lstrip("/") if candidate else ""
            norm = norm.removeprefix("./")
            if norm in paths and not norm.endswith("/"):
                found.add(norm)
    return found


def doctest_globs(files: Mapping[str, str]) -> list[str]:
    """The `--doctest-glob` patterns the repository's pytest configuration names."""
    globs = []
    for name in ("pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml"):
        text = files.get(name) or ""
        globs += re.findall(r"--doctest-glob[= ]['\"]?([^\s'\"\]]+)", text)
    return globs


def infrastructure_edits(before: Mapping[str, str | None], after: Mapping[str, str | None],
                         command: str, all_paths: set[str] | None = None,
                         config: Mapping[str, str] | None = None) -> list[InfraEdit]:
    """The test edits among the changed files: `before`/`after` map each changed path to its
    text (None: absent); `all_paths` is every path of the tree before the change and
    `config` the texts of its config files (for doctest globs)."""
    paths = set(all_paths or ()) | {p for p, t in before.items() if t is not None}
    own = command_files(command, paths | {p for p, t in after.items() if t is not None})
    globs = doctest_globs(config or {})
    edits = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        name = posixpath.basename(path)
        reason = None
        if name in SECTIONED and "/" not in path:
            changed = _changed_test_sections(name, old or "", new or "")
            if changed:
                reason = f"changes the test configuration [{', '.join(changed)}]"
        elif is_test_path(path):
            reason = _name_reason(path, old, new)
        elif path in own:
            reason = "a file the test command runs"
        elif any(fnmatch.fnmatch(path, g) or fnmatch.fnmatch(name, g) for g in globs):
            reason = "a doctest file named by the pytest configuration"
        elif old is None and (shadow := shadowed_module(path)):
            reason = f"a new top-level module that shadows {shadow!r}"
        if reason:
            edits.append(InfraEdit(path, reason))
    return edits


def _name_reason(path: str, old: str | None, new: str | None) -> str:
    name = posixpath.basename(path)
    verb = "adds" if old is None else "deletes" if new is None else "edits"
    if name in ("sitecustomize.py", "usercustomize.py") or name.endswith(".pth"):
        return f"{verb} a file every Python start imports"
    if ".dist-info/" in path or ".egg-info/" in path:
        return f"{verb} package metadata (entry points load pytest plugins)"
    if name in CONFIG_FILES:
        return f"{verb} test configuration"
    return f"{verb} a test file"


def shadowed_module(path: str) -> str | None:
    """The stdlib or test-runner module a new top-level `path` would shadow, if any (top
    level of the workspace or of src/, both on the test run's PYTHONPATH)."""
    parts = path.split("/")
    if parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    if len(parts) == 1 and parts[0].endswith(".py"):
        module = parts[0][:-3]
    elif len(parts) == 2 and parts[1] == "__init__.py":
        module = parts[0]
    elif len(parts) == 1 and parts[0].endswith((".so", ".pyc")):
        module = parts[0].split(".", 1)[0]
    else:
        return None
    if module in sys.stdlib_module_names or module in TEST_DEPENDENCIES:
        return module
    if module.startswith(("pytest_", "_pytest")):
        return module
    return None


def _changed_test_sections(name: str, old: str, new: str) -> list[str]:
    """The test-related sections whose content differs between two versions of the file;
    a file that no longer parses counts as changing all of them."""
    parse = _ini_sections if name == "setup.cfg" else _toml_sections
    prefixes = SETUP_CFG_SECTIONS if name == "setup.cfg" else PYPROJECT_SECTIONS
    a, b = parse(old), parse(new)
    if a is None or b is None:
        return ["unparsable"]
    return sorted(s for s in set(a) | set(b) if s.startswith(prefixes) and a.get(s) != b.get(s))


def _ini_sections(text: str) -> dict[str, object] | None:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return {s: dict(parser.items(s)) for s in parser.sections()}


def _toml_sections(text: str) -> dict[str, object] | None:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    flat: dict[str, object] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            flat[prefix] = {k: v for k, v in node.items() if not isinstance(v, dict)}
            for key, value in node.items():
                if isinstance(value, dict):
                    walk(f"{prefix}.{key}" if prefix else key, value)

    walk("", data)
    return flat
