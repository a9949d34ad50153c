"""Per-file analysis with tree-sitter: symbols (classes, functions, methods), identifiers,
calls and imports.

Python is always supported (tree-sitter-python). Other languages are mapped only when the
optional `tree-sitter-language-pack` (a 0.x release: 1.x downloads grammars at run time) is
importable; without it their files are listed by path only. Syntax errors never raise.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from typing import Any

_MAX_SIGNATURE = 240


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
    aliases: dict[str, str] = field(default_factory=dict)  # `f = mod.func`: f -> mod.func

    def to_json(self) -> dict[str, Any]:
        return {
            "symbols": [list(s) for s in self.symbols],
            "idents": self.idents,
            "calls": [[c.name, c.line, c.receiver] for c in self.calls],
            "imports": self.imports,
            "aliases": self.aliases,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _FileInfo:
        return cls(
            symbols=[(s[0], s[1], s[2], s[3], s[4], s[5], tuple(s[6])) for s in data["symbols"]],
            idents={str(k): int(v) for k, v in data["idents"].items()},
            calls=[_Call(str(c[0]), int(c[1]), c[2]) for c in data["calls"]],
            imports={str(k): str(v) for k, v in data["imports"].items()},
            aliases={str(k): str(v) for k, v in data.get("aliases", {}).items()},
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
        elif python and node_type == "assignment":
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            if (left is not None and right is not None and left.type == "identifier"
                    and right.type in ("attribute", "identifier")):
                target = " ".join(_text(data, right.start_byte, right.end_byte).split())
                info.aliases[_text(data, left.start_byte, left.end_byte)] = target
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
