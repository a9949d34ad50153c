"""Apply parsed edits to in-memory files, every edit attempted so that one message reports all failures."""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Mapping, Sequence

from agent.edits.diffs import _parse_diff
from agent.edits.functions import apply_functions, elision_in
from agent.edits.match import (_HUNK_NOUN, _Ambiguous, _ambiguous_message, _Doc, _NoMatch,
    _no_match_message, _place, _Placed, _text_lines)
from agent.edits.paths import _Known
from agent.edits.types import AppliedEdit, ApplyResult, Edit, EditKind, MatchStrategy
from agent.errors import EditApplyError


def _check_path(path: str) -> str | None:
    if not path or path.startswith("/") or "\0" in path or re.match(r"^[A-Za-z]:", path):
        return f"the path '{path}' must be relative to the repository root"
    if ".." in path.split("/") or path != posixpath.normpath(path):
        return f"the path '{path}' must be a plain repository path (no '..', '.' or '//')"
    return None


def _unknown_path(path: str, files: Mapping[str, str]) -> str:
    names = list(files)
    base = posixpath.basename(path)
    similar = [p for p in names if posixpath.basename(p) == base]
    similar += difflib.get_close_matches(path, names, n=3, cutoff=0.6)
    similar = list(dict.fromkeys(similar))[:5]
    hint = f" Similar paths: {', '.join(similar)}." if similar else ""
    return (
        f"{path} is not a file in the repository.{hint} Use the path exactly as listed, or "
        "an empty SEARCH section to create a new file."
    )


def _lookup(path: str, files: Mapping[str, str]) -> str | None:
    """The existing path an edit means: exact, else a unique path with that suffix."""
    if path in files:
        return path
    tails = [p for p in files if p.endswith("/" + path)]
    return tails[0] if len(tails) == 1 else None


def _label(edit: Edit, number: int) -> str:
    names = {
        EditKind.SEARCH_REPLACE: "SEARCH/REPLACE block",
        EditKind.CREATE: "SEARCH/REPLACE block",
        EditKind.WHOLE_FILE: "whole-file edit",
        EditKind.DIFF: "diff",
        EditKind.DELETE: "diff",
        EditKind.FUNCTIONS: "function edit",
    }
    return f"Edit {number} ({names[edit.kind]} for {edit.path})"


def apply_edits(
    files: Mapping[str, str], edits: Sequence[Edit], fuzzy_threshold: float = 0.85
) -> ApplyResult:
    """Apply edits in order to in-memory files (never the disk).

    Every edit is attempted so that one error message can report all failing blocks;
    if any failed, EditApplyError is raised and no result is returned.
    """
    state = dict(files)
    applied: list[AppliedEdit] = []
    errors: list[str] = []
    for number, edit in enumerate(edits, 1):
        label = _label(edit, number)
        problem = _check_path(edit.path)
        if problem:
            errors.append(f"{label}: {problem}.")
            continue
        try:
            applied.append(_apply_one(state, edit, label, fuzzy_threshold))
        except EditApplyError as err:
            errors.append(str(err))
    if errors:
        if len(errors) == 1:
            raise EditApplyError(errors[0])
        head = f"{len(errors)} of {len(edits)} edits failed to apply; the others matched."
        raise EditApplyError(head + "\n\n" + "\n\n".join(errors))
    return ApplyResult(files=state, applied=applied)


def _apply_one(state: dict[str, str], edit: Edit, label: str, threshold: float) -> AppliedEdit:
    kind = edit.kind
    existing = _lookup(edit.path, state)
    if kind is EditKind.DELETE:
        if existing is None:
            raise EditApplyError(f"{label}: cannot delete it: {_unknown_path(edit.path, state)}")
        del state[existing]
        return AppliedEdit(existing, MatchStrategy.DIFF, 1.0)
    # Creations take the path as written: a new "foo.py" must not land in "pkg/foo.py".
    if kind is EditKind.WHOLE_FILE:
        return _apply_whole(state, edit.path, edit.content or "", label)
    if kind is EditKind.FUNCTIONS:
        if existing is None:
            raise EditApplyError(f"{label}: {_unknown_path(edit.path, state)}")
        state[existing] = apply_functions(state[existing], edit.functions or "", existing, label)
        return AppliedEdit(existing, MatchStrategy.FUNCTION, 1.0)
    if kind is EditKind.CREATE:
        return _apply_create(state, edit.path, edit.replace or "")
    if kind is EditKind.DIFF:
        return _apply_diff(state, edit, existing, label, threshold)
    if existing is None:
        raise EditApplyError(f"{label}: {_unknown_path(edit.path, state)}")
    doc = _Doc.parse(state[existing])
    search, replace = _text_lines(edit.search or ""), _text_lines(edit.replace or "")
    try:
        placed = _place(doc, search, replace, threshold)
    except _NoMatch as err:
        raise EditApplyError(
            _no_match_message(label, doc, existing, search, replace, err)
        ) from None
    except _Ambiguous as err:
        raise EditApplyError(_ambiguous_message(label, existing, err)) from None
    state[existing] = doc.text()
    return AppliedEdit(existing, placed.strategy, placed.score)


# A whole file this much shorter than the original lost code (an excerpt copied as "the
# file", a truncated answer): refused before it reaches the sandbox.
_MIN_KEPT = 0.5
_MIN_LINES_CHECKED = 40


def _apply_whole(state: dict[str, str], path: str, content: str, label: str) -> AppliedEdit:
    marker = elision_in(content)
    if marker is not None:
        raise EditApplyError(
            f"{label}: the file contains the elision marker {marker!r}, so lines would be "
            "lost; give every line of the file, or only the functions you change.")
    old_count = state[path].count("\n") if path in state else 0
    if old_count >= _MIN_LINES_CHECKED and content.count("\n") < old_count * _MIN_KEPT:
        raise EditApplyError(
            f"{label}: the new {path} has {content.count(chr(10))} lines where the file has "
            f"{old_count}; a whole-file answer must keep every line it does not change.")
    if path not in state:
        state[path] = content
        return AppliedEdit(path, MatchStrategy.CREATE, 1.0)
    # Keep the file's line endings and a missing final newline, so that the patch shows
    # only the model's real changes.
    old = _Doc.parse(state[path])
    new = _Doc.parse(content.replace("\r\n", "\n"))
    doc = _Doc([], old.final_eol if old.lines else new.final_eol, old.crlf)
    doc.splice(0, 0, new.lines)
    state[path] = doc.text()
    return AppliedEdit(path, MatchStrategy.WHOLE_FILE, 1.0)


def _apply_create(state: dict[str, str], path: str, content: str) -> AppliedEdit:
    if path not in state or not state[path].strip():
        state[path] = content
        return AppliedEdit(path, MatchStrategy.CREATE, 1.0)
    # An empty SEARCH on an existing file appends to it (the end always matches).
    doc = _Doc.parse(state[path])
    doc.splice(len(doc.lines), 0, _text_lines(content))
    doc.final_eol = True
    state[path] = doc.text()
    return AppliedEdit(path, MatchStrategy.EXACT, 1.0)


def _apply_diff(
    state: dict[str, str], edit: Edit, existing: str | None, label: str, threshold: float
) -> AppliedEdit:
    known = _Known(state)
    patches, _ = _parse_diff((edit.diff or "").split("\n"), known, edit.path, fenced=True)
    if len(patches) != 1:
        raise EditApplyError(f"{label}: expected the diff of exactly one file, got {len(patches)}.")
    patch = patches[0]
    if patch.new is None:
        return _apply_one(state, Edit(path=edit.path, delete=True), label, threshold)
    if patch.old is None:  # --- /dev/null: a created file
        if state.get(edit.path, "").strip():
            raise EditApplyError(
                f"{label}: the diff creates {edit.path}, but that file already exists; "
                "diff against its current content instead."
            )
        lines = [ln for h in patch.hunks for ln in h.new]
        no_eol = bool(patch.hunks) and patch.hunks[-1].new_no_eol
        state[edit.path] = "\n".join(lines) + ("" if no_eol or not lines else "\n")
        return AppliedEdit(edit.path, MatchStrategy.CREATE, 1.0)

    # A rename reads the old path and writes the new one.
    source = _lookup(patch.old, state) if patch.old != edit.path else existing
    if source is None:
        source = existing
    if source is None:
        raise EditApplyError(f"{label}: {_unknown_path(patch.old or edit.path, state)}")
    target = edit.path if patch.old != patch.new else source
    doc = _Doc.parse(state[source])
    strategies: list[MatchStrategy] = []
    scores: list[float] = []
    offset, min_start = 0, 0  # line shift from earlier hunks; where the last one ended
    failures: list[str] = []
    for number, hunk in enumerate(patch.hunks, 1):
        old, new = hunk.old, hunk.new
        if old == new and not (hunk.old_no_eol or hunk.new_no_eol):
            continue
        hunk_label = f"{label}, hunk {number} ({hunk.header()})"
        expected = None if hunk.old_start is None else max(0, hunk.old_start - 1 + offset)
        if not old:  # pure insertion: the header's line number is all we have
            at = (
                len(doc.lines)
                if hunk.old_start is None
                else min(hunk.old_start + offset, len(doc.lines))
            )
            doc.splice(at, 0, new)
            placed = _Placed(MatchStrategy.EXACT, 1.0, at, at + len(new))
        else:
            try:
                placed = _place(doc, old, new, threshold, expected, min_start)
            except _NoMatch as err:
                failures.append(
                    _no_match_message(hunk_label, doc, source, old, new, err, _HUNK_NOUN)
                )
                continue
            except _Ambiguous as err:
                failures.append(_ambiguous_message(hunk_label, source, err, _HUNK_NOUN))
                continue
        if placed.end == len(doc.lines):  # the hunk reached the end of the file
            if hunk.new_no_eol:
                doc.final_eol = False
            elif hunk.old_no_eol:
                doc.final_eol = True
        offset += len(new) - len(old)
        min_start = placed.end
        strategies.append(placed.strategy)
        scores.append(placed.score)
    if failures:
        raise EditApplyError("\n\n".join(failures))
    order = [MatchStrategy.FUZZY, MatchStrategy.WHITESPACE]
    worst = next((s for s in order if s in strategies), MatchStrategy.DIFF)
    if target != source:
        del state[source]
    state[target] = doc.text()
    return AppliedEdit(target, worst, min(scores, default=1.0))
