"""Tests for agent.edits: parsing model answers, the apply cascade, and git-valid patches."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.edits import (
    AppliedEdit,
    Edit,
    EditKind,
    MatchStrategy,
    apply_edits,
    diff_paths,
    normalize_diff,
    parse_answer,
    unified_diff,
)
from agent.errors import EditApplyError, FormatError, MulliganError

FOO = """\
import os


def greet(name):
    message = "hello " + name
    return message


def farewell(name):
    return "bye " + name
"""

KNOWN = ["pkg/foo.py", "pkg/bar.py", "README.md", "tests/test_foo.py"]


def sr_block(path_line: str, search: str, replace: str, *, fence: bool = True) -> str:
    body = f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"
    if fence:
        body = f"```python\n{body}```\n"
    return f"{path_line}\n{body}"


# --------------------------------------------------------------------------------------
# parse_answer: SEARCH/REPLACE
# --------------------------------------------------------------------------------------


def test_parse_canonical_search_replace_block() -> None:
    answer = (
        "Here is the fix.\n\n"
        + sr_block("pkg/foo.py", "    return message\n", "    return message.upper()\n")
        + "\nDone."
    )
    edits = parse_answer(answer, KNOWN)
    assert edits == [
        Edit(
            path="pkg/foo.py", search="    return message\n", replace="    return message.upper()\n"
        )
    ]
    assert edits[0].kind is EditKind.SEARCH_REPLACE


@pytest.mark.parametrize(
    "path_line",
    [
        "pkg/foo.py",
        "`pkg/foo.py`",
        "**pkg/foo.py**",
        "**`pkg/foo.py`**",
        "# file: pkg/foo.py",
        "### pkg/foo.py",
        "File: pkg/foo.py",
        "pkg/foo.py:",
        "- pkg/foo.py",
        "./pkg/foo.py",
        "foo.py",  # bare name, resolved through known_paths
        "/testbed/pkg/foo.py",  # absolute path inside the repo, resolved too
        "In `foo.py`, change the greeting:",  # one path named in a sentence
    ],
)
def test_parse_lenient_filename_lines(path_line: str) -> None:
    edits = parse_answer(sr_block(path_line, "a\n", "b\n"), KNOWN)
    assert [e.path for e in edits] == ["pkg/foo.py"]
    assert edits[0].search == "a\n" and edits[0].replace == "b\n"


def test_parse_filename_inside_the_fence_and_in_the_info_string() -> None:
    inside = "```python\npkg/foo.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```\n"
    info = "```python:pkg/bar.py\n<<<<<<< SEARCH\nc\n=======\nd\n>>>>>>> REPLACE\n```\n"
    edits = parse_answer(inside + "\n" + info, KNOWN)
    assert [(e.path, e.search, e.replace) for e in edits] == [
        ("pkg/foo.py", "a\n", "b\n"),
        ("pkg/bar.py", "c\n", "d\n"),
    ]


def test_parse_blocks_without_fences_and_with_odd_marker_lengths() -> None:
    answer = (
        "pkg/foo.py\n<<<<< SEARCH\nold one\n=====\nnew one\n>>>>> REPLACE\n\n"
        "pkg/bar.py\n<<<<<<<<< SEARCH\nold two\n=========\nnew two\n>>>>>>>>> REPLACE\n"
    )
    edits = parse_answer(answer, KNOWN)
    assert [(e.path, e.search, e.replace) for e in edits] == [
        ("pkg/foo.py", "old one\n", "new one\n"),
        ("pkg/bar.py", "old two\n", "new two\n"),
    ]


def test_parse_several_blocks_in_one_fence_share_the_filename() -> None:
    answer = (
        "pkg/foo.py\n```python\n"
        "<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\nc\n=======\nd\n>>>>>>> REPLACE\n"
        "```\n\n"
        "```python\n<<<<<<< SEARCH\ne\n=======\nf\n>>>>>>> REPLACE\n```\n"
    )
    edits = parse_answer(answer, KNOWN)
    assert [(e.path, e.search) for e in edits] == [
        ("pkg/foo.py", "a\n"),
        ("pkg/foo.py", "c\n"),
        ("pkg/foo.py", "e\n"),
    ]


def test_parse_block_content_may_contain_fences() -> None:
    # Editing Markdown: the ``` lines inside the block are content, not the block's fence.
    search = "```bash\npip install foo\n```\n"
    replace = "```bash\npip install 'foo[dev]'\n```\n"
    answer = "README.md\n````markdown\n<<<<<<< SEARCH\n" + search + "=======\n" + replace
    answer += ">>>>>>> REPLACE\n````\n"
    assert parse_answer(answer, KNOWN) == [Edit(path="README.md", search=search, replace=replace)]


def test_parse_empty_search_is_a_creation_and_crlf_answers_are_normalised() -> None:
    answer = "pkg/new.py\n```python\n<<<<<<< SEARCH\n=======\nX = 1\n>>>>>>> REPLACE\n```\n"
    answer = answer.replace("\n", "\r\n")
    (edit,) = parse_answer(answer, KNOWN)
    assert edit == Edit(path="pkg/new.py", search="", replace="X = 1\n")
    assert edit.kind is EditKind.CREATE


def test_parse_block_without_divider_is_a_format_error() -> None:
    answer = "pkg/foo.py\n```\n<<<<<<< SEARCH\na\n>>>>>>> REPLACE\n```\n"
    with pytest.raises(FormatError) as err:
        parse_answer(answer, KNOWN)
    assert "block 1 (pkg/foo.py)" in str(err.value)
    assert "=======" in str(err.value)


def test_parse_truncated_block_is_a_format_error() -> None:
    answer = "pkg/foo.py\n```\n<<<<<<< SEARCH\na\n=======\nb\n"
    with pytest.raises(
        FormatError, match=r"not closed by a line `>>>>>>> REPLACE` \(was the answer cut off"
    ):
        parse_answer(answer, KNOWN)


def test_parse_block_without_filename_is_a_format_error() -> None:
    answer = "Change this:\n```\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```\n"
    with pytest.raises(FormatError, match="does not say which file it edits"):
        parse_answer(answer, KNOWN)


def test_parse_nothing_parseable_explains_the_format() -> None:
    with pytest.raises(FormatError) as err:
        parse_answer("I think the bug is in greet(); you should return upper case.", KNOWN)
    message = str(err.value)
    assert message.startswith("No edits found")
    assert "<<<<<<< SEARCH" in message and ">>>>>>> REPLACE" in message
    assert isinstance(err.value, MulliganError)


# --------------------------------------------------------------------------------------
# parse_answer: unified diffs
# --------------------------------------------------------------------------------------


def test_parse_diff_with_prefixes_and_recounted_headers() -> None:
    # The header claims wrong lengths (-5,9 +5,2): they are recounted.
    answer = (
        "```diff\n--- a/pkg/foo.py\n+++ b/pkg/foo.py\n@@ -5,9 +5,2 @@ def greet(name):\n"
        '     message = "hello " + name\n-    return message\n+    return message.upper()\n```\n'
    )
    (edit,) = parse_answer(answer, KNOWN)
    assert edit.kind is EditKind.DIFF and edit.path == "pkg/foo.py"
    assert edit.diff == (
        "--- a/pkg/foo.py\n+++ b/pkg/foo.py\n@@ -5,2 +5,2 @@\n"
        '     message = "hello " + name\n-    return message\n+    return message.upper()\n'
    )


def test_parse_diff_without_prefixes_bare_names_and_no_fence() -> None:
    answer = (
        'The fix:\n--- foo.py\n+++ foo.py\n@@ -10 +10 @@\n-    return "bye " + name\n'
        '+    return "goodbye " + name\n\nThat should do it.\n'
    )
    (edit,) = parse_answer(answer, KNOWN)
    assert edit.path == "pkg/foo.py"
    assert edit.diff is not None and "@@ -10,1 +10,1 @@" in edit.diff
    assert "That should do it" not in edit.diff


def test_parse_diff_with_git_headers_several_files_creation_and_deletion() -> None:
    answer = """```diff
diff --git a/pkg/foo.py b/pkg/foo.py
index 3b18e51..a042389 100644
--- a/pkg/foo.py
+++ b/pkg/foo.py
@@ -1,4 +1,4 @@
-import os
+import sys


 def greet(name):

diff --git a/pkg/new.py b/pkg/new.py
new file mode 100644
--- /dev/null
+++ b/pkg/new.py
@@ -0,0 +1,2 @@
+A = 1
+B = 2
diff --git a/pkg/bar.py b/pkg/bar.py
deleted file mode 100644
--- a/pkg/bar.py
+++ /dev/null
@@ -1 +0,0 @@
-X = 1
```"""
    edits = parse_answer(answer, KNOWN)
    assert [(e.path, e.kind) for e in edits] == [
        ("pkg/foo.py", EditKind.DIFF),
        ("pkg/new.py", EditKind.DIFF),
        ("pkg/bar.py", EditKind.DELETE),
    ]
    # Blank context lines whose leading space was stripped stay context lines; blank lines
    # at the end of a hunk are separators.
    assert edits[0].diff is not None
    assert edits[0].diff.endswith(
        "@@ -1,4 +1,4 @@\n-import os\n+import sys\n \n \n def greet(name):\n"
    )
    assert edits[1].diff is not None and edits[1].diff.startswith(
        "--- /dev/null\n+++ b/pkg/new.py\n"
    )


def test_parse_diff_fence_with_only_hunks_takes_the_path_before_the_fence() -> None:
    answer = "pkg/foo.py\n```diff\n@@ -1 +1 @@\n-import os\n+import sys\n```\n"
    (edit,) = parse_answer(answer, KNOWN)
    assert edit.path == "pkg/foo.py"
    result = apply_edits({"pkg/foo.py": FOO}, [edit])
    assert result.files["pkg/foo.py"].startswith("import sys\n")


# --------------------------------------------------------------------------------------
# parse_answer: whole files
# --------------------------------------------------------------------------------------


def test_parse_whole_file_after_a_path_line() -> None:
    answer = "pkg/bar.py\n```python\nX = 2\n\n\ndef f():\n    return X\n```\n"
    (edit,) = parse_answer(answer, KNOWN)
    assert edit.kind is EditKind.WHOLE_FILE
    assert edit == Edit(
        path="pkg/bar.py", search=None, replace=None, content="X = 2\n\n\ndef f():\n    return X\n"
    )


@pytest.mark.parametrize("first_line", ["# pkg/bar.py", "# file: pkg/bar.py", "// File: bar.py"])
def test_parse_whole_file_named_in_its_first_line(first_line: str) -> None:
    answer = f"Here is the new version:\n```python\n{first_line}\nX = 2\n```\n"
    (edit,) = parse_answer(answer, KNOWN)
    assert (edit.path, edit.content) == ("pkg/bar.py", "X = 2\n")


def test_parse_whole_file_named_in_the_fence_info() -> None:
    (edit,) = parse_answer("```python pkg/bar.py\nX = 2\n```", KNOWN)
    assert (edit.path, edit.content) == ("pkg/bar.py", "X = 2\n")


def test_parse_ignores_unnamed_fences_and_does_not_let_snippets_clobber_files() -> None:
    answer = (
        sr_block("pkg/foo.py", "a\n", "b\n")
        + "\nThe output was:\n```\nTraceback (most recent call last):\n```\n"
        + "\nSo now pkg/foo.py reads:\n\npkg/foo.py\n```python\nb\n```\n"
        + "\nand a new helper:\n\npkg/helpers.py\n```python\nHELP = 1\n```\n"
    )
    edits = parse_answer(answer, KNOWN)
    # The illustration of an existing file is ignored next to real edits; a new file is kept.
    assert [(e.path, e.kind) for e in edits] == [
        ("pkg/foo.py", EditKind.SEARCH_REPLACE),
        ("pkg/helpers.py", EditKind.WHOLE_FILE),
    ]


def test_parse_unclosed_whole_file_fence_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="pkg/bar.py is not closed"):
        parse_answer("pkg/bar.py\n```python\nX = 2\ndef f(", KNOWN)


def test_parse_keeps_the_order_of_mixed_formats() -> None:
    answer = (
        "```diff\n--- a/pkg/bar.py\n+++ b/pkg/bar.py\n@@ -1 +1 @@\n-X = 1\n+X = 2\n```\n\n"
        + sr_block("pkg/foo.py", "a\n", "b\n")
    )
    assert [e.path for e in parse_answer(answer, KNOWN)] == ["pkg/bar.py", "pkg/foo.py"]


# --------------------------------------------------------------------------------------
# apply_edits: the cascade
# --------------------------------------------------------------------------------------


def test_apply_exact() -> None:
    files = {"pkg/foo.py": FOO, "pkg/bar.py": "X = 1\n"}
    edit = Edit("pkg/foo.py", "    return message\n", "    return message.upper()\n")
    result = apply_edits(files, [edit])
    assert result.applied == [AppliedEdit("pkg/foo.py", MatchStrategy.EXACT, 1.0)]
    assert result.files["pkg/foo.py"] == FOO.replace("return message", "return message.upper()")
    assert result.files["pkg/bar.py"] == "X = 1\n"  # unchanged files are included
    assert files["pkg/foo.py"] == FOO  # the input is not mutated


def test_apply_whitespace_reindents_the_replacement() -> None:
    # The model dropped the function body's indentation and left trailing spaces.
    search = 'message = "hello " + name   \nreturn message\n'
    replace = 'message = "hi " + name\nif not name:\n    return ""\nreturn message\n'
    result = apply_edits({"pkg/foo.py": FOO}, [Edit("pkg/foo.py", search, replace)])
    assert result.applied[0].strategy is MatchStrategy.WHITESPACE
    assert result.applied[0].score == 1.0
    assert result.files["pkg/foo.py"] == FOO.replace(
        '    message = "hello " + name\n    return message\n',
        '    message = "hi " + name\n    if not name:\n        return ""\n    return message\n',
    )


def test_apply_whitespace_tolerates_surrounding_blank_lines() -> None:
    search = "\ndef farewell(name):\n    return 'nope'\n\n"
    with pytest.raises(EditApplyError):
        apply_edits({"pkg/foo.py": FOO}, [Edit("pkg/foo.py", search, "x\n")], fuzzy_threshold=0.99)
    search = "\n\ndef farewell(name):\n\n"
    replace = "\n\ndef farewell(name, polite=False):\n\n"
    result = apply_edits({"pkg/foo.py": FOO}, [Edit("pkg/foo.py", search, replace)])
    assert result.applied[0].strategy is MatchStrategy.WHITESPACE
    assert result.files["pkg/foo.py"] == FOO.replace(
        "farewell(name)", "farewell(name, polite=False)"
    )


def test_apply_fuzzy_reports_its_score_and_respects_the_threshold() -> None:
    # A transcription slip: "mesage" and a different string quote style.
    search = "def greet(name):\n    mesage = 'hello ' + name\n    return message\n"
    replace = "def greet(name):\n    return f'hello {name}'\n"
    edit = Edit("pkg/foo.py", search, replace)
    result = apply_edits({"pkg/foo.py": FOO}, [edit])
    (applied,) = result.applied
    assert applied.strategy is MatchStrategy.FUZZY
    assert 0.85 <= applied.score < 1.0
    assert (
        "def greet(name):\n    return f'hello {name}'\n\n\ndef farewell"
        in result.files["pkg/foo.py"]
    )
    assert 'hello " + name' not in result.files["pkg/foo.py"]
    with pytest.raises(EditApplyError, match="do not match pkg/foo.py"):
        apply_edits({"pkg/foo.py": FOO}, [edit], fuzzy_threshold=0.99)


def test_apply_inexact_matches_keep_the_files_unchanged_lines() -> None:
    # The model misspelt an unchanged line ("farwell") and dropped trailing spaces:
    # only the line it meant to change may differ afterwards.
    text = FOO.replace("def farewell(name):", "def farewell(name):  ")
    search = 'def farwell(name):\n    return "bye " + name\n'
    replace = 'def farwell(name):\n    return "ciao " + name\n'
    result = apply_edits({"pkg/foo.py": text}, [Edit("pkg/foo.py", search, replace)])
    assert result.applied[0].strategy is MatchStrategy.FUZZY
    assert result.files["pkg/foo.py"] == text.replace("bye", "ciao")
    search = 'def farewell(name):\n    return "bye " + name\n'
    replace = 'def farewell(name):\n    return "ciao " + name\n'
    result = apply_edits({"pkg/foo.py": text}, [Edit("pkg/foo.py", search, replace)])
    assert result.applied[0].strategy is MatchStrategy.WHITESPACE
    assert result.files["pkg/foo.py"] == text.replace("bye", "ciao")


def test_apply_fuzzy_reindents_like_the_file() -> None:
    text = "class A:\n    def f(self):\n        x = compute(1)\n        return x\n"
    search = "def f(self):\n    x = compute(2)\n    return x\n"
    replace = "def f(self):\n    return compute(3)\n"
    result = apply_edits({"a.py": text}, [Edit("a.py", search, replace)])
    assert result.applied[0].strategy is MatchStrategy.FUZZY
    assert result.files["a.py"] == "class A:\n    def f(self):\n        return compute(3)\n"


def test_apply_ambiguous_search_asks_for_more_context() -> None:
    text = "def a():\n    return None\n\n\ndef b():\n    return None\n"
    with pytest.raises(EditApplyError) as err:
        apply_edits({"m.py": text}, [Edit("m.py", "    return None\n", "    return 0\n")])
    message = str(err.value)
    assert "Edit 1 (SEARCH/REPLACE block for m.py)" in message
    assert "match 2 places in m.py (starting at lines 2, 6)" in message
    assert "more unchanged lines" in message


def test_apply_non_matching_search_shows_the_closest_lines() -> None:
    search = "def farewell(person):\n    print('bye', person)\n"
    with pytest.raises(EditApplyError) as err:
        apply_edits({"pkg/foo.py": FOO}, [Edit("pkg/foo.py", search, "pass\n")])
    message = str(err.value)
    assert message.startswith(
        "Edit 1 (SEARCH/REPLACE block for pkg/foo.py): the SEARCH lines do not match pkg/foo.py"
    )
    assert "% similar" in message
    assert "The closest lines in pkg/foo.py (lines 8-10) are:" in message
    assert 'def farewell(name):\n    return "bye " + name' in message
    assert "exactly, including indentation" in message


def test_apply_non_matching_search_notices_already_applied_changes_and_ellipses() -> None:
    done = FOO.replace("return message", "return message.upper()")
    edit = Edit(
        "pkg/foo.py",
        "    # ... existing code ...\n    return msg\n",
        "    return message.upper()\n",
    )
    with pytest.raises(EditApplyError) as err:
        apply_edits({"pkg/foo.py": done}, [edit])
    assert "already in the file" in str(err.value)
    assert "Do not abbreviate with '...'" in str(err.value)


def test_apply_reports_every_failed_block_at_once() -> None:
    edits = [
        Edit("pkg/foo.py", "import os\n", "import sys\n"),
        Edit("pkg/foo.py", "no such line\n", "x\n"),
        Edit("pkg/missing.py", "a\n", "b\n"),
    ]
    with pytest.raises(EditApplyError) as err:
        apply_edits({"pkg/foo.py": FOO}, edits)
    message = str(err.value)
    assert message.startswith("2 of 3 edits failed to apply; the others matched.")
    assert "Edit 2 (SEARCH/REPLACE block for pkg/foo.py)" in message
    assert "Edit 3 (SEARCH/REPLACE block for pkg/missing.py)" in message


def test_apply_unknown_path_names_similar_paths() -> None:
    files = {"pkg/foo.py": FOO, "pkg/bar.py": "X = 1\n"}
    with pytest.raises(EditApplyError) as err:
        apply_edits(files, [Edit("pkg/fooo.py", "import os\n", "import sys\n")])
    assert "pkg/fooo.py is not a file in the repository. Similar paths: pkg/foo.py" in str(
        err.value
    )


def test_apply_resolves_a_unique_suffix_of_an_existing_path() -> None:
    result = apply_edits({"pkg/foo.py": FOO}, [Edit("foo.py", "import os\n", "import sys\n")])
    assert result.applied == [AppliedEdit("pkg/foo.py", MatchStrategy.EXACT, 1.0)]
    assert set(result.files) == {"pkg/foo.py"}


@pytest.mark.parametrize("path", ["../outside.py", "/etc/passwd", "pkg/../../x.py"])
def test_apply_rejects_paths_outside_the_repository(path: str) -> None:
    with pytest.raises(EditApplyError, match="must be"):
        apply_edits({}, [Edit(path, "", "x\n")])


def test_apply_creates_appends_replaces_and_deletes_files() -> None:
    files = {"pkg/foo.py": FOO, "pkg/bar.py": "X = 1\n", "old.txt": "bye\n"}
    edits = [
        Edit("pkg/new.py", "", "NEW = 1\n"),  # empty SEARCH, new file
        Edit("pkg/bar.py", "", "Y = 2\n"),  # empty SEARCH, existing file: appended
        Edit("pkg/other.py", None, None, content="O = 1\n"),  # whole file, new
        Edit("pkg/foo.py", None, None, content="import sys\n"),  # whole file, existing
        Edit("old.txt", delete=True),
    ]
    result = apply_edits(files, edits)
    assert result.files == {
        "pkg/foo.py": "import sys\n",
        "pkg/bar.py": "X = 1\nY = 2\n",
        "pkg/new.py": "NEW = 1\n",
        "pkg/other.py": "O = 1\n",
    }
    assert [(a.path, a.strategy) for a in result.applied] == [
        ("pkg/new.py", MatchStrategy.CREATE),
        ("pkg/bar.py", MatchStrategy.EXACT),
        ("pkg/other.py", MatchStrategy.CREATE),
        ("pkg/foo.py", MatchStrategy.WHOLE_FILE),
        ("old.txt", MatchStrategy.DIFF),
    ]


def test_apply_crlf_file_keeps_its_line_endings() -> None:
    text = FOO.replace("\n", "\r\n")
    edits = [
        Edit("w.py", "def greet(name):\n", "def greet(name, loud=False):\n"),
        Edit(
            "w.py",
            "    return message\n",
            "    if loud:\n        message = message.upper()\n    return message\n",
        ),
    ]
    result = apply_edits({"w.py": text}, edits)
    expected = FOO.replace("greet(name)", "greet(name, loud=False)").replace(
        "    return message\n",
        "    if loud:\n        message = message.upper()\n    return message\n",
    )
    assert result.files["w.py"] == expected.replace("\n", "\r\n")
    assert [a.strategy for a in result.applied] == [MatchStrategy.EXACT, MatchStrategy.EXACT]
    whole = apply_edits({"w.py": text}, [Edit("w.py", None, None, content="a\nb\n")])
    assert whole.files["w.py"] == "a\r\nb\r\n"


def test_apply_file_without_trailing_newline() -> None:
    text = "a = 1\nb = 2"
    result = apply_edits({"n.py": text}, [Edit("n.py", "b = 2\n", "b = 3\n")])
    assert result.files["n.py"] == "a = 1\nb = 3"
    assert result.applied[0].strategy is MatchStrategy.EXACT
    whole = apply_edits({"n.py": text}, [Edit("n.py", None, None, content="c = 4\n")])
    assert whole.files["n.py"] == "c = 4"


def test_apply_form_feed_is_not_a_line_break() -> None:
    text = "a = 1\n\x0c\nb = 2\n"
    result = apply_edits({"f.py": text}, [Edit("f.py", "b = 2\n", "b = 3\n")])
    assert result.files["f.py"] == "a = 1\n\x0c\nb = 3\n"


# --------------------------------------------------------------------------------------
# apply_edits: diffs
# --------------------------------------------------------------------------------------


def _diff_edit(path: str, diff: str) -> Edit:
    (edit,) = parse_answer(f"```diff\n{diff}```\n", [path])
    return edit


def test_apply_diff_with_wrong_line_numbers_and_several_hunks() -> None:
    diff = (
        "--- a/pkg/foo.py\n+++ b/pkg/foo.py\n"
        "@@ -40,1 +40,2 @@\n import os\n+import sys\n"
        "@@ -80,2 +81,2 @@\n def farewell(name):\n"
        '-    return "bye " + name\n+    return "ciao " + name\n'
    )
    result = apply_edits({"pkg/foo.py": FOO}, [_diff_edit("pkg/foo.py", diff)])
    assert result.applied == [AppliedEdit("pkg/foo.py", MatchStrategy.DIFF, 1.0)]
    assert result.files["pkg/foo.py"] == FOO.replace(
        "import os\n", "import os\nimport sys\n"
    ).replace("bye", "ciao")


def test_apply_diff_uses_line_numbers_to_pick_among_repeated_context() -> None:
    text = "def a():\n    return None\n\n\ndef b():\n    return None\n"
    diff = "--- a/m.py\n+++ b/m.py\n@@ -6,1 +6,1 @@\n-    return None\n+    return 0\n"
    result = apply_edits({"m.py": text}, [_diff_edit("m.py", diff)])
    assert result.files["m.py"] == "def a():\n    return None\n\n\ndef b():\n    return 0\n"
    no_numbers = Edit("m.py", diff="@@ @@\n-    return None\n+    return 0\n")
    with pytest.raises(
        EditApplyError,
        match=r"hunk 1 \(@@ @@\): the hunk's context and removed lines match 2 places",
    ):
        apply_edits({"m.py": text}, [no_numbers])


def test_apply_diff_hunks_fall_back_to_whitespace_and_fuzzy() -> None:
    head = "--- a/pkg/foo.py\n+++ b/pkg/foo.py\n@@ -9,2 +9,2 @@\n"
    # Every line indented four columns too far: a uniform shift.
    ws = (
        head
        + "     def farewell(name):\n"
        + '-        return "bye " + name\n+        return "ciao " + name\n'
    )
    result = apply_edits({"pkg/foo.py": FOO}, [Edit("pkg/foo.py", diff=ws)])
    assert result.applied[0].strategy is MatchStrategy.WHITESPACE
    assert result.files["pkg/foo.py"] == FOO.replace("bye", "ciao")
    # A typo in the context line.
    fuzzy = head + ' def farwell(name):\n-    return "bye " + name\n+    return "ciao " + name\n'
    result = apply_edits({"pkg/foo.py": FOO}, [Edit("pkg/foo.py", diff=fuzzy)])
    assert result.applied[0].strategy is MatchStrategy.FUZZY
    assert 0.85 <= result.applied[0].score < 1.0
    assert result.files["pkg/foo.py"] == FOO.replace("bye", "ciao")


def test_parse_diff_context_lines_that_lost_their_space_and_empty_diffs() -> None:
    answer = (
        "```diff\n--- a/pkg/foo.py\n+++ b/pkg/foo.py\n@@ -9,2 +9,2 @@\n"
        'def farewell(name):\n-    return "bye " + name\n+    return "ciao " + name\n```\n'
    )
    result = apply_edits({"pkg/foo.py": FOO}, parse_answer(answer, KNOWN))
    assert result.files["pkg/foo.py"] == FOO.replace("bye", "ciao")
    with pytest.raises(FormatError, match="The diff for pkg/foo.py has no hunks"):
        parse_answer("```diff\n--- a/pkg/foo.py\n+++ b/pkg/foo.py\n```\n", KNOWN)


def test_apply_diff_failure_names_the_hunk_and_shows_the_file() -> None:
    diff = (
        "--- a/pkg/foo.py\n+++ b/pkg/foo.py\n@@ -3,2 +3,2 @@\n"
        "-class Greeter:\n-    pass\n+class Greeter(Base):\n+    pass\n"
    )
    with pytest.raises(EditApplyError) as err:
        apply_edits({"pkg/foo.py": FOO}, [_diff_edit("pkg/foo.py", diff)])
    message = str(err.value)
    assert "Edit 1 (diff for pkg/foo.py), hunk 1 (@@ -3,2 +3,2 @@)" in message
    assert "the hunk's context and removed lines do not match pkg/foo.py" in message
    assert "The closest lines in pkg/foo.py" in message


def test_apply_diff_creates_deletes_and_renames() -> None:
    answer = (
        "```diff\n--- /dev/null\n+++ b/pkg/new.py\n@@ -0,0 +1,2 @@\n+A = 1\n+B = 2\n"
        "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
        "diff --git a/pkg/bar.py b/pkg/baz.py\nsimilarity index 80%\n"
        "rename from pkg/bar.py\nrename to pkg/baz.py\n"
        "--- a/pkg/bar.py\n+++ b/pkg/baz.py\n@@ -1 +1 @@\n-X = 1\n+X = 2\n```\n"
    )
    files = {"old.txt": "bye\n", "pkg/bar.py": "X = 1\n"}
    result = apply_edits(files, parse_answer(answer, list(files)))
    assert result.files == {"pkg/new.py": "A = 1\nB = 2\n", "pkg/baz.py": "X = 2\n"}
    assert [(a.path, a.strategy) for a in result.applied] == [
        ("pkg/new.py", MatchStrategy.CREATE),
        ("old.txt", MatchStrategy.DIFF),
        ("pkg/baz.py", MatchStrategy.DIFF),
    ]


def test_apply_diff_creating_an_existing_file_is_an_error() -> None:
    edit = Edit("pkg/bar.py", diff="--- /dev/null\n+++ b/pkg/bar.py\n@@ -0,0 +1 @@\n+X = 2\n")
    with pytest.raises(EditApplyError, match="already exists"):
        apply_edits({"pkg/bar.py": "X = 1\n"}, [edit])


def test_apply_diff_honours_no_newline_markers() -> None:
    add_eol = (
        "--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"
    )
    assert apply_edits({"n.txt": "a\nb"}, [Edit("n.txt", diff=add_eol)]).files == {
        "n.txt": "a\nb\n"
    }
    drop_eol = (
        "--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n\\ No newline at end of file\n"
    )
    assert apply_edits({"n.txt": "a\nb\n"}, [Edit("n.txt", diff=drop_eol)]).files == {
        "n.txt": "a\nc"
    }


def test_parse_then_apply_round_trip_of_a_realistic_answer() -> None:
    answer = """I found the bug: `greet` should strip the name.

**pkg/foo.py**
```python
<<<<<<< SEARCH
def greet(name):
    message = "hello " + name
=======
def greet(name):
    message = "hello " + name.strip()
>>>>>>> REPLACE
```

And a regression test:

tests/test_foo.py
```python
<<<<<<< SEARCH
=======
from pkg.foo import greet


def test_strip():
    assert greet(" x ") == "hello x"
>>>>>>> REPLACE
```
"""
    files = {"pkg/foo.py": FOO, "pkg/bar.py": "X = 1\n"}
    result = apply_edits(files, parse_answer(answer, list(files)))
    assert "name.strip()" in result.files["pkg/foo.py"]
    assert result.files["tests/test_foo.py"].startswith("from pkg.foo import greet\n")
    assert [a.strategy for a in result.applied] == [MatchStrategy.EXACT, MatchStrategy.CREATE]


# --------------------------------------------------------------------------------------
# unified_diff against the real git
# --------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "core.autocrlf=false",
            "-c",
            "core.quotepath=true",
            *args,
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )


def _git_applies(tmp_path: Path, old: dict[str, str], new: dict[str, str]) -> str:
    """Commit `old` in a fresh repository, `git apply` unified_diff(old, new), expect `new`."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    assert _git(repo, "init", "-q").returncode == 0
    for path, text in old.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_bytes(text.encode())
    _git(repo, "add", "-A")
    assert _git(repo, "commit", "-q", "--allow-empty", "-m", "old").returncode == 0
    patch = unified_diff(old, new)
    (tmp_path / "change.patch").write_bytes(patch.encode())
    check = _git(repo, "apply", "--check", "-v", str(tmp_path / "change.patch"))
    assert check.returncode == 0, check.stderr + "\n" + patch
    applied = _git(repo, "apply", str(tmp_path / "change.patch"))
    assert applied.returncode == 0, applied.stderr
    on_disk = {
        p.relative_to(repo).as_posix(): p.read_bytes().decode()
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    assert on_disk == new
    return patch


GIT_CASES = {
    "modify": ({"a.py": FOO}, {"a.py": FOO.replace("hello", "hi")}),
    "create": ({}, {"pkg/new.py": "A = 1\n"}),
    "delete": ({"a.py": FOO, "b.py": "B\n"}, {"b.py": "B\n"}),
    "create_empty": ({"a.py": "A\n"}, {"a.py": "A\n", "empty.txt": ""}),
    "delete_empty": ({"a.py": "A\n", "empty.txt": ""}, {"a.py": "A\n"}),
    "empty_to_content": ({"e.txt": ""}, {"e.txt": "now\n"}),
    "content_to_empty": ({"e.txt": "gone\n"}, {"e.txt": ""}),
    "old_without_newline": ({"n.txt": "a\nb"}, {"n.txt": "a\nb\nc\n"}),
    "new_without_newline": ({"n.txt": "a\nb\n"}, {"n.txt": "a\nc"}),
    "both_without_newline": ({"n.txt": "a\nb"}, {"n.txt": "a\nc"}),
    "crlf": ({"w.txt": "one\r\ntwo\r\nthree\r\n"}, {"w.txt": "one\r\n2\r\nthree\r\n"}),
    "form_feed": ({"f.py": "a\n\x0c\nb\n"}, {"f.py": "a\n\x0c\nc\n"}),
    "unicode_and_space_names": (
        {"dir x/ñ.py": "a\n", "plain.py": "p\n"},
        {"dir x/ñ.py": "b\n", "plain.py": "p\n", "new dir/é ü.txt": "n\n"},
    ),
    "many_files": (
        {"z.py": "z\n", "a.py": "a\n" * 20, "m/k.py": "k\n"},
        {"z.py": "zz\n", "a.py": "a\n" * 10 + "b\n" + "a\n" * 9, "m/k.py": "k\n", "b.py": "b"},
    ),
}


@pytest.mark.parametrize("case", list(GIT_CASES))
def test_unified_diff_is_accepted_by_git_apply(tmp_path: Path, case: str) -> None:
    old, new = GIT_CASES[case]
    _git_applies(tmp_path, old, new)


def test_unified_diff_format_details(tmp_path: Path) -> None:
    assert unified_diff({"a.py": FOO}, {"a.py": FOO}) == ""
    patch = _git_applies(
        tmp_path,
        {"n.txt": "a\nb", "z.txt": "z\n"},
        {"n.txt": "a\nc", "a.txt": "a\n", "z.txt": "z\n"},
    )
    assert patch == (
        "diff --git a/a.txt b/a.txt\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+a\n"
        "diff --git a/n.txt b/n.txt\n--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,2 @@\n a\n-b\n"
        "\\ No newline at end of file\n+c\n\\ No newline at end of file\n"
    )


def test_parse_apply_and_render_end_to_end_with_git(tmp_path: Path) -> None:
    files = {"pkg/foo.py": FOO.replace("\n", "\r\n"), "pkg/bar.py": "X = 1", "old.txt": "x\n"}
    answer = (
        sr_block("foo.py", "def greet(name):\n", "def greet(name: str) -> str:\n")
        + "\n```diff\n--- a/pkg/bar.py\n+++ b/pkg/bar.py\n@@ -1 +1,2 @@\n"
        + "-X = 1\n\\ No newline at end of file\n+X = 2\n+Y = 3\n"
        + "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n```\n"
    )
    result = apply_edits(files, parse_answer(answer, list(files)))
    assert result.files == {
        "pkg/foo.py": FOO.replace("greet(name)", "greet(name: str) -> str").replace("\n", "\r\n"),
        "pkg/bar.py": "X = 2\nY = 3\n",
    }
    _git_applies(tmp_path, files, result.files)


# --------------------------------------------------------------------------------------
# normalize_diff and diff_paths
# --------------------------------------------------------------------------------------


def test_normalize_diff_ignores_line_numbers_index_lines_and_trailing_whitespace() -> None:
    one = unified_diff({"a.py": FOO}, {"a.py": FOO.replace("bye", "ciao")})
    shifted_old = "# header\n# more\n" + FOO
    two = unified_diff({"a.py": shifted_old}, {"a.py": shifted_old.replace("bye", "ciao")})
    assert one != two
    assert normalize_diff(one) == normalize_diff(two)
    noisy = one.replace("--- a/a.py", "index 1234567..89abcde 100644\n--- a/a.py").replace(
        '+    return "ciao " + name', '+    return "ciao " + name   '
    )
    assert normalize_diff(noisy) == normalize_diff(one)
    other = unified_diff({"a.py": FOO}, {"a.py": FOO.replace("bye", "adios")})
    assert normalize_diff(other) != normalize_diff(one)
    assert normalize_diff("") == ""


def test_diff_paths() -> None:
    old = {"a.py": "a\n", "gone.py": "g\n", "dir x/ñ.py": "1\n"}
    new = {"a.py": "b\n", "new/n.py": "n\n", "dir x/ñ.py": "2\n"}
    assert diff_paths(unified_diff(old, new)) == ["a.py", "dir x/ñ.py", "gone.py", "new/n.py"]
    rename = "diff --git a/x.py b/y.py\nsimilarity index 100%\nrename from x.py\nrename to y.py\n"
    assert diff_paths(rename) == ["x.py", "y.py"]
    sloppy = "--- a/pkg/foo.py\n+++ b/pkg/foo.py\n@@ -1,9 +1,9 @@\n-a\n+b\n"
    assert diff_paths(sloppy) == ["pkg/foo.py"]
    assert diff_paths("") == []
