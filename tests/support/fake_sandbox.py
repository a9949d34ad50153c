"""An in-process Sandbox for unit tests: a Job in, a TestReport out, in milliseconds.

`FakeSandbox` applies the job's patch to the snapshot's files in memory (a strict unified-diff
applier: a hunk whose context does not match is a PATCH_FAILED report, as `git apply` gives)
and decides each test with the rule you give it: a predicate over the patched files. A test
is reported only while its file exists, so a test file a patch adds (a reproduction test)
brings its tests with it. `MemorySnapshot` is a Snapshot held in a dict, for tests that do
not need git at all; FakeSandbox works on a real `sandbox.snapshot.Snapshot` too.

It satisfies `agent.protocols.Sandbox`: run, prewarm and close, each recorded for asserts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from agent.context.localize import TRACE_MARKER
from sandbox.api import Job, Limits, Outcome, RunStatus, TestCase, TestReport
from sandbox.snapshot import PatchDoesNotApply
from sandbox.testpaths import is_test_path

Files = dict[str, str]
# A test's rule: True passes, False fails, a string fails with that message; raising
# fails with the exception as the message (like an assertion in a real test).
Check = Callable[[Files], "bool | str"]
# What each test executes: node id -> (path, line) pairs.
Lines = Mapping[str, Sequence[tuple[str, int]]]


def apply_patch(files: Mapping[str, str], patch: str) -> Files:
    """`files` with the git-style unified diff `patch` applied; raises PatchDoesNotApply."""
    out = dict(files)
    if not patch.strip():
        return out
    try:
        patched = PatchSet(patch)
    except UnidiffParseError as exc:
        raise PatchDoesNotApply(f"corrupt patch: {exc}") from None
    for pf in patched:
        path = pf.path
        if pf.is_removed_file:
            if out.pop(path, None) is None:
                raise PatchDoesNotApply(f"{path}: does not exist in index")
            continue
        if pf.is_added_file:
            if path in out:
                raise PatchDoesNotApply(f"{path}: already exists in working directory")
            old: list[str] = []
        elif path not in out:
            raise PatchDoesNotApply(f"{path}: does not exist in index")
        else:
            old = out[path].splitlines(keepends=True)
        new: list[str] = []
        pos = 0
        for hunk in pf:
            start = hunk.source_start - 1 if hunk.source_length else hunk.source_start
            if start < pos or start > len(old):
                raise PatchDoesNotApply(f"{path}: patch does not apply")
            new += old[pos:start]
            pos = start
            last = ""
            for line in hunk:
                kind = line.line_type
                if kind == "\\":  # "\ No newline at end of file" for the line before it
                    if last in (" ", "+") and new:
                        new[-1] = new[-1].removesuffix("\n")
                    continue
                if kind in (" ", "-"):
                    if pos >= len(old) or old[pos].rstrip("\n") != line.value.rstrip("\n"):
                        raise PatchDoesNotApply(f"{path}: patch does not apply")
                    if kind == " ":
                        new.append(old[pos])
                    pos += 1
                elif kind == "+":
                    new.append(line.value)
                last = kind
        new += old[pos:]
        out[path] = "".join(new)
    return out


def python_check(module: str, expression: str) -> Check:
    """A rule that runs `module`'s source (a path in the files) and evaluates `expression`
    in its namespace: the test passes when it is true. Scripted code only (tests' own)."""

    def check(files: Files) -> bool | str:
        namespace: dict[str, object] = {"__name__": module.removesuffix(".py")}
        exec(compile(files[module], module, "exec"), namespace)  # noqa: S102 - scripted test code only
        return bool(eval(expression, namespace)) or f"assert {expression}"

    return check


def contains(path: str, text: str) -> Check:
    """A rule: the file at `path` contains `text`."""
    return lambda files: text in files.get(path, "") or f"{path} lacks {text!r}"


class MemorySnapshot:
    """The part of `sandbox.snapshot.Snapshot` the loop uses, held in memory: trees are
    content hashes of file dicts."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self._trees: dict[str, Files] = {}
        self.tree = self._store(dict(files))
        self.closed = False

    def _store(self, files: Files) -> str:
        key = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
        self._trees[key] = files
        return key

    def text_files(self, tree: str | None = None) -> Files:
        return dict(self._trees[tree or self.tree])

    def apply(self, patch: str) -> str:
        return self._store(apply_patch(self._trees[self.tree], patch))

    def with_tree(self, tree: str) -> MemorySnapshot:
        other = MemorySnapshot.__new__(MemorySnapshot)
        other._trees, other.tree, other.closed = self._trees, tree, False
        return other

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeSandbox:
    """`tests`: node id -> rule. A node id is "path::name"; the test exists while `path` does.
    `wall_s`: the wall time each report claims. `timeout_if`: files on which the test command
    would hang (a TIMED_OUT report). `exit_code`: the command's exit code when a report has
    no tests at all (5 is pytest's "no tests collected"). `lines`: node id -> the (path, line)
    the test executes, reported as the tracer plugin does when the job is a traced run; or a
    function of the files under test giving that mapping (what a test reaches depends on the
    code: a failing assertion stops it)."""

    tests: Mapping[str, Check]
    wall_s: float = 0.01
    timeout_if: Callable[[Files], bool] | None = None
    exit_code_without_tests: int = 5
    lines: Lines | Callable[[Files], Lines] | None = None
    jobs: list[Job] = field(default_factory=list)
    prewarmed: list[tuple[Limits, int]] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._base: dict[tuple[int, str], Files] = {}

    def run(self, job: Job) -> TestReport:
        with self._lock:
            self.jobs.append(job)
        changed = sorted({p for p in _patch_paths(job.patch) if is_test_path(p)})
        try:
            files = apply_patch(self._files(job), job.patch)
        except PatchDoesNotApply as exc:
            return TestReport(RunStatus.PATCH_FAILED, None, 0.0, patch_error=str(exc),
                              changed_test_files=changed)
        if self.timeout_if is not None and self.timeout_if(files):
            return TestReport(RunStatus.TIMED_OUT, None, job.limits.timeout_s,
                              output="(killed at the time limit)", changed_test_files=changed)
        cases = {nodeid: self._decide(nodeid, check, files)
                 for nodeid, check in self.tests.items()
                 if nodeid.split("::", 1)[0] in files and _selected(nodeid, job.select)}
        if not cases:
            code = self.exit_code_without_tests
        else:
            code = 0 if all(c.ok for c in cases.values()) else 1
        output = "\n".join(f"{c.nodeid} {c.outcome.value.upper()} {c.message}".rstrip()
                           for c in cases.values()) or "no tests ran"
        if self.lines is not None and "mulligan_trace" in job.env.get("PYTEST_ADDOPTS", ""):
            lines = self.lines(files) if callable(self.lines) else self.lines
            output += "\n" + _trace_line(lines, cases)
        return TestReport(RunStatus.COMPLETED, code, self.wall_s, output, tests=cases,
                          changed_test_files=changed)

    def prewarm(self, limits: Limits, count: int) -> None:
        self.prewarmed.append((limits, count))

    def close(self) -> None:
        self.closed = True

    def _files(self, job: Job) -> Files:
        key = (id(job.snapshot), job.snapshot.tree)
        if key not in self._base:  # a real Snapshot reads git: once per tree
            self._base[key] = job.snapshot.text_files()
        return self._base[key]

    @staticmethod
    def _decide(nodeid: str, check: Check, files: Files) -> TestCase:
        try:
            verdict = check(files)
        except Exception as exc:  # noqa: BLE001 - a failing test, as pytest reports it
            return TestCase(nodeid, Outcome.FAILED, f"{type(exc).__name__}: {exc}")
        if verdict is True:
            return TestCase(nodeid, Outcome.PASSED)
        return TestCase(nodeid, Outcome.FAILED, verdict if isinstance(verdict, str) else "failed")


def _selected(nodeid: str, select: Sequence[str]) -> bool:
    return not select or any(nodeid == s or nodeid.startswith(s + "::") for s in select)


def _patch_paths(patch: str) -> list[str]:
    try:
        return [pf.path for pf in PatchSet(patch)] if patch.strip() else []
    except UnidiffParseError:
        return []


def _trace_line(lines: Lines,
                cases: Mapping[str, TestCase]) -> str:
    """The marker line sandbox/tracer.py prints, for the tests that ran."""
    names = sorted({path for executed in lines.values() for path, _ in executed})
    tests = [[nodeid, not case.ok, [[names.index(p), n] for p, n in lines.get(nodeid, ())]]
             for nodeid, case in cases.items()]
    data = json.dumps({"files": names, "tests": tests}).encode()
    return f"{TRACE_MARKER} {base64.b64encode(zlib.compress(data)).decode()}"
