"""The screens: set up a run, watch it, inspect a candidate, and the modals that decide."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.table import Table as RichTable
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.validation import Integer
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    Log,
    OptionList,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist
from textual.widgets.option_list import Option

from agent.frontends.options import bounds
from tui.state import ErrorHelp, FileChange, Phase, RunView, applicable, patch_of
from tui.widgets import (
    BaselinePanel,
    CandidateTable,
    RoundsPanel,
    SummaryPanel,
    answer_renderable,
    candidate_header,
    clock_text,
    diff_renderable,
    file_list,
    messages_renderable,
    tests_renderable,
    tones,
)

if TYPE_CHECKING:
    from tui.app import MulliganApp

SETUP_HELP = ("First the tests run on your code as it is: the ones that fail are the targets. "
              "Then candidates are sampled, each tested in its own sandbox, and the best "
              "revised. Your files change only when you apply a patch.")
# The budget inputs and the bounds Settings gives them.
BUDGET_FIELDS = tuple((name, *bounds(name)) for name in ("candidates", "rounds", "workers"))


class _AppScreen:
    """Typed access to the app for the screens below."""

    @property
    def mulligan(self) -> MulliganApp:
        return self.app  # type: ignore[attr-defined,return-value]


# -- setup ----------------------------------------------------------------------------------


class SetupScreen(_AppScreen, Screen):
    """What the run will do, editable before it starts."""

    BINDINGS: ClassVar = [
        Binding("ctrl+r", "start", "Start run", priority=True),
        Binding("ctrl+o", "open_runs", "Open a run", priority=True),
    ]

    def compose(self) -> ComposeResult:
        app = self.mulligan
        s = app.settings
        yield Header()
        with VerticalScroll(id="setup"):
            yield Static(self._repo_text(), id="setup-repo")
            with Grid(id="setup-form"):
                yield Label("Test command", classes="field-label")
                yield Input(s.test_cmd if s else "", id="in-test_cmd",
                            placeholder="python -m pytest -q")
                yield Label("Model", classes="field-label")
                yield Input(s.model if s else "", id="in-model", placeholder="gpt-4o-mini")
                yield Label("Endpoint", classes="field-label")
                yield Input(s.base_url or "" if s else "", id="in-base_url",
                            placeholder="empty: OPENAI_BASE_URL, else the local model")
                yield Label("Budget", classes="field-label")
                with Horizontal(id="budget"):
                    for name, low, high in BUDGET_FIELDS:
                        yield Input(str(getattr(s, name)) if s else "", id=f"in-{name}",
                                    type="integer",
                                    validators=[Integer(low, high)], classes="budget-input")
                        yield Label({"candidates": "candidates ×", "rounds": "rounds,",
                                     "workers": "workers"}[name], classes="budget-label")
                yield Label("Issue", classes="field-label")
                yield Input(app.issue or "", id="in-issue",
                            placeholder="optional: the bug in words, when no test fails yet")
            with Horizontal(id="setup-buttons"):
                yield Button("Start run", id="start", variant="primary")
                yield Button("Open a run…", id="open-runs")
            yield Static(Text(SETUP_HELP, style="dim"), id="setup-help")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.mulligan.repo_label
        self.query_one("#start", Button).focus()
        self._fit(self.size.height)

    def on_resize(self, event: Any) -> None:
        self._fit(event.size.height)

    def _fit(self, height: int) -> None:
        compact = height < 32
        for widget in self.query(Input):
            widget.compact = compact
        for button in self.query(Button):
            button.compact = compact
        self.set_class(compact, "-compact")

    def _repo_text(self) -> Text:
        app = self.mulligan
        text = Text.assemble(("Repository  ", "dim"), (str(app.repo or "?"), "bold"))
        if app.settings is not None and app.settings.image:
            text.append_text(Text.assemble(("   image ", "dim"), (app.settings.image, "")))
        return text

    def form(self) -> tuple[dict[str, Any], str | None] | None:
        """The settings flags the form holds, or None (and a message) when one is invalid."""
        flags: dict[str, Any] = {}
        for key in ("test_cmd", "model", "base_url"):
            value = self.query_one(f"#in-{key}", Input).value.strip()
            flags[key] = value or None
        for name, low, high in BUDGET_FIELDS:
            widget = self.query_one(f"#in-{name}", Input)
            try:
                value = int(widget.value.strip())
            except ValueError:
                value = None
            if value is None or not low <= value <= high:
                self.mulligan.say(f"{name} must be a whole number from {low} to {high}",
                                  "error", title="Budget")
                widget.focus()
                return None
            flags[name] = value
        issue = self.query_one("#in-issue", Input).value.strip() or None
        return flags, issue

    def action_start(self) -> None:
        form = self.form()
        if form is not None:
            self.mulligan.start_from_form(*form)

    def action_open_runs(self) -> None:
        self.mulligan.pick_run()

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#open-runs")
    def _open_pressed(self) -> None:
        self.action_open_runs()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_start()


# -- the run --------------------------------------------------------------------------------


class _PatchActions(_AppScreen):
    """Apply, save and copy the patch of the candidate the screen is showing."""

    def shown(self) -> str | None:
        raise NotImplementedError

    def action_apply(self) -> None:
        self.mulligan.request_apply(self.shown())

    def action_save(self) -> None:
        self.mulligan.request_save(self.shown())

    def action_copy(self) -> None:
        self.mulligan.copy_patch(self.shown())


class RunScreen(_PatchActions, Screen):
    """The run, live: baseline, per-round progress, every candidate, totals."""

    HORIZONTAL_BREAKPOINTS: ClassVar = [(0, "-narrow"), (140, "-wide")]
    BINDINGS: ClassVar = [
        Binding("enter", "inspect", "Inspect"),
        Binding("a", "apply", "Apply"),
        Binding("w", "save", "Save"),
        Binding("y", "copy", "Copy"),
        Binding("s", "stop", "Stop early"),
        Binding("r", "resume", "Resume"),
        Binding("x", "discard", "Discard"),
        Binding("l", "toggle_log", "Log"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._log_lines = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield SummaryPanel(id="summary")
        yield BaselinePanel(id="baseline")
        yield RoundsPanel(id="rounds")
        with Horizontal(id="main"):
            yield CandidateTable(id="candidate-table")
            with VerticalScroll(id="preview"):
                yield Static(id="preview-head")
                yield Static(id="preview-diff")
        yield Log(id="log", max_lines=500)
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.mulligan.repo_label
        self.query_one("#log", Log).display = False
        self.watch(self.app, "theme", self._theme_changed, init=False)
        self.view_changed(self.mulligan.view)
        self.set_interval(1.0, self._tick)
        self.query_one(CandidateTable).focus()

    # -- drawing ---------------------------------------------------------------------------

    def view_changed(self, view: RunView) -> None:
        app = self.mulligan
        palette = tones(app)
        self.query_one(SummaryPanel).show(view, str(app.repo or ""), app.settings)
        self.query_one(BaselinePanel).show(view, palette)
        self.query_one(RoundsPanel).show(view)
        table = self.query_one(CandidateTable)
        had_rows = table.row_count
        table.sync(view, palette)
        if view.finished is not None and view.chosen and not getattr(self, "_moved", False):
            self._moved = True
            self.select(view.chosen)
        elif not had_rows and table.row_count:
            table.move_cursor(row=0)
        self._draw_status(view)
        self._draw_preview()
        log = self.query_one("#log", Log)
        if len(view.log) < self._log_lines:
            log.clear()
            self._log_lines = 0
        new = view.log[self._log_lines:]
        if new:
            log.write_lines(list(new))
            self._log_lines = len(view.log)
        self.refresh_bindings()

    def _theme_changed(self) -> None:
        view = self.mulligan.view
        self.query_one(CandidateTable).restyle(view, tones(self.app))
        self.view_changed(view)

    def _tick(self) -> None:
        if self.mulligan.view.live:
            self._draw_status(self.mulligan.view)

    def _draw_status(self, view: RunView) -> None:
        app = self.mulligan
        palette = tones(app)
        text = Text()
        text.append(f"⏱ {clock_text(view.elapsed(app.clock()))}", style="bold")
        text.append(f"  {view.tokens:,} tokens  ${view.cost_usd:.4f}", style="")
        if self.has_class("-wide"):
            text.append(f"  {view.model_calls} model calls", style="dim")
        text.append("  │  ", style="dim")
        tone = {Phase.FINISHED: "success" if view.solved else "warning",
                Phase.ERROR: "error", Phase.INTERRUPTED: "warning",
                Phase.STOPPING: "warning"}.get(view.phase, "accent")
        status = view.status or view.phase.value
        if view.phase is Phase.STOPPING and "stopping" not in status:
            status = "stopping after this round… " + status
        text.append(status, style=palette[tone])
        self.query_one("#status", Static).update(text)

    def _draw_preview(self) -> None:
        preview = self.query_one("#preview")
        if not self.has_class("-wide"):
            return
        view = self.mulligan.view
        cand = view.candidate(self.selected)
        head = self.query_one("#preview-head", Static)
        body = self.query_one("#preview-diff", Static)
        if cand is None:
            head.update(Text("No candidate yet.", style="dim"))
            body.update("")
            return
        head.update(candidate_header(cand, view, tones(self.app)))
        key = (cand.id, cand.patch, self.app.current_theme.dark)
        if getattr(preview, "_key", None) != key:
            preview._key = key  # type: ignore[attr-defined]
            body.update(diff_renderable(patch_of(view, cand.id) or cand.patch,
                                        self.app.current_theme.dark))

    def shown(self) -> str | None:
        return self.selected

    @property
    def selected(self) -> str | None:
        table = self.query_one(CandidateTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return key.value if key is not None else None

    def select(self, cid: str) -> None:
        table = self.query_one(CandidateTable)
        with suppress(RowDoesNotExist):
            table.move_cursor(row=table.get_row_index(cid))

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._draw_preview()
        self.refresh_bindings()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_inspect()

    def on_resize(self) -> None:
        self.call_after_refresh(self._relayout)

    def _relayout(self) -> None:
        self.query_one(CandidateTable).restyle(self.mulligan.view, tones(self.app))
        self.view_changed(self.mulligan.view)

    # -- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        app = self.mulligan
        view = app.view
        if action == "stop":
            return True if view.phase is Phase.RUNNING or view.phase is Phase.STARTING else \
                (None if view.phase is Phase.STOPPING else False)
        if action == "resume":
            return app.can_resume
        if action == "discard":
            return not view.live
        if action in ("apply", "save", "copy", "inspect"):
            if not view.candidates:
                return None
            if action == "apply":
                return True if applicable(view, self.selected).patch else None
            if action in ("save", "copy"):
                return True if patch_of(view, self.selected) else None
        return True

    def action_inspect(self) -> None:
        if self.selected:
            self.app.push_screen(InspectScreen(self.selected))

    def action_stop(self) -> None:
        self.mulligan.stop_run()

    def action_resume(self) -> None:
        self._moved = False
        self.mulligan.resume_run()

    def action_discard(self) -> None:
        self.mulligan.discard()

    def action_toggle_log(self) -> None:
        log = self.query_one("#log", Log)
        log.display = not log.display


# -- one candidate --------------------------------------------------------------------------


TABS = ("diff", "tests", "prompt", "answer")


class InspectScreen(_PatchActions, Screen):
    """One candidate: its diff, its test result, the prompt and the model's answer."""

    BINDINGS: ClassVar = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "apply", "Apply"),
        Binding("w", "save", "Save"),
        Binding("y", "copy", "Copy"),
        Binding("1", "tab('diff')", "Diff", show=False),
        Binding("2", "tab('tests')", "Tests", show=False),
        Binding("3", "tab('prompt')", "Prompt", show=False),
        Binding("4", "tab('answer')", "Answer", show=False),
        Binding("left_square_bracket", "step(-1)", "Prev", key_display="["),
        Binding("right_square_bracket", "step(1)", "Next", key_display="]"),
    ]

    def __init__(self, cid: str, tab: str = "diff") -> None:
        super().__init__()
        self.cid = cid
        self.initial_tab = tab
        self._drawn: Any = None

    def shown(self) -> str | None:
        return self.cid

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="inspect-head")
        with TabbedContent(initial=self.initial_tab, id="inspect-tabs"):
            with TabPane("1 Diff", id="diff"), VerticalScroll(classes="body-scroll wide-body"):
                yield Static(id="diff-body", classes="body")
            with TabPane("2 Tests", id="tests"), VerticalScroll(classes="body-scroll"):
                yield Static(id="tests-body", classes="body")
            with TabPane("3 Prompt", id="prompt"), VerticalScroll(classes="body-scroll"):
                yield Static(id="prompt-body", classes="body")
            with TabPane("4 Answer", id="answer"), VerticalScroll(classes="body-scroll"):
                yield Static(id="answer-body", classes="body")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"candidate {self.cid}"
        self.watch(self.app, "theme", lambda: self.view_changed(self.mulligan.view, True),
                   init=False)
        self.view_changed(self.mulligan.view)
        self.query_one(f"#{self.initial_tab} .body-scroll").focus()

    def view_changed(self, view: RunView, force: bool = False) -> None:
        cand = view.candidate(self.cid)
        palette = tones(self.app)
        if cand is None:
            self.query_one("#inspect-head", Static).update(
                Text(f"{self.cid} is not part of this run any more.", style="dim"))
            return
        key = (cand, view.chosen, view.finished, view.solved, view.baseline)
        if key == self._drawn and not force:
            return
        self._drawn = key
        self.query_one("#inspect-head", Static).update(candidate_header(cand, view, palette))
        patch = patch_of(view, self.cid) or cand.patch
        self.query_one("#diff-body", Static).update(
            diff_renderable(patch, self.app.current_theme.dark) if patch else
            Text(cand.note or "No patch: " + cand.label, style="dim"))
        self.query_one("#tests-body", Static).update(tests_renderable(cand, view.baseline,
                                                                      palette))
        self.query_one("#prompt-body", Static).update(messages_renderable(cand, palette))
        self.query_one("#answer-body", Static).update(answer_renderable(cand))
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        view = self.mulligan.view
        if action == "apply":
            return True if applicable(view, self.cid).patch else None
        if action in ("save", "copy"):
            return True if patch_of(view, self.cid) else None
        return True

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self.query_one(f"#{tab} .body-scroll").focus()

    def action_step(self, delta: int) -> None:
        ids = [c.id for c in self.mulligan.view.ordered]
        if self.cid not in ids or not ids:
            return
        self.cid = ids[(ids.index(self.cid) + delta) % len(ids)]
        self.sub_title = f"candidate {self.cid}"
        self._drawn = None
        self.view_changed(self.mulligan.view)


# -- modals ---------------------------------------------------------------------------------


class ConfirmApplyScreen(ModalScreen[bool]):
    """Exactly which files applying a candidate changes; nothing is written before 'y'."""

    BINDINGS: ClassVar = [
        Binding("y", "confirm", "Apply"),
        Binding("n,escape", "cancel", "Cancel"),
    ]

    def __init__(self, cid: str, repo: Path, changes: list[FileChange], warning: str = "") -> None:
        super().__init__()
        self.cid = cid
        self.repo = repo
        self.changes = changes
        self.warning = warning

    def compose(self) -> ComposeResult:
        palette = tones(self.app)
        with Vertical(id="apply-dialog", classes="dialog"):
            yield Label(f"Apply {self.cid} to the working tree?", classes="dialog-title")
            yield Static(Text.assemble(("in ", "dim"), (str(self.repo), "bold")))
            yield Static(Text(f"{len(self.changes)} file(s) change:", style="bold"),
                         classes="dialog-section")
            yield Static(file_list(self.changes, palette), id="apply-files")
            if self.warning:
                yield Static(Text("⚠ " + self.warning, style=palette["warning"]),
                             id="apply-warning")
            yield Static(Text("Only these files are written; the index and the stash are left "
                              "as they are. Refused if your files changed since the run's "
                              "snapshot.", style="dim"), classes="dialog-note")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply (y)", id="yes", variant="warning")
                yield Button("Cancel (n)", id="no")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS: ClassVar = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, title: str, body: str, yes: str = "Yes") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.body, classes="dialog-note")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class SavePatchScreen(ModalScreen[Path | None]):
    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, cid: str, default: Path) -> None:
        super().__init__()
        self.cid = cid
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Save {self.cid}'s patch", classes="dialog-title")
            yield Static(Text("File (git apply takes it as it is):", style="dim"))
            yield Input(str(self.default), id="patch-path")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _save(self) -> None:
        value = self.query_one(Input).value.strip()
        self.dismiss(Path(value).expanduser() if value else None)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._save()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self._save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ErrorScreen(ModalScreen[None]):
    """What went wrong, in words, and how to fix it; never a traceback."""

    BINDINGS: ClassVar = [
        Binding("escape,enter", "close", "Back"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, help: ErrorHelp, fatal: bool = False) -> None:
        super().__init__()
        self.help = help
        self.fatal = fatal

    def compose(self) -> ComposeResult:
        palette = tones(self.app)
        fixes = RichTable.grid(padding=(0, 1))
        fixes.add_column(width=3, justify="right")
        fixes.add_column(ratio=1)
        for fix in self.help.fixes:
            fixes.add_row(Text("•", style=palette["accent"]), Text(fix))
        with Vertical(id="error-dialog", classes="dialog"):
            yield Label(self.help.title, classes="dialog-title", id="error-title")
            yield Static(Text(self.help.message), id="error-message")
            yield Static(Text("How to fix it", style="bold"), classes="dialog-section")
            yield Static(fixes, id="error-fixes")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Quit (q)" if self.fatal else "Back (esc)", id="close",
                             variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        # a screen dismissed while it mounts (a second error right behind the first) has no
        # button left to focus
        for button in self.query("#close").results(Button):
            button.focus()

    def action_close(self) -> None:
        if self.fatal:
            self.app.exit(return_code=2)
        else:
            self.dismiss(None)

    @on(Button.Pressed, "#close")
    def _pressed(self) -> None:
        self.action_close()


class FatalErrorScreen(ErrorScreen):
    """An error that leaves nothing to do here (no repository, settings that do not load)."""

    BINDINGS: ClassVar = [Binding("escape,enter,q", "close", "Quit")]

    def __init__(self, help: ErrorHelp) -> None:
        super().__init__(help, fatal=True)


class RunsScreen(ModalScreen[str | None]):
    """Recorded runs to open (newest first)."""

    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, runs: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.runs = runs

    def compose(self) -> ComposeResult:
        with Vertical(id="runs-dialog", classes="dialog"):
            yield Label("Open a run", classes="dialog-title")
            if self.runs:
                yield OptionList(*[Option(Text.assemble((run_id, "bold"), "  ",
                                                        (f"{status:<14}", ""), "  ",
                                                        (repo, "dim")), id=run_id)
                                   for run_id, status, repo in self.runs], id="runs-list")
            else:
                yield Static(Text("No runs recorded yet.", style="dim"))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
        yield Footer()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
