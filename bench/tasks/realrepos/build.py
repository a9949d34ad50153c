"""Build the real-repository tasks: released libraries from their PyPI sdists, each with one
injected single-site regression (regressions.json), in the directory task format.

    python bench/tasks/realrepos/build.py                # build into bench/out/realrepos/
    python bench/tasks/realrepos/build.py --verify       # and check every task on the host

Each task folder holds the library's sdist tree with the regression applied and a
`task.json` (a neutral description, `python -m pytest -q tests`). `manifest.json` beside
them records, for measurement only (never prompted), where each regression is: file,
function, line span, and (with --verify) the tests it makes fail. Verification runs the
library's own suite on the host: the original must pass every test, the regressed copy
must fail at least one.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from agent.context.symbols import extract_symbols  # noqa: E402

SPEC = HERE / "regressions.json"
DESCRIPTION = ("A recent change to this library broke some of its tests (see the failing "
               "tests). Find the regression in the library's code and fix it; do not change "
               "the tests.")
TEST_COMMAND = "python -m pytest -q tests"
DROP = {".python-version", ".github", ".tox"}  # docs stay: some suites read them


def download(requirement: str, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    name, version = requirement.split("==")
    found = [p for p in cache.glob("*.tar.gz")
             if p.name.lower().replace("_", "-").startswith(f"{name.lower()}-{version}")]
    if found:
        return found[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                    "--no-deps", "-q", "-d", str(cache), requirement], check=True)
    return download(requirement, cache)


def extract(sdist: Path, folder: str, dest: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = Path(tmp) / folder
        shutil.copytree(src, dest, ignore=lambda d, names: [n for n in names if n in DROP])
    return dest


def span(path: Path, rel: str, qualname: str) -> tuple[int, int]:
    for symbol in extract_symbols(rel, path.read_text()):
        if symbol.qualname == qualname:
            return symbol.line - len(symbol.decorators), symbol.end_line
    raise SystemExit(f"{rel}: no function {qualname}")


def run_tests(tree: Path) -> tuple[int, list[str], int]:
    """(exit code, failing test ids, number of tests) of the suite on the host."""
    junit = tree / ".junit.xml"
    env = {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'src'}", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={junit}", "-o", "junit_family=xunit1", "tests"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    failing, total = [], 0
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            total += 1
            if case.find("failure") is not None or case.find("error") is not None:
                path = (case.get("file") or case.get("classname", "").replace(".", "/") + ".py")
                failing.append(f"{path}::{case.get('name')}")
        junit.unlink()
    return proc.returncode, failing, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "realrepos")
    p.add_argument("--sdists", type=Path, default=ROOT / "bench" / "out" / "sdists")
    p.add_argument("--verify", action="store_true", help="run each suite on the host")
    p.add_argument("--only", nargs="*", default=None, help="task ids")
    args = p.parse_args(argv)
    spec = json.loads(SPEC.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    originals: dict[str, Path] = {}
    work = Path(tempfile.mkdtemp(prefix="realrepos-"))
    try:
        for reg in spec["regressions"]:
            if args.only and reg["id"] not in args.only:
                continue
            lib = spec["libraries"][reg["library"]]
            if reg["library"] not in originals:
                sdist = download(lib["sdist"], args.sdists)
                originals[reg["library"]] = extract(sdist, lib["dir"], work / reg["library"])
                if args.verify:
                    code, failing, total = run_tests(originals[reg["library"]])
                    if code != 0:
                        raise SystemExit(f"{lib['sdist']}: the original fails {failing[:5]}")
                    print(f"{lib['sdist']}: original passes all {total} tests", flush=True)
            task = args.out / reg["id"]
            shutil.rmtree(task, ignore_errors=True)
            shutil.copytree(originals[reg["library"]], task)
            target = task / reg["file"]
            text = target.read_text()
            if text.count(reg["find"]) != 1:
                raise SystemExit(f"{reg['id']}: the text to change occurs "
                                 f"{text.count(reg['find'])} times in {reg['file']}")
            start, end = span(target, reg["file"], reg["function"])
            at = text[: text.index(reg["find"])].count("\n") + 1
            if not start <= at <= end:
                raise SystemExit(f"{reg['id']}: line {at} is outside {reg['function']}")
            regressed = text.replace(reg["find"], reg["replace"])
            target.write_text(regressed)
            # the reference fix, kept apart from the task (like the public tasks' _fixes/):
            # only `mulligan bench --scripted-p` reads it, never a model
            fixes = args.out / "_fixes"
            fixes.mkdir(parents=True, exist_ok=True)
            (fixes / f"{reg['id']}.patch").write_text("".join(difflib.unified_diff(
                regressed.splitlines(keepends=True), text.splitlines(keepends=True),
                f"a/{reg['file']}", f"b/{reg['file']}")))
            (task / "task.json").write_text(json.dumps({
                "id": reg["id"],
                "source": {"dataset": "realrepos (PyPI sdist + injected regression)",
                           "upstream": f"https://pypi.org/project/{lib['sdist'].split('==')[0]}/"
                                       f"{lib['sdist'].split('==')[1]}/",
                           "licence": lib["licence"]},
                "description": DESCRIPTION,
                "test_command": TEST_COMMAND,
            }, indent=2) + "\n")
            entry = {"library": reg["library"], "sdist": lib["sdist"], "file": reg["file"],
                     "function": reg["function"], "kind": reg["kind"], "line": at,
                     "span": [start, end], "file_lines": text.count("\n")}
            if args.verify:
                code, failing, total = run_tests(task)
                if not failing:  # not a usable task: say so and leave it out
                    print(f"{reg['id']}: the regression fails no test; left out", flush=True)
                    shutil.rmtree(task)
                    manifest.pop(reg["id"], None)
                    continue
                entry.update(failing=failing, tests=total)
                print(f"{reg['id']}: {len(failing)} of {total} tests fail", flush=True)
            manifest[reg["id"]] = entry
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(manifest)} tasks in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
