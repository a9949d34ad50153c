"""Two changes of one file made into one (agent/edits/combine.py)."""

from __future__ import annotations

from agent.edits.combine import merge

BASE = {"m.py": "a = 1\nb = 2\nc = 3\nd = 4\n", "n.py": "x = 1\n"}


def edit(path: str, old: str, new: str, files=BASE) -> dict[str, str]:
    return {**files, path: files[path].replace(old, new)}


def test_changes_of_different_lines_are_applied_together():
    merged = merge(BASE, edit("m.py", "a = 1", "a = 10"), edit("m.py", "c = 3", "c = 30"))
    assert merged == {**BASE, "m.py": "a = 10\nb = 2\nc = 30\nd = 4\n"}
    # a line added and a line changed further down
    merged = merge(BASE, edit("m.py", "a = 1", "a = 1\nz = 0"), edit("m.py", "d = 4", "d = 40"))
    assert merged["m.py"] == "a = 1\nz = 0\nb = 2\nc = 3\nd = 40\n"


def test_changes_of_different_files_are_applied_together():
    merged = merge(BASE, edit("m.py", "b = 2", "b = 20"), edit("n.py", "x = 1", "x = 2"))
    assert merged == {"m.py": "a = 1\nb = 20\nc = 3\nd = 4\n", "n.py": "x = 2\n"}


def test_changes_of_the_same_or_adjacent_lines_are_not_combined():
    assert merge(BASE, edit("m.py", "b = 2", "b = 20"), edit("m.py", "b = 2", "b = 21")) is None
    assert merge(BASE, edit("m.py", "b = 2", "b = 20"), edit("m.py", "c = 3", "c = 30")) is None
    deleted = {"m.py": BASE["m.py"]}
    assert merge(BASE, edit("n.py", "x = 1", "x = 2"), deleted) is None  # deletes what a edits


def test_a_change_that_leaves_the_file_alone_keeps_the_other():
    a = edit("m.py", "a = 1", "a = 10")
    assert merge(BASE, a, BASE) == a and merge(BASE, BASE, a) == a
