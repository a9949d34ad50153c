"""One-token mutants of suspect lines (agent/edits/mutants.py): which changes, in which
order, and that every one parses and stays one line of one file."""

from __future__ import annotations

import ast

from agent.context.localize import SuspectLine
from agent.edits.mutants import Mutant, mutants

SOURCE = """\
import operator


def check(label, limit):
    if len(label) > 64:
        return False
    if label[1:3] == '--':
        raise ValueError(label)
    low = min(limit, 128)
    op = operator.lt if limit else operator.le
    return op(low, len(label)) and label.token_next(0)
    return label[1:]
"""


def at(line: int, path: str = "m.py") -> SuspectLine:
    text = SOURCE.split("\n")[line - 1]
    return SuspectLine(path, line, text, 1.0, "check")


def changed(found: list[Mutant], line: int) -> list[str]:
    return [m.after.strip() for m in found if m.line == line]


def test_each_kind_of_single_site_repair_is_among_the_mutants():
    files = {"m.py": SOURCE}
    found = mutants(files, [at(n) for n in (5, 7, 9, 10, 11, 12)], limit=500)
    assert "if len(label) >= 64:" in changed(found, 5)  # relational operator
    assert "if len(label) > 63:" in changed(found, 5)  # off by one
    assert "if len(label) > 128:" in changed(found, 5)  # another constant of the function
    assert "if not (len(label) > 64):" in changed(found, 5)  # negated condition
    assert "if label[2:4] == '--':" in changed(found, 7)  # a slice shifted as a whole
    # ... before one bound alone, which would make the comparison never true
    assert changed(found, 7).index("if label[2:4] == '--':") < \
        changed(found, 7).index("if label[2:3] == '--':")
    assert "if label[1:3] != '--':" in changed(found, 7)
    assert "return label[1:-1]" in changed(found, 12)  # an open slice cut short
    assert "low = max(limit, 128)" in changed(found, 9)  # opposite name
    assert "op = operator.le if limit else operator.lt" in changed(found, 10)  # arms swapped
    assert "return op(len(label), low) and label.token_next(0)" in changed(found, 11)  # args
    assert "return op(low, len(label)) or label.token_next(0)" in changed(found, 11)
    assert "return op(low, len(label)) and label.token_prev(0)" in changed(found, 11)


def test_mutants_parse_keep_the_indentation_and_follow_the_line_order():
    files = {"m.py": SOURCE}
    found = mutants(files, [at(7), at(5)], limit=500)
    assert {m.line for m in found[:3]} == {7}  # the first suspect line's mutants first
    for mutant in found:
        new = mutant.apply(files)["m.py"]
        ast.parse(new)
        old_lines, new_lines = SOURCE.split("\n"), new.split("\n")
        assert len(new_lines) == len(old_lines)
        assert [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b] == \
            [mutant.line - 1]
        assert mutant.after.startswith("    ") and not mutant.after.startswith("     ")
    assert len({(m.line, m.after) for m in found}) == len(found)


def test_the_limit_and_lines_that_cannot_be_mutated():
    files = {"m.py": SOURCE}
    assert len(mutants(files, [at(n) for n in (5, 7, 9, 10, 11)], limit=7)) == 7
    assert mutants(files, [at(1)], limit=50) == []  # `import operator`: nothing to change
    assert mutants(files, [SuspectLine("gone.py", 3, "x", 1.0, "f")], limit=50) == []
    assert mutants(files, [SuspectLine("m.py", 99, "x", 1.0, "f")], limit=50) == []


def test_a_line_inside_a_longer_expression_is_mutated_in_place():
    source = ("def f(rv, lo, lo_open):\n    return (\n"
              "        operator.lt if lo_open else operator.le\n    )(rv, lo)\n")
    files = {"m.py": source}
    found = mutants(files, [SuspectLine("m.py", 3, "", 1.0, "f")], limit=50)
    assert "        operator.le if lo_open else operator.lt" in [m.after for m in found]
    assert all(m.line == 3 for m in found)
    assert "lt if" in found[0].describe() and found[0].describe().startswith("m.py:3: ")
