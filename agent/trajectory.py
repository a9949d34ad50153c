"""The JSONL trajectory: every event of a run, appended and flushed as it happens, so a run
can be inspected (`mulligan replay`), and resumed without repeating finished model calls."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs

from agent.errors import ConfigError, NoSuchRun
from agent.events import Event, ModelCall, RunStarted, event_from_dict


def runs_dir() -> Path:
    root = os.environ.get("MULLIGAN_HOME")
    base = Path(root) if root else Path(platformdirs.user_data_dir("mulligan"))
    return base / "runs"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def run_path(run: str) -> Path:
    """A run id or a path to a trajectory file."""
    candidate = Path(run)
    if candidate.is_file():
        return candidate
    path = runs_dir() / run / "trajectory.jsonl"
    if not path.is_file():
        raise NoSuchRun(f"no run {run!r}: no trajectory at {path}")
    return path


class TrajectoryWriter:
    """An event subscriber that appends one JSON line per event and flushes it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        self._file.write(json.dumps(event.to_dict()) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def json_lines(path: Path) -> Iterator[Any]:
    """Each non-blank line of a JSONL file, parsed; None for a line that is not JSON (one
    cut short by a crash), so the reader decides whether it ends the usable part."""
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    yield None


def read_events(path: Path) -> list[Event]:
    events = []
    for record in json_lines(path):
        try:
            events.append(event_from_dict(record))
        except (ValueError, KeyError, TypeError):
            break  # a line cut by a crash ends the usable part
    return events


def recorded_calls(events: list[Event]) -> dict[str, list[ModelCall]]:
    """Finished model calls by request key, in order, for a resumed run to reuse."""
    calls: dict[str, list[ModelCall]] = {}
    for event in events:
        if isinstance(event, ModelCall):
            calls.setdefault(event.key, []).append(event)
    return calls


def started_event(events: list[Event]) -> RunStarted:
    for event in events:
        if isinstance(event, RunStarted):
            return event
    raise ConfigError("the trajectory has no run_started record")
