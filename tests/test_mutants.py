"""One-token mutants of suspect lines (agent/edits/mutants.py): which changes, in which
order, and that every one parses and stays one line of one file."""

from __future__ import annotations

import ast

from agent.context.localize import SuspectLine
from agent.edits.mutants import Mutant, mutants
from agent.edits.wider import Scope, scope_of

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


WIDE = """\
def hanoi(height, start=1, end=3):
    steps = []
    if height > 0:
        helper = ({1, 2, 3} - {start} - {end}).pop()
        steps.append((start, helper))
        steps.extend(hanoi(height - 1, helper, end))
        total = 1 + len(steps) * [0]
        total -= sum(steps).real.conjugate()
        if total == 0 and 'x' in steps:
            return os.path.join(steps, ' I')
    return steps
"""


def wide(line: int) -> list[str]:
    found = mutants({"h.py": WIDE}, [SuspectLine("h.py", line, "", 1.0, "hanoi")], limit=500)
    return [m.after.strip() for m in found]


def test_the_wider_mutants_change_a_whole_expression():
    # another variable of the function bound above the line, the nearest first
    fifth = wide(5)
    assert "steps.append((start, end))" in fifth
    assert fifth.index("steps.append((start, steps))") < fifth.index("steps.append((start, end))")
    assert "steps.append((helper, start))" in fifth  # the two items of a pair swapped
    assert not any("total" in m for m in fifth)  # bound below the line: not yet a variable
    sixth = wide(6)
    assert "steps.extend(hanoi(height - 1 + 1, helper, end))" not in sixth  # a literal's job
    assert "steps.extend(hanoi(height - 1, helper + 1, end))" in sixth  # a recursive call
    assert "steps.extend(hanoi(height - 1, helper, end - 1))" in sixth
    seventh = wide(7)
    assert "total = 1 + (len(steps) - 1) * [0]" not in seventh  # precedence kept by the AST:
    assert "total = 1 + len(steps) - 1 * [0]" in seventh  # ... `len(steps) - 1` as an operand
    assert "total = len(steps) * [0]" in seventh  # an operand dropped
    assert "total = 1 + len(steps)" in seventh
    eighth = wide(8)
    assert "total = sum(steps).real.conjugate()" in eighth  # a compound assignment made plain
    assert "total -= sum(steps).real" in eighth  # a method call of a chain dropped
    ninth = wide(9)
    assert "if total < 0 and 'x' in steps:" in ninth  # any other comparison
    assert "if total == 0 and steps in 'x':" in ninth  # the operands of `in` swapped
    tenth = wide(10)
    assert "return os.path.join(steps, 'I ')" in tenth  # a short string's space moved
    assert not any(m.startswith("return os.path(") or m == "return os.path" for m in tenth)


def test_one_token_mutants_of_every_line_come_before_any_wider_one():
    lines = [SuspectLine("h.py", n, "", 1.0, "hanoi") for n in (5, 9)]
    found = mutants({"h.py": WIDE}, lines, limit=500)
    kinds = [m.operator for m in found]
    wider_kinds = {"name", "drop", "off by one", "relational"}
    first_wide = next(i for i, k in enumerate(kinds) if k in wider_kinds)
    assert {m.line for m in found[:first_wide]} == {5, 9}
    assert all(k in wider_kinds for k in kinds[first_wide:])
    assert found[first_wide].line == 5  # then the lines' order again


def test_a_lines_scope_is_its_innermost_functions_variables_bound_above_it():
    source = ("class C:\n"
              "    def m(self, a, *rest, key=None):\n"
              "        b = [x for x in a]\n"
              "        def inner(c):\n"
              "            d = c\n"
              "            return d\n"
              "        for e, f in b:\n"
              "            self.items.sort()\n"
              "        g = 1\n")
    tree = ast.parse(source)
    assert scope_of(tree, 8) == Scope("m", ("e", "f", "b", "self", "a", "rest", "key"))
    assert scope_of(tree, 6) == Scope("inner", ("d", "c"))
    assert scope_of(tree, 1) == Scope()
    found = mutants({"c.py": source}, [SuspectLine("c.py", 8, "", 1.0, "m")], limit=100)
    assert "            self.items" in [m.after for m in found]  # a method call dropped
    assert not any("self" not in m.after for m in found)  # `self` is no variable to swap
