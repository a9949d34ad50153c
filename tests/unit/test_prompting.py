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


def test_the_same_failure_is_the_same_prompt_from_run_to_run():
    """Object addresses and durations change between two runs of the same tests; the
    failures quoted to the model must not (seen: one greedy answer passed, the other failed)."""
    from sandbox.api import Outcome, TestCase

    def run(address: str, seconds: str) -> str:
        p = prompter()
        message = f"assert 30 == 288\n +  where 30 = <function fact at {address}>(4)"
        case = TestCase("tests/test_m.py::test_fact", Outcome.FAILED, message)
        p.baseline_report = Report(RunStatus.COMPLETED, 1, 0.1,
                                   output=f"{message}\n1 failed, 2 passed in {seconds}s",
                                   tests={case.nodeid: case})
        parent = Candidate("r1c1", 1, None, answer="x", patch="--- a/m.py", fmt="whole_file")
        parent.report = p.baseline_report
        parent.still_failing = [case]
        return str(p.failure_views([case])) + p.feedback(parent)

    first, second = run("0x7fbcae9c9440", "0.12"), run("0x7F82D0A71440", "3.07")
    assert first == second
    assert "<function fact>(4)" in first and "0x" not in first
