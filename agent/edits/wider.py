"""The wider mutants: a whole expression of one line changed, where a one-token change
(agent/edits/mutants.py) is not enough. Each line has many more of these, so they are
screened after every suspect line's one-token mutants. Kinds:

* `name`: a variable read replaced by another variable of the function bound above the
  line, the nearest binding first (`steps.append((start, helper))` -> `(start, end)`);
* `drop`: one operand of an arithmetic operation left out (`1 + f(x)` -> `f(x)`, also from
  the front of a chain: `a + b + c` -> `b + c`), a sign dropped, one call of a method chain
  left out (`s.strip().lower()` -> `s.lower()`, `ans.sort()` -> `ans`);
* `off by one`: a length, a `range` argument, an index or slice bound, or an argument of a
  recursive call, plus or minus one (`len(d) * [0]` -> `(len(d) - 1) * [0]`);
* `relational`: a comparison operator replaced by each one its neighbours do not cover
  (`balance == 0` -> `balance < 0`).

The line is parsed alone (`parse_line`) and changed by column, so the rest of it stays as
written; which variables the function has comes from the whole file (`scope_of`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

# Each comparison's other replacements: those `mutants._SWAPS` does not already make.
_RELATIONAL = {
    "<": (">=", "==", "!="), "<=": (">", "==", "!="), ">": ("<=", "==", "!="),
    ">=": ("<", "==", "!="), "==": ("<", ">", "<=", ">="), "!=": ("<", ">"),
}
_CMP_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
            ast.NotEq: "!="}
# Expressions that take `- 1` without parentheses.
_ATOMS = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)
_TIGHT = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)
_RECEIVERS = ("self", "cls")  # a method's receiver is no variable to mix up
NAMES_PER_READ = 6  # another variable: the nearest bindings only


@dataclass(frozen=True)
class ParsedLine:
    """One source line parsed on its own: `code` is the line between its indent and its
    trailing spaces, and a node's columns minus `shift` are columns of `code`."""

    indent: str
    code: str
    tail: str
    tree: ast.AST
    shift: int

    def line(self, code: str) -> str:
        """A changed `code` back in the line."""
        return self.indent + code + self.tail

    def span(self, node: ast.AST) -> tuple[int, int] | None:
        """The node's columns in `code`, or None when it reaches past this line."""
        if getattr(node, "lineno", None) != 1 or getattr(node, "end_lineno", None) != 1:
            return None
        start, end = node.col_offset - self.shift, node.end_col_offset - self.shift
        return (start, end) if 0 <= start < end <= len(self.code) else None

    def text(self, node: ast.AST) -> str | None:
        span = self.span(node)
        return self.code[span[0]:span[1]] if span else None

    def replace(self, node: ast.AST, new: str) -> str | None:
        span = self.span(node)
        return self.line(self.code[:span[0]] + new + self.code[span[1]:]) if span else None


def parse_line(line: str) -> ParsedLine | None:
    """The line as a statement, as a header with a body (`if x:`, `elif x:`), or as a
    fragment of a longer expression; None when it is none of these or not ASCII (ast
    columns are bytes)."""
    code = line.strip()
    indent = line[:len(line) - len(line.lstrip())]
    tail = line[len(line.rstrip()):]
    if not code or not code.isascii():
        return None
    for prefix, body, suffix in (("", code, ""), ("(", code, "\n)"),
                                 ("", re.sub(r"^elif\b", "if", code), " pass")):
        try:
            tree = ast.parse(prefix + body + suffix)
        except SyntaxError:
            continue
        return ParsedLine(indent, code, tail, tree, len(prefix) + (len(body) - len(code)))
    return None


@dataclass(frozen=True)
class Scope:
    """What the function around a line has: its name (a call of it is recursive) and its
    variables bound above the line, the nearest binding first."""

    function: str | None = None
    names: tuple[str, ...] = ()


def scope_of(tree: ast.Module, line: int) -> Scope:
    """The innermost function holding `line`, and its parameters and assigned names (not
    those of nested functions or comprehensions) bound before it."""
    func = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                node.lineno <= line <= (node.end_lineno or node.lineno) and \
                (func is None or node.lineno > func.lineno):
            func = node
    if func is None:
        return Scope()
    bound: dict[str, tuple[int, int]] = {}  # name -> its last binding above: (line, -column)
    args = func.args
    for column, arg in enumerate([*args.posonlyargs, *args.args, args.vararg,
                                  *args.kwonlyargs, args.kwarg]):
        if arg is not None:
            bound[arg.arg] = (func.lineno, -column)
    for node in _own_nodes(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and \
                node.lineno < line:
            bound[node.id] = max(bound.get(node.id, (0, 0)), (node.lineno, -node.col_offset))
    names = sorted(bound, key=lambda n: bound[n], reverse=True)
    return Scope(func.name, tuple(names))


def _own_nodes(func: ast.AST) -> Iterator[ast.AST]:
    """The function's nodes, without nested functions, classes, lambdas or comprehensions
    (their names are not the function's variables)."""
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
                             ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def wider(line: str, scope: Scope) -> Iterator[tuple[str, str]]:
    """The line's wider mutants as (kind, new line); some may not parse in their file or
    repeat another: the caller checks."""
    parsed = parse_line(line)
    if parsed is None:
        return
    nodes = [n for n in ast.walk(parsed.tree) if parsed.span(n) is not None]
    yield from (("relational", new) for new in _relational(parsed, nodes))
    yield from (("off by one", new) for new in _off_by_one(parsed, nodes, scope))
    yield from (("drop", new) for new in _drops(parsed, nodes, scope))
    yield from (("name", new) for new in _names(parsed, nodes, scope))


def _relational(parsed: ParsedLine, nodes: list[ast.AST]) -> Iterator[str]:
    for node in nodes:
        if not isinstance(node, ast.Compare):
            continue
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            symbol = _CMP_OPS.get(type(op))
            gap = (parsed.span(left), parsed.span(right))
            if symbol and gap[0] and gap[1]:
                between = parsed.code[gap[0][1]:gap[1][0]]
                for new in _RELATIONAL[symbol]:
                    yield parsed.line(parsed.code[:gap[0][1]] + between.replace(symbol, new, 1) +
                                      parsed.code[gap[1][0]:])
            left = right


def _off_by_one(parsed: ParsedLine, nodes: list[ast.AST], scope: Scope) -> Iterator[str]:
    sites: list[ast.AST] = []
    for node in nodes:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "len":
                sites.append(node)
            elif node.func.id in ("range", scope.function):
                sites.extend(node.args)
        elif isinstance(node, ast.Subscript):
            index = node.slice
            sites.extend([index.lower, index.upper] if isinstance(index, ast.Slice)
                         else [] if isinstance(index, ast.Tuple) else [index])
    seen: set[tuple[int, int]] = set()
    for site in sites:
        span = parsed.span(site) if site is not None else None
        if span is None or span in seen or _literal_step(site):
            continue  # the one-token mutants change the literal (`3` -> `2`, `n + 1` -> `n`)
        seen.add(span)
        text = parsed.code[span[0]:span[1]]
        bare = isinstance(site, _ATOMS) or \
            isinstance(site, ast.BinOp) and isinstance(site.op, _TIGHT)
        for step in (" - 1", " + 1"):
            yield parsed.replace(site, (text if bare else f"({text})") + step)


def _literal_step(site: ast.AST) -> bool:
    """A literal, or something plus or minus one."""
    if isinstance(site, ast.UnaryOp):
        site = site.operand
    return isinstance(site, ast.Constant) or isinstance(site, ast.BinOp) and \
        isinstance(site.op, (ast.Add, ast.Sub)) and isinstance(site.right, ast.Constant)


def _drops(parsed: ParsedLine, nodes: list[ast.AST], scope: Scope) -> Iterator[str]:
    for node in nodes:
        if isinstance(node, ast.BinOp):
            for part in (node.left, node.right):
                text = parsed.text(part)
                if text is not None:
                    yield parsed.replace(node, text)
            if isinstance(node.left, ast.BinOp):  # `a + b + c` -> `b + c`
                inner, end = parsed.span(node.left.right), parsed.span(node)
                if inner and end:
                    yield parsed.replace(node, parsed.code[inner[0]:end[1]])
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Invert)):
            text = parsed.text(node.operand)
            if text is not None:
                yield parsed.replace(node, text)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            root = receiver
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id not in scope.names:
                continue  # `os.path.join(a, b)` -> `os.path`: a module, not a value
            text = parsed.text(receiver)
            if text is not None:
                yield parsed.replace(node, text)


def _names(parsed: ParsedLine, nodes: list[ast.AST], scope: Scope) -> Iterator[str]:
    variables = [name for name in scope.names if name not in _RECEIVERS]
    reads = sorted((n for n in nodes if isinstance(n, ast.Name) and
                    isinstance(n.ctx, ast.Load) and n.id in variables),
                   key=lambda n: n.col_offset)
    for read in reads:
        others = [name for name in variables if name != read.id][:NAMES_PER_READ]
        for name in others:
            yield parsed.replace(read, name)
