"""Function-level edits (agent/edits/functions.py) and the guards on whole-file answers."""

from __future__ import annotations

import pytest

from agent.context.repomap import RepoMap
from agent.context.source import function_view
from agent.context.symbols import extract_symbols
from agent.edits import EditKind, MatchStrategy, apply_edits, parse_answer
from agent.errors import EditApplyError

MOD = """\
import os
from typing import (
    Any,
)


class Shape:
    sides = 0

    def area(self, scale):
        return self.sides * scale

    @property
    def name(self):
        return "shape"


def helper(a, b):
    return a - b


class Other:
    def area(self):
        return 0
"""


def fence(body: str, path: str = "pkg/mod.py") -> str:
    return f"The fix:\n\n{path}\n```python\n{body}```\n"


def apply_functions(body: str, files: dict[str, str] | None = None) -> str:
    files = files or {"pkg/mod.py": MOD}
    edits = parse_answer(fence(body), files.keys(), functions=True)
    assert [e.kind for e in edits] == [EditKind.FUNCTIONS]
    result = apply_edits(files, edits)
    assert result.applied[0].strategy is MatchStrategy.FUNCTION
    return result.files["pkg/mod.py"]


def test_top_level_function_replaced_by_span_rest_untouched():
    out = apply_functions("def helper(a, b):\n    return a + b\n")
    assert out == MOD.replace("return a - b", "return a + b")


def test_method_under_its_class_header_replaces_only_that_method():
    out = apply_functions("class Shape:\n    def area(self, scale):\n        return 2 * scale\n")
    assert out == MOD.replace("return self.sides * scale", "return 2 * scale")
    assert "return 0" in out  # Other.area untouched


def test_dedented_decorated_method_is_reindented_to_its_target():
    out = apply_functions("@property\ndef name(self):\n    return 'square'\n")
    assert "    @property\n    def name(self):\n        return 'square'\n" in out
    assert out.count("@property") == 1


def test_ambiguous_method_name_without_class_is_an_error_naming_the_classes():
    with pytest.raises(EditApplyError, match="2 methods named area.*Other, Shape"):
        apply_functions("def area(self):\n    return 1\n")


def test_new_function_is_appended_and_new_import_added_after_imports():
    out = apply_functions("import sys\n\ndef extra():\n    return sys.argv\n")
    assert "import sys\n" in out and out.index("import sys") < out.index("class Shape")
    assert out.rstrip().endswith("def extra():\n    return sys.argv")
    assert "return a - b" in out


def test_elision_marker_in_function_answer_is_refused():
    with pytest.raises(EditApplyError, match="abbreviates"):
        apply_functions("def helper(a, b):\n    # ... rest unchanged\n    return a + b\n")


def test_fence_without_functions_flag_is_still_a_whole_file():
    edits = parse_answer(fence("def helper(a, b):\n    return a + b\n"), ["pkg/mod.py"])
    assert [e.kind for e in edits] == [EditKind.WHOLE_FILE]


BIG = "import os\n\n\n" + "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(60))


def test_whole_file_answer_that_copies_an_excerpt_marker_is_a_format_error():
    answer = fence("import os\n... (lines 3-200 elided)\ndef f1(x):\n    return x - 1\n")
    with pytest.raises(EditApplyError, match="elision marker"):
        apply_edits({"pkg/mod.py": BIG}, parse_answer(answer, ["pkg/mod.py"]))


def test_whole_file_answer_dropping_most_of_the_file_is_a_format_error():
    answer = fence("import os\n\ndef f1(x):\n    return x - 1\n")
    with pytest.raises(EditApplyError, match="must keep every line"):
        apply_edits({"pkg/mod.py": BIG}, parse_answer(answer, ["pkg/mod.py"]))


def test_function_view_shows_imports_class_header_and_whole_function_only():
    symbols = extract_symbols("pkg/mod.py", MOD)
    wanted = [s for s in symbols if s.qualname == "Shape.name"]
    view = function_view(MOD, symbols, wanted)
    assert view.startswith("import os\nfrom typing import (\n    Any,\n)\n")
    assert "class Shape:\n" in view
    assert "    @property\n    def name(self):\n        return \"shape\"\n" in view
    assert "def helper" not in view and "sides * scale" not in view
    assert "# lines " in view and "elided" not in view


def test_function_source_shows_long_files_in_part_and_short_files_whole():
    from agent.context.localize import Suspect

    files = {"pkg/mod.py": MOD, "pkg/big.py": BIG}
    rmap = RepoMap()
    suspects = [Suspect("pkg/big.py", "f7", 0, 0, 1.0, ("dynamic",)),
                Suspect("pkg/mod.py", "helper", 0, 0, 0.5, ("calls",))]
    sources, partial = rmap.function_source(files, suspects, token_budget=4000)
    assert partial
    assert sources["pkg/mod.py"] == MOD
    assert "def f7(x):\n    return x + 7\n" in sources["pkg/big.py"]
    assert "def f8" not in sources["pkg/big.py"]


OVERLOADED = """\
import typing as t


class Context:
    @t.overload
    def invoke(self, cb: int) -> int:
        ...

    @t.overload
    def invoke(self, cb: str) -> str:
        ...

    def invoke(self, cb):
        return cb - 1

    def other(self):
        return 1
"""


def test_an_echoed_view_changes_only_what_the_model_changed():
    # small models copy every function shown; the unchanged ones (overload stubs included)
    # must not land on another definition's span
    answer = ("class Context:\n"
              "    @t.overload\n    def invoke(self, cb: int) -> int:\n        ...\n\n"
              "    @t.overload\n    def invoke(self, cb: str) -> str:\n        ...\n\n"
              "    def invoke(self, cb):\n        return cb + 1\n\n"
              "    def other(self):\n        return 1\n")
    out = apply_functions(answer, {"pkg/mod.py": OVERLOADED})
    assert out == OVERLOADED.replace("return cb - 1", "return cb + 1")


def test_an_echoed_overload_stub_never_replaces_the_implementation():
    # seen with the bundled model on click: the view's overload stub copied back alone
    # replaced `Context.invoke` itself and broke 303 tests
    answer = ("class Context:\n    @t.overload\n    def invoke(self, cb: str) -> str:\n"
              "        ...\n\n    def other(self):\n        return 2\n")
    out = apply_functions(answer, {"pkg/mod.py": OVERLOADED})
    assert out == OVERLOADED.replace("return 1", "return 2")


def test_one_overloaded_name_given_once_replaces_the_implementation():
    answer = "class Context:\n    def invoke(self, cb):\n        return cb * 2\n"
    out = apply_functions(answer, {"pkg/mod.py": OVERLOADED})
    assert out == OVERLOADED.replace("return cb - 1", "return cb * 2")
    assert out.count("@t.overload") == 2


def test_a_function_given_back_unchanged_is_no_edit():
    files = {"pkg/mod.py": MOD}
    edits = parse_answer(fence("def helper(a, b):\n    return a - b\n"), files.keys(),
                         functions=True)
    assert apply_edits(files, edits).files["pkg/mod.py"] == MOD


UNNAMED = ("The bug is the subtraction.\n\n```python\ndef helper(a, b):\n    return a + b\n```\n\n"
           "Usage:\n\n```python\nprint(helper(1, 2))\n```\n")


def test_a_fence_without_a_path_edits_the_one_file_shown_by_definition_name():
    files = {"pkg/mod.py": MOD, "pkg/other.py": "x = 1\n"}
    edits = parse_answer(UNNAMED, files.keys(), default_path="pkg/mod.py")
    assert [(e.kind, e.path) for e in edits] == [(EditKind.FUNCTIONS, "pkg/mod.py")]
    out = apply_edits(files, edits).files
    assert out["pkg/mod.py"] == MOD.replace("return a - b", "return a + b")
    assert out["pkg/other.py"] == "x = 1\n"


def test_a_fence_without_a_path_is_no_edit_when_no_single_file_was_shown():
    from agent.errors import FormatError

    with pytest.raises(FormatError, match="No edits found"):
        parse_answer(UNNAMED, ["pkg/mod.py", "pkg/other.py"])


def test_a_named_edit_wins_over_unnamed_fences_and_a_cut_fence_is_never_taken():
    from agent.errors import FormatError

    named = UNNAMED + "\npkg/mod.py\n```python\ndef helper(a, b):\n    return b - a\n```\n"
    edits = parse_answer(named, ["pkg/mod.py"], functions=True, default_path="pkg/mod.py")
    assert len(edits) == 1 and "b - a" in (edits[0].functions or "")
    with pytest.raises(FormatError):
        parse_answer("```python\ndef helper(a, b):\n    return a +", ["pkg/mod.py"],
                     default_path="pkg/mod.py")
