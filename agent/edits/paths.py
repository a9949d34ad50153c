"""Resolve the loose ways models spell a file path (decorated lines, fence info, partial names)."""

from __future__ import annotations

import re
from collections.abc import Iterable

_PATH_CHARS_RE = re.compile(r"^[\w.\-+@~/\\]+$")
_PATH_PREFIX_RE = re.compile(
    r"^(?:file(?:\s*name|\s*path)?|path|new file)\s*[:=]\s*", re.IGNORECASE
)
_COMMENT_PATH_RE = re.compile(
    r"^\s*(?:#+|//+|--|;+|<!--|/\*)\s*(?:(?:file(?:name)?|path)\s*:\s*)?"
    r"(?P<path>\S+?)\s*(?:-->|\*/)?\s*$",
    re.IGNORECASE,
)


class _Known:
    """Repository paths used to resolve the model's loose spelling of a path."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = list(dict.fromkeys(paths))
        self.set = set(self.paths)

    def resolve(self, raw: str) -> str:
        path = raw.strip().replace("\\", "/")
        while path.startswith("./"):
            path = path[2:]
        if path in self.set or not self.paths:
            return path
        # A bare or partial name ("foo.py" for "pkg/foo.py"), if unique.
        tails = [k for k in self.paths if k.endswith("/" + path)]
        if len(tails) == 1:
            return tails[0]
        # Extra leading directories (an absolute path, the repo's own name); longest wins.
        heads = [k for k in self.paths if path.endswith("/" + k)]
        if heads:
            return max(heads, key=len)
        return path

    def knows(self, raw: str) -> bool:
        return self.resolve(raw) in self.set


def _looks_like_path(text: str, known: _Known) -> bool:
    if not text or len(text) > 255 or not _PATH_CHARS_RE.match(text):
        return False
    if known.knows(text):
        return True
    if not re.search(r"[A-Za-z]", text) or text.endswith("."):
        return False
    return "/" in text.strip("/") or bool(re.search(r"\.[A-Za-z0-9_]+$", text))


def _clean_path_line(line: str) -> str:
    """Strip the decorations models put around a filename line."""
    text = line.strip()
    for _ in range(4):  # decorations nest (**File: `x.py`**), peel a few layers
        before = text
        text = re.sub(r"^<!--\s*(.*?)\s*-->$", r"\1", text)
        text = re.sub(r"^(?:#+|//+|--|;+)\s*", "", text)
        text = re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", text)
        text = text.strip().strip("*_`'\"")
        text = _PATH_PREFIX_RE.sub("", text)
        text = re.sub(r"\s+\([^)]*\)$", "", text)  # "x.py (new file)"
        text = text.rstrip(":").strip()
        if text == before:
            break
    return text


def _path_in_line(line: str, known: _Known, *, prose: bool) -> str | None:
    """The path a line names: the whole line, or (with `prose`) one path token in a sentence."""
    cleaned = _clean_path_line(line)
    if _looks_like_path(cleaned, known):
        return known.resolve(cleaned)
    if not prose:
        return None
    tokens = re.findall(r"`([^`\s]+)`", line) or re.findall(r"[\w./\\-]+", line)
    found = {
        known.resolve(tok.rstrip(".,:;"))
        for tok in tokens
        if _looks_like_path(tok.rstrip(".,:;"), known)
        and (known.knows(tok.rstrip(".,:;")) or "`" in line)
    }
    return found.pop() if len(found) == 1 else None


def _path_in_info(info: str, known: _Known) -> tuple[str, str | None]:
    """Split a fence's info string ("python", "python:pkg/x.py", "pkg/x.py") into lang, path."""
    tokens = [t.strip("'\"") for t in re.split(r"[\s:]+|title=", info) if t.strip("'\"")]
    lang = tokens[0].lower() if tokens and "." not in tokens[0] and "/" not in tokens[0] else ""
    for tok in tokens:
        if tok.lower() != lang and _looks_like_path(tok, known):
            return lang, known.resolve(tok)
    return lang, None
