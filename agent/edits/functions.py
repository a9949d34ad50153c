"""Function-level edits: the model answers with whole replacement functions (or methods,
or classes) and each is spliced into the file over the tree-sitter span of its namesake,
so the size of the file never matters.

Matching: a top-level `def` replaces the file's top-level function of that name, else the
only method of that name; a `class` block with methods replaces those methods of the
file's class of that name (a class the file lacks is added whole). A definition the file
lacks is appended. Import lines the answer adds are put after the file's imports.
Indentation is re-based on the target's, so a method given at column 0 still fits.

A definition given back unchanged (small models copy every function they were shown) is
skipped, so it can never land on the wrong span; several definitions of one name (typing
overloads before the implementation) pair up in order when the answer gives as many as the
file has, else the answer's one replaces the last (the implementation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.errors import EditApplyError

# The marker the excerpt view writes for left-out lines, and the "rest unchanged" comments
# models write when they abbreviate; either in an answer means code would be lost.
ELISION_RE = re.compile(
    r"^\s*(?:#\s*)?\.\.\.\s*\(lines? \d+(?:-\d+)? elided\)"
    r"|^\s*#\s*(?:\.\.\.|…)\s*(?:\(?(?:rest|remaining|other|existing|unchanged)\b.*)?$"
    r"|^\s*#\s*(?:rest|remainder) of (?:the )?(?:file|code|class|module)\b",
    re.IGNORECASE | re.MULTILINE,
)
_IMPORT_RE = re.compile(r"^(?:import\s+\w|from\s+[\w.]+\s+import\s)")


@dataclass(frozen=True)
class _Def:
    name: str
    kind: str  # "function" | "class" | "method"
    parent: str | None
    start: int  # 0-based first line (decorators included)
    end: int  # 0-based exclusive


def _defs(text: str) -> list[_Def]:
    from agent.context.symbols import extract_symbols  # tree-sitter; imported when used

    lines = text.split("\n")
    out = []
    for sym in extract_symbols("answer.py", text):
        start = sym.line - 1
        while start > 0 and lines[start - 1].lstrip().startswith("@"):
            start -= 1
        out.append(_Def(sym.name, sym.kind, sym.parent, start, sym.end_line))
    return out


def elision_in(text: str) -> str | None:
    """The first line of `text` that abbreviates code instead of copying it, if any."""
    match = ELISION_RE.search(text)
    return match.group(0).strip() if match else None


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _rebase(block: list[str], indent: str) -> list[str]:
    base = _indent_of(block[0]) if block else ""
    out = []
    for line in block:
        if not line.strip():
            out.append("")
        elif line.startswith(base):
            out.append(indent + line[len(base):])
        else:  # less indented than the definition (a continuation line): keep relative
            out.append(indent + line.lstrip())
    return out


def _imports(lines: list[str]) -> list[str]:
    """Top-level single-line import statements of the answer."""
    return [ln for ln in lines if _IMPORT_RE.match(ln) and "(" not in ln]


def apply_functions(source: str, answer: str, path: str, label: str) -> str:
    """`source` with every definition in `answer` spliced in. Raises EditApplyError."""
    marker = elision_in(answer)
    if marker is not None:
        raise EditApplyError(
            f"{label}: the answer abbreviates code ({marker!r}); give each function you "
            "change complete, every line of it, and leave out the functions you do not change.")
    a_lines = answer.replace("\r\n", "\n").rstrip("\n").split("\n")
    defs = _defs("\n".join(a_lines))
    tops = [d for d in defs if d.parent is None]
    if not tops:
        raise EditApplyError(
            f"{label}: no complete `def` or `class` found in the code block; give each "
            "changed function whole, starting at its `def` line.")
    crlf = "\r\n" in source
    text = source.replace("\r\n", "\n")
    final_eol = text.endswith("\n")
    lines = text.rstrip("\n").split("\n") if text else []
    for top in tops:
        block = a_lines[top.start:top.end]
        if top.kind == "class":
            members = [d for d in defs if d.parent == top.name]
            file_classes = [d for d in _defs("\n".join(lines)) if d.kind == "class"
                            and d.name == top.name]
            if file_classes and members:
                for member in members:
                    namesakes = [d for d in members if d.name == member.name]
                    lines = _splice(lines, a_lines[member.start:member.end], member.name,
                                    top.name, label, path,
                                    (namesakes.index(member), len(namesakes)))
                continue
            if file_classes:
                if not _same(block, lines[file_classes[0].start:file_classes[0].end]):
                    lines = _replace_span(lines, file_classes[0], block)
                continue
        namesakes = [d for d in tops if d.name == top.name]
        lines = _splice(lines, block, top.name, None, label, path,
                        (namesakes.index(top), len(namesakes)))
    new_imports = [imp for imp in _imports(a_lines) if imp not in lines]
    if new_imports:
        at = max((i + 1 for i, ln in enumerate(lines) if _IMPORT_RE.match(ln)), default=0)
        lines[at:at] = new_imports
    out = "\n".join(lines) + ("\n" if final_eol or not text else "")
    return out.replace("\n", "\r\n") if crlf else out


def _replace_span(lines: list[str], target: _Def, block: list[str]) -> list[str]:
    indent = _indent_of(lines[target.start]) if target.start < len(lines) else ""
    return lines[: target.start] + _rebase(block, indent) + lines[target.end:]


def _same(a: list[str], b: list[str]) -> bool:
    """The same code, whatever its indentation and blank lines."""
    return [ln.strip() for ln in a if ln.strip()] == [ln.strip() for ln in b if ln.strip()]


def _splice(lines: list[str], block: list[str], name: str, cls: str | None, label: str,
            path: str, nth: tuple[int, int] = (0, 1)) -> list[str]:
    """Splice `block` over the file's definition `name`; `nth`: which of how many
    definitions of that name the answer gives (overloads pair up in order)."""
    defs = _defs("\n".join(lines))
    if cls is not None:
        # the class's own methods (parent "Cls", or "Outer.Cls" for a nested class)
        matches = [d for d in defs if d.name == name and d.parent is not None
                   and d.parent.split(".")[-1] == cls]
        if not matches:  # a new method: insert at the end of the class
            owner = next((d for d in defs if d.kind == "class" and d.name == cls), None)
            assert owner is not None
            member_indent = _indent_of(lines[owner.start]) + "    "
            body = [d for d in defs if d.parent and d.parent.split(".")[-1] == cls]
            if body:
                member_indent = _indent_of(lines[body[0].start])
            return lines[: owner.end] + [""] + _rebase(block, member_indent) + lines[owner.end:]
    else:
        matches = [d for d in defs if d.name == name and d.parent is None]
        if not matches:
            matches = [d for d in defs if d.name == name and d.kind == "method"]
            if len(matches) > 1:
                owners = ", ".join(sorted({d.parent or "" for d in matches}))
                raise EditApplyError(
                    f"{label}: {path} has {len(matches)} methods named {name} (in {owners}); "
                    "put the method under its `class` line so that it is clear which one.")
    if not matches:  # a new function: append it
        tail = [""] if lines and lines[-1].strip() else []
        return lines + tail + ([""] if tail else []) + _rebase(block, "")
    if any(_same(block, lines[d.start:d.end]) for d in matches):
        return lines  # given back unchanged
    index, count = nth
    target = matches[index] if count == len(matches) else matches[-1]
    return _replace_span(lines, target, block)
