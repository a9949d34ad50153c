"""Widgets that draw parts of the view model (tui/state.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, ProgressBar, Static

from agent.events import CandidateState
from tui.state import STATE_TONES, BaselineView, CandidateView, Phase, RoundProgress, RunView


def tones(app: Any) -> dict[str, str]:
    """Colours of the current theme by role, for text drawn outside CSS (table cells)."""
    theme = app.current_theme
    return {
        "success": theme.success or "green", "warning": theme.warning or "yellow",
        "error": theme.error or "red", "accent": theme.accent or "cyan",
        "secondary": theme.secondary or "blue", "primary": theme.primary or "blue",
    }


def state_text(cand: CandidateView, palette: Mapping[str, str]) -> Text:
    tone = STATE_TONES.get(cand.state, "")
    style = palette.get(tone, "") if tone else "dim"
    if cand.state is CandidateState.PASSED:
        style += " bold"
    return Text(cand.label, style=style)


def clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:" if hours else "") + f"{rest // 60:02d}:{rest % 60:02d}"


def first_line(text: str, limit: int = 200) -> str:
    line = next((s for s in text.strip().splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def diff_renderable(patch: str, dark: bool) -> RenderableType:
    if not patch.strip():
        return Text("(no patch)", style="dim")
    return Syntax(patch, "diff", theme="monokai" if dark else "default",
                  background_color="default", word_wrap=False)


class SummaryPanel(Vertical):
    """What runs where: repository, test command, model and endpoint, budget."""

    def compose(self) -> ComposeResult:
        yield Label(id="summary-where", classes="line")
        yield Label(id="summary-model", classes="line")
        yield Label(id="summary-budget", classes="line")

    def show(self, view: RunView, repo: str, settings: Any | None) -> None:
        test_cmd = view.test_cmd or (settings.test_cmd if settings else "")
        model = view.model or (settings.model if settings else "")
        base_url = view.base_url if view.run_id else (settings.base_url if settings else None)
        cands = view.budget_candidates or (settings.candidates if settings else 0)
        rounds = view.budget_rounds or (settings.rounds if settings else 0)
        workers = view.workers or (settings.workers if settings else 0)
        where = Text.assemble(("repo ", "dim"), (view.repo or repo, "bold"),
                              ("   tests ", "dim"), (test_cmd, ""))
        model_text = Text.assemble(("model ", "dim"), (model, "bold"), (" @ ", "dim"),
                                   (base_url or "no endpoint set (local model)", ""))
        budget = Text.assemble(("budget ", "dim"),
                               (f"{cands} candidates × {rounds} rounds, {workers} workers", ""))
        if view.run_id:
            budget.append_text(Text.assemble(("   run ", "dim"), (view.run_id, "")))
        wide = self.screen.has_class("-wide")
        if wide:
            model_text.append("   ")
            model_text.append_text(budget)
        self.query_one("#summary-where", Label).update(where)
        self.query_one("#summary-model", Label).update(model_text)
        self.query_one("#summary-budget", Label).update(budget)
        self.query_one("#summary-budget", Label).display = not wide


class BaselinePanel(Static):
    """The unmodified code's test result: which tests fail (the targets)."""

    def show(self, view: RunView, palette: Mapping[str, str]) -> None:
        self.update(baseline_text(view.baseline, view.phase, palette, limit=self._limit()))

    def _limit(self) -> int:
        return 6 if self.screen.has_class("-wide") else 2


def baseline_text(baseline: BaselineView | None, phase: Phase, palette: Mapping[str, str],
                  limit: int = 3) -> Text:
    head = Text("baseline ", style="bold")
    if baseline is None:
        if phase in (Phase.STARTING, Phase.RUNNING, Phase.STOPPING):
            head.append("running the tests on the unmodified code…", style="dim")
        else:
            head.append("not run", style="dim")
        return head
    head.append(f"{len(baseline.targets)} failing", style=palette["error"] + " bold"
                if baseline.targets else "")
    head.append(f" · {len(baseline.passing)} passing · {baseline.seconds:.1f}s", style="dim")
    lines = [head]
    for nodeid in baseline.targets[:limit]:
        line = Text("  ✗ ", style=palette["error"])
        line.append(nodeid)
        message = first_line(baseline.message_for(nodeid), 120)
        if message:
            line.append(f"  {message}", style="dim")
        lines.append(line)
    if len(baseline.targets) > limit:
        lines.append(Text(f"  … and {len(baseline.targets) - limit} more", style="dim"))
    text = Text("\n").join(lines)
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class RoundBar(Horizontal):
    """One round's progress: how many of its candidates have a result."""

    def __init__(self, number: int) -> None:
        super().__init__(id=f"round-{number}", classes="round-bar")
        self.number = number
        self._shown: tuple[RoundProgress, str | None] | None = None

    def compose(self) -> ComposeResult:
        yield Label(f"Round {self.number}", classes="round-name")
        yield ProgressBar(total=1, show_eta=False, show_percentage=False, classes="round-progress")
        yield Label("", classes="round-detail")

    def on_mount(self) -> None:
        if self._shown is not None:
            self._draw(*self._shown)

    def show(self, progress: RoundProgress, best: str | None) -> None:
        self._shown = (progress, best)
        if self.is_mounted and self.children:
            self._draw(progress, best)

    def _draw(self, progress: RoundProgress, best: str | None) -> None:
        self.query_one(ProgressBar).update(total=max(1, progress.total), progress=progress.done)
        detail = progress.label
        if progress.finished and best and best.startswith(f"r{progress.number}c"):
            detail += f", best {best}"
        self.query_one(".round-detail", Label).update(detail)
        self.set_class(progress.finished, "-done")


class RoundsPanel(Vertical):
    def show(self, view: RunView) -> None:
        rounds = view.rounds()
        numbers = {r.number for r in rounds}
        bars = {bar.number: bar for bar in self.query(RoundBar)}
        for number in [n for n in bars if n not in numbers]:
            bars.pop(number).remove()
        for progress in rounds:
            bar = bars.get(progress.number)
            if bar is None:
                bar = RoundBar(progress.number)
                self.mount(bar)
            bar.show(progress, view.best)
        self.display = bool(rounds)
        if rounds:
            self.call_after_refresh(self.scroll_end, animate=False)


COLUMNS = (("mark", " ", 1), ("round", "Round", 5), ("candidate", "Candidate", None),
           ("state", "State", 13), ("fixed", "Fixed", 5), ("regr", "Regr", 4),
           ("tokens", "Tokens", 6), ("note", "Note", None))


class CandidateTable(DataTable):
    """Candidates grouped by round; a revision names its parent (r2c1 ← r1c3)."""

    BINDINGS: ClassVar = [Binding("enter", "select_cursor", "Inspect", show=True)]
    FIXED_WIDTH = 64  # every column but the note, with the cells' padding and a scrollbar

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        self._reset()

    def _reset(self) -> None:
        """No rows, and columns as wide as their labels (DataTable keeps the widest cell)."""
        self.clear(columns=True)
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)
        self._rows: dict[str, tuple] = {}

    def sync(self, view: RunView, palette: Mapping[str, str]) -> bool:
        """Bring the rows in line with the view; True when rows were added or removed."""
        wanted = view.ordered
        ids = [c.id for c in wanted]
        changed = False
        if list(self._rows) != ids[: len(self._rows)]:
            self._reset()
            changed = True
        previous_round = None
        for cand in wanted:
            cells = self._cells(view, cand, palette, cand.round != previous_round,
                                self.note_width)
            previous_round = cand.round
            old = self._rows.get(cand.id)
            if old is None:
                self.add_row(*cells, key=cand.id)
                changed = True
            elif old != cells:
                for (key, _, _), new, was in zip(COLUMNS, cells, old):
                    if new != was:
                        self.update_cell(cand.id, key, new, update_width=True)
            self._rows[cand.id] = cells
        return changed

    def restyle(self, view: RunView, palette: Mapping[str, str]) -> None:
        """Redraw every row (new colours or a new width), keeping the cursor's candidate."""
        row = self.cursor_row
        self._reset()
        self.sync(view, palette)
        if self.row_count:
            self.move_cursor(row=min(row, self.row_count - 1), animate=False)

    @property
    def note_width(self) -> int:
        return max(8, self.size.width - self.FIXED_WIDTH)

    @staticmethod
    def _cells(view: RunView, cand: CandidateView, palette: Mapping[str, str],
               first_of_round: bool, note_width: int = 40) -> tuple:
        chosen = view.chosen == cand.id
        mark = Text("★", style=palette["success"] if view.solved else palette["warning"]) \
            if chosen else Text(" ")
        name = Text(cand.id, style="bold" if chosen else "")
        if cand.parent:
            name.append(f" ← {cand.parent}", style="dim")
        tested = cand.final and cand.report is not None and cand.state not in (
            CandidateState.PATCH_FAILED, CandidateState.FORMAT_ERROR)
        regr = Text(str(cand.regressions), style=palette["error"]) if cand.regressions \
            else Text("0" if tested else "-", style="dim")
        note = cand.note
        if cand.state is CandidateState.REJECTED and cand.edited_tests and \
                not cand.note.startswith("rejected"):
            note = "edited " + ", ".join(cand.edited_tests)
        return (mark, Text(str(cand.round) if first_of_round else "", style="bold"), name,
                state_text(cand, palette), Text(cand.fixed_text, justify="right"),
                regr, Text(str(cand.tokens) if cand.tokens else "-", justify="right"),
                Text(first_line(note, note_width), style="dim"))


def tests_renderable(cand: CandidateView, baseline: BaselineView | None,
                     palette: Mapping[str, str]) -> RenderableType:
    """A candidate's test result: what still fails, what it broke, then the output."""
    parts: list[RenderableType] = []
    report = cand.report
    if report is None:
        if cand.state is CandidateState.FORMAT_ERROR:
            parts.append(Text("The answer could not be turned into edits:", style="bold"))
            parts.append(Text(cand.note or "(no detail)"))
        else:
            parts.append(Text(f"No test result yet ({cand.label}).", style="dim"))
        return Group(*parts)
    head = Text.assemble(("status ", "dim"), (str(report.get("status")), "bold"),
                         ("  exit code ", "dim"), (str(report.get("exit_code")), ""),
                         ("  ", ""), (f"{float(report.get('wall_s') or 0):.1f}s", "dim"),
                         ("  fixed ", "dim"), (f"{cand.targets_fixed}/{cand.targets_total}", ""),
                         ("  regressions ", "dim"), (str(cand.regressions), ""))
    parts.append(head)
    if report.get("patch_error"):
        parts.append(Text.assemble(("the patch did not apply: ", palette["error"]),
                                   (str(report["patch_error"]), "")))
    if cand.edited_tests:
        parts.append(Text.assemble(("edits tests: ", palette["error"]),
                                   (", ".join(cand.edited_tests), "")))
    outcomes = {t.get("nodeid"): t for t in cand.tests()}
    targets = baseline.targets if baseline else ()
    keep = set(baseline.passing) if baseline else set()
    failing = cand.failing_tests()
    if targets:
        parts.append(Text("\ntargets", style="bold"))
        for nodeid in targets:
            test = outcomes.get(nodeid)
            ok = test is not None and test.get("outcome") not in ("failed", "error")
            if not outcomes:
                ok = bool(report.get("exit_code") == 0)
            parts.append(Text.assemble(("  ✓ " if ok else "  ✗ ",
                                        palette["success"] if ok else palette["error"]),
                                       (nodeid, "")))
    regressions = [t for t in failing if t.get("nodeid") in keep]
    if regressions:
        parts.append(Text("\nregressions (passed before)", style="bold " + palette["error"]))
        for test in regressions:
            parts.append(Text.assemble(("  ✗ ", palette["error"]), (test["nodeid"], "")))
    if failing:
        parts.append(Text("\nfailing tests", style="bold"))
        for test in failing:
            parts.append(Text(f"── {test.get('nodeid')} ({test.get('outcome')})",
                              style=palette["warning"]))
            parts.append(Text(str(test.get("message") or "(no message)")))
    output = str(report.get("output") or "").rstrip()
    if output:
        parts.append(Text("\noutput" + (" (truncated)" if report.get("output_truncated")
                                        else ""), style="bold"))
        parts.append(Text(output))
    return Group(*parts)


def messages_renderable(cand: CandidateView, palette: Mapping[str, str]) -> RenderableType:
    if not cand.messages:
        return Text("The prompt is not known yet (the model has not answered).", style="dim")
    parts: list[RenderableType] = [
        Text(f"{cand.purpose or 'model'} request, {len(cand.messages)} messages",
             style="dim")]
    for message in cand.messages:
        role = str(message.get("role", "?"))
        parts.append(Text(f"\n── {role} " + "─" * 20, style="bold " + palette["accent"]))
        parts.append(Text(str(message.get("content", ""))))
    return Group(*parts)


def answer_renderable(cand: CandidateView) -> RenderableType:
    if cand.own:
        what = ("a one-token change of a suspect line that Mulligan tried itself "
                "(docs/search.md, \"One-token mutants\")") if cand.edit_format == "mutation" \
            else ("two changes applied together by Mulligan: an answer with another answer "
                  "or with a one-token change (docs/search.md, \"Combinations\")")
        return Group(Text(f"Not a model answer: {what}.\n", style="dim"), Text(cand.note))
    if cand.answer is None:
        return Text("No answer yet.", style="dim")
    head = Text(f"finish reason: {cand.finish_reason or '-'}  ·  {cand.tokens} tokens\n",
                style="dim")
    return Group(head, Text(cand.answer))


def candidate_header(cand: CandidateView, view: RunView, palette: Mapping[str, str]) -> Text:
    text = Text(cand.id, style="bold")
    if cand.parent:
        text.append(f" ← revision of {cand.parent}", style="dim")
    text.append("  ")
    text.append_text(state_text(cand, palette))
    text.append(f"  fixed {cand.fixed_text}  regressions {cand.regressions}  "
                f"{cand.tokens} tokens", style="")
    if view.chosen == cand.id:
        text.append("  ★ chosen" if view.finished else "  ★ best so far",
                    style=palette["success"] if view.solved else palette["warning"])
    if cand.note:
        label = "edits applied: " if cand.state not in (CandidateState.FORMAT_ERROR,
                                                         CandidateState.PATCH_FAILED) \
            and "," not in cand.note and " " not in cand.note.strip() else "note: "
        text.append(f"\n{label}{first_line(cand.note, 300)}", style="dim")
    return text


def file_list(changes: Sequence[Any], palette: Mapping[str, str]) -> Text:
    lines = []
    for change in changes:
        sign = {"added": "A", "deleted": "D", "renamed": "R"}.get(change.kind, "M")
        line = Text(f"  {sign} ", style="bold")
        line.append(change.path, style="bold")
        if change.added or change.removed:
            line.append(f"  +{change.added}", style=palette["success"])
            line.append(f" -{change.removed}", style=palette["error"])
        lines.append(line)
    return Text("\n").join(lines) if lines else Text("  (no files)", style="dim")
