"""A console subscriber: one line per meaningful event, on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from agent.events import (BaselineDone, CandidateState, CandidateUpdate, Event, Localized, ModelCall,
                          RoundFinished, RunError, RunFinished, RunStarted, Status)

STATE_STYLE = {
    CandidateState.PASSED: "green", CandidateState.FAILED: "yellow",
    CandidateState.FORMAT_ERROR: "magenta", CandidateState.PATCH_FAILED: "magenta",
    CandidateState.TIMED_OUT: "red", CandidateState.REJECTED: "red",
    CandidateState.CANCELLED: "dim",
}
FINAL_STATES = set(STATE_STYLE)


class ConsoleProgress:
    def __init__(self, console: Console | None = None, verbose: bool = False) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.verbose = verbose

    def __call__(self, event: Event) -> None:
        c = self.console
        if isinstance(event, RunStarted):
            c.print(f"[bold]mulligan[/] run {event.run_id}: model {event.model}"
                    f"{' at ' + event.base_url if event.base_url else ''}, "
                    f"{event.candidates} candidates x {event.rounds} rounds, "
                    f"{event.workers} workers")
        elif isinstance(event, Status):
            c.print(f"[dim]{event.message}[/]")
        elif isinstance(event, BaselineDone):
            c.print(f"baseline: {len(event.targets)} failing, {len(event.passing)} passing "
                    f"({event.seconds:.1f}s)")
            for target in event.targets[:10]:
                c.print(f"  [red]x[/] {target}")
        elif isinstance(event, Localized):
            for rank, s in enumerate(event.suspects[:3], 1):
                c.print(f"[dim]suspect {rank}: {s['path']}:{s['line']}-{s['end_line']} "
                        f"{s['function']} ({', '.join(s['signals'])})[/]")
            for entry in event.lines[:3]:
                c.print(f"[dim]suspect line: {entry['path']}:{entry['line']} "
                        f"{escape(entry['text'])}[/]")
        elif isinstance(event, ModelCall) and self.verbose:
            c.print(f"[dim]model: {event.purpose}, {len(event.answers)} answer(s), "
                    f"{event.prompt_tokens + event.completion_tokens} tokens[/]")
        elif isinstance(event, CandidateUpdate) and event.state in FINAL_STATES:
            style = STATE_STYLE[event.state]
            parent = f" <- {event.parent}" if event.parent else ""
            detail = f"{event.targets_fixed}/{event.targets_total} fixed"
            if event.regressions:
                detail += f", {event.regressions} regressions"
            if event.state in (CandidateState.FORMAT_ERROR, CandidateState.PATCH_FAILED):
                detail = event.note.splitlines()[0][:100] if event.note else ""
            if event.state is CandidateState.REJECTED:
                detail = event.note[:300] if event.note.startswith("rejected") else \
                    "edited tests: " + ", ".join(event.edited_tests)
            c.print(f"  {event.id}{parent}: [{style}]{event.state.value}[/] {escape(detail)}")
        elif isinstance(event, RoundFinished):
            c.print(f"round {event.round} done: best {event.best or '-'}"
                    f"{' (passes)' if event.solved else ''}")
        elif isinstance(event, RunFinished):
            c.print(f"[bold]{event.status}[/] in {event.seconds:.1f}s, {event.tokens} tokens, "
                    f"${event.cost_usd:.4f}{': ' + event.reason if event.reason else ''}")
        elif isinstance(event, RunError):
            c.print(f"[red]error:[/] {event.message}")
