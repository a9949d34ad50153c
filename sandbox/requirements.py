"""Which of a repository's requirement files and extras the dependency layer installs.

Real layouts keep several files (`requirements/tests.txt`, `requirements/dev.txt` that
includes `-r ../docs/requirements.txt`, `test-requirements.txt`, ...). The layer needs what
the tests need: test requirement files are preferred over development, docs, typing and
build files; without any, the plain `requirements*.txt` files; `-r`/`-c` includes are
followed (paths relative to the including file) and every file they reach is copied, so
pip finds them. Includes that point outside the repository or at a missing file are cut
from the copy, with a note. `explain_failure` turns pip's build log into one line naming
the requirement that failed.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

CANDIDATE_RE = re.compile(
    r"^(?:[^/]*requirements[^/]*\.txt|requirements/[^/]+\.txt|[^/]*requirements[^/]*/[^/]+\.txt)$",
    re.IGNORECASE)
TEST_WORDS = ("test", "tests", "testing", "ci")
OTHER_WORDS = ("dev", "develop", "development", "doc", "docs", "typing", "types", "mypy",
               "lint", "build", "release", "style", "benchmark", "bench", "examples")
TEST_EXTRAS = ("test", "tests", "testing")
FALLBACK_EXTRAS = ("dev",)  # used only where no test extra exists
INCLUDE_RE = re.compile(rb"^\s*(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S+)\s*$")
LOCAL_RE = re.compile(rb"^\s*(-e\s|--editable\s|\.|/|file:)")


@dataclass(frozen=True)
class RequirementPlan:
    """`roots`: the files to `pip install -r`, in order; `files`: every file to copy (roots
    and what they include), already cleaned; `notes`: what was left out, and why."""

    roots: tuple[str, ...]
    files: dict[str, bytes]
    notes: tuple[str, ...] = ()


def _words(path: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", path.lower())) - {"", "txt", "requirements"}


def choose_roots(paths: Iterable[str]) -> list[str]:
    """The requirement files to install: the test ones where any exist, else the ones that
    are not for development, docs, typing or builds (e.g. `requirements.txt`)."""
    found = sorted(p for p in paths if CANDIDATE_RE.match(p) and p.count("/") <= 1)
    tests = [p for p in found if _words(p) & set(TEST_WORDS)]
    plain = [p for p in found if not _words(p) & set(OTHER_WORDS) and p not in tests]
    root_plain = [p for p in plain if "/" not in p]
    # the project's own runtime requirements (requirements.txt) go with the test ones
    return root_plain + tests if tests else plain


def plan(paths: Iterable[str], read: Callable[[str], bytes | None]) -> RequirementPlan:
    """Follow the chosen roots' includes; `read(path)` gives a repository file or None."""
    known = set(paths)
    roots = choose_roots(known)
    files: dict[str, bytes] = {}
    notes: list[str] = []
    queue = list(roots)
    while queue:
        path = queue.pop(0)
        if path in files:
            continue
        data = read(path) if path in known else None
        if data is None:
            notes.append(f"{path}: not in the repository")
            continue
        kept: list[bytes] = []
        for line in data.splitlines(keepends=True):
            include = INCLUDE_RE.match(line)
            if include:
                target = posixpath.normpath(posixpath.join(posixpath.dirname(path),
                                                           include.group(2).decode()))
                if target.startswith("../") or target.startswith("/") or target not in known:
                    notes.append(f"{path}: left out `{line.decode().strip()}` "
                                 f"({target} is not in the repository)")
                    continue
                queue.append(target)
            elif LOCAL_RE.match(line):
                continue  # the project itself: it is imported from the workspace instead
            kept.append(line)
        files[path] = b"".join(kept)
    return RequirementPlan(tuple(r for r in roots if r in files), files, tuple(notes))


def pyproject_extras(extras: dict[str, list[str]]) -> list[str]:
    """The optional dependencies the tests need: the test extras, else the dev extra."""
    chosen = [name for name in TEST_EXTRAS if name in extras] or \
        [name for name in FALLBACK_EXTRAS if name in extras]
    return [req for name in chosen for req in (extras.get(name) or [])]


_PIP_ERROR_RE = re.compile(
    r"(ERROR: (?:Could not find a version that satisfies the requirement \S+|No matching "
    r"distribution found for \S+|Could not open requirements file: .*|Invalid requirement: .*"
    r"|Cannot install .*|Failed building wheel for \S+|.*))", re.MULTILINE)
_RUN_RE = re.compile(r"-r (\"[^\"]+\"|\S+)")


@dataclass
class BuildFailure:
    requirement_file: str | None = None
    error: str = ""
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = f" from {self.requirement_file}" if self.requirement_file else ""
        return f"installing{where} failed: {self.error or 'see the build log'}"


def explain_failure(log_lines: Iterable[str]) -> BuildFailure:
    """Which requirement file and which line failed, from a docker build log."""
    failure = BuildFailure()
    for line in log_lines:
        line = line.strip()
        if not line:
            continue
        failure.lines.append(line)
        if line.startswith("Step ") and "pip install" in line:
            found = _RUN_RE.search(line)
            failure.requirement_file = found.group(1).strip('"') if found else None
            failure.error = ""
        elif line.startswith("$ ") and "pip install" in line:  # sandbox/buildstep.py's steps
            words = line.split()
            failure.requirement_file = words[-1] if "-r" in words[-2:-1] else None
            failure.error = ""
        if "ERROR:" in line and not failure.error:
            match = _PIP_ERROR_RE.search(line)
            failure.error = match.group(1).strip() if match else line
    return failure
