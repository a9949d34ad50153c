"""agent/edits/lines.py: an answer to a line-repair question becomes an edit of the suspect
line it corrects, re-indented, with echoed context kept as it was; anything else is a
format error with a message for the model."""

from __future__ import annotations

import pytest

from agent.edits import apply_edits
from agent.edits.lines import LineTarget, code_of, line_edits, retarget
from agent.errors import FormatError

SOURCE = (
    "def check(label):\n"
    "    if label[1:3] == '--':\n"
    "        return False\n"
    "    size = len(label)\n"
    "    if label[1:3] == '--':\n"
    "        return False\n"
    "    return size > 0\n"
)
FILES = {"pkg/core.py": SOURCE, "tests/test_core.py": "def test(): pass\n"}
SECOND_IF = LineTarget("pkg/core.py", 5, "    if label[1:3] == '--':")
SIZE = LineTarget("pkg/core.py", 4, "    size = len(label)")
RETURN = LineTarget("pkg/core.py", 7, "    return size > 0")


def fixed(answer: str, targets=(SECOND_IF, SIZE)) -> str:
    return apply_edits(FILES, line_edits(answer, targets, FILES)).files["pkg/core.py"]


def with_line(number: int, *new: str, last: int | None = None) -> str:
    """SOURCE with lines `number`..`last` (default: just `number`) replaced by `new`."""
    lines = SOURCE.split("\n")
    return "\n".join(lines[:number - 1] + list(new) + lines[last or number:])


@pytest.mark.parametrize("answer", [
    "```python\nif label[2:4] == '--':\n```",  # no indentation: given the line's own
    "The slice is off by one.\n```python\n    if label[2:4] == '--':\n```\n",
    "It should read `if label[2:4] == '--':`",  # inline code, no fence
    "if label[2:4] == '--':",  # the bare line
])
def test_the_corrected_line_replaces_the_suspect_line_it_resembles(answer):
    # the same text is on line 2: the edit is anchored to line 5 only
    assert fixed(answer) == with_line(5, "    if label[2:4] == '--':")


def test_echoed_neighbours_are_context_and_a_new_line_keeps_its_relative_indent():
    answer = ("```python\n  size = len(label)\n  if label[2:4] == '--':\n      return False\n"
              "      label = label.strip()\n```")
    assert fixed(answer) == with_line(5, "    if label[2:4] == '--':", "        return False",
                                      "        label = label.strip()", last=6)


def test_an_unchanged_echo_does_not_anchor_before_a_changed_line():
    # both named lines are echoed; the changed one is the answer
    answer = "```python\n    size = len(label)\n    if label[2:4] == '--':\n```"
    assert fixed(answer) == with_line(5, "    if label[2:4] == '--':")


def test_the_better_ranked_line_wins_a_tie():
    answer = "```python\nreturn size >= 0\n```"
    assert fixed(answer, (RETURN, SIZE)) == with_line(7, "    return size >= 0")


def test_an_answer_that_changes_nothing_gives_no_change():
    assert fixed("```python\n    if label[1:3] == '--':\n```") == SOURCE


def test_search_replace_blocks_are_read_as_such():
    answer = ("pkg/core.py\n```python\n<<<<<<< SEARCH\n    size = len(label)\n=======\n"
              "    size = len(label.strip())\n>>>>>>> REPLACE\n```\n")
    assert fixed(answer) == with_line(4, "    size = len(label.strip())")


def test_a_whole_function_is_read_as_a_function_edit():
    answer = ("```python\ndef check(label):\n    return label[2:4] != '--'\n```")
    assert fixed(answer) == "def check(label):\n    return label[2:4] != '--'\n"


@pytest.mark.parametrize("answer, message", [
    ("I think the code is correct.\nNothing to change here.", "No corrected line found"),
    ("```python\nimport os\n```", "resembles none of the lines named (line 5, line 4)"),
    ("```python\n" + "x = 1\n" * 9 + "```", "9 lines of code"),
    ("```python\nif label[2:4 == '--':\n```", "no longer valid Python"),
])
def test_unusable_answers_are_format_errors_that_say_why(answer, message):
    with pytest.raises(FormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        line_edits(answer, (SECOND_IF, SIZE), FILES)


def test_a_line_that_changed_since_it_was_shown_is_refused():
    stale = LineTarget("pkg/core.py", 5, "    if label[0:2] == '--':")
    with pytest.raises(FormatError, match="changed since it was shown"):
        line_edits("```python\nif label[2:4] == '--':\n```", (stale,), FILES)


def test_code_of_takes_the_first_fence_and_trims_blank_lines():
    assert code_of("a\n```py\n\nx = 1\n\n```\n```py\ny = 2\n```") == ["x = 1"]
    assert code_of("two\nlines of prose") == []


def test_a_revision_retargets_the_lines_unless_the_change_moved_them():
    changed = {"pkg/core.py": with_line(5, "    if label[2:4] == '--':")}
    assert retarget((SECOND_IF, SIZE), changed, FILES) == (
        LineTarget("pkg/core.py", 5, "    if label[2:4] == '--':"), SIZE)
    longer = {"pkg/core.py": with_line(5, "    if label[2:4] == '--':", "        pass")}
    assert retarget((SECOND_IF, SIZE), longer, FILES) == ()
