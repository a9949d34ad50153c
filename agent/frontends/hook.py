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
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError, MulliganError
from agent.events import ResultStatus
from agent.frontends.hook_apply import (  # noqa: F401
    FixDoesNotApply,
    _with_index,
    _worktree_plan,
    apply_fix,
)
from agent.frontends.hook_git import HookError, _git, _git_path
from agent.frontends.hook_install import CHAINED, MARKER, hook_script, install, uninstall  # noqa: F401
from agent.frontends.hook_select import (  # noqa: F401
    HookConfig,
    hook_config,
    load_config,
    related_tests,
    select_tests,
    staged_paths,
)

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.loop import Result
    from sandbox.api import TestReport
    from sandbox.snapshot import Snapshot

IN_PROGRESS = {"MERGE_HEAD": "a merge", "CHERRY_PICK_HEAD": "a cherry-pick",
               "REVERT_HEAD": "a revert", "rebase-merge": "a rebase", "rebase-apply": "a rebase"}
BYPASS = "To commit without the check: git commit --no-verify (or MULLIGAN_SKIP=1)."
CHOICES_FIX = ("[a]pply and stage it, apply [w]ithout staging, [s]kip (commit anyway), "
               "a[b]ort the commit")
CHOICES_NO_FIX = "[s]kip (commit anyway), a[b]ort the commit"


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
        from sandbox.api import RunStatus
        from sandbox.testpaths import uses_pytest

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
    from agent.frontends.signals import sigterm_as_ctrl_c

    with sigterm_as_ctrl_c():
        return command(args.action, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
