"""The edit data types: what the model asked for (`Edit`) and what applying it did."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class MatchStrategy(StrEnum):
    """How an edit found its place in the file (reported per applied edit)."""

    EXACT = "exact"
    WHITESPACE = "whitespace"
    FUZZY = "fuzzy"
    WHOLE_FILE = "whole_file"
    DIFF = "diff"
    CREATE = "create"
    FUNCTION = "function"  # replacement functions spliced in by their tree-sitter span


class EditKind(StrEnum):
    SEARCH_REPLACE = "search_replace"
    CREATE = "create"  # empty SEARCH: creates the file (or appends to an existing one)
    WHOLE_FILE = "whole_file"
    DIFF = "diff"
    DELETE = "delete"
    FUNCTIONS = "functions"


@dataclass(frozen=True)
class Edit:
    """One change to one file, as the model expressed it."""

    path: str  # repo-relative posix path
    search: str | None = None
    replace: str | None = None
    content: str | None = None  # whole-file content
    diff: str | None = None  # this file's part of a unified diff (headers + hunks)
    delete: bool = False  # the file is removed (a diff to /dev/null)
    functions: str | None = None  # replacement definitions, each replacing its namesake

    @property
    def kind(self) -> EditKind:
        if self.delete:
            return EditKind.DELETE
        if self.diff is not None:
            return EditKind.DIFF
        if self.functions is not None:
            return EditKind.FUNCTIONS
        if self.content is not None:
            return EditKind.WHOLE_FILE
        if not (self.search or "").strip():
            return EditKind.CREATE
        return EditKind.SEARCH_REPLACE


@dataclass(frozen=True)
class AppliedEdit:
    path: str
    strategy: MatchStrategy
    score: float  # 1.0 for exact; the similarity ratio for fuzzy matches


@dataclass
class ApplyResult:
    files: dict[str, str]  # full new contents of every file; deleted files are absent
    applied: list[AppliedEdit] = field(default_factory=list)
