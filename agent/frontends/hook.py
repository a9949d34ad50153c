"""`mulligan hook`: a git pre-commit hook that tests exactly what is being committed.

`install` writes `<hooks>/pre-commit` (core.hooksPath respected). A hook Mulligan did not
write is replaced only with --force, and then kept as `pre-commit.mulligan-chained`, run
first, and put back byte for byte by `uninstall`.

`run` (what the hook executes):

1. MULLIGAN_SKIP=1: exit 0 before anything heavy is imported (the hook script checks it
   before Python even starts).
2. A merge, rebase, cherry-pick or revert in progress: exit 0, never in their way.
3. Snapshot the index being committed -- `$GIT_INDEX_FILE`, which for `git commit -a` and
   `git commit <paths>` is a temporary index, not `.git/index` -- and run the tests on it in
   the sandbox: the full suite, or with `hook_tests = "related"` the tests of the staged
   files. Green: exit 0 at once.
4. Red: the solve-test-revise loop with a small budget (hook_candidates x hook_rounds), then
   on a terminal a prompt ([a]pply and stage, apply [w]ithout staging, [s]kip, a[b]ort);
   without one, the patch goes to `.git/mulligan/fix-<time>.patch` with the command that
   applies it, and the commit fails (or goes ahead with `hook_mode = "advisory"`).

Nothing in the repository is written unless the user answers "a" or "w", and then only
after every check passed: the index with `git apply --cached`, the working tree with
`git apply`, or a three-way merge per file when the user has unstaged edits there; a fix
that would conflict with them is refused and saved to a file instead.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError, MulliganError
from agent.events import ResultStatus
from sandbox import git
from sandbox.testpaths import CONFIG_FILES, is_test_module

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.loop import Result
    from sandbox.api import TestReport
    from sandbox.snapshot import Snapshot

HOOK = "pre-commit"
CHAINED = "pre-commit.mulligan-chained"
MARKER = "# mulligan-hook: v1"
CREATED_DIR = "# mulligan-hook: created the hooks folder"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
IN_PROGRESS = {"MERGE_HEAD": "a merge", "CHERRY_PICK_HEAD": "a cherry-pick",
               "REVERT_HEAD": "a revert", "rebase-merge": "a rebase", "rebase-apply": "a rebase"}
# A change to test infrastructure other than a test module can affect every test.
FULL_SUITE_FILES = CONFIG_FILES
BYPASS = "To commit without the check: git commit --no-verify (or MULLIGAN_SKIP=1)."
CHOICES_FIX = ("[a]pply and stage it, apply [w]ithout staging, [s]kip (commit anyway), "
               "a[b]ort the commit")
CHOICES_NO_FIX = "[s]kip (commit anyway), a[b]ort the commit"


class HookError(MulliganError):
    exit_code = 1


class FixDoesNotApply(MulliganError):
    """The fix cannot go into the index or the working tree without touching the user's
    work; nothing was changed."""


# -- install / uninstall -------------------------------------------------------------------


def _git(args: list[str], cwd: Path, env: Mapping[str, str] | None = None,
         data: bytes | None = None, check: bool = True) -> git.GitResult:
    proc = git.run(args, cwd=cwd, env=env, input=data)
    if check and not proc.ok:
        raise HookError(f"git {args[0]} failed: {_last_line(proc.stderr)}")
    return proc


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "(no message)"


def _git_path(cwd: Path, name: str) -> Path:
    """`git rev-parse --git-path NAME` as an absolute path (hooks: core.hooksPath)."""
    proc = _git(["rev-parse", "--git-path", name], cwd, check=False)
    if proc.returncode != 0:
        raise HookError(f"{cwd} is not inside a git repository")
    return Path(os.path.normpath(os.path.join(cwd, proc.stdout.decode().strip())))


def _is_ours(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as fh:
        return MARKER.encode() in fh.read(4096)


def hook_script(python: str, created_dir: bool = False) -> str:
    py = shlex.quote(python)
    return "\n".join([
        "#!/bin/sh",
        MARKER,
        *([CREATED_DIR] if created_dir else []),
        "# Written by `mulligan hook install`: tests what is being committed in Mulligan's",
        "# sandbox and offers a fix when the tests fail. Remove: `mulligan hook uninstall`.",
        "# Skip once: git commit --no-verify, or MULLIGAN_SKIP=1 git commit ...",
        f'chained="$(dirname "$0")/{CHAINED}"',
        'if [ -x "$chained" ]; then',
        '    "$chained" "$@" || exit $?',
        "fi",
        '[ "${MULLIGAN_SKIP:-}" = 1 ] && exit 0',
        f"if [ -x {py} ]; then",
        f'    exec {py} -m agent.frontends.hook run "$@"',
        "fi",
        "if command -v mulligan >/dev/null 2>&1; then",
        '    exec mulligan hook run "$@"',
        "fi",
        (f"echo \"mulligan hook: {python} is gone and no mulligan is on PATH: run"
         " 'mulligan hook install' again, or commit with --no-verify\" >&2"),
        "exit 1",
        "",
    ])


def _write_executable(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.mulligan-tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def install(path: str | os.PathLike = ".", *, force: bool = False,
            python: str | None = None) -> str:
    """Write the pre-commit hook; return what was done. A foreign hook is chained with
    `force` and refused without it."""
    cwd = Path(path).absolute()
    hooks = _git_path(cwd, "hooks")
    hook, chained = hooks / HOOK, hooks / CHAINED
    created = False
    if _is_ours(hook):
        created = CREATED_DIR in hook.read_text(errors="replace")
    elif os.path.lexists(hook):
        if not force:
            raise HookError(
                f"{hook} exists and was not written by mulligan: `mulligan hook install "
                "--force` keeps it and runs it first; with the pre-commit framework, add "
                "the `mulligan` hook to .pre-commit-config.yaml instead")
        if os.path.lexists(chained):
            raise HookError(f"{chained} exists already: move it away first")
    if not hooks.is_dir():
        hooks.mkdir(parents=True)
        created = True
    moved = False
    if os.path.lexists(hook) and not _is_ours(hook):
        os.rename(hook, chained)
        moved = True
    try:
        _write_executable(hook, hook_script(python or sys.executable, created))
    except BaseException:
        if moved:
            os.replace(chained, hook)
        raise
    note = f" (runs the previous hook first: {chained.name})" if os.path.lexists(chained) else ""
    return f"installed {hook}{note}"


def uninstall(path: str | os.PathLike = ".") -> str:
    """Remove the hook and put back the one it replaced, byte for byte with its mode."""
    hooks = _git_path(Path(path).absolute(), "hooks")
    hook, chained = hooks / HOOK, hooks / CHAINED
    if os.path.lexists(hook) and not _is_ours(hook):
        raise HookError(f"{hook} was not written by mulligan: left as it is")
    created = _is_ours(hook) and CREATED_DIR in hook.read_text(errors="replace")
    if os.path.lexists(chained):
        os.replace(chained, hook)
        done = f"removed the mulligan hook; {hook} is the previous hook again"
    elif os.path.lexists(hook):
        hook.unlink()
        done = f"removed {hook}"
    else:
        return "no mulligan hook is installed"
    if created:
        try:
            hooks.rmdir()
        except OSError:
            pass  # something else is in it now
    return done


# -- configuration -------------------------------------------------------------------------


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


# -- applying a fix ------------------------------------------------------------------------


def _with_index(index: Path) -> dict[str, str]:
    return {**os.environ, "GIT_INDEX_FILE": str(index)}


@contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ctrl-C waits until the index and the working tree are both written (or neither)."""
    caught = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM,
                                                                  signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in caught.items():
            signal.signal(sig, handler)


def _merge3(ours: bytes, base: bytes, theirs: bytes) -> bytes | None:
    """`git merge-file` of the three versions; None when they conflict."""
    with tempfile.TemporaryDirectory(prefix="mulligan-merge-") as tmp:
        names = []
        for label, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            Path(tmp, label).write_bytes(data)
            names.append(str(Path(tmp, label)))
        proc = git.run(["merge-file", "-p", "--quiet", *names])
    return proc.stdout if proc.ok else None


def _worktree_plan(top: Path, snapshot: Snapshot, patch: str
                   ) -> dict[str, tuple[bytes | None, str]] | None:
    """How the fix goes into the working tree: None when `git apply` takes it as it is,
    else path -> (new content or None to delete, git mode), merged three ways with the
    user's unstaged edits. Raises FixDoesNotApply when those conflict with the fix."""
    from sandbox.snapshot import PatchDoesNotApply

    if _git(["apply", "--check", "--whitespace=nowarn", "-"], top, data=patch.encode(),
            check=False).returncode == 0:
        return None
    try:
        fixed = snapshot.apply(patch)
    except PatchDoesNotApply as exc:
        raise FixDoesNotApply(f"the fix does not apply to the staged files: {exc}") from None
    before = {e.path: e for e in snapshot.entries()}
    after = {e.path: e for e in snapshot.entries(fixed)}
    changed = sorted(p for p in before.keys() | after.keys()
                     if _identity(before.get(p)) != _identity(after.get(p)))
    base = snapshot.read_blobs([before[p] for p in changed if p in before])
    theirs = snapshot.read_blobs([after[p] for p in changed if p in after])
    plan: dict[str, tuple[bytes | None, str]] = {}
    for path in changed:
        modes = {e.mode for e in (before.get(path), after.get(path)) if e is not None}
        target = top / path
        if not modes <= {"100644", "100755"} or target.is_symlink() or (
                os.path.lexists(target) and not target.is_file()):
            raise FixDoesNotApply(f"{path} is not a regular file")
        ours = target.read_bytes() if target.is_file() else None
        old, new = base.get(path), theirs.get(path)
        mode = after[path].mode if path in after else before[path].mode
        if ours == new:
            continue
        if ours == old:
            plan[path] = (new, mode)
            continue
        merged = None if None in (ours, old, new) else _merge3(ours, old, new)
        if merged is None:
            raise FixDoesNotApply(f"your unstaged changes to {path} conflict with the fix")
        plan[path] = (merged, mode)
    return plan


def _identity(entry: Any) -> tuple[str, str] | None:
    return None if entry is None else (entry.sha, entry.mode)


def _write_plan(top: Path, plan: Mapping[str, tuple[bytes | None, str]]) -> None:
    """Each file replaced in one rename (a crash leaves it old or new, never half)."""
    staged: list[tuple[Path, Path | None]] = []
    try:
        for path, (data, mode) in plan.items():
            target = top / path
            if data is None:
                staged.append((target, None))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            keep = target.stat().st_mode & 0o7777 if target.is_file() else (
                0o755 if mode == "100755" else 0o644)
            os.chmod(tmp, keep)
            staged.append((target, Path(tmp)))
    except BaseException:
        for _, tmp in staged:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        raise
    for target, tmp in staged:
        if tmp is None:
            target.unlink(missing_ok=True)
        else:
            os.replace(tmp, target)


def apply_fix(top: Path, git_dir: Path, index: Path, snapshot: Snapshot, patch: str, *,
              stage: bool) -> None:
    """Put the fix into the working tree, and with `stage` into the index being committed.
    Everything is checked first; on any doubt FixDoesNotApply and nothing is changed."""
    data = patch.encode()
    indexes = [index] if stage else []
    pending = git_dir / "index.lock"
    if stage and index.name.startswith("next-index") and pending.is_file():
        # `git commit <paths>` commits a temporary index and then makes index.lock the
        # index: the fix goes into both, or the next `git status` would show it reverted.
        indexes.append(pending)
    for idx in indexes:
        check = _git(["apply", "--cached", "--check", "--whitespace=nowarn", "-"], top,
                     _with_index(idx), data, check=False)
        if check.returncode != 0:
            raise FixDoesNotApply(f"the fix does not apply to the index: "
                                  f"{_last_line(check.stderr)}")
    plan = _worktree_plan(top, snapshot, patch)
    with _no_interrupts():
        done: list[Path] = []
        try:
            for idx in indexes:
                _git(["apply", "--cached", "--whitespace=nowarn", "-"], top, _with_index(idx),
                     data)
                done.append(idx)
            if plan is None:
                _git(["apply", "--whitespace=nowarn", "-"], top, data=data)
            else:
                _write_plan(top, plan)
        except BaseException:
            for idx in done:
                _git(["apply", "--cached", "-R", "--whitespace=nowarn", "-"], top,
                     _with_index(idx), data, check=False)
            raise


# -- the terminal --------------------------------------------------------------------------


@dataclass
class Terminal:
    """The user's terminal, opened directly: git gives hooks no usable stdin."""

    fd: int
    reader: Any = field(init=False)
    writer: Any = field(init=False)

    def __post_init__(self) -> None:
        self.reader = os.fdopen(self.fd, "r", encoding="utf-8", errors="replace")
        self.writer = os.fdopen(os.dup(self.fd), "w", encoding="utf-8", errors="replace")

    def write(self, text: str) -> None:
        self.writer.write(text)
        self.writer.flush()

    def ask(self, question: str, choices: str) -> str | None:
        """The first letter of a valid answer; None when the terminal went away."""
        while True:
            self.write(question)
            line = self.reader.readline()
            if not line:
                return None
            answer = line.strip().lower()[:1]
            if answer and answer in choices:
                return answer

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


def open_terminal(environ: Mapping[str, str] = os.environ) -> Terminal | None:
    """MULLIGAN_HOOK_TTY, else /dev/tty; None without one (an IDE, CI, no controlling
    terminal) or with MULLIGAN_HOOK_NONINTERACTIVE=1. Git gives hooks no usable stdin."""
    if environ.get("MULLIGAN_HOOK_NONINTERACTIVE") == "1":
        return None
    path = environ.get("MULLIGAN_HOOK_TTY")
    if not path:
        if environ.get("CI"):
            return None
        path = "/dev/tty"
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    if not os.isatty(fd):
        os.close(fd)
        return None
    return Terminal(fd)


# -- the hook ------------------------------------------------------------------------------


class Hook:
    """One run of the pre-commit hook, in the repository containing `cwd`."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.advisory = False
        self.applying = False  # from the user's "a"/"w" on, "nothing was changed" may be wrong

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)  # plain: rich is imported only to solve

    def run(self) -> int:
        try:
            return self._run()
        except KeyboardInterrupt:
            self.say("mulligan: interrupted; " + ("see git status" if self.applying
                                                  else "nothing was changed"))
            return 130
        except Exception as exc:  # noqa: BLE001 -- any failure: say so, keep the work
            known = isinstance(exc, MulliganError)
            what = "error" if known else f"crashed ({type(exc).__name__})"
            self.say(f"mulligan hook {what}: {exc}")
            self.say("the fix may be partly applied (your own changes are kept): see git status"
                     if self.applying else "nothing was changed in the repository")
            if self.advisory:
                self.say("hook_mode = advisory: the commit goes ahead")
                return 0
            self.say(BYPASS)
            return 1

    def _run(self) -> int:
        found = _git(["rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-path",
                      "index", "--git-path", "objects"], self.cwd).stdout.decode().splitlines()
        top, git_dir = Path(found[0]), Path(found[1])
        index, objects = (Path(os.path.normpath(os.path.join(self.cwd, p))) for p in found[2:4])
        if os.environ.get("GIT_INDEX_FILE"):
            # The index being committed: a temporary one for `git commit -a` and `git commit
            # <paths>`. git runs hooks at the top, and reads a relative path from there.
            index = Path(os.path.normpath(os.path.join(top, os.environ["GIT_INDEX_FILE"])))
        for name, what in IN_PROGRESS.items():
            if (git_dir / name).exists():
                self.say(f"mulligan: {what} is in progress: the hook stays out of its way")
                return 0
        self.top, self.git_dir, self.index = top, git_dir, index
        settings, self.config = load_config(top)
        self.advisory = self.config.mode == "advisory"
        changed = staged_paths(top, _with_index(index))
        if not changed:
            self.say("mulligan: nothing staged to test")
            return 0
        from sandbox.snapshot import Snapshot

        with Snapshot.from_index(top, index, objects) as snapshot:
            return self._check(settings, snapshot, changed)

    def _check(self, settings: Settings, snapshot: Snapshot, changed: list[str]) -> int:
        from agent.environment import limits_from, open_sandbox
        from sandbox.api import Job

        command, scope = select_tests(settings, self.config, changed, snapshot.paths())
        settings = settings.model_copy(update={"test_cmd": command})
        self.say(f"mulligan: testing what is being committed ({scope})")
        sandbox = open_sandbox(settings, snapshot, log=self.say)
        try:
            report = sandbox.run(Job(snapshot, "", command, limits=limits_from(settings)))
            if self._green(report, command):
                return 0
            import asyncio

            result = asyncio.run(self._solve(settings, sandbox, snapshot))
        finally:
            sandbox.close()
        if result.status is ResultStatus.NOTHING_TO_FIX:
            self.say("mulligan: the tests pass when run again (flaky?): the commit goes ahead")
            return 0
        patch = result.patch if result.status is ResultStatus.SOLVED else None
        # Under the pre-commit framework, which stashes and restores the unstaged changes
        # around its hooks, the hook never writes to the repository: the patch file only.
        terminal = None if os.environ.get("PRE_COMMIT") else open_terminal()
        if terminal is None:
            return self._unattended(patch, result)
        try:
            return self._ask(terminal, report, patch, snapshot, result)
        finally:
            terminal.close()

    def _green(self, report: TestReport, command: str) -> bool:
        from sandbox.testpaths import uses_pytest
        from sandbox.api import RunStatus

        if report.passed:
            self.say(f"mulligan: {len(report.tests) or 'the'} tests pass "
                     f"({report.wall_s:.1f}s): committing")
            return True
        if report.exit_code == 5 and not report.tests and uses_pytest(command):
            self.say("mulligan: no tests were collected: committing")
            return True
        if report.exit_code == 127 and not report.tests:
            raise ConfigError(f"the test command was not found in the sandbox: {command!r}")
        if report.status is RunStatus.TIMED_OUT:
            raise ConfigError(f"the tests timed out after {report.wall_s:.0f}s: raise "
                              "test_timeout_s, or set hook_tests = \"related\"")
        if report.status is RunStatus.CRASHED:
            raise HookError(f"the sandbox failed: {report.output.strip()[-300:]}")
        self.say("mulligan: the tests fail in what is being committed:")
        for line in _failure_lines(report):
            self.say(f"  {line}")
        self.say(f"mulligan: looking for a fix ({self.config.candidates} candidate(s) x "
                 f"{self.config.rounds} round(s))")
        return False

    async def _solve(self, settings: Settings, sandbox: Any, snapshot: Snapshot) -> Result:
        """The loop on the snapshot (the index being committed) and sandbox already open."""
        from rich.console import Console

        from agent.events import EventBus, RunError
        from agent.frontends.progress import ConsoleProgress
        from agent.run import Run, RunRequest

        settings = settings.model_copy(update={
            "candidates": self.config.candidates, "rounds": self.config.rounds,
            "beam": min(settings.beam, self.config.candidates)})
        bus = EventBus()
        progress = ConsoleProgress(Console(stderr=True, highlight=False, soft_wrap=True))
        bus.subscribe(lambda event: None if isinstance(event, RunError) else progress(event))
        run = Run(RunRequest(self.top, settings), bus, snapshot=snapshot, sandbox=sandbox)
        self.trajectory = run.trajectory_path
        return await run.execute()

    # -- outcomes ------------------------------------------------------------------------

    def _unattended(self, patch: str | None, result: Result) -> int:
        if patch:
            self.say("mulligan: found a fix that makes the tests pass; apply it with:")
            self.say(f"    {self._apply_command(self._save(patch))}")
        else:
            self.say(f"mulligan: no passing fix found ({result.reason or result.status}); "
                     f"trajectory: {self.trajectory}")
        if self.advisory:
            self.say("hook_mode = advisory: the commit goes ahead")
            return 0
        self.say(f"mulligan: commit stopped: the tests fail. {BYPASS}")
        return 1

    def _ask(self, terminal: Terminal, report: TestReport, patch: str | None,
             snapshot: Snapshot, result: Result) -> int:
        lines = ["", "mulligan: the tests fail in what is being committed:"]
        lines += [f"  {line}" for line in _failure_lines(report)]
        if patch:
            lines += ["", "proposed fix (the tests pass with it):", patch.rstrip("\n"), ""]
        else:
            lines += ["", (f"no passing fix found ({result.reason or result.status}); "
                      f"trajectory: {self.trajectory}"), ""]
        terminal.write("\n".join(lines) + "\n")
        choices = "awsb" if patch else "sb"
        answer = terminal.ask(f"{CHOICES_FIX if patch else CHOICES_NO_FIX}? ", choices)
        if answer is None:  # the terminal went away: as if there had been none
            return self._unattended(patch, result)
        if answer == "s":
            terminal.write("committing without the fix\n")
            return 0
        if answer == "b":
            terminal.write("commit aborted; nothing was changed\n")
            return 1
        assert patch is not None
        self.applying = True
        try:
            apply_fix(self.top, self.git_dir, self.index, snapshot, patch, stage=answer == "a")
        except FixDoesNotApply as exc:
            saved = self._save(patch)
            terminal.write(f"not applied: {exc}; nothing was changed.\nThe fix is saved; "
                           f"apply it yourself with:\n    {self._apply_command(saved)}\n"
                           "commit stopped\n")
            return 1
        if answer == "a":
            terminal.write("the fix is applied and staged: committing\n")
            return 0
        terminal.write("the fix is applied to the working tree, not staged: review it with "
                       "`git diff`, stage it, and commit again (this commit is stopped)\n")
        return 1

    def _save(self, patch: str) -> Path:
        folder = _git_path(self.top, "mulligan")
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            path = folder / (f"fix-{stamp}.patch" if n == 0 else f"fix-{stamp}-{n}.patch")
            try:
                with path.open("x", encoding="utf-8") as fh:
                    fh.write(patch)
                return path
            except FileExistsError:
                continue
        raise HookError(f"cannot find a free file name in {folder}")

    def _apply_command(self, path: Path) -> str:
        """`git apply PATH`, runnable from where the user typed `git commit`."""
        shown = os.path.relpath(path, self.top) if path.is_relative_to(self.top) else str(path)
        prefix = os.environ.get("GIT_PREFIX", "").strip("/")
        if prefix:
            return f"git -C {shlex.quote(os.path.relpath(self.top, self.top / prefix))} " \
                   f"apply {shlex.quote(shown)}"
        return f"git apply {shlex.quote(shown)}"


def _failure_lines(report: TestReport, limit: int = 10) -> list[str]:
    failing = report.failing()
    if not failing:
        tail = report.output.strip().splitlines()[-limit:]
        return [f"(exit code {report.exit_code})", *tail]
    lines = []
    for case in failing[:limit]:
        first = case.message.strip().splitlines()[0][:160] if case.message.strip() else ""
        lines.append(f"x {case.nodeid}" + (f": {first}" if first else ""))
    if len(failing) > limit:
        lines.append(f"... and {len(failing) - limit} more")
    return lines


# -- command line --------------------------------------------------------------------------


def run_hook(cwd: str | os.PathLike | None = None) -> int:
    if os.environ.get("MULLIGAN_SKIP") == "1":
        return 0
    return Hook(Path(cwd or os.getcwd()).absolute()).run()


def command(action: str, *, force: bool = False, path: str | os.PathLike = ".") -> int:
    if action == "run":
        return run_hook(path)
    try:
        message = install(path, force=force) if action == "install" else uninstall(path)
    except HookError as exc:
        print(f"mulligan hook: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"mulligan hook: {message}", file=sys.stderr)
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("install", "uninstall", "run"),
                        help="install or remove .git/hooks/pre-commit; run: what the hook does")
    parser.add_argument("--force", action="store_true",
                        help="install over a pre-commit hook mulligan did not write (it is "
                             "kept, run first, and restored by uninstall)")


def add_subparser(sub: Any) -> None:
    """`mulligan hook ...` in the main command line."""
    parser = sub.add_parser("hook", help="a git pre-commit hook that tests what is committed")
    _arguments(parser)
    parser.set_defaults(handler=lambda args: command(args.action, force=args.force))


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.frontends.hook ACTION`: what the installed hook runs (no rich, no pydantic
    imported before MULLIGAN_SKIP is looked at)."""
    parser = argparse.ArgumentParser(prog="mulligan hook")
    _arguments(parser)
    args = parser.parse_args(argv)
    return command(args.action, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
