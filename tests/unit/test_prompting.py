"""The Prompter's choice of edit format: the default per model, the format a stalled round
tries instead, and feedback that keeps the format its conversation asked for."""

from __future__ import annotations

import pytest

from agent.candidate import Candidate
from agent.config import Settings
from agent.context.repomap import RepoMap
from agent.prompting import Prompter
from sandbox.api import RunStatus
from sandbox.api import TestReport as Report
from tests.support.scripted_model import ScriptedModel


def prompter(model: str = "local", edit_format: str | None = None,
             partial: bool = False) -> Prompter:
    settings = Settings(model=model, edit_format=edit_format)
    p = Prompter(settings, RepoMap(), ScriptedModel([]), base_files={"m.py": "x = 1\n"})
    p.partial_sources = partial
    p.baseline_report = Report(RunStatus.COMPLETED, 1, 0.1)
    return p


@pytest.mark.parametrize(("model", "chosen", "partial", "fmt", "other"), [
    ("local", None, False, "whole_file", "search_replace"),
    ("local", None, True, "function", "search_replace"),
    ("gpt-4o", None, False, "search_replace", "whole_file"),
    ("gpt-4o", None, True, "search_replace", "function"),
    ("local", "function", False, "function", "search_replace"),
])
def test_a_stalled_round_never_asks_for_a_whole_file_shown_in_part(model, chosen, partial,
                                                                    fmt, other):
    p = prompter(model, chosen, partial)
    assert (p.edit_format, p.other_format()) == (fmt, other)


def test_feedback_keeps_the_format_its_conversation_asked_for():
    p = prompter()  # the run's format: whole file
    parent = Candidate("r3c1", 3, None, answer="no edits", format_error="No edits found",
                       fmt="search_replace")
    assert "SEARCH/REPLACE" in p.feedback(parent)
    parent.fmt = None
    assert "SEARCH/REPLACE" not in p.feedback(parent)
