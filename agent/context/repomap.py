"""The repository map: the context the model sees besides the failure output.

Three pieces, all built on tree-sitter (error tolerant, so half-edited files never crash):

* `extract_symbols` turns one file into its classes, functions and methods with their
  one-line signatures.
* `parse_traceback_locations` reads pytest output / Python tracebacks and returns the repo
  files and lines they point at (`TracebackHit`).
* `RepoMap` caches the per-file analysis by content hash (in memory, and on disk when given
  a folder), renders a ranked, token-budgeted outline of the repository (`render`), and
  collects the full source of the implicated files (`implicated_source`), following a failing
  test's calls into the modules that define what it calls.

Python is always supported (tree-sitter-python). Other languages are mapped only when the
optional `tree-sitter-language-pack` (a 0.x release: 1.x downloads grammars at run time) is
importable; without it their files are listed by path only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import keyword
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.testpaths import is_test_path  # the one rule; re-exported for the map's users

__all__ = [
    "RepoMap",
    "Symbol",
    "TracebackHit",
    "extract_symbols",
    "is_test_path",
    "parse_traceback_locations",
]

CACHE_VERSION = 1
CHARS_PER_TOKEN = 4
_MAX_SIGNATURE = 240
_CONTEXT_LINES = 3
_GENERIC_NAME_FILES = 5  # a name defined in more files than this is too generic to follow


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Symbol:
    """A class, function or method definition.

    `line`/`end_line` are 1-based and inclusive; `line` is the line of the `def`/`class`
    keyword (decorators, if any, are above it and listed in `decorators`). `parent` is the
    dotted qualified name of the enclosing class or function, None at module level.
    """

    path: str
    name: str
    kind: str  # "class" | "function" | "method"
    line: int
    end_line: int
    signature: str
    parent: str | None
    decorators: tuple[str, ...] = ()

    @property
    def qualname(self) -> str:
        return f"{self.parent}.{self.name}" if self.parent else self.name


@dataclass(frozen=True)
class TracebackHit:
    """A repo file location named by test output. `line` is 0 when only the test id was seen."""

    path: str
    line: int
    function: str | None


@dataclass(frozen=True)
class _Call:
    name: str
    line: int
    receiver: str | None  # `mod` in `mod.foo()`, None for a bare `foo()`; "" for other exprs


@dataclass
class _FileInfo:
    """Everything one parse yields, path-free so it can be cached by content hash."""

    symbols: list[tuple[Any, ...]] = field(default_factory=list)  # Symbol fields minus path
    idents: dict[str, int] = field(default_factory=dict)
    calls: list[_Call] = field(default_factory=list)
    imports: dict[str, str] = field(default_factory=dict)  # local name -> dotted target

    def to_json(self) -> dict[str, Any]:
        return {
            "symbols": [list(s) for s in self.symbols],
            "idents": self.idents,
            "calls": [[c.name, c.line, c.receiver] for c in self.calls],
            "imports": self.imports,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _FileInfo:
        return cls(
            symbols=[(s[0], s[1], s[2], s[3], s[4], s[5], tuple(s[6])) for s in data["symbols"]],
            idents={str(k): int(v) for k, v in data["idents"].items()},
            calls=[_Call(str(c[0]), int(c[1]), c[2]) for c in data["calls"]],
            imports={str(k): str(v) for k, v in data["imports"].items()},
        )

    def bind(self, path: str) -> list[Symbol]:
        return [Symbol(path, *s) for s in self.symbols]


# --------------------------------------------------------------------------- languages

_PYTHON_SUFFIXES = (".py", ".pyi")
# Extensions mapped through the optional tree-sitter-language-pack.
_PACK_LANGUAGES = {
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".rb": "ruby",
    ".php": "php",
    ".cs": "csharp",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".scala": "scala",
    ".swift": "swift",
}


def _language_name(path: str) -> str | None:
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _PYTHON_SUFFIXES:
        return "python"
    return _PACK_LANGUAGES.get(suffix)


@functools.cache
def _language(name: str) -> Any | None:
    """The tree-sitter Language for `name`, or None where its grammar is not installed."""
    try:
        if name == "python":
            import tree_sitter_python
            from tree_sitter import Language

            return Language(tree_sitter_python.language())
        import tree_sitter_language_pack  # optional; imported only when needed

        return tree_sitter_language_pack.get_language(name)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - missing package, unknown language, download refused
        return None


def _parse_tree(language: Any, data: bytes) -> Any:
    from tree_sitter import Parser

    return Parser(language).parse(data)


# --------------------------------------------------------------------------- extraction

_CLASS_TYPES = {
    "class_definition",  # python
    "class_declaration",  # js/ts/java/c#/kotlin/swift
    "abstract_class_declaration",
    "interface_declaration",
    "enum_declaration",
    "record_declaration",
    "struct_declaration",
    "class_specifier",  # c++
    "struct_specifier",  # c
    "union_specifier",
    "struct_item",  # rust
    "enum_item",
    "trait_item",
    "impl_item",
    "type_spec",  # go
    "class",  # ruby
    "module",
    "object_declaration",  # kotlin
    "object_definition",  # scala
    "trait_definition",
}
_FUNCTION_TYPES = {
    "function_definition",  # python, c, c++, php, scala
    "function_declaration",  # js/ts/go/kotlin/swift
    "generator_function_declaration",
    "method_definition",  # js/ts
    "method_declaration",  # java/go/c#/php
    "constructor_declaration",
    "function_item",  # rust
    "function_signature_item",
    "method",  # ruby
    "singleton_method",
}
_NEEDS_BODY = {"class_specifier", "struct_specifier", "union_specifier"}
_CALL_TYPES = {
    "call",  # python, ruby
    "call_expression",  # js/ts/go/rust/c/c++/kotlin/swift
    "method_invocation",  # java
    "invocation_expression",  # c#
    "function_call_expression",  # php
    "member_call_expression",
}
_IDENT_RE = re.compile(r"[^\W\d]\w*")  # an identifier, Unicode included


def _text(data: bytes, start: int, end: int) -> str:
    return data[start:end].decode("utf-8", errors="replace")


def _end_line(node: Any) -> int:
    row, column = node.end_point
    return row if column == 0 and row > node.start_point[0] else row + 1


def _ident_text(node: Any | None, data: bytes) -> str | None:
    """The name held by `node`: itself if an identifier, else its last identifier descendant."""
    if node is None:
        return None
    if node.type.endswith("identifier") or node.type in ("constant", "name"):
        return _text(data, node.start_byte, node.end_byte)
    for field_name in ("name", "declarator", "attribute", "property", "field"):
        child = node.child_by_field_name(field_name)
        if child is not None:
            return _ident_text(child, data)
    for child in reversed(node.named_children):
        name = _ident_text(child, data)
        if name:
            return name
    return None


def _is_name(text: str) -> bool:
    return bool(text) and not any(c.isspace() or c in "()[]{}<>,;" for c in text)


def _definition_name(node: Any, data: bytes) -> str | None:
    if node.type in _NEEDS_BODY and node.child_by_field_name("body") is None:
        return None  # `struct S s;` uses a type, it does not define one
    name = node.child_by_field_name("name")
    if name is not None:
        text = _text(data, name.start_byte, name.end_byte)
        return text if _is_name(text) else None
    declarator = node.child_by_field_name("declarator")  # c / c++ functions
    if declarator is not None:
        text = _ident_text(declarator, data)
        return text if text and _is_name(text) else None
    type_node = node.child_by_field_name("type")  # rust impl blocks
    if type_node is not None and node.type == "impl_item":
        return _ident_text(type_node, data)
    return None


def _signature(node: Any, data: bytes, python: bool) -> str:
    """The definition's header as one line: from its keyword to the `:` (Python) or body."""
    body = node.child_by_field_name("body")
    if body is not None:
        end = body.start_byte
    else:  # a declaration without body, or a definition broken by a syntax error
        newline = data.find(b"\n", node.start_byte, node.end_byte)
        end = node.end_byte if newline < 0 else newline
    if python:
        for child in node.children:
            if child.type == ":" and child.start_byte <= end:
                end = child.end_byte
    # drop comments inside the header (e.g. after a parameter)
    pieces: list[tuple[int, int]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.start_byte >= end:
            continue
        if current.type == "comment":
            pieces.append((current.start_byte, current.end_byte))
            continue
        stack.extend(current.children)
    header = data[node.start_byte : end]
    for start, stop in sorted(pieces, reverse=True):
        header = header[: start - node.start_byte] + header[stop - node.start_byte :]
    text = header.decode("utf-8", errors="replace")
    text = re.sub(r",\s*\n\s*([)\]])", r"\1", text)  # a multi-line list's trailing comma
    text = " ".join(text.split())
    text = re.sub(r"([(\[]) ", r"\1", text)
    text = re.sub(r" ([)\]])", r"\1", text)
    text = text.rstrip(" {")
    if len(text) > _MAX_SIGNATURE:
        text = text[: _MAX_SIGNATURE - 3].rstrip() + "..."
    return text


def _analyze(path: str, source: str) -> _FileInfo:
    """Parse one file. Unsupported languages (or a missing grammar) give an empty result."""
    language_name = _language_name(path)
    language = _language(language_name) if language_name else None
    if language is None:
        return _FileInfo()
    python = language_name == "python"
    data = source.encode("utf-8", errors="surrogatepass")
    tree = _parse_tree(language, data)
    info = _FileInfo()
    _walk(tree.root_node, data, python, info)
    if python and tree.root_node.has_error:
        _recover_python(tree.root_node, data, language, info)
    info.symbols.sort(key=lambda s: (s[2], s[3]))
    return info


_PY_TOP_DEF = re.compile(rb"(?:async[ \t]+def|def|class)[ \t]+[A-Za-z_]")


def _recover_python(root: Any, data: bytes, language: Any, info: _FileInfo) -> None:
    """Map the definitions a syntax error swallowed.

    One unclosed bracket can turn the rest of a module into a single ERROR node. Each
    top-level `def`/`class` inside such a node is re-parsed on its own (up to the next
    one), padded with newlines so that line numbers stay those of the file.
    """
    lines = data.split(b"\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    starts = [i for i, line in enumerate(lines) if _PY_TOP_DEF.match(line)]
    known = {s[2] for s in info.symbols}
    for error in root.children:
        if error.type != "ERROR":
            continue
        first, last = error.start_point[0], error.end_point[0]
        inside = [row for row in starts if first <= row <= last and row + 1 not in known]
        for row in inside:
            following = [r for r in starts if r > row]
            end_row = min(following[0] if following else len(lines), last + 1)
            begin = row
            while begin > first and lines[begin - 1].startswith(b"@"):
                begin -= 1  # keep the decorators with their definition
            chunk = b"\n" * begin + data[offsets[begin] : offsets[end_row] - 1]
            part = _FileInfo()
            _walk(_parse_tree(language, chunk).root_node, chunk, True, part, idents=False)
            info.symbols.extend(s for s in part.symbols if s[2] not in known)
            known.update(s[2] for s in part.symbols)
            info.calls.extend(part.calls)
            info.imports.update(part.imports)


def _walk(root: Any, data: bytes, python: bool, info: _FileInfo, idents: bool = True) -> None:
    """Collect the symbols, identifiers, calls and imports under `root` into `info`."""
    # (node, enclosing qualname, enclosing kind)
    stack: list[tuple[Any, str | None, str | None]] = [(root, None, None)]
    while stack:
        node, scope, scope_kind = stack.pop()
        node_type = node.type
        child_scope, child_kind = scope, scope_kind
        if node_type in _CLASS_TYPES or node_type in _FUNCTION_TYPES:
            name = _definition_name(node, data)
            if name is not None:
                if node_type in _CLASS_TYPES:
                    kind = "class"
                elif scope_kind == "class" or node_type == "method_declaration":
                    kind = "method"
                else:
                    kind = "function"
                parent = scope
                if node_type == "method_declaration" and scope is None:  # go receiver
                    receiver = node.child_by_field_name("receiver")
                    parent = _receiver_type(receiver, data) if receiver is not None else None
                decorators: tuple[str, ...] = ()
                wrapper = node.parent
                if wrapper is not None and wrapper.type == "decorated_definition":
                    decorators = tuple(
                        " ".join(_text(data, c.start_byte, c.end_byte).split())
                        for c in wrapper.children
                        if c.type == "decorator"
                    )
                info.symbols.append(
                    (
                        name,
                        kind,
                        node.start_point[0] + 1,
                        _end_line(node),
                        _signature(node, data, python),
                        parent,
                        decorators,
                    )
                )
                child_scope = f"{scope}.{name}" if scope else name
                child_kind = "class" if kind == "class" else "function"
        elif idents and (node_type.endswith("identifier") or node_type == "constant"):
            text = _text(data, node.start_byte, node.end_byte)
            info.idents[text] = info.idents.get(text, 0) + 1
        if node_type in _CALL_TYPES:
            call = _call_of(node, data)
            if call is not None:
                info.calls.append(call)
        elif python and node_type in ("import_statement", "import_from_statement"):
            info.imports.update(_python_imports(node, data))
        children = node.children
        for child in reversed(children):
            stack.append((child, child_scope, child_kind))


def _receiver_type(receiver: Any, data: bytes) -> str | None:
    stack = [receiver]
    while stack:
        node = stack.pop()
        if node.type == "type_identifier":
            return _text(data, node.start_byte, node.end_byte)
        stack.extend(reversed(node.children))
    return None


def _call_of(node: Any, data: bytes) -> _Call | None:
    line = node.start_point[0] + 1
    target = node.child_by_field_name("function")
    if target is None:  # java method_invocation, c#, ruby: name (+ object/receiver)
        name_node = node.child_by_field_name("name") or node.child_by_field_name("method")
        if name_node is None:
            return None
        obj = node.child_by_field_name("object") or node.child_by_field_name("receiver")
        name = _ident_text(name_node, data)
        receiver = None if obj is None else (_plain_ident(obj, data) or "")
        return _Call(name, line, receiver) if name else None
    if target.type.endswith("identifier"):
        return _Call(_text(data, target.start_byte, target.end_byte), line, None)
    # attribute / member / field / selector expression: `recv.name(...)`
    obj = None
    for field_name in ("object", "value", "operand", "argument"):
        obj = target.child_by_field_name(field_name)
        if obj is not None:
            break
    if obj is None and target.named_children:
        obj = target.named_children[0]
    name = _ident_text(target, data)
    if not name:
        return None
    receiver = None if obj is None else (_plain_ident(obj, data) or "")
    return _Call(name, line, receiver)


def _plain_ident(node: Any, data: bytes) -> str | None:
    if node.type.endswith("identifier"):
        return _text(data, node.start_byte, node.end_byte)
    return None


def _python_imports(node: Any, data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    if node.type == "import_statement":
        for child in node.named_children:
            if child.type == "aliased_import":
                target = child.child_by_field_name("name")
                alias = child.child_by_field_name("alias")
                if target is not None and alias is not None:
                    out[_text(data, alias.start_byte, alias.end_byte)] = _text(
                        data, target.start_byte, target.end_byte
                    )
            elif child.type == "dotted_name":
                dotted = _text(data, child.start_byte, child.end_byte)
                out[dotted.split(".")[0]] = dotted.split(".")[0]
        return out
    module_node = node.child_by_field_name("module_name")
    if module_node is None:
        return out
    module = _text(data, module_node.start_byte, module_node.end_byte).lstrip(".")
    for child in node.children_by_field_name("name"):
        if child.type == "aliased_import":
            target = child.child_by_field_name("name")
            alias = child.child_by_field_name("alias")
            if target is None or alias is None:
                continue
            name = _text(data, target.start_byte, target.end_byte)
            local = _text(data, alias.start_byte, alias.end_byte)
        else:
            name = local = _text(data, child.start_byte, child.end_byte)
        out[local] = f"{module}.{name}" if module else name
    return out


def extract_symbols(path: str, source: str) -> list[Symbol]:
    """The classes, functions and methods defined in `source`, in source order.

    Python always; other languages only with the optional tree-sitter-language-pack,
    otherwise []. Syntax errors never raise: tree-sitter recovers and the rest is mapped.
    """
    return _analyze(path, source).bind(path)


# --------------------------------------------------------------------------- tracebacks

_TB_PATTERN = re.compile(
    r"""
      File\ "(?P<tb_path>[^"\n]+)",\ line\ (?P<tb_line>\d+)(?:,\ in\ (?P<tb_func>[^\s]+))?
    | (?P<nodeid_path>[^\s:"'()\[\]]+\.[A-Za-z0-9]+)::(?P<nodeid_rest>[A-Za-z_][\w:]*)
    | (?P<loc_path>[^\s:"'()\[\]<>]+\.[A-Za-z0-9]+):(?P<loc_line>\d+)(?::\d+)?
      (?::\ in\ (?P<loc_func>[A-Za-z_][\w.]*))?
    | (?:^(?:ERROR|FAILED)(?:\ collecting)?\ |importing\ test\ module\ ')
      (?P<bare_path>[^\s:"'()\[\]]+\.[A-Za-z0-9]+)(?!::|[\w.])
    """,
    re.VERBOSE | re.MULTILINE,
)


class _PathMapper:
    """Maps a path as printed (absolute, container-relative, rootdir-relative) to a repo path."""

    def __init__(self, known_paths: Iterable[str]):
        self.known = {_normalize(p) for p in known_paths}
        self.by_name: dict[str, list[str]] = {}
        for known in self.known:
            self.by_name.setdefault(known.rsplit("/", 1)[-1], []).append(known)

    def __call__(self, raw: str) -> str | None:
        path = _normalize(raw)
        if path in self.known:
            return path
        parts = [p for p in path.split("/") if p not in ("", ".")]
        for i in range(len(parts)):  # longest known suffix: /workspace/pkg/mod.py -> pkg/mod.py
            suffix = "/".join(parts[i:])
            if suffix in self.known:
                return suffix
        if not parts:
            return None
        # printed relative to a sub-folder (pytest rootdir): mod.py -> pkg/mod.py, if unique
        tail = "/".join(parts)
        matches = [k for k in self.by_name.get(parts[-1], ()) if k.endswith("/" + tail)]
        return matches[0] if len(matches) == 1 else None


def _normalize(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def parse_traceback_locations(text: str, known_paths: Iterable[str]) -> list[TracebackHit]:
    """Repo locations named by test output, in order of appearance, without repeats.

    Understands Python tracebacks (`File "/workspace/pkg/mod.py", line 12, in foo`), pytest's
    location lines (`pkg/mod.py:12: AssertionError`, `tests/t.py:5: in test_x`), test ids
    (`tests/test_x.py::TestK::test_y[1]`, line 0) and collection errors. Paths are mapped
    to `known_paths` (any prefix such as /workspace/ is dropped); unknown paths are skipped.
    """
    mapper = _PathMapper(known_paths)
    hits: list[TracebackHit] = []
    seen: set[TracebackHit] = set()
    for match in _TB_PATTERN.finditer(text):
        groups = match.groupdict()
        if groups["tb_path"]:
            raw, line, function = groups["tb_path"], int(groups["tb_line"]), groups["tb_func"]
        elif groups["nodeid_path"]:
            raw, line = groups["nodeid_path"], 0
            function = groups["nodeid_rest"].rstrip(":").split("::")[-1] or None
        elif groups["loc_path"]:
            raw, line, function = groups["loc_path"], int(groups["loc_line"]), groups["loc_func"]
        else:
            raw, line, function = groups["bare_path"], 0, None
        if function is not None and not _IDENT_RE.fullmatch(function):
            function = None  # <module>, <lambda>, <listcomp>
        path = mapper(raw)
        if path is None:
            continue
        hit = TracebackHit(path, line, function)
        if hit not in seen:
            seen.add(hit)
            hits.append(hit)
    return hits


# --------------------------------------------------------------------------- helpers

def _module_name(path: str) -> str:
    """pkg/sub/mod.py -> pkg.sub.mod; pkg/__init__.py -> pkg."""
    stem = os.path.splitext(_normalize(path))[0]
    return stem.removesuffix("/__init__").replace("/", ".")


def _module_matches(path: str, module: str) -> bool:
    name = _module_name(path)
    return name == module or name.endswith("." + module)


def _innermost(symbols: Sequence[Symbol], line: int) -> Symbol | None:
    best: Symbol | None = None
    for symbol in symbols:
        if symbol.line <= line <= symbol.end_line and (best is None or symbol.line >= best.line):
            best = symbol
    return best


def _short_decorator(text: str) -> str:
    """`@pytest.mark.parametrize("x", [1, 2, 3])` -> `@pytest.mark.parametrize(...)`."""
    if len(text) <= 32 or "(" not in text:
        return text
    return text.split("(", 1)[0] + "(...)"


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


_STOPWORDS = {
    "the", "and", "for", "with", "this", "that", "from", "when", "then", "than", "should",
    "would", "could", "error", "errors", "value", "values", "data", "test", "tests", "file",
    "files", "none", "true", "false", "self", "list", "dict", "type", "name", "line",
}  # fmt: skip


# --------------------------------------------------------------------------- the map


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


class RepoMap:
    """Symbol tables, a ranked outline, and implicated source for a set of files.

    `files` arguments map repo-relative POSIX paths to their text. The analysis of each file
    is cached by a sha256 of its content (in memory, and as JSON under `cache_dir` when
    given), so re-rendering after an edit re-parses only the edited files. `parses` counts
    cache misses.
    """

    def __init__(self, cache_dir: Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, _FileInfo] = {}
        self.parses = 0

    # ------------------------------------------------------------------ analysis / cache

    def _info(self, path: str, source: str) -> _FileInfo:
        language_name = _language_name(path)
        if language_name is None or _language(language_name) is None:
            return _FileInfo()
        digest = hashlib.sha256(
            f"{CACHE_VERSION}\0{language_name}\0".encode() + source.encode("utf-8", "surrogatepass")
        ).hexdigest()
        info = self._memory.get(digest)
        if info is not None:
            return info
        info = self._load(digest)
        if info is None:
            self.parses += 1
            info = _analyze(path, source)
            self._store(digest, info)
        self._memory[digest] = info
        return info

    def _load(self, digest: str) -> _FileInfo | None:
        if self.cache_dir is None:
            return None
        try:
            data = json.loads((self.cache_dir / f"{digest}.json").read_text(encoding="utf-8"))
            return _FileInfo.from_json(data)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def _store(self, digest: str, info: _FileInfo) -> None:
        if self.cache_dir is None:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(info.to_json(), handle)
                os.replace(tmp, self.cache_dir / f"{digest}.json")
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass  # a cache that cannot be written is only slower

    def _infos(self, files: Mapping[str, str]) -> dict[str, _FileInfo]:
        return {path: self._info(path, source) for path, source in files.items()}

    def symbols(self, files: Mapping[str, str]) -> dict[str, list[Symbol]]:
        """Each file's symbols in source order ([] for files in unsupported languages)."""
        return {path: info.bind(path) for path, info in self._infos(files).items()}

    # ------------------------------------------------------------------ focus

    def _focus(
        self,
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
                for called in self._follow_calls(symbol.path, symbol, infos, table, by_name):
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
                for symbol in self._follow_calls(hit.path, target, infos, table, by_name):
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
        self,
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
        for call in info.calls:
            if not test_symbol.line <= call.line <= test_symbol.end_line:
                continue
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
                            self._follow_calls(
                                symbol.path, symbol, infos, table, by_name, depth + 1
                            )
                        )
                    continue
                if symbol not in found:
                    found.append(symbol)
        return found

    # ------------------------------------------------------------------ render

    def render(
        self,
        files: Mapping[str, str],
        *,
        focus: Sequence[TracebackHit] = (),
        mentioned: Iterable[str] = (),
        token_budget: int = 1024,
    ) -> str:
        """A ranked outline: each file's path, then its symbols' signatures, indented.

        Order: files named by `focus` (or defining names it or `mentioned` point at), then
        files referencing those names, then the rest; unfocused test files after source
        files at each level; files with nothing to outline last. Within a file that does
        not fit whole, the focused symbols are kept first and the gaps shown as `⋮`. The
        text is cut at a line boundary so that len(text) / 4 <= token_budget.
        """
        infos = self._infos(files)
        table = {path: info.bind(path) for path, info in infos.items()}
        ctx = self._focus(infos, table, focus, mentioned)

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
            lines = self._file_lines(table[path], ctx)
            chosen = self._choose_lines(lines, budget - used)
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

    @staticmethod
    def _file_lines(symbols: list[Symbol], ctx: _Focus) -> list[tuple[str, int, int, int]]:
        """(text, priority, depth, index of parent line or -1) for each symbol to outline."""
        by_qualname: dict[str, Symbol] = {}
        for symbol in symbols:
            by_qualname.setdefault(symbol.qualname, symbol)
        lines: list[tuple[str, int, int, int]] = []
        index_of: dict[str, int] = {}
        for symbol in symbols:
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

    @staticmethod
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

    # ------------------------------------------------------------------ implicated source

    def implicated_source(
        self,
        files: Mapping[str, str],
        focus: Sequence[TracebackHit],
        *,
        token_budget: int = 4096,
    ) -> dict[str, str]:
        """The source of the non-test files the failure implicates, within the budget.

        Implicated: source files with a traceback hit (innermost frame first), then the
        source files defining what a failing test calls. Each is given whole where it fits
        (leaving room for the others), otherwise as excerpts of the implicated functions
        with a few lines of context, elided ranges shown as `... (lines A-B elided)`.
        """
        infos = self._infos(files)
        table = {path: info.bind(path) for path, info in infos.items()}
        ctx = self._focus(infos, table, focus, ())
        direct = sorted(
            (p for p in ctx.hit_files if not is_test_path(p)),
            key=lambda p: -ctx.last_hit[p],
        )
        order = direct + [p for p in ctx.defining if p not in direct and not is_test_path(p)]
        budget = max(0, token_budget) * CHARS_PER_TOKEN

        regions: dict[str, list[tuple[int, int, int]]] = {}  # path -> (start, end, anchor)
        for path in order:
            regions[path] = self._regions(path, files[path], table[path], ctx)
        minimal = {
            path: self._excerpt(files[path], regions[path], budget, minimal=True) for path in order
        }
        result: dict[str, str] = {}
        used = 0
        for index, path in enumerate(order):
            source = files[path]
            reserve = sum(len(minimal[p] or "") for p in order[index + 1 :])
            if used + len(source) <= budget - reserve:
                result[path] = source
            else:
                excerpt = self._excerpt(source, regions[path], budget - used - reserve)
                if excerpt is None:
                    excerpt = self._excerpt(source, regions[path], budget - used, minimal=True)
                if excerpt is None:
                    continue
                result[path] = excerpt
            used += len(result[path])
        return result

    @staticmethod
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

    @staticmethod
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
