"""Turn a model's answer into file edits and apply them in memory (patches: sandbox.diff).

Answer formats: SEARCH/REPLACE blocks, unified diffs, whole files (`parse`), and replacement
functions spliced back by their tree-sitter span (`functions`). Edits are applied with a
cascade of increasingly tolerant matching (`match`: exact, whitespace, fuzzy) so that a
small transcription slip does not waste a candidate. Every failure raises `FormatError` or
`EditApplyError`; their messages go back to the model, so they say which block failed and
show what the file really contains.
"""

from agent.edits.apply import apply_edits
from agent.edits.parse import parse_answer
from agent.edits.types import AppliedEdit, ApplyResult, Edit, EditKind, MatchStrategy

# Rendering and comparing patches is sandbox.diff's job; re-exported as part of this API.
from sandbox.diff import diff_paths, normalize_diff, unified_diff

__all__ = [
    "AppliedEdit",
    "ApplyResult",
    "Edit",
    "EditKind",
    "MatchStrategy",
    "apply_edits",
    "diff_paths",
    "normalize_diff",
    "parse_answer",
    "unified_diff",
]
