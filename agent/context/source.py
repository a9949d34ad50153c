"""The implicated source: whole files where they fit, else excerpts of the implicated functions."""

from __future__ import annotations

import re
from collections.abc import Mapping

from agent.context.focus import _Focus
from agent.context.names import _innermost, is_test_path
from agent.context.outline import CHARS_PER_TOKEN
from agent.context.symbols import Symbol

_CONTEXT_LINES = 3


def implicated_source(
    files: Mapping[str, str],
    table: Mapping[str, list[Symbol]],
    ctx: _Focus,
    token_budget: int,
) -> dict[str, str]:
    """The text for `RepoMap.implicated_source` (which documents the choice)."""
    direct = sorted(
        (p for p in ctx.hit_files if not is_test_path(p)),
        key=lambda p: -ctx.last_hit[p],
    )
    order = direct + [p for p in ctx.defining if p not in direct and not is_test_path(p)]
    budget = max(0, token_budget) * CHARS_PER_TOKEN

    regions: dict[str, list[tuple[int, int, int]]] = {}  # path -> (start, end, anchor)
    for path in order:
        regions[path] = _regions(path, files[path], table[path], ctx)
    minimal = {
        path: _excerpt(files[path], regions[path], budget, minimal=True) for path in order
    }
    result: dict[str, str] = {}
    used = 0
    for index, path in enumerate(order):
        source = files[path]
        reserve = sum(len(minimal[p] or "") for p in order[index + 1 :])
        if used + len(source) <= budget - reserve:
            result[path] = source
        else:
            excerpt = _excerpt(source, regions[path], budget - used - reserve)
            if excerpt is None:
                excerpt = _excerpt(source, regions[path], budget - used, minimal=True)
            if excerpt is None:
                continue
            result[path] = excerpt
        used += len(result[path])
    return result


def _regions(
    path: str, source: str, symbols: list[Symbol], ctx: _Focus
) -> list[tuple[int, int, int]]:
    """Line ranges (start, end, anchor line) worth showing, most important first."""
    regions: list[tuple[int, int, int]] = []
    by_qualname = {s.qualname: s for s in symbols}

    def add_symbol(symbol: Symbol, anchor: int) -> None:
        if symbol.kind == "class" and symbol.end_line - symbol.line > 60:
            regions.append((symbol.line, symbol.line, symbol.line))
            for member in symbols:
                if member.parent == symbol.qualname and member.name in (
                    "__init__", "__new__", "__post_init__", "__call__",
                ):  # fmt: skip
                    regions.append((member.line, member.end_line, member.line))
            return
        owner = by_qualname.get(symbol.parent) if symbol.parent else None
        while owner is not None:  # show the enclosing class / function header
            regions.append((owner.line, owner.line, owner.line))
            owner = by_qualname.get(owner.parent) if owner.parent else None
        start = symbol.line - len(symbol.decorators)
        regions.append((start, symbol.end_line, anchor))

    for line in reversed(ctx.hit_lines.get(path, [])):  # innermost frame first
        symbol = _innermost(symbols, line)
        if symbol is not None:
            add_symbol(symbol, line)
        else:
            regions.append((line, line, line))
    for symbol in ctx.hit_symbols.get(path, []) + ctx.defining.get(path, []):
        add_symbol(symbol, symbol.line)
    if not regions:  # e.g. a collection error naming the file only
        regions.append((1, min(40, source.count("\n") + 1), 1))
    unique: list[tuple[int, int, int]] = []
    for region in regions:
        if all(region[:2] != seen[:2] for seen in unique):
            unique.append(region)
    return unique

def _excerpt(
    source: str,
    regions: list[tuple[int, int, int]],
    budget: int,
    *,
    minimal: bool = False,
) -> str | None:
    """Render `regions` of `source` with context, adding regions while they fit.

    A region too large for what is left is narrowed to a window around its anchor.
    `minimal` keeps just the first region (narrowed as needed). None if nothing fits.
    """
    lines = source.split("\n")
    total = len(lines)
    kept: list[tuple[int, int]] = []
    best: str | None = None
    for start, end, anchor in regions:
        anchor = max(1, min(anchor, total))
        wanted = (max(1, start - _CONTEXT_LINES), min(total, end + _CONTEXT_LINES))
        attempt = _render_ranges(lines, kept + [wanted])
        if len(attempt) > budget:
            for radius in (30, 15, 8, 4, 2, 0):
                window = (max(1, anchor - radius), min(total, anchor + radius))
                attempt = _render_ranges(lines, kept + [window])
                if len(attempt) <= budget:
                    wanted = window
                    break
            else:
                if minimal:
                    break
                continue
        kept.append(wanted)
        best = attempt
        if minimal:
            break
    return best


def _render_ranges(lines: list[str], ranges: list[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[str] = []
    position = 1
    for start, end in merged:
        if start > position:
            out.append(f"... (lines {position}-{start - 1} elided)")
        out.extend(lines[start - 1 : end])
        position = end + 1
    total = len(lines)
    if lines and lines[-1] == "":
        total -= 1  # the empty string after a final newline is not a line
    if position <= total:
        out.append(f"... (lines {position}-{total} elided)")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- function view

SMALL_FILE_LINES = 150  # a file this short is shown whole even in the function view


def _import_lines(lines: list[str]) -> list[int]:
    """0-based indices of the module's top-level import statements (continuations too)."""
    out: list[int] = []
    depth, continued = 0, False
    for i, line in enumerate(lines):
        if depth > 0 or continued or re.match(r"(?:import|from)\s+\S", line):
            out.append(i)
            depth = max(0, depth + line.count("(") - line.count(")"))
            continued = line.rstrip().endswith("\\")
    return out


def function_view(source: str, symbols: list[Symbol], wanted: list[Symbol]) -> str:
    """The file's imports, then each wanted function whole under its class header line(s).

    Left-out stretches are marked `# lines A-B not shown`, never with an elision marker a
    model could copy into an answer.
    """
    lines = source.split("\n")
    by_qualname = {s.qualname: s for s in symbols}
    keep: set[int] = set(_import_lines(lines))
    for symbol in wanted:
        start = symbol.line - 1
        while start > 0 and lines[start - 1].lstrip().startswith("@"):
            start -= 1
        keep.update(range(start, min(symbol.end_line, len(lines))))
        owner = by_qualname.get(symbol.parent) if symbol.parent else None
        while owner is not None:
            keep.add(owner.line - 1)
            owner = by_qualname.get(owner.parent) if owner.parent else None
    total = len(lines) - (1 if lines and lines[-1] == "" else 0)
    out: list[str] = []
    gap_start = None
    for i in range(total):
        if i in keep:
            if gap_start is not None:
                out.append(f"# lines {gap_start + 1}-{i} not shown")
                gap_start = None
            out.append(lines[i])
        elif gap_start is None:
            gap_start = i
    if gap_start is not None:
        out.append(f"# lines {gap_start + 1}-{total} not shown")
    return "\n".join(out) + "\n"


def function_source(
    files: Mapping[str, str],
    table: Mapping[str, list[Symbol]],
    suspects: list[tuple[str, str]],
    token_budget: int,
) -> tuple[dict[str, str], bool]:
    """Source for the function-level format: per file of the ranked (path, qualname)
    suspects, the whole file when short, else `function_view` of its suspects, best
    first while they fit. Also says whether any file was shown in part."""
    budget = max(0, token_budget) * CHARS_PER_TOKEN
    wanted: dict[str, list[Symbol]] = {}
    result: dict[str, str] = {}
    partial = False
    used = 0
    for path, qualname in suspects:
        if path not in files:
            continue
        symbol = next((s for s in table.get(path, ()) if s.qualname == qualname), None)
        if symbol is None:
            continue
        trial = wanted.get(path, []) + [symbol]
        source = files[path]
        whole = source.count("\n") <= SMALL_FILE_LINES
        text = source if whole else function_view(source, table[path], trial)
        growth = len(text) - len(result.get(path, ""))
        if result and used + growth > budget:
            continue
        wanted[path] = trial
        used += growth
        result[path] = text
        partial = partial or not whole
    return result, partial
