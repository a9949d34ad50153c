"""Which edit format does a small local model follow most reliably?

For each benchmark task (``../shared/benchmarks/TASKID``: buggy module, ``tests/``,
``task.json``; the reference fixes in ``_fixes/`` are never read) and each edit format, the
model is asked for a fix (one request with ``n`` samples); every answer is parsed and applied
with ``agent/edits.py`` and the result tested with pytest on the host in a temporary copy of
the task. Reported per format: parse rate, apply rate, fix rate (samples whose patch makes
every test pass), tasks fixed by at least one sample, completion tokens and seconds.

Formats:

* ``search_replace``: the production SEARCH/REPLACE prompt as it was when this benchmark
  was first run (``SYSTEM_SR_V1``: its example path is ``path/to/file.py``);
* ``sr_named``: SEARCH/REPLACE again, with the format's rules at the end of the user message
  and an example that names the real file (see ``FORMAT_TAIL``; so do the next three);
* ``unified_diff``: a unified diff;
* ``whole_file``: the complete corrected file after a line with its path;
* ``whole_function``: the complete corrected function(s); the answer's top-level
  ``def``/``class`` blocks replace the ones of the same name (turned into SEARCH/REPLACE
  edits and applied by ``apply_edits``; ``parse_answer`` has no such mode today);
* ``whole_file_prod``: the production prompts as they are now, in whole-file mode
  (``render("system"/"propose", edit_format="whole_file")``);
* ``function_prod``: the production prompts in function mode (``edit_format="function"``),
  parsed with ``parse_answer(..., functions=True)``: replacement functions spliced back by
  their tree-sitter span;
* ``function_prod_grammar`` and ``whole_file_prod_grammar``: the same, sampled under the
  llama.cpp grammar of ``agent/edits/grammar.py`` (constrained decoding, on by default in the
  product; needs a llama.cpp server);
* ``function_prod_faulty_grammar`` and ``whole_file_prod_faulty_grammar``: the production
  prompts with the search's "state the faulty line first" question (``prompts/variant.j2``)
  asked in the first prompt, under the grammar;
* ``whole_file_chat``: whole file with the layout learnt from Aider's whole-file coder: the
  files in a message of their own, acknowledged, then the request, and the model told to
  find and explain the faulty line before it writes the file.

An answer that names no file edits the task's one module by definition name, as in the
product (``parse_answer(default_path=...)``). ``--rescore`` runs stored answers through
today's parser and tests again without asking the model anything.

By default the bundled local model is started (``mulligan model setup`` first); ``--base-url``
and ``--model`` point at any other OpenAI-compatible endpoint instead. Results are appended
to a JSONL file (one line per sample) and a run resumes where that file stops::

    python bench/edit_formats.py --tasks 20 --samples 3
    python bench/edit_formats.py --summary bench/out/edit_formats.jsonl
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# run as a script, bench/ is sys.path[0]: its modules (bench/sandbox.py) must not shadow the
# packages of the same name
sys.path[:] = [str(ROOT)] + [p for p in sys.path
                             if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")]

from agent.edits import Edit, apply_edits, parse_answer
from agent.edits.grammar import grammar_for
from agent.models.hints import Hints, hinted
from agent.errors import EditApplyError, FormatError, MulliganError
from agent.prompting import MESSAGE_CHARS, lang as _lang, trim as _trim
from agent.trajectory import json_lines
from prompts import render
from sandbox.testpaths import sole_source

DEFAULT_TASKS_DIR = ROOT.parent / "shared" / "benchmarks"
FORMATS = ("search_replace", "sr_named", "unified_diff", "whole_file", "whole_function",
           "whole_file_prod", "whole_file_prod_grammar", "whole_file_chat", "function_prod",
           "function_prod_grammar", "function_prod_faulty_grammar",
           "whole_file_prod_faulty_grammar")
# The formats that use the production prompts: (the product's edit format, sampled under the
# server's grammar (llama.cpp GBNF from agent/edits/grammar.py), followed by the search's
# "state the faulty line first" question (prompts/variant.j2) up front).
PROD_FORMATS = {
    "whole_file_prod": ("whole_file", False, False),
    "whole_file_prod_grammar": ("whole_file", True, False),
    "whole_file_prod_faulty_grammar": ("whole_file", True, True),
    "function_prod": ("function", False, False),
    "function_prod_grammar": ("function", True, False),
    "function_prod_faulty_grammar": ("function", True, True),
}

# "search_replace" is the production prompt as it is (prompts/system.j2 + propose.j2). The
# other formats share one system prompt without format rules and put the format's rules at
# the end of the user message, with an example that uses the real file's path: small models
# copy the example path ("path/to/file.py") literally. Sharing the prefix also lets the server
# reuse its prompt cache across the formats of one task.
SYSTEM_NEUTRAL = """\
You are an expert software engineer fixing bugs in a repository. You change source code so that
the failing tests pass without breaking the tests that pass now. Never edit the tests.
"""
FORMAT_TAIL = {
    "sr_named": """\
Fix the bug. Answer with one or more SEARCH/REPLACE blocks, exactly in this format:

{path}
```python
<<<<<<< SEARCH
the exact lines to find, copied from {path}
=======
the lines to put in their place
>>>>>>> REPLACE
```

Rules:
- The line before each block is the file's path, {path}, exactly as written.
- The SEARCH part must match the file exactly, including indentation.
- Keep each SEARCH part short: only the lines that change plus a little context.
- Think briefly first (a few sentences at most), then give the blocks.""",
    "unified_diff": """\
Fix the bug. Answer with a unified diff in a ```diff fence, exactly in this format:

```diff
--- a/{path}
+++ b/{path}
@@ -10,7 +10,7 @@
 an unchanged line of {path}
-the old line
+the new line
 an unchanged line of {path}
```

Rules:
- Context and removed lines must match the file exactly, including indentation.
- Think briefly first (a few sentences at most), then give the diff.""",
    "whole_file": """\
Fix the bug. Answer with the complete corrected file: its path on its own line, then a fenced
code block with the whole new content of the file, exactly in this format:

{path}
```python
the complete file, every line of it, with your fix
```

Rules:
- The line before the block is the file's path, {path}, exactly as written.
- Give the whole file, not only the changed part: the block replaces the file.
- Think briefly first (a few sentences at most), then give the file.""",
    "whole_function": """\
Fix the bug. Answer with the complete corrected function: the file's path on its own line,
then a fenced code block with the whole function, from its `def` line to its last line:

{path}
```python
def the_function(arguments):
    the complete corrected body
```

Rules:
- The line before the block is the file's path, {path}, exactly as written.
- Give each function you change completely; it replaces the function of the same name.
- Do not repeat functions you do not change.
- Think briefly first (a few sentences at most), then give the function.""",
}
# The production SEARCH/REPLACE prompt as it was when this benchmark started (before prompts/
# learned `edit_format`), kept verbatim so that every task is measured with the same text.
SYSTEM_SR_V1 = """\
You are an expert software engineer fixing bugs in a repository. You change source code so that
the failing tests pass without breaking the tests that pass now. Never edit the tests.

Answer with one or more SEARCH/REPLACE blocks, exactly in this format:

path/to/file.py
```python
<<<<<<< SEARCH
the exact lines to find, copied from the file, with a few lines of context
=======
the lines to put in their place
>>>>>>> REPLACE
```

Rules:
- The SEARCH part must match the current file exactly, including indentation.
- Keep each SEARCH part short: only the lines that change plus a little context.
- To create a file, use an empty SEARCH part.
- Think briefly first (a few sentences at most), then give the blocks.
"""
FINAL_LINE_SR_V1 = "Fix the bug. Answer with SEARCH/REPLACE blocks."

# Learnt from Aider's whole-file coder (its prompts fixed tasks where ours got the file copied
# back): the files come first as a message of their own, acknowledged, then the request; the
# model is told to find and explain the change before it writes the file.
SYSTEM_CHAT = """\
You are an expert software engineer. You fix bugs in the files the user shows you.

When you are asked for a fix you MUST:
1. Find the line or lines that cause the bug.
2. Explain in one or two sentences what is wrong and how you change it.
3. Give the complete corrected file.

Give a file as its path on a line of its own, then a fenced code block with the entire
content of the file. Never skip or abbreviate any part of the file with "..." or comments.
Never edit the tests.
"""
CHAT_FILES = "These are the files to fix:\n\n{listing}"
CHAT_ACK = "Ok. I will fix the bug in these files."
CHAT_REQUEST = """\
{issue}{failures}
Find the bug, explain it in one or two sentences, then give the complete corrected file."""


# -- tasks ------------------------------------------------------------------------------------


def list_tasks(tasks_dir: Path) -> list[Path]:
    return sorted(p for p in tasks_dir.iterdir()
                  if p.is_dir() and not p.name.startswith("_") and (p / "task.json").is_file())


def pick_tasks(all_tasks: list[Path], spec: str | None) -> list[Path]:
    """`spec`: None (all), a number N (an even spread over both datasets), or names."""
    if not spec:
        return all_tasks
    if spec.isdigit():
        n = int(spec)
        groups = [[t for t in all_tasks if t.name.startswith(prefix)]
                  for prefix in ("quixbugs_", "humanevalfix_")]
        picked: list[Path] = []
        for group, share in zip(groups, (n // 2, n - n // 2)):
            if share and group:
                step = len(group) / share
                picked += [group[int(i * step)] for i in range(min(share, len(group)))]
        return picked
    names = [s.strip() for s in spec.split(",") if s.strip()]
    by_name = {t.name: t for t in all_tasks}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SystemExit(f"unknown task(s): {', '.join(missing)}")
    return [by_name[n] for n in names]


def task_files(task: Path) -> dict[str, str]:
    """The task's source files as the agent sees them (tests included, fixes never)."""
    files = {}
    for path in sorted(task.rglob("*")):
        rel = path.relative_to(task).as_posix()
        if path.is_file() and "__pycache__" not in rel and not rel.startswith("."):
            try:
                files[rel] = path.read_text()
            except UnicodeDecodeError:
                continue
    return files


def task_sources(files: dict[str, str]) -> dict[str, str]:
    """The modules the model is shown: the task's top-level Python files."""
    return {p: t for p, t in files.items() if p.endswith(".py") and "/" not in p}


def run_pytest(task: Path, files: dict[str, str] | None = None,
               timeout: float = 120.0) -> tuple[bool, list[dict[str, str]], float]:
    """Run the task's tests in a temporary copy (with `files` written over it)."""
    with tempfile.TemporaryDirectory(prefix="mulligan-bench-") as tmp:
        work = Path(tmp) / task.name
        shutil.copytree(task, work, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        for rel, text in (files or {}).items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text)
        junit = Path(tmp) / "junit.xml"
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short",
                 f"--junitxml={junit}"], cwd=work, capture_output=True, text=True,
                timeout=timeout, check=False, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        except subprocess.TimeoutExpired:
            return False, [{"nodeid": "(all)", "message": "timed out"}], timeout
        seconds = time.monotonic() - started
        failures = []
        if junit.exists():
            for case in ET.parse(junit).getroot().iter("testcase"):
                bad = case.find("failure")
                if bad is None:
                    bad = case.find("error")
                if bad is None:
                    continue
                cls = case.get("classname", "")
                nodeid = cls.replace(".", "/") + ".py::" + case.get("name", "")
                text = (bad.get("message") or "") + "\n" + (bad.text or "")
                failures.append({"nodeid": nodeid, "message": _trim(text, MESSAGE_CHARS)})
        return proc.returncode == 0, failures, seconds


# -- prompts and parsing ------------------------------------------------------------------------


def messages_for(fmt: str, task: Path, sources: dict[str, str],
                 failures: list[dict[str, str]], max_failures: int = 10) -> list[dict[str, str]]:
    issue = json.loads((task / "task.json").read_text()).get("description")
    path = next(iter(sources))
    if fmt in PROD_FORMATS:  # the production prompts as they are now
        edit_format, _, faulty_first = PROD_FORMATS[fmt]
        user = render("propose", issue=issue, failures=failures[:max_failures], repo_map=None,
                      sources=sources, lang=_lang, edit_format=edit_format)
        if faulty_first:
            user += "\n" + render("variant", variant="faulty_line", failures=[])
        system = render("system", edit_format=edit_format, example_path=path)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if fmt == "whole_file_chat":
        listing = "".join(f"{p}\n```{_lang(p)}\n{t.rstrip()}\n```\n\n" for p, t in sources.items())
        shown = "".join(f"\n### {f['nodeid']}\n```\n{f['message']}\n```\n"
                        for f in failures[:max_failures])
        request = CHAT_REQUEST.format(
            issue=(issue.strip() + "\n") if issue else "",
            failures=f"\nThese tests fail:\n{shown}" if shown else "")
        return [{"role": "system", "content": SYSTEM_CHAT},
                {"role": "user", "content": CHAT_FILES.format(listing=listing)},
                {"role": "assistant", "content": CHAT_ACK},
                {"role": "user", "content": request}]
    user = render("propose", issue=issue, failures=failures[:max_failures], repo_map=None,
                  sources=sources, lang=_lang, edit_format="search_replace")
    body = user[: user.rindex("Fix the bug.")]  # the context, without the answer instructions
    if fmt == "search_replace":
        return [{"role": "system", "content": SYSTEM_SR_V1},
                {"role": "user", "content": body + FINAL_LINE_SR_V1 + "\n"}]
    user = body + FORMAT_TAIL[fmt].format(path=path)
    return [{"role": "system", "content": SYSTEM_NEUTRAL}, {"role": "user", "content": user}]


_FENCE = re.compile(r"^```[^\n`]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def whole_function_edits(answer: str, files: dict[str, str]) -> list[Edit]:
    """Top-level defs/classes in the answer's python fences, replacing same-named ones."""
    edits: list[Edit] = []
    for block in _FENCE.findall(answer):
        try:
            new_tree = ast.parse(block)
        except SyntaxError:
            continue
        new_lines = block.splitlines(keepends=True)
        for node in new_tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            replacement = "".join(new_lines[start:node.end_lineno])
            for path, text in files.items():
                if not path.endswith(".py") or path.startswith("tests/"):
                    continue
                old = _top_level(text, node.name)
                if old is not None:
                    edits.append(Edit(path, search=old, replace=replacement))
                    break
    if not edits:
        raise FormatError("no complete function with the name of an existing one was found")
    return edits


def _top_level(text: str, name: str) -> str | None:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    lines = text.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and \
                node.name == name:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            return "".join(lines[start:node.end_lineno])
    return None


def apply_answer(fmt: str, answer: str, files: dict[str, str]) -> tuple[str, dict | None, str]:
    """(stage reached: "parse" | "apply" | "applied", new files or None, error text)."""
    try:
        if fmt == "whole_function":
            edits = whole_function_edits(answer, files)
        else:
            edits = parse_answer(answer, known_paths=files.keys(),
                                 functions=fmt in PROD_FORMATS and PROD_FORMATS[fmt][0] == "function",
                                 default_path=sole_source(files))
    except FormatError as exc:
        return "parse", None, str(exc)[:300]
    try:
        result = apply_edits(files, edits)
    except EditApplyError as exc:
        return "apply", None, str(exc)[:300]
    changed = {p: t for p, t in result.files.items() if files.get(p) != t}
    if not changed:
        return "apply", None, "the edits changed nothing"
    return "applied", changed, ""


# -- the benchmark ----------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> None:
    from agent.models.client import ModelSettings, OpenAIChatModel

    tasks = pick_tasks(list_tasks(args.tasks_dir), args.tasks)
    formats = [f.strip() for f in args.formats.split(",")]
    for fmt in formats:
        if fmt not in FORMATS:
            raise SystemExit(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["task"], r["format"]) for r in read_results(out)}
    todo = [(t, f) for t in tasks for f in formats if (t.name, f) not in done]
    print(f"{len(tasks)} task(s) x {len(formats)} format(s) x {args.samples} sample(s); "
          f"{len(todo)} request(s) to go; results: {out}", file=sys.stderr)
    if not todo:
        return

    server = None
    base_url, model_name = args.base_url, args.model
    if base_url is None:
        from agent.models import local as lm

        st = lm.local_status()
        if not st.ready:
            raise SystemExit("the local model is not installed: run `mulligan model setup` "
                             "(or pass --base-url)")
        server = lm.LocalServer(st.server, st.weights, threads=args.threads,
                                parallel=max(1, args.samples))
        await server.astart()
        base_url, model_name = server.base_url, server.model_name
        print(f"local server ready in {server.started_s:.1f}s ({server.threads} thread(s))",
              file=sys.stderr)
    model = OpenAIChatModel(ModelSettings(
        model=model_name or "local", base_url=base_url, temperature=args.temperature,
        max_tokens=args.max_tokens, timeout_s=args.request_timeout, max_retries=1,
        max_concurrent_requests=max(1, args.samples)))
    await model.preflight()  # learns the server's window (and whether it takes a grammar)
    baselines: dict[str, tuple[dict[str, str], list[dict[str, str]]]] = {}
    try:
        for task, fmt in todo:
            if task.name not in baselines:
                files = task_files(task)
                passed, failures, _ = run_pytest(task)
                if passed:
                    print(f"{task.name}: the tests pass without a fix; skipped", file=sys.stderr)
                    continue
                sources = task_sources(files)
                baselines[task.name] = (sources, failures)
            sources, failures = baselines[task.name]
            messages = messages_for(fmt, task, sources, failures, args.max_failures)
            edit_format, constrained, _ = PROD_FORMATS.get(fmt, ("", False, False))
            started = time.monotonic()
            try:
                with hinted(Hints(grammar=grammar_for(edit_format) if constrained else None)):
                    completions = await model.sample(messages, args.samples, seed=args.seed)
                error = ""
            except MulliganError as exc:  # a failed request counts as unusable samples
                completions, error = [], f"{type(exc).__name__}: {exc}"[:300]
            seconds = time.monotonic() - started
            rows = []
            for i in range(args.samples):
                row = {"task": task.name, "format": fmt, "sample": i, "seconds": seconds,
                       "request_error": error}
                if i < len(completions):
                    c = completions[i]
                    stage, new_files, err = apply_answer(fmt, c.text, sources)
                    row.update(stage=stage, error=err, finish=c.finish_reason,
                               completion_tokens=c.usage.completion_tokens,
                               prompt_tokens=c.usage.prompt_tokens, answer=c.text)
                    if new_files is not None:
                        fixed, left, test_s = run_pytest(task, new_files)
                        row.update(fixed=fixed, still_failing=len(left), test_seconds=test_s)
                    else:
                        row.update(fixed=False)
                else:
                    row.update(stage="request", fixed=False, error=error, answer="")
                rows.append(row)
            append_rows(out, rows)
            marks = "".join("F" if r["fixed"] else {"applied": "x", "apply": "a", "parse": "p",
                                                    "request": "!"}[r["stage"]] for r in rows)
            print(f"{task.name:45} {fmt:15} {marks}  {seconds:5.1f}s", file=sys.stderr)
    finally:
        await model.aclose()
        if server is not None:
            server.stop()
    summarize(out)


def rescore(source: Path, out: Path, tasks_dir: Path) -> None:
    """The stored answers through today's parser and the task's tests; requests are not
    repeated, so the answers stay the model's."""
    if out.resolve() == source.resolve():
        raise SystemExit("--rescore writes to --out: give another file")
    rows, by_task = [], {}
    for row in read_results(source):
        task = tasks_dir / row["task"]
        if task.name not in by_task:
            by_task[task.name] = task_sources(task_files(task))
        sources = by_task[task.name]
        if row.get("stage") != "request":
            stage, new_files, err = apply_answer(row["format"], row.get("answer") or "", sources)
            row.update(stage=stage, error=err, fixed=False)
            row.pop("still_failing", None)
            if new_files is not None:
                fixed, left, _ = run_pytest(task, new_files)
                row.update(fixed=fixed, still_failing=len(left))
        rows.append(row)
    out.unlink(missing_ok=True)
    append_rows(out, rows)


def append_rows(path: Path, rows: list[dict]) -> None:
    with path.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [row for row in json_lines(path) if row is not None]  # a cut last line is dropped


def summarize(path: Path) -> None:
    rows = read_results(path)
    by_fmt: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_fmt[r["format"]].append(r)
    tasks = sorted({r["task"] for r in rows})
    print(f"\n{len(tasks)} task(s), results from {path}")
    print(f"{'format':16} {'samples':>7} {'parsed':>7} {'applied':>8} {'fixed':>7} "
          f"{'tasks fixed':>12} {'chars/answ.':>11} {'s/request':>10}")
    for fmt in [f for f in FORMATS if f in by_fmt]:
        rs = by_fmt[fmt]
        n = len(rs)
        parsed = sum(r["stage"] in ("apply", "applied") for r in rs)
        applied = sum(r["stage"] == "applied" for r in rs)
        fixed = sum(bool(r.get("fixed")) for r in rs)
        fmt_tasks = {r["task"] for r in rs}
        tasks_fixed = len({r["task"] for r in rs if r.get("fixed")})
        chars = [len(r.get("answer") or "") for r in rs]
        reqs = {(r["task"]): r["seconds"] for r in rs}
        print(f"{fmt:16} {n:7d} {parsed / n:7.0%} {applied / n:8.0%} {fixed / n:7.0%} "
              f"{tasks_fixed:>5d}/{len(fmt_tasks):<6d} "
              f"{(sum(chars) / len(chars) if chars else 0):11.0f} "
              f"{(sum(reqs.values()) / len(reqs) if reqs else 0):10.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks-dir", type=Path, default=DEFAULT_TASKS_DIR)
    p.add_argument("--tasks", default=None,
                   help="N (spread over QuixBugs and HumanEvalFix) or comma-separated ids")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--samples", type=int, default=3, help="answers per task and format")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-failures", type=int, default=10,
                   help="failing tests shown in the prompt (the agent shows up to 10)")
    p.add_argument("--threads", type=int, default=None, help="llama-server threads")
    p.add_argument("--request-timeout", type=float, default=900.0)
    p.add_argument("--base-url", default=None, help="use this endpoint, not the local model")
    p.add_argument("--model", default=None)
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "edit_formats.jsonl"))
    p.add_argument("--summary", type=Path, default=None, help="only summarize a results file")
    p.add_argument("--rescore", type=Path, default=None,
                   help="parse, apply and test a results file's answers again (after a change "
                        "to the parser), write it to --out and summarize it")
    args = p.parse_args(argv)
    if args.rescore is not None:
        rescore(args.rescore, Path(args.out), args.tasks_dir)
        summarize(Path(args.out))
        return 0
    if args.summary is not None:
        summarize(args.summary)
        return 0
    asyncio.run(bench(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
