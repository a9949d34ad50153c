"""What a failure points at: hit files and lines, the symbols they land in, and the
definitions a failing test calls (followed through test helpers and imports)."""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.context.names import _STOPWORDS, _innermost, _is_dunder, _module_matches, _module_name, is_test_path
from agent.context.symbols import _IDENT_RE, Symbol, _Call, _FileInfo
from agent.context.tracebacks import TracebackHit, _PathMapper

_GENERIC_NAME_FILES = 5  # a name defined in more files than this is too generic to follow


@dataclass
class _Focus:
    hit_files: dict[str, int] = field(default_factory=dict)  # path -> number of hits
    last_hit: dict[str, int] = field(default_factory=dict)  # path -> index of its last hit
    mentioned_files: set[str] = field(default_factory=set)
    symbols: set[tuple[str, str]] = field(default_factory=set)  # (path, qualname)
    names: set[str] = field(default_factory=set)  # names for reference scoring
    # files found by following a test's calls / a mentioned name, in discovery order
    defining: dict[str, list[Symbol]] = field(default_factory=dict)
    # hit lines per file (0 excluded) in hit order, and the symbols the hits land in
    hit_lines: dict[str, list[int]] = field(default_factory=dict)
    hit_symbols: dict[str, list[Symbol]] = field(default_factory=dict)


def focus_of(
    infos: Mapping[str, _FileInfo],
    table: Mapping[str, list[Symbol]],
    hits: Sequence[TracebackHit],
    mentioned: Iterable[str],
) -> _Focus:
    focus = _Focus()
    by_name: dict[str, list[Symbol]] = {}
    for symbols in table.values():
        for symbol in symbols:
            by_name.setdefault(symbol.name, []).append(symbol)
    generic = {
        name
        for name, defs in by_name.items()
        if len({d.path for d in defs}) > _GENERIC_NAME_FILES
    }

    def add_defining(symbol: Symbol, follow: bool = False) -> None:
        if follow and is_test_path(symbol.path):  # a named test: what does it call?
            for called in _follow_calls(symbol.path, symbol, infos, table, by_name):
                add_defining(called)
        focus.symbols.add((symbol.path, symbol.qualname))
        focus.defining.setdefault(symbol.path, [])
        if symbol not in focus.defining[symbol.path]:
            focus.defining[symbol.path].append(symbol)
        if not _is_dunder(symbol.name) and symbol.name not in generic:
            focus.names.add(symbol.name)

    for index, hit in enumerate(hits):
        if hit.path not in infos:
            continue
        focus.hit_files[hit.path] = focus.hit_files.get(hit.path, 0) + 1
        focus.last_hit[hit.path] = index
        symbols = table[hit.path]
        target = _innermost(symbols, hit.line) if hit.line > 0 else None
        if target is None and hit.function:
            target = next((s for s in symbols if s.name == hit.function), None)
        if hit.line > 0:
            focus.hit_lines.setdefault(hit.path, []).append(hit.line)
        if target is None:
            continue
        focus.hit_symbols.setdefault(hit.path, [])
        if target not in focus.hit_symbols[hit.path]:
            focus.hit_symbols[hit.path].append(target)
        focus.symbols.add((hit.path, target.qualname))
        if not _is_dunder(target.name) and target.name not in generic:
            focus.names.add(target.name)
        if is_test_path(hit.path):
            for symbol in _follow_calls(hit.path, target, infos, table, by_name):
                add_defining(symbol)

    mapper = _PathMapper(infos)
    modules = {_module_name(path): path for path in infos}
    for item in mentioned:
        item_path = item.strip().split("::", 1)[0]
        path = None
        if item_path and " " not in item_path and ("/" in item_path or "." in item_path):
            path = mapper(item_path) or modules.get(item_path)
        if path is not None:
            focus.mentioned_files.add(path)
        single = _IDENT_RE.fullmatch(item.strip()) is not None
        for word in _IDENT_RE.findall(item):
            if not single and (len(word) < 3 or word.lower() in _STOPWORDS):
                continue
            if keyword.iskeyword(word) or word in generic:
                continue
            for symbol in by_name.get(word, ()):
                if single or symbol.parent is None or "_" in word or word != word.lower():
                    add_defining(symbol, follow=True)
    return focus

def _follow_calls(
    path: str,
    test_symbol: Symbol,
    infos: Mapping[str, _FileInfo],
    table: Mapping[str, list[Symbol]],
    by_name: Mapping[str, list[Symbol]],
    depth: int = 0,
) -> list[Symbol]:
    """Definitions outside test files of what `test_symbol` calls (through test helpers)."""
    info = infos[path]
    found: list[Symbol] = []
    if depth == 0:  # the fixtures a test takes run code too: follow what they call
        for fixture in _fixtures(test_symbol, table):
            found.extend(s for s in _follow_calls(fixture.path, fixture, infos, table, by_name,
                                                  depth + 1) if s not in found)
    for call in info.calls:
        if not test_symbol.line <= call.line <= test_symbol.end_line:
            continue
        alias = info.aliases.get(call.name) if call.receiver is None else None
        if alias is not None and alias != call.name:  # `f = mod.func` ... `f(x)`
            receiver, _, name = alias.rpartition(".")
            call = _Call(name, call.line, receiver or None)
        candidates = [  # a bare call is to a function or a class, not a method
            s
            for s in by_name.get(call.name, ())
            if s.kind != "method" or call.receiver is not None
        ]
        target_module = None
        if call.receiver is None and call.name in info.imports:
            target_module = info.imports[call.name].rsplit(".", 1)[0]
        elif call.receiver and call.receiver in info.imports:
            target_module = info.imports[call.receiver]
        if target_module:
            narrowed = [s for s in candidates if _module_matches(s.path, target_module)]
            if not narrowed and call.receiver is None:  # `from pkg import mod` then mod()
                narrowed = [
                    s for s in candidates if _module_matches(s.path, info.imports[call.name])
                ]
            candidates = narrowed or candidates
        if len({s.path for s in candidates}) > _GENERIC_NAME_FILES - 2:
            continue  # too ambiguous to mean anything
        for symbol in candidates:
            if symbol.path == path or is_test_path(symbol.path):
                # a helper in the test file (or another test module): follow it once
                if depth < 2 and symbol.path in infos and symbol != test_symbol:
                    found.extend(
                        _follow_calls(
                            symbol.path, symbol, infos, table, by_name, depth + 1
                        )
                    )
                continue
            if symbol not in found:
                found.append(symbol)
    return found


def _fixtures(test: Symbol, table: Mapping[str, list[Symbol]]) -> list[Symbol]:
    """The fixture functions (in test files and conftest.py) named by `test`'s parameters."""
    header = test.signature.split("(", 1)[-1]
    params = {p.strip().split(":")[0].split("=")[0].strip().lstrip("*")
              for p in header.rsplit(")", 1)[0].split(",")}
    params -= {"self", "cls", ""}
    return [s for path, symbols in table.items() if is_test_path(path) for s in symbols
            if s.name in params and s.kind == "function"
            and any("fixture" in d for d in s.decorators)]
