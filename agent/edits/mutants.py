"""Mutants of the suspect lines: the one-token repairs that single-site regressions need
(a comparison, arithmetic or bitwise operator, `and`/`or`, a negation, a compound assignment
made plain, an integer off by one or another constant of the function, a slice shifted or
cut short, a space in a short string moved, the two arms of a conditional, two arguments,
the two items of a pair or the operands of `in` or `-` swapped, `min`/`max`-style opposite
names), made without a model; then, once every suspect line has had those, each line's
wider mutants (agent/edits/wider.py: another variable, an operand dropped, an expression
off by one).

They cost a sandbox run each and no tokens, so after the model's first answer fails they
are screened against the failing tests before the next minutes-long answer
(agent/loop.py). A mutant is tested and verified like any candidate: the repository's tests
decide, and a plausible mutant is offered as a patch for the user to read, like any other.
Every mutant here parses; mutants of the same line that give the same code are one.
"""

from __future__ import annotations

import ast
import io
import itertools
import keyword
import re
import tokenize
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from agent.context.localize import SuspectLine
from agent.edits.wider import Scope, parse_line, scope_of, wider

# Each operator's likeliest replacements first (relational operators to their neighbours).
_SWAPS = {
    "<": ("<=", ">"), "<=": ("<", ">="), ">": (">=", "<"), ">=": (">", "<="),
    "==": ("!=",), "!=": ("==",), "+": ("-",), "-": ("+",), "*": ("/",), "/": ("//", "*"),
    "//": ("/",), "%": ("//",), "+=": ("-=", "="), "-=": ("+=", "="), "*=": ("=",),
    "/=": ("=",), "//=": ("=",), "%=": ("=",), "&": ("|", "^"), "|": ("&", "^"),
    "^": ("&", "|"), "&=": ("|=", "^="), "|=": ("&=", "^="), "^=": ("&=", "|="),
    "<<": (">>",), ">>": ("<<",), "and": ("or",), "or": ("and",), "is": ("is not",),
    "in": ("not in",), "True": ("False",), "False": ("True",),
}
# Parts of names that come in opposite pairs (`token_next` -> `token_prev`).
_PAIRS = (("min", "max"), ("next", "prev"), ("first", "last"), ("start", "end"),
          ("left", "right"), ("lower", "upper"), ("before", "after"), ("head", "tail"),
          ("lt", "gt"), ("le", "ge"), ("floor", "ceil"), ("any", "all"),
          ("startswith", "endswith"), ("prefix", "suffix"), ("incoming", "outgoing"),
          ("in", "out"), ("src", "dst"), ("source", "target"), ("width", "height"),
          ("row", "col"), ("rows", "cols"), ("keys", "values"), ("top", "bottom"),
          ("encode", "decode"), ("up", "down"), ("inc", "dec"), ("asc", "desc"))
_OPPOSITES = {**dict(_PAIRS), **{b: a for a, b in _PAIRS}}
_HEADER = re.compile(r"^(\s*)(if|elif|while)\s+(.*):\s*(#.*)?$")
# Operations whose operands' order matters (`a - b`), for swapping them.
_ORDERED = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift)
# A short string literal, its quotes and its content (a space moved in `' I'`, `''`/`' '`).
_SHORT_STRING = re.compile(r"^([rbuRBU]?)(['\"])([^'\"\\]{0,3})\2$")
_INT = re.compile(r"^(?:0|[1-9][0-9_]*)$")
_LITERAL = re.compile(r"(?<![\w.])(?:0|[1-9][0-9]*)(?![\w.])")


@dataclass(frozen=True)
class Mutant:
    """One line of one file replaced by a variant of it."""

    path: str
    line: int  # 1-based
    before: str
    after: str
    operator: str  # which kind of change, for the record

    def describe(self) -> str:
        return f"{self.path}:{self.line}: {self.before.strip()}  ->  {self.after.strip()}"

    def apply(self, files: Mapping[str, str]) -> dict[str, str]:
        lines = files[self.path].split("\n")
        lines[self.line - 1] = self.after
        return {**files, self.path: "\n".join(lines)}


def mutants(files: Mapping[str, str], lines: Sequence[SuspectLine],
            limit: int) -> list[Mutant]:
    """Up to `limit` distinct mutants that parse: every suspect line's one-token mutants in
    the lines' order, then every line's wider ones likewise."""
    found: list[Mutant] = []
    seen: set[tuple[str, int, str]] = set()
    split = {path: files[path].split("\n") for path in {s.path for s in lines} if path in files}
    trees: dict[str, ast.Module | None] = {}
    for tier in ("near", "wide"):
        for suspect in lines:
            text = split.get(suspect.path, [])
            if not 1 <= suspect.line <= len(text):
                continue
            before = text[suspect.line - 1]
            if tier == "near":
                variants = _variants(before, _function_constants(text, suspect))
            else:
                if suspect.path not in trees:
                    trees[suspect.path] = _tree(files[suspect.path])
                tree = trees[suspect.path]
                variants = wider(before, scope_of(tree, suspect.line) if tree else Scope())
            for operator, after in variants:
                key = (suspect.path, suspect.line, after)
                if after is None or after == before or key in seen:
                    continue
                seen.add(key)
                mutant = Mutant(suspect.path, suspect.line, before, after, operator)
                if _parses(mutant.apply(files)[suspect.path]):
                    found.append(mutant)
                    if len(found) >= limit:
                        return found
    return found


def _variants(line: str, constants: Sequence[int]) -> Iterator[tuple[str, str]]:
    tokens = _tokens(line)
    for tok in tokens:  # operators, keywords and names, one at a time
        for new in _SWAPS.get(tok.string, ()):
            if tok.string in ("is", "in") and _next(tokens, tok) == "not":
                continue
            yield "operator", _splice(line, tok, new)
        if tok.string == "not":
            following = _next_token(tokens, tok)
            if following is not None:  # `not x` -> `x`, `is not` -> `is`, `not in` -> `in`
                yield "negation", line[:tok.start[1]] + line[following.start[1]:]
        if tok.type == tokenize.STRING:
            yield from (("string", _splice(line, tok, new)) for new in _spaced(tok.string))
        if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
            parts = tok.string.split("_")
            for i, part in enumerate(parts):
                if part in _OPPOSITES:
                    name = "_".join([*parts[:i], _OPPOSITES[part], *parts[i + 1:]])
                    yield "opposite name", _splice(line, tok, name)
    ints = [t for t in tokens if t.type == tokenize.NUMBER and _INT.match(t.string)]
    # a window moved by one before one bound alone: `label[1:3] == '--'` -> `[2:4]`, where
    # `[2:3]` would make the comparison never true and pass any test that never needs it
    if len(ints) > 1:  # a slice or a range shifted as a whole
        for step in (1, -1):
            shifted = line
            for tok in reversed(ints):
                value = int(tok.string.replace("_", "")) + step
                if value < 0:
                    break
                shifted = shifted[:tok.start[1]] + str(value) + shifted[tok.end[1]:]
            else:
                yield "shift", shifted
    for tok in ints:
        value = int(tok.string.replace("_", ""))
        index = tokens.index(tok)
        for new in (value + 1, value - 1, *constants):
            if new < 0 or new == value:
                continue
            if new == 0 and index >= 2 and tokens[index - 1].string in "+-" and \
                    (tokens[index - 2].type in (tokenize.NAME, tokenize.NUMBER) or
                     tokens[index - 2].string in ")]}"):
                # `n + 1` -> `n`, not `n + 0`
                yield "constant", line[:tokens[index - 2].end[1]] + line[tok.end[1]:]
            else:
                yield "constant", _splice(line, tok, str(new))
    for tok, following in itertools.pairwise(tokens):  # `x[1:]` -> `x[1:-1]`: drop the last too
        if tok.string == ":" and following.string == "]":
            yield "slice", line[:tok.end[1]] + "-1" + line[following.start[1]:]
    header = _HEADER.match(line)
    if header and not header.group(3).startswith("not "):
        indent, head, condition, comment = header.groups()
        yield "negation", f"{indent}{head} not ({condition}):" + (f"  {comment}" if comment else "")
    yield from (("swap", swapped) for swapped in _swaps(line))


def _swaps(line: str) -> Iterator[str]:
    """The arms of `a if c else b`, the two arguments of a two-argument call, the two items
    of a pair, and the operands of `in` or of an operation whose order matters, swapped."""
    parsed = parse_line(line)
    if parsed is None:
        return
    for node in ast.walk(parsed.tree):
        pairs = []
        if isinstance(node, ast.IfExp):
            pairs.append((node.body, node.orelse))
        elif isinstance(node, ast.Call) and len(node.args) == 2 and not node.keywords \
                and not any(isinstance(a, ast.Starred) for a in node.args):
            pairs.append((node.args[0], node.args[1]))
        elif isinstance(node, ast.Tuple) and len(node.elts) == 2:
            pairs.append((node.elts[0], node.elts[1]))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _ORDERED):
            pairs.append((node.left, node.right))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and \
                isinstance(node.ops[0], (ast.In, ast.NotIn)):
            pairs.append((node.left, node.comparators[0]))
        for a, b in pairs:
            first, second = parsed.span(a), parsed.span(b)
            if first and second and first[1] <= second[0]:
                code = parsed.code
                yield parsed.line(code[:first[0]] + code[second[0]:second[1]] +
                                  code[first[1]:second[0]] + code[first[0]:first[1]] +
                                  code[second[1]:])


def _tokens(line: str) -> list[tokenize.TokenInfo]:
    """The line's tokens; a line inside a longer statement tokenizes up to where it stops."""
    found: list[tokenize.TokenInfo] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line.lstrip() and line + "\n").readline):
            if tok.start[0] != 1:
                break
            if tok.type in (tokenize.OP, tokenize.NAME, tokenize.NUMBER, tokenize.STRING,
                            tokenize.COMMENT):
                found.append(tok)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return found


def _next_token(tokens: list[tokenize.TokenInfo],
                tok: tokenize.TokenInfo) -> tokenize.TokenInfo | None:
    index = tokens.index(tok)
    return tokens[index + 1] if index + 1 < len(tokens) else None


def _next(tokens: list[tokenize.TokenInfo], tok: tokenize.TokenInfo) -> str | None:
    following = _next_token(tokens, tok)
    return following.string if following is not None else None


def _spaced(literal: str) -> Iterator[str]:
    """A short string's space moved or toggled: `' I'` -> `'I '`, `''` <-> `' '` (a separator
    joined with or split on)."""
    match = _SHORT_STRING.match(literal)
    if match is None:
        return
    prefix, quote, content = match.groups()
    if content in ("", " "):
        yield f"{prefix}{quote}{' ' if not content else ''}{quote}"
    elif content.startswith(" ") != content.endswith(" "):
        yield f"{prefix}{quote}{content.strip()}{' ' if content.startswith(' ') else ''}{quote}" \
            if content.startswith(" ") else f"{prefix}{quote} {content.strip()}{quote}"


def _splice(line: str, tok: tokenize.TokenInfo, new: str) -> str:
    return line[:tok.start[1]] + new + line[tok.end[1]:]


def _function_constants(text: list[str], suspect: SuspectLine) -> list[int]:
    """Other integer literals of the suspect's function (a wrong constant is often another
    one the function uses), at most four, in order of appearance."""
    line = text[suspect.line - 1]
    indent = len(line) - len(line.lstrip())
    start = suspect.line
    while start > 1:  # up to the enclosing def
        start -= 1
        above = text[start - 1]
        depth = len(above) - len(above.lstrip())
        if above.lstrip().startswith(("def ", "async def ")) and depth < indent:
            indent = depth
            break
    end = suspect.line
    while end < len(text) and (not text[end].strip() or
                               len(text[end]) - len(text[end].lstrip()) > indent):
        end += 1
    values: list[int] = []
    for literal in _LITERAL.findall("\n".join(text[start - 1:end])):
        value = int(literal)
        if value not in values:
            values.append(value)
    return values[:4]


def _tree(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True
