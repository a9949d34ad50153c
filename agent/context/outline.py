"""The ranked, token-budgeted outline of the repository (the "repository map" in prompts)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.context.focus import _Focus
from agent.context.names import _is_dunder, _module_name, _short_decorator, is_test_path
from agent.context.symbols import Symbol, _FileInfo

CHARS_PER_TOKEN = 4


def render_outline(
    files: Mapping[str, str],
    infos: Mapping[str, _FileInfo],
    table: Mapping[str, list[Symbol]],
    ctx: _Focus,
    token_budget: int,
) -> str:
    """The outline text for `RepoMap.render` (which documents the order)."""
    ref_names = set(ctx.names)
    for path in list(ctx.hit_files) + list(ctx.defining) + sorted(ctx.mentioned_files):
        if not is_test_path(path):
            module = _module_name(path).rsplit(".", 1)[-1]
            if len(module) >= 3 and not _is_dunder(module):
                ref_names.add(module)

    def rank(path: str) -> tuple[Any, ...]:
        test = is_test_path(path)
        focused = path in ctx.hit_files or path in ctx.defining or path in ctx.mentioned_files
        if focused:  # named by the failure, or defining what it names
            score = (
                10 * ctx.hit_files.get(path, 0)
                + 5 * len(ctx.defining.get(path, ()))
                + 3 * (path in ctx.mentioned_files)
            )
            return (0, test, -score, -ctx.last_hit.get(path, -1), path)
        refs = sum(infos[path].idents.get(name, 0) for name in ref_names)
        if refs:  # references what the failure names
            return (1 + test, 0, -refs, 0, path)
        if table[path]:  # the rest
            return (3 + test, 0, 0, 0, path)
        if infos[path].idents:  # parsed, nothing to outline (e.g. an __init__.py)
            return (5, test, 0, 0, path)
        return (6, test, 0, 0, path)  # not code we parse

    budget = max(0, token_budget) * CHARS_PER_TOKEN
    used = 0
    out: list[str] = []
    for path in sorted(files, key=rank):
        header = path
        if used + len(header) + 1 > budget:
            break
        used += len(header) + 1
        out.append(header)
        lines = _file_lines(table[path], ctx)
        chosen = _choose_lines(lines, budget - used)
        used += sum(len(lines[i][0]) + 1 for i in chosen)
        expected = 0
        for i in [*sorted(chosen), len(lines)]:
            if i > expected:  # symbols left out here: say so, if that fits
                gap = "  " * (lines[expected][2] + 1) + "⋮"
                if used + len(gap) + 1 <= budget:
                    out.append(gap)
                    used += len(gap) + 1
            if i < len(lines):
                out.append(lines[i][0])
            expected = i + 1
    return "\n".join(out) + ("\n" if out else "")


def _file_lines(symbols: list[Symbol], ctx: _Focus) -> list[tuple[str, int, int, int]]:
    """(text, priority, depth, index of parent line or -1) for each symbol to outline."""
    by_qualname: dict[str, Symbol] = {}
    for symbol in symbols:
        by_qualname.setdefault(symbol.qualname, symbol)
    lines: list[tuple[str, int, int, int]] = []
    index_of: dict[str, int] = {}
    runs = _runs(symbols, ctx)
    for index, symbol in enumerate(symbols):
        if runs.get(index, 1) == 0:
            continue  # folded into the first of its run
        focused = (symbol.path, symbol.qualname) in ctx.symbols
        # skip definitions local to a function unless focused
        depth, parent, local = 0, symbol.parent, False
        while parent is not None:
            depth += 1
            owner = by_qualname.get(parent)
            if owner is not None and owner.kind != "class":
                local = True
            parent = owner.parent if owner is not None else None
        if local and not focused:
            continue
        prefix = " ".join(_short_decorator(d) for d in symbol.decorators)
        text = "  " * (depth + 1) + (prefix + " " if prefix else "") + symbol.signature
        if runs.get(index, 1) > 1:
            text += f"  # and {runs[index] - 1} more alike, to {symbols[index + runs[index] - 1].name}"
        parent_index = index_of.get(symbol.parent, -1) if symbol.parent else -1
        lines.append((text, 2 if focused else 0, depth, parent_index))
        index_of.setdefault(symbol.qualname, len(lines) - 1)
    # a parent is at least as important as its most important child
    for i in range(len(lines) - 1, -1, -1):
        text, priority, depth, parent_index = lines[i]
        if parent_index >= 0 and lines[parent_index][1] < priority:
            p = lines[parent_index]
            lines[parent_index] = (p[0], priority, p[2], p[3])
    return lines

FOLD_RUN = 4  # this many alike definitions in a row show as one line


def _runs(symbols: list[Symbol], ctx: _Focus) -> dict[int, int]:
    """Runs of consecutive definitions that differ only in numbers (generated tables such as
    `_seg_0` ... `_seg_80`): index of a run's first -> its length, of the rest -> 0."""
    def key(symbol: Symbol) -> tuple[object, ...] | None:
        if symbol.kind == "class" or (symbol.path, symbol.qualname) in ctx.symbols:
            return None  # a focused definition is always shown; a class keeps its members
        return (symbol.parent, symbol.kind, re.sub(r"\d+", "#", symbol.signature))

    runs: dict[int, int] = {}
    start = 0
    for i in range(1, len(symbols) + 1):
        if i < len(symbols) and key(symbols[i]) is not None and key(symbols[i]) == key(symbols[start]):
            continue
        if i - start >= FOLD_RUN:
            runs[start] = i - start
            runs.update({j: 0 for j in range(start + 1, i)})
        start = i
    return runs


def _choose_lines(lines: list[tuple[str, int, int, int]], budget: int) -> set[int]:
    order = sorted(range(len(lines)), key=lambda i: (-lines[i][1], i))
    chosen: set[int] = set()
    used = 0
    for i in order:
        text, _, _, parent_index = lines[i]
        if parent_index >= 0 and parent_index not in chosen:
            continue
        if used + len(text) + 1 > budget:
            if lines[i][1] == 0:
                break
            continue
        chosen.add(i)
        used += len(text) + 1
    return chosen
