"""Tests of agent.context.repomap: symbols, traceback locations, the ranked map, implicated source."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.context import repomap, symbols
from agent.context.repomap import (
    RepoMap,
    Symbol,
    TracebackHit,
    extract_symbols,
    is_test_path,
    parse_traceback_locations,
)

RICH_SOURCE = textwrap.dedent(
    '''\
    """A module with a bit of everything."""
    from __future__ import annotations

    import functools
    from dataclasses import dataclass


    @dataclass(frozen=True)
    class Point:
        x: int
        y: int = 0

        @property
        def norm(self) -> float:
            return (self.x**2 + self.y**2) ** 0.5

        @staticmethod
        def origin() -> "Point":
            return Point(0, 0)

        class Meta:
            def describe(cls) -> str:
                return "meta"


    class Shape(Base, metaclass=ABCMeta):
        def area(
            self,
            scale: float = 1.0,  # a comment inside the header
            *args: int,
            **kwargs: str,
        ) -> float:
            raise NotImplementedError


    def outer(a, b=1, *, c: list[int] | None = None) -> dict[str, int]:
        def inner(x):
            return x + a

        return {"v": inner(b)}


    async def fetch(url: str, *, timeout: float = 5.0) -> bytes:
        async with session() as s:
            return await s.get(url)


    @functools.lru_cache(maxsize=None)
    def cached(n: int) -> int:
        return n


    def generic[T](value: T) -> T:
        return value
    '''
)


def by_qualname(symbols: list[Symbol]) -> dict[str, Symbol]:
    return {s.qualname: s for s in symbols}


# --------------------------------------------------------------------------- symbols


def test_extract_symbols_kinds_parents_and_lines():
    symbols = extract_symbols("pkg/geo.py", RICH_SOURCE)
    table = by_qualname(symbols)
    assert list(table) == [
        "Point",
        "Point.norm",
        "Point.origin",
        "Point.Meta",
        "Point.Meta.describe",
        "Shape",
        "Shape.area",
        "outer",
        "outer.inner",
        "fetch",
        "cached",
        "generic",
    ]
    assert all(s.path == "pkg/geo.py" for s in symbols)
    assert table["Point"].kind == "class" and table["Point"].parent is None
    assert table["Point.norm"].kind == "method" and table["Point.norm"].parent == "Point"
    assert table["Point.Meta"].kind == "class" and table["Point.Meta"].parent == "Point"
    assert table["Point.Meta.describe"].kind == "method"
    assert table["Point.Meta.describe"].parent == "Point.Meta"
    assert table["outer.inner"].kind == "function" and table["outer.inner"].parent == "outer"
    assert table["fetch"].kind == "function"
    lines = RICH_SOURCE.split("\n")
    for symbol in symbols:  # `line` is the def/class line, `end_line` the last body line
        assert lines[symbol.line - 1].lstrip().startswith(("def ", "class ", "async def "))
        assert lines[symbol.end_line - 1].strip()
    assert table["outer"].end_line == table["outer"].line + 4
    assert table["Point"].decorators == ("@dataclass(frozen=True)",)
    assert table["Point.norm"].decorators == ("@property",)
    assert table["cached"].decorators == ("@functools.lru_cache(maxsize=None)",)


def test_signatures_are_one_clean_line():
    table = by_qualname(extract_symbols("geo.py", RICH_SOURCE))
    assert table["Point"].signature == "class Point:"
    assert table["Shape"].signature == "class Shape(Base, metaclass=ABCMeta):"
    assert table["Point.norm"].signature == "def norm(self) -> float:"
    assert table["Point.origin"].signature == 'def origin() -> "Point":'
    assert table["Shape.area"].signature == (
        "def area(self, scale: float = 1.0, *args: int, **kwargs: str) -> float:"
    )
    assert table["outer"].signature == (
        "def outer(a, b=1, *, c: list[int] | None = None) -> dict[str, int]:"
    )
    assert table["fetch"].signature == (
        "async def fetch(url: str, *, timeout: float = 5.0) -> bytes:"
    )
    assert table["generic"].signature == "def generic[T](value: T) -> T:"


def test_syntax_errors_do_not_crash_and_the_rest_is_mapped():
    source = textwrap.dedent(
        """\
        def good(a):
            return a

        def broken(:
            pass

        class Half(
            def nope(self

        class After:
            def method(self, x) -> int:
                return x
        """
    )
    symbols = extract_symbols("bad.py", source)
    names = {s.name for s in symbols}
    assert "good" in names
    assert "After" in names and "method" in names
    for symbol in symbols:
        assert "\n" not in symbol.signature
        assert 1 <= symbol.line <= symbol.end_line


def test_odd_inputs():
    assert extract_symbols("empty.py", "") == []
    assert extract_symbols("README.md", "# def foo():\n") == []
    assert extract_symbols("data.json", '{"a": 1}') == []
    # non-ASCII text before a definition does not shift its line
    source = 'TITLE = "héllo wörld ✓"\n\n\ndef café(ñ: str) -> str:\n    return ñ\n'
    (symbol,) = extract_symbols("uni.py", source)
    assert (symbol.name, symbol.line, symbol.end_line) == ("café", 4, 5)
    assert symbol.signature == "def café(ñ: str) -> str:"
    # CRLF line endings
    (crlf,) = extract_symbols("crlf.py", "x = 1\r\ndef f(a,\r\n      b):\r\n    return a\r\n")
    assert crlf.signature == "def f(a, b):" and crlf.line == 2


def test_other_languages_with_the_optional_language_pack():
    pytest.importorskip("tree_sitter_language_pack")
    if symbols._language("javascript") is None:
        pytest.skip("tree-sitter-language-pack has no usable javascript grammar here")
    source = "class A extends B {\n  m(x) { return f(x); }\n}\nfunction g(a, b) {\n  return 1;\n}\n"
    table = by_qualname(extract_symbols("web/app.js", source))
    assert table["A"].kind == "class"
    assert table["A.m"].kind == "method" and table["A.m"].signature == "m(x)"
    assert table["g"].signature == "function g(a, b)" and table["g"].line == 4


def test_generated_runs_of_alike_definitions_fold_into_one_line():
    table = "".join(f"def _seg_{i}() -> list:\n    return [{i}]\n\n" for i in range(50))
    files = {"pkg/data.py": table + "def lookup(x):\n    return x\n",
             "pkg/few.py": "".join(f"def f{i}():\n    pass\n" for i in range(3))}
    text = RepoMap().render(files, token_budget=2000)
    assert "  def _seg_0() -> list:  # and 49 more alike, to _seg_49\n  def lookup(x):" in text
    assert "_seg_1()" not in text
    assert "def f0():\n  def f1():\n  def f2():" in text  # three in a row stay as they are


def test_is_test_path():
    for path in [
        "tests/test_mod.py",
        "pkg/tests/helpers.py",
        "test_x.py",
        "pkg/mod_test.py",
        "conftest.py",
        "web/app.spec.ts",
        "src/FooTest.java",
        "cmd/x_test.go",
    ]:
        assert is_test_path(path), path
    for path in ["pkg/mod.py", "pkg/latest.py", "contest.py", "pkg/testing_utils.py"]:
        assert not is_test_path(path), path


# --------------------------------------------------------------------------- tracebacks

PKG_MOD = textwrap.dedent(
    """\
    def helper(x):
        return x * 2


    def foo(x):
        if x < 0:
            raise ValueError("negative")
        return helper(x)
    """
)
TEST_MOD = textwrap.dedent(
    """\
    import pytest
    from pkg.mod import foo


    def test_foo():
        assert foo(1) == 3


    @pytest.mark.parametrize("v", [1, -1])
    def test_neg(v):
        assert foo(v) > 0


    class TestK:
        def test_m(self):
            foo(-5)
    """
)


def write_project(root: Path, files: dict[str, str]) -> dict[str, str]:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (root / "pytest.ini").write_text("[pytest]\n")
    return files


def run_pytest(root: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert proc.returncode in (1, 2), proc.stdout + proc.stderr  # tests failed / errors
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def failing_project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("proj")
    files = write_project(
        root, {"pkg/__init__.py": "", "pkg/mod.py": PKG_MOD, "tests/test_mod.py": TEST_MOD}
    )
    return root, files


def test_traceback_from_real_pytest_short_output(failing_project):
    root, files = failing_project
    output = run_pytest(root, "--tb=short")
    hits = parse_traceback_locations(output, files)
    assert hits == [
        TracebackHit("tests/test_mod.py", 6, "test_foo"),
        TracebackHit("tests/test_mod.py", 11, "test_neg"),
        TracebackHit("pkg/mod.py", 7, "foo"),
        TracebackHit("tests/test_mod.py", 16, "test_m"),
        # the short test summary: FAILED tests/test_mod.py::test_foo - ...
        TracebackHit("tests/test_mod.py", 0, "test_foo"),
        TracebackHit("tests/test_mod.py", 0, "test_neg"),
        TracebackHit("tests/test_mod.py", 0, "test_m"),
    ]


def test_traceback_from_real_pytest_long_output(failing_project):
    root, files = failing_project
    output = run_pytest(root)  # the default --tb=long: `pkg/mod.py:7: ValueError`
    assert "pkg/mod.py:7: ValueError" in output
    hits = parse_traceback_locations(output, files)
    located = [(h.path, h.line) for h in hits if h.line]
    assert located == [
        ("tests/test_mod.py", 6),
        ("tests/test_mod.py", 11),
        ("pkg/mod.py", 7),
        ("tests/test_mod.py", 16),
    ]
    assert len(hits) == len(set(hits))


def test_traceback_from_real_native_tracebacks_maps_absolute_paths(failing_project):
    root, files = failing_project
    output = run_pytest(root, "--tb=native")
    assert f'File "{root}' in output and "site-packages" in output
    hits = parse_traceback_locations(output, files)
    assert TracebackHit("pkg/mod.py", 7, "foo") in hits
    assert TracebackHit("tests/test_mod.py", 6, "test_foo") in hits
    assert all(h.path in files for h in hits)  # pytest / pluggy frames are dropped


def test_traceback_collection_error_from_real_output(tmp_path):
    files = write_project(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/broken.py": "def ok():\n    return 1\n\ndef bad(:\n    pass\n",
            "tests/test_broken.py": "from pkg.broken import ok\n\n\ndef test_ok():\n"
            "    assert ok() == 1\n",
        },
    )
    output = run_pytest(tmp_path)
    hits = parse_traceback_locations(output, files)
    assert TracebackHit("pkg/broken.py", 4, None) in hits
    assert TracebackHit("tests/test_broken.py", 1, None) in hits  # `in <module>` -> None
    assert TracebackHit("tests/test_broken.py", 0, None) in hits  # ERROR tests/test_broken.py


def test_traceback_container_paths_dedupe_and_order():
    known = ["pkg/mod.py", "pkg/sub/util.py", "tests/test_mod.py", "other/mod.py"]
    text = textwrap.dedent(
        """\
        Traceback (most recent call last):
          File "/workspace/tests/test_mod.py", line 12, in test_x
            foo()
          File "/usr/lib/python3.12/site-packages/six.py", line 3, in wrapper
          File "/workspace/pkg/mod.py", line 4, in foo
            util()
          File "/workspace/pkg/sub/util.py", line 9, in <lambda>
        ValueError: boom
        tests/test_mod.py:12: in test_x
        pkg/mod.py:4: in foo
        ./pkg/mod.py:4: in foo
        FAILED tests/test_mod.py::TestA::test_y[1-2] - ValueError: boom
        FAILED tests/test_mod.py::test_z
        see http://example.com:8080/pkg/mod.py for details
        """
    )
    hits = parse_traceback_locations(text, known)
    assert hits == [
        TracebackHit("tests/test_mod.py", 12, "test_x"),
        TracebackHit("pkg/mod.py", 4, "foo"),
        TracebackHit("pkg/sub/util.py", 9, None),
        TracebackHit("tests/test_mod.py", 0, "test_y"),
        TracebackHit("tests/test_mod.py", 0, "test_z"),
    ]


def test_traceback_relative_to_a_subfolder_maps_when_unambiguous():
    known = ["src/pkg/core.py", "src/pkg/__init__.py", "a/__init__.py"]
    hits = parse_traceback_locations("pkg/core.py:3: in run\n__init__.py:1: in <module>", known)
    assert hits == [TracebackHit("src/pkg/core.py", 3, "run")]


# --------------------------------------------------------------------------- cache


class CountingParse:
    def __init__(self, monkeypatch):
        self.calls = 0
        real = symbols._parse_tree

        def counted(language, data):
            self.calls += 1
            return real(language, data)

        monkeypatch.setattr(symbols, "_parse_tree", counted)


def test_cache_hit_on_unchanged_content(monkeypatch):
    counter = CountingParse(monkeypatch)
    rmap = RepoMap()
    files = {"pkg/mod.py": PKG_MOD, "tests/test_mod.py": TEST_MOD, "README.md": "hi"}
    first = rmap.symbols(files)
    assert counter.calls == 2  # README.md is not parsed at all
    assert rmap.symbols(files) == first
    rmap.render(files, focus=[TracebackHit("pkg/mod.py", 7, "foo")])
    rmap.implicated_source(files, [TracebackHit("tests/test_mod.py", 6, "test_foo")])
    assert counter.calls == 2 and rmap.parses == 2
    # same content under another path: no parse, but the symbols carry the new path
    moved = rmap.symbols({"lib/copy.py": PKG_MOD})
    assert counter.calls == 2
    assert [s.path for s in moved["lib/copy.py"]] == ["lib/copy.py", "lib/copy.py"]
    # an edit re-parses only the edited file
    edited = {**files, "pkg/mod.py": PKG_MOD + "\n\ndef bar():\n    pass\n"}
    assert [s.name for s in rmap.symbols(edited)["pkg/mod.py"]] == ["helper", "foo", "bar"]
    assert counter.calls == 3


def test_disk_cache_survives_a_new_instance(tmp_path, monkeypatch):
    counter = CountingParse(monkeypatch)
    files = {"pkg/mod.py": PKG_MOD, "pkg/geo.py": RICH_SOURCE}
    expected = RepoMap(cache_dir=tmp_path / "cache").symbols(files)
    assert counter.calls == 2
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2
    fresh = RepoMap(cache_dir=tmp_path / "cache")
    assert fresh.symbols(files) == expected
    assert counter.calls == 2 and fresh.parses == 0
    # a corrupt entry is re-parsed, not fatal
    for entry in (tmp_path / "cache").glob("*.json"):
        entry.write_text("{not json")
    assert RepoMap(cache_dir=tmp_path / "cache").symbols(files) == expected
    assert counter.calls == 4


def test_unwritable_cache_dir_is_only_slower(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rmap = RepoMap(cache_dir=blocker / "cache")  # cannot be created: a file is in the way
    assert [s.name for s in rmap.symbols({"m.py": PKG_MOD})["m.py"]] == ["helper", "foo"]


# --------------------------------------------------------------------------- render

REPO = {
    "pkg/__init__.py": "from pkg.core import Engine\n",
    "pkg/core.py": textwrap.dedent(
        """\
        class Engine:
            def __init__(self, size: int) -> None:
                self.size = size

            def start(self) -> bool:
                return self.size > 0

            def _spin(self, n):
                return n


        def build(size: int = 1) -> Engine:
            return Engine(size)
        """
    ),
    "pkg/cli.py": textwrap.dedent(
        """\
        from pkg.core import build


        def main(argv: list[str]) -> int:
            engine = build(len(argv))
            return 0 if engine.start() else 1
        """
    ),
    "pkg/aaa_unrelated.py": "def zed(q):\n    return q\n",
    "tests/test_core.py": textwrap.dedent(
        """\
        from pkg.core import build


        def test_build():
            assert build(2).start()
        """
    ),
    "tests/test_other.py": "def test_nothing():\n    assert True\n",
    "docs/notes.txt": "nothing to outline\n",
}


def file_order(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(" ")]


def test_render_outline_format():
    text = RepoMap().render(REPO, token_budget=10_000)
    block = text.split("pkg/core.py\n", 1)[1].split("\n")[:5]
    assert block == [
        "  class Engine:",
        "    def __init__(self, size: int) -> None:",
        "    def start(self) -> bool:",
        "    def _spin(self, n):",
        "  def build(size: int = 1) -> Engine:",
    ]
    order = file_order(text)
    assert sorted(order) == sorted(REPO)  # every file listed once
    # without focus: source files, then tests, then files with nothing to outline
    assert order.index("tests/test_core.py") > order.index("pkg/aaa_unrelated.py")
    assert order[-1] == "docs/notes.txt"


def test_render_focused_file_first_then_referencing_then_rest():
    hits = [TracebackHit("pkg/core.py", 6, "start")]
    order = file_order(RepoMap().render(REPO, focus=hits, token_budget=10_000))
    assert order[0] == "pkg/core.py"
    # pkg/cli.py and pkg/__init__.py reference core's names; aaa_unrelated does not
    assert order.index("pkg/cli.py") < order.index("pkg/aaa_unrelated.py")
    assert order.index("pkg/__init__.py") < order.index("pkg/aaa_unrelated.py")
    # a test that references the focus comes before an unrelated test
    assert order.index("tests/test_core.py") < order.index("tests/test_other.py")


def test_render_focused_test_file_ranks_before_unfocused_source():
    hits = [TracebackHit("tests/test_other.py", 2, "test_nothing")]
    order = file_order(RepoMap().render(REPO, focus=hits, token_budget=10_000))
    assert order[0] == "tests/test_other.py"


def test_render_follows_a_failing_test_to_the_source_it_calls():
    hits = [TracebackHit("tests/test_core.py", 5, "test_build")]
    order = file_order(RepoMap().render(REPO, focus=hits, token_budget=10_000))
    assert order[:2] == ["pkg/core.py", "tests/test_core.py"]


def test_render_mentioned_identifiers_and_paths():
    rmap = RepoMap()
    order = file_order(rmap.render(REPO, mentioned=["Calling zed() twice fails"]))
    assert order[0] == "pkg/aaa_unrelated.py"
    order = file_order(rmap.render(REPO, mentioned=["pkg/cli.py"]))
    assert order[0] == "pkg/cli.py"
    order = file_order(rmap.render(REPO, mentioned=["tests/test_core.py::test_build"]))
    assert order[0] in ("pkg/core.py", "tests/test_core.py")
    # ordinary words do not focus anything
    plain = rmap.render(REPO, mentioned=["the value is wrong when it should be right"])
    assert plain == rmap.render(REPO)


@pytest.mark.parametrize("budget", [0, 3, 10, 25, 40, 80, 200])
def test_render_respects_the_budget_and_never_cuts_a_line(budget):
    rmap = RepoMap()
    full_lines = set(rmap.render(REPO, token_budget=100_000).splitlines()) | {"  ⋮", "    ⋮"}
    text = rmap.render(REPO, focus=[TracebackHit("pkg/core.py", 6, None)], token_budget=budget)
    assert len(text) / 4 <= budget
    assert all(line in full_lines for line in text.splitlines())
    if budget >= 10:
        assert text.startswith("pkg/core.py\n")


def test_render_keeps_the_focused_symbol_of_a_large_file():
    # distinct names (not a foldable run of alike definitions)
    big = "\n\n".join(
        f"def function_{chr(97 + i % 26)}_{i}(argument_{i}, other):\n    pass" for i in range(200)
    )
    files = {"big.py": big, "small.py": "def tiny():\n    pass\n"}
    last_line = len(big.split("\n")) - 1
    text = RepoMap().render(files, focus=[TracebackHit("big.py", last_line, None)], token_budget=60)
    lines = text.splitlines()
    assert lines[0] == "big.py"
    assert "  def function_r_199(argument_199, other):" in lines
    assert "  ⋮" in lines  # the elided symbols are marked
    assert len(text) / 4 <= 60


def test_render_skips_local_functions_unless_focused():
    rmap = RepoMap()
    files = {"pkg/geo.py": RICH_SOURCE}
    assert "def inner(x):" not in rmap.render(files)
    inner_line = RICH_SOURCE.split("\n").index("        return x + a") + 1
    focused = rmap.render(files, focus=[TracebackHit("pkg/geo.py", inner_line, "inner")])
    assert "    def inner(x):" in focused
    assert "  @property def norm(self) -> float:" in focused


# --------------------------------------------------------------------------- implicated


def test_implicated_source_follows_the_test_call_into_the_module(tmp_path):
    files = write_project(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": PKG_MOD,
            "pkg/aaa_other.py": "def foo_like():\n    return 0\n",
            "tests/test_mod.py": "from pkg.mod import foo\n\n\ndef test_foo():\n"
            "    assert foo(1) == 3\n",
        },
    )
    output = run_pytest(tmp_path, "--tb=short")
    hits = parse_traceback_locations(output, files)
    assert {h.path for h in hits} == {"tests/test_mod.py"}  # the traceback ends in the test
    source = RepoMap().implicated_source(files, hits)
    assert source == {"pkg/mod.py": PKG_MOD}


def test_implicated_source_prefers_the_imported_definition():
    files = {
        "alpha/mod.py": "def foo(x):\n    return 'alpha'\n",
        "beta/mod.py": "def foo(x):\n    return 'beta'\n",
        "tests/test_b.py": "from beta.mod import foo\n\n\ndef test_foo():\n    assert foo(1)\n",
    }
    source = RepoMap().implicated_source(files, [TracebackHit("tests/test_b.py", 0, "test_foo")])
    assert list(source) == ["beta/mod.py"]


def test_implicated_source_follows_helpers_and_method_calls():
    files = {
        "pkg/store.py": "class Store:\n    def put(self, k, v):\n        self.d[k] = v\n",
        "pkg/mod.py": PKG_MOD,
        "tests/test_s.py": textwrap.dedent(
            """\
            from pkg.store import Store
            from pkg.mod import helper


            def _check(value):
                assert helper(value) == 3


            def test_store():
                s = Store()
                s.put("a", 1)
                _check(1)
            """
        ),
    }
    source = RepoMap().implicated_source(files, [TracebackHit("tests/test_s.py", 12, None)])
    assert set(source) == {"pkg/store.py", "pkg/mod.py"}


def test_implicated_source_direct_hits_innermost_first_and_no_tests():
    hits = [
        TracebackHit("tests/test_core.py", 5, "test_build"),
        TracebackHit("pkg/cli.py", 5, "main"),
        TracebackHit("pkg/core.py", 6, "start"),
    ]
    source = RepoMap().implicated_source(REPO, hits)
    assert list(source) == ["pkg/core.py", "pkg/cli.py"]
    assert source["pkg/core.py"] == REPO["pkg/core.py"]


def test_implicated_source_large_file_gives_excerpts_within_budget():
    body = "\n".join(f"    total += {i}" for i in range(40))
    functions = [f"def f{i}(total):\n{body}\n    return total\n" for i in range(30)]
    big = "\n\n".join(functions)
    files = {"pkg/big.py": big, "pkg/small.py": "def s():\n    return 1\n"}
    lines = big.split("\n")
    target = lines.index("def f17(total):") + 1
    hits = [TracebackHit("pkg/small.py", 2, "s"), TracebackHit("pkg/big.py", target + 5, "f17")]
    budget = 600
    source = RepoMap().implicated_source(files, hits, token_budget=budget)
    assert sum(len(text) for text in source.values()) / 4 <= budget
    excerpt = source["pkg/big.py"]
    assert "def f17(total):" in excerpt
    assert "def f3(total):" not in excerpt
    assert excerpt.startswith("... (lines 1-")
    assert excerpt.rstrip().endswith("elided)")
    assert source["pkg/small.py"] == files["pkg/small.py"]  # room is kept for the other
    # the kept lines are verbatim
    for line in excerpt.splitlines():
        assert line.startswith("... (lines") or line in lines


def test_implicated_source_tiny_budget_narrows_to_the_failing_line():
    body = "\n".join(f"    total += {i}" for i in range(200))
    big = f"def f(total):\n{body}\n    return total\n"
    files = {"pkg/big.py": big}
    source = RepoMap().implicated_source(
        files, [TracebackHit("pkg/big.py", 120, "f")], token_budget=60
    )
    excerpt = source["pkg/big.py"]
    assert len(excerpt) / 4 <= 60
    assert big.split("\n")[119] in excerpt


def test_implicated_source_ignores_unknown_paths_and_empty_focus():
    rmap = RepoMap()
    assert rmap.implicated_source(REPO, []) == {}
    assert rmap.implicated_source(REPO, [TracebackHit("gone.py", 3, None)]) == {}
