"""`mulligan` / `mulligan tui`: the Textual app that drives the core loop and shows it live.

It talks to the core only through its public API: `Run` / `RunRequest` (agent.run), the
events (agent.events), `load_settings` (agent.config), `apply_to_worktree` /
`changed_paths` (agent.workspace) and the trajectory readers (agent.trajectory). The run
executes in a thread of its own (its own asyncio loop), so the UI stays responsive while
candidates are sampled and tested; its events reach the UI as Textual messages.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.message import Message

from agent.config import Settings, load_settings
from agent.errors import ConfigError, MulliganError, WorkspaceError, WorktreeChanged
from agent.events import Event, EventBus, ResultStatus, RunStarted
from agent.frontends.options import TUI_SETTINGS, add_tui_arguments, read_issue, setting_values
from agent.frontends.signals import sigterm_as_ctrl_c
from agent.run import Run, RunRequest
from agent.trajectory import read_events, run_path, runs_dir
from agent.workspace import apply_to_worktree, changed_paths, find_repo_root
from tui.state import (
    ErrorHelp,
    Phase,
    RunView,
    abandon,
    applicable,
    describe_changes,
    explain_error,
    patch_of,
    reduce,
    replay,
)

# How long quitting waits for a cancelled run to clean up itself before the sandbox is
# closed from here (its removals then finish in a detached process): the terminal comes
# back within two seconds even on a loaded machine.
CANCEL_WAIT_S = 0.5


class RunEvent(Message):
    """An event of the core, delivered on the UI's thread."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class RunEnded(Message):
    def __init__(self, run: Run, result: Any = None, error: BaseException | None = None,
                 cancelled: bool = False) -> None:
        super().__init__()
        self.run = run
        self.result = result
        self.error = error
        self.cancelled = cancelled


class MulliganApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "Mulligan"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar = [
        Binding("ctrl+q", "quit", "Quit", priority=True, show=False),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
    ]

    def __init__(self, repo: Path | None = None, *, flags: dict[str, Any] | None = None,
                 settings: Settings | None = None, issue: str | None = None,
                 open_run: str | None = None, events: Sequence[Event] | None = None,
                 live: bool = False, clock: Callable[[], float] = time.monotonic,
                 startup_error: BaseException | str | None = None, theme: str | None = None) -> None:
        """`repo`: the repository's top; `flags` override the repo's settings (like the
        CLI's); `open_run`: a run id or trajectory to show (and resume); `events`: a recorded
        run to show without running anything (`live`: as if it were still going);
        `clock`: where elapsed time comes from (tests pin it); `theme`: a Textual theme name
        (default textual-dark; ctrl+t toggles light and dark)."""
        super().__init__()
        self.repo = repo
        self.flags = {k: v for k, v in (flags or {}).items() if v is not None}
        self.settings = settings
        self.issue = issue
        self.clock = clock
        self.view = RunView()
        self.active_run: Run | None = None  # the run in progress or last run here
        self.trajectory: Path | None = None
        self.resume_ref: str | None = None  # what RunRequest(resume=...) gets
        self.snapshot_tree: str | None = None
        self.notes: list[tuple[str, str]] = []  # every notification: (severity, message)
        self.errors: list[ErrorHelp] = []  # every error screen shown
        self.applied: list[str] = []
        self._open_run = open_run
        self._events = list(events) if events is not None else None
        self._live_events = live
        self._startup_error = startup_error
        self._theme = theme
        self._stop_pending = False
        self._run_thread: threading.Thread | None = None
        self._run_loop: asyncio.AbstractEventLoop | None = None
        self._run_task: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def repo_label(self) -> str:
        return self.repo.name if self.repo is not None else ""

    def on_mount(self) -> None:
        from tui.screens import RunScreen, SetupScreen

        if self._theme is not None:
            self.theme = self._theme
        if self._startup_error is not None:
            self.show_error(self._startup_error, fatal=True)
            return
        if self._events is not None:
            if self._live_events:
                self.view = RunView(phase=Phase.STARTING, started_at=self.clock())
                for event in self._events:
                    self.view = reduce(self.view, event, self.clock())
            else:
                self.view = replay(self._events)
            self.push_screen(RunScreen())
            return
        if self._open_run is not None:
            if self.settings is None and self.repo is not None:
                try:
                    self.settings = load_settings(self.repo, self.flags,
                                              notice=self.settings_notice)
                except Exception:  # noqa: BLE001 - shown to the user
                    self.settings = None  # the run's own settings are used to resume it
            self.push_screen(RunScreen())
            self.open_run(self._open_run)
            return
        if self.settings is None:
            try:
                assert self.repo is not None
                self.settings = load_settings(self.repo, self.flags,
                                              notice=self.settings_notice)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.show_error(exc, fatal=True)
                return
        self.push_screen(SetupScreen())

    def settings_notice(self, line: str) -> None:
        """The repository keys that were ignored (agent/config.py), as a lasting toast."""
        self.notify(line.removeprefix("mulligan: "), severity="warning", timeout=20)

    def on_unmount(self) -> None:
        self._cancel_run(wait=CANCEL_WAIT_S)

    @property
    def running(self) -> bool:
        return self._run_thread is not None and self._run_thread.is_alive()

    # -- notifications ---------------------------------------------------------------------

    def say(self, message: str, severity: str = "information", title: str = "",
            timeout: float | None = None) -> None:
        self.notes.append((severity, message))
        self.notify(message, title=title, severity=severity,  # type: ignore[arg-type]
                    timeout=timeout if timeout is not None else
                    (8 if severity == "error" else 5))

    def show_error(self, error: BaseException | str, fatal: bool = False) -> None:
        from tui.screens import ErrorScreen, FatalErrorScreen

        help = explain_error(error)
        self.errors.append(help)
        self.push_screen(FatalErrorScreen(help) if fatal else ErrorScreen(help))

    # -- starting and stopping -------------------------------------------------------------

    def start_from_form(self, form_flags: dict[str, Any], issue: str | None) -> None:
        assert self.repo is not None
        try:
            settings = load_settings(self.repo, notice=self.settings_notice, flags={
                **self.flags, **{k: v for k, v in form_flags.items() if v is not None}})
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.say(str(exc), "error", title="Settings")
            return
        self.settings = settings
        self.issue = issue
        self.start_run(RunRequest(self.repo, settings, issue))

    def start_run(self, request: RunRequest) -> None:
        from tui.screens import RunScreen

        if self.running:
            self.say("a run is already in progress", "warning")
            return
        bus = EventBus()
        try:
            run = Run(request, bus)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.show_error(exc)
            return
        self.active_run = run
        self.trajectory = run.trajectory_path
        self.resume_ref = str(run.trajectory_path)
        self.snapshot_tree = None
        self._stop_pending = False
        self.view = RunView(phase=Phase.STARTING, started_at=self.clock(),
                            repo=str(request.repo), status="starting")

        def deliver(event: Event) -> None:  # called on the run's thread
            if self._stop_pending:
                run.stop()  # again: the solver may not have existed at the first request
            self._post(RunEvent(event))

        bus.subscribe(deliver)
        if not isinstance(self.screen, RunScreen):
            if any(isinstance(s, RunScreen) for s in self.screen_stack):
                while not isinstance(self.screen, RunScreen):
                    self.pop_screen()
            else:
                self.switch_screen(RunScreen())
        self._refresh()
        self._run_thread = threading.Thread(target=self._execute, args=(run,),
                                        name=f"mulligan-run-{run.run_id}", daemon=True)
        self._run_thread.start()

    def _execute(self, run: Run) -> None:
        """The run's thread: its own event loop, so sandbox and model work never block the
        UI; `_cancel_run` cancels the task from outside (containers are still removed)."""

        async def drive() -> Any:
            self._run_loop = asyncio.get_running_loop()
            self._run_task = asyncio.current_task()
            return await run.execute()

        try:
            result = asyncio.run(drive())
        except asyncio.CancelledError:
            self._post(RunEnded(run, cancelled=True))
        except BaseException as exc:  # noqa: BLE001 - shown as an error screen, not a trace
            self._post(RunEnded(run, error=exc))
        else:
            self._post(RunEnded(run, result=result))
        finally:
            self._run_loop = None
            self._run_task = None

    def _post(self, message: Message) -> None:
        """Post from the run's thread; after the app has closed there is no one to tell."""
        try:
            self.post_message(message)
        except RuntimeError:
            pass

    def _cancel_run(self, wait: float = 0.0) -> None:
        loop, task, thread = self._run_loop, self._run_task, self._run_thread
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # the loop has just closed
        if thread is not None and wait:
            thread.join(wait)
            run = self.active_run
            if thread.is_alive() and run is not None and run.sandbox is not None:
                run.sandbox.close()  # idempotent; what it cannot remove at once is handed off

    def stop_run(self) -> None:
        if not self.view.live or self.active_run is None:
            return
        self._stop_pending = True
        self.active_run.stop()
        self.view = replace(self.view, phase=Phase.STOPPING,
                            status="stopping after the current round; the best so far is kept")
        self.say("Stopping after the current round; the best candidate so far is kept.",
                 title="Stop")
        self._refresh()

    def on_run_event(self, message: RunEvent) -> None:
        self.feed(message.event)

    def feed(self, event: Event) -> None:
        """Apply one event of the core to the view and redraw (the UI's thread only)."""
        self.view = reduce(self.view, event, self.clock())
        if self.active_run is not None and self.snapshot_tree is None:
            self.snapshot_tree = self.active_run.snapshot_tree
        self._refresh()

    def on_run_ended(self, message: RunEnded) -> None:
        if message.run is not self.active_run:
            return
        self.snapshot_tree = message.run.snapshot_tree
        self._run_thread = None
        view = self.view
        if message.cancelled:
            self.view = replace(abandon(view), phase=Phase.INTERRUPTED, status="interrupted")
        elif message.error is not None:
            if view.phase is not Phase.ERROR:
                self.view = replace(abandon(view), phase=Phase.ERROR, error=str(message.error),
                                    status=f"error: {message.error}")
            self._refresh()
            self.show_error(message.error)
            return
        elif message.result is not None:
            result = message.result
            if view.phase is not Phase.FINISHED:  # no run_finished event seen (should not be)
                self.view = replace(view, phase=Phase.FINISHED, status=result.status)
            if result.status is ResultStatus.SOLVED:
                self.say(f"{result.chosen.id if result.chosen else 'a candidate'} passes every "
                         "test: a applies it, w saves it, y copies it.", title="Solved")
            elif result.status is ResultStatus.NOTHING_TO_FIX:
                self.say("Every test passes already: nothing to fix.", title="Done")
            else:
                self.say(f"No candidate passed ({result.reason}).", "warning", title="Unsolved")
        self._refresh()

    def _refresh(self) -> None:
        for screen in list(self.screen_stack):
            draw = getattr(screen, "view_changed", None)
            if draw is None or not screen.is_mounted:
                continue
            try:
                draw(self.view)
            except Exception as exc:  # noqa: BLE001 - shown to the user  # a drawing bug must not take the run down with it
                self.log.error(f"redraw failed: {exc!r}")
        self.refresh_bindings()

    # -- recorded runs ---------------------------------------------------------------------

    def open_run(self, ref: str) -> None:
        """Show a finished or interrupted run from its trajectory (read-only until resumed)."""
        try:
            path = run_path(ref)
            events = read_events(path)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.show_error(exc, fatal=self.repo is None and self.settings is None)
            return
        self.active_run = None
        self.trajectory = path
        self.resume_ref = str(path)
        self.snapshot_tree = None
        self.view = replay(events)
        started = next((e for e in events if isinstance(e, RunStarted)), None)
        if started is not None and Path(started.repo).is_dir():
            self.repo = Path(started.repo)
        self._refresh()

    @property
    def can_resume(self) -> bool:
        """Whether the run shown can be continued: interrupted, stopped, failed, or opened from
        its trajectory (resuming reuses its recorded model answers and re-tests them)."""
        view = self.view
        if self.running or self.resume_ref is None or view.run_id is None:
            return False
        if view.phase in (Phase.INTERRUPTED, Phase.ERROR):
            return True
        return view.phase is Phase.FINISHED and (self.snapshot_tree is None or not view.solved)

    def resume_run(self) -> None:
        """Continue the run shown, reusing its recorded model answers."""
        if not self.can_resume or self.resume_ref is None:
            return
        view = self.view
        repo = Path(view.repo) if view.repo and Path(view.repo).is_dir() else self.repo
        if repo is None:
            self.show_error(f"the run's repository {view.repo} is not there any more")
            return
        recorded = {"model": view.model or None, "base_url": view.base_url,
                    "test_cmd": view.test_cmd or None,
                    "candidates": view.budget_candidates or None,
                    "rounds": view.budget_rounds or None, "workers": view.workers or None}
        try:
            settings = load_settings(repo, {**{k: v for k, v in recorded.items()
                                               if v is not None}, **self.flags},
                                     notice=self.settings_notice)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.show_error(exc)
            return
        self.repo = repo
        self.settings = settings
        self.start_run(RunRequest(repo, settings, view.issue, self.resume_ref))

    def pick_run(self) -> None:
        from tui.screens import RunScreen, RunsScreen

        def chosen(ref: str | None) -> None:
            if ref is None:
                return
            self.switch_screen(RunScreen())
            self.open_run(ref)

        self.push_screen(RunsScreen(recent_runs()), chosen)

    # -- decisions -------------------------------------------------------------------------

    def request_apply(self, cid: str | None) -> None:
        from tui.screens import ConfirmApplyScreen

        choice = applicable(self.view, cid)
        if choice.patch is None or cid is None:
            self.say(choice.why_not, "warning", title="Apply")
            return
        if self.repo is None:
            self.say("no repository to apply to", "error", title="Apply")
            return
        if self.snapshot_tree is None and not self.running:
            self.say("This run was opened from its trajectory, so the files it was made against "
                     "are unknown: resume it (r) to re-test it on your files, then apply; or "
                     "save the patch (w).", "error", title="Not applied")
            return
        patch = choice.patch
        changes = describe_changes(patch, changed_paths(patch))

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._apply(cid, patch)
            else:
                self.say("Not applied.", title="Apply")

        self.push_screen(ConfirmApplyScreen(cid, self.repo, changes, choice.warning), confirmed)

    @work(group="apply", exclusive=True)
    async def _apply(self, cid: str, patch: str) -> None:
        assert self.repo is not None
        if self.snapshot_tree is None:
            if self.active_run is None:
                self.say("This run was opened from its trajectory, so the files it was made "
                         "against are unknown: resume it (r) to re-test it on your files, then "
                         "apply; or save the patch (w).", "error", title="Not applied")
            else:
                self.say("The run has no snapshot of your files yet.", "error",
                         title="Not applied")
            return
        try:
            changed = await asyncio.to_thread(apply_to_worktree, self.repo, patch,
                                              self.snapshot_tree)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            message = str(exc)
            if isinstance(exc, WorktreeChanged):
                message = ("Your files changed since the run's snapshot, so the patch was not "
                           "applied. Save it (w) and apply it yourself with git apply, or "
                           "resume the run (r) to test it on your files as they are now.")
            self.say(message, "error", title="Not applied", timeout=12)
            return
        self.applied.append(cid)
        self.say(f"Applied {cid}: {', '.join(changed)} changed. Review with git diff.",
                 title="Applied")

    def request_save(self, cid: str | None) -> None:
        from tui.screens import SavePatchScreen

        patch = patch_of(self.view, cid)
        if patch is None or cid is None:
            self.say("this candidate has no patch to save", "warning", title="Save")
            return
        folder = self.trajectory.parent if self.trajectory is not None else Path.cwd()
        default = folder / f"{cid}.patch"

        def chosen(path: Path | None) -> None:
            if path is None:
                return
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(patch)
            except OSError as exc:
                self.say(f"cannot write {path}: {exc.strerror or exc}", "error", title="Save")
                return
            self.say(f"Saved {cid} to {path} (apply it with: git apply {path})", title="Saved")

        self.push_screen(SavePatchScreen(cid, default), chosen)

    def copy_patch(self, cid: str | None) -> None:
        patch = patch_of(self.view, cid)
        if patch is None or cid is None:
            self.say("this candidate has no patch to copy", "warning", title="Copy")
            return
        self.copy_to_clipboard(patch)
        self.say(f"Copied {cid}'s patch ({len(patch.splitlines())} lines) to the clipboard.",
                 title="Copied")

    def discard(self) -> None:
        from tui.screens import SetupScreen

        if self.view.live:
            self.say("stop the run first (s)", "warning", title="Discard")
            return
        run_id = self.view.run_id
        if self.repo is None:
            self.exit()
            return
        if self.settings is None:
            try:
                self.settings = load_settings(self.repo, self.flags,
                                              notice=self.settings_notice)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.show_error(exc, fatal=True)
                return
        self.active_run = None
        self.trajectory = None
        self.resume_ref = None
        self.snapshot_tree = None
        self.view = RunView()
        self.switch_screen(SetupScreen())
        if run_id:
            self.say(f"Discarded; nothing was applied. The trajectory is kept: "
                     f"mulligan tui --run {run_id}", title="Discarded")

    # -- app-wide keys ---------------------------------------------------------------------

    async def action_quit(self) -> None:
        from tui.screens import ConfirmScreen

        if not self.running:
            self.exit()
            return

        async def answer(yes: bool | None) -> None:
            if yes:
                self.say("Stopping the run and removing its containers…", title="Quit")
                await asyncio.to_thread(self._cancel_run, CANCEL_WAIT_S)
                self.exit()

        self.push_screen(ConfirmScreen("Quit while the run is going?",
                                       "The run is cancelled and its sandboxes removed. Its "
                                       "trajectory is kept, so you can resume it later "
                                       "(mulligan tui --run ID).", yes="Quit"), answer)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"


# -- helpers --------------------------------------------------------------------------------


def recent_runs(limit: int = 30) -> list[tuple[str, str, str]]:
    """(run id, status, repository) of the newest recorded runs."""
    from agent.events import RunFinished

    out = []
    for path in sorted(runs_dir().glob("*/trajectory.jsonl"), reverse=True)[:limit]:
        try:
            events = read_events(path)
        except OSError:
            continue
        started = next((e for e in events if isinstance(e, RunStarted)), None)
        finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), None)
        out.append((path.parent.name, finished.status if finished else "interrupted",
                    started.repo if started else "?"))
    return out


def find_repo(path: Path) -> tuple[Path | None, MulliganError | None]:
    """The top of the git checkout holding `path`, or why there is none."""
    try:
        return find_repo_root(path), None
    except WorkspaceError as exc:
        return None, exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mulligan tui", description="The Mulligan terminal UI.")
    add_tui_arguments(parser)
    return parser


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    if not isinstance(args, argparse.Namespace):
        args = build_parser().parse_args(list(args) if args is not None else None)
    if getattr(args, "demo", False):
        from tui import demo

        app = MulliganApp(Path(demo.REPO), events=demo.demo_events())
        app.run()
        return app.return_code or 0
    flags = setting_values(args, TUI_SETTINGS)
    try:
        issue = read_issue(args)
    except ConfigError as exc:
        print(f"mulligan: error: {exc}", file=sys.stderr)
        return 2
    repo, problem = find_repo(Path(getattr(args, "path", None) or "."))
    run_ref = getattr(args, "run", None)
    app = MulliganApp(repo, flags=flags, issue=issue, open_run=run_ref,
                      startup_error=problem if run_ref is None else None)

    def terminate(_signum: int, _frame: object) -> None:  # SIGTERM: quit, cancelling the run
        asyncio.get_running_loop().call_soon_threadsafe(app.exit)

    with sigterm_as_ctrl_c(terminate):
        app.run()
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
