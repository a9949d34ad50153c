"""Benchmark tasks for `mulligan bench`: loading, validation, and refusing reference solutions.

Two formats:

* the directory format (see ../shared/benchmarks/README.md): a small repository plus a
  `task.json` with `description` (the issue statement) and `test_command`. A TASKS argument
  may be one task directory or a folder of task directories.
* SWE-bench-style JSONL: one instance per line with `instance_id`, `repo`, `base_commit`,
  `problem_statement`, `FAIL_TO_PASS`, `PASS_TO_PASS` (lists, or JSON-encoded lists as
  SWE-bench ships them), optional `image`, `test_cmd` and `test_patch`. The instance runs
  when `repo` is a local path or a clone found under `--repos-dir`; otherwise it is loaded,
  validated and skipped with the `git clone` that would make it runnable.

Honest inputs: a reference solution must never be able to reach a prompt, so anything that
looks like one is refused as input, with the reason: `*.patch`/`*.diff` files, a `_fixes`
(or `fixes`, `solutions`, `reference`, `gold`, ...) folder, files named like a fix, solution
or reference (unless the issue statement itself names the file as the code to fix, like
HumanEvalFix's `solution.py`), files whose content is a diff, and JSONL instances that carry
a `patch` (SWE-bench's gold patch) or a similar field. Passing the `_fixes` folder itself
as a task is refused with its own message. The scripted model (`--scripted-p`,
agent/bench_scripted.py) is the only reader of reference fixes, and it never prompts with them.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import ConfigError
from sandbox import git
from sandbox.snapshot import text_only

FIXES_DIR = "_fixes"
# Folders that hold reference solutions by convention.
REFERENCE_DIRS = frozenset({
    "_fixes", "fixes", "_fix", "solutions", "_solutions", "reference", "references",
    "reference_solutions", "gold", "golden", "gold_patches", "correct_python_programs",
    "canonical", "canonical_solutions",
})
REFERENCE_SUFFIXES = (".patch", ".diff", ".rej", ".orig")
# A file whose name has one of these words as a token (split at _ - . and case changes).
REFERENCE_WORDS = frozenset({
    "fix", "fixed", "fixes", "solution", "solutions", "solved", "reference", "ref",
    "gold", "golden", "canonical", "correct", "oracle", "answer", "answers",
})
# JSONL fields that carry a reference solution (SWE-bench's `patch` is the gold patch).
REFERENCE_KEYS = ("patch", "gold_patch", "reference_patch", "fix", "fix_patch", "solution",
                  "canonical_solution", "reference", "reference_solution", "golden_patch")
SKIP_PARTS = frozenset({".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                        ".tox", ".venv", "node_modules"})
REQUIRED_KEYS = ("instance_id", "repo", "base_commit", "problem_statement", "FAIL_TO_PASS",
                 "PASS_TO_PASS")
DIFF_START = re.compile(r"^(diff --git |--- a/|Index: )", re.MULTILINE)
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class ReferenceInputError(ConfigError):
    """An input looks like a reference solution: refused, so that it can never be prompted."""


@dataclass(frozen=True)
class BenchTask:
    """One task, self-contained enough to ship to another machine (Ray): a directory task
    carries its files; a SWE-bench task names a local clone and a commit."""

    id: str
    kind: str  # "dir" | "swebench"
    issue: str
    test_cmd: str
    origin: str  # the task directory, or "FILE.jsonl:LINE"
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # dir tasks
    repo: str | None = None  # swebench: the local clone
    repo_name: str | None = None  # swebench: owner/name as given
    base_commit: str | None = None
    test_patch: str | None = field(default=None, repr=False)
    fail_to_pass: tuple[str, ...] = ()
    pass_to_pass: tuple[str, ...] = ()
    image: str | None = None
    unavailable: str | None = None  # why it cannot run here (swebench without a clone)

    @property
    def required_tests(self) -> tuple[str, ...]:
        """Tests the selected patch must pass in the fresh scoring run (SWE-bench tasks);
        empty for directory tasks, whose scoring uses the unmodified run's tests."""
        return self.fail_to_pass + self.pass_to_pass

    def text_files(self) -> dict[str, str]:
        """The task's files as the agent sees them (the snapshot's text rule)."""
        return text_only(self.files)

    def materialize(self, dest: Path) -> Path:
        """Write the task's repository (as the agent sees it: no task.json, no fix) to
        `dest`, a fresh directory, and return it."""
        dest.mkdir(parents=True, exist_ok=False)
        if self.kind == "dir":
            for rel, data in self.files.items():
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            return dest
        if self.unavailable:
            raise ConfigError(f"task {self.id}: {self.unavailable}")
        assert self.repo and self.base_commit
        proc = git.run(["-C", self.repo, "archive", "--format=tar", self.base_commit])
        if not proc.ok:
            raise ConfigError(f"task {self.id}: git archive {self.base_commit} failed in "
                              f"{self.repo}: {proc.stderr.decode(errors='replace').strip()[:300]}")
        with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r") as tar:
            tar.extractall(dest, filter="data")
        if self.test_patch:
            applied = git.run(["apply", "--whitespace=nowarn", "-"],
                              input=self.test_patch.encode(), cwd=dest)
            if not applied.ok:
                raise ConfigError(f"task {self.id}: test_patch does not apply at "
                                  f"{self.base_commit}: "
                                  f"{applied.stderr.decode(errors='replace').strip()[:300]}")
        return dest


# -- reference-solution detection --------------------------------------------------------------


def _tokens(name: str) -> list[str]:
    stem = name.split(".")[0] if not name.startswith(".") else name[1:]
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", stem)
    return [t.lower() for t in re.split(r"[\s_\-.]+", spaced) if t]


def _is_test_module(name: str) -> bool:
    stem = name.rsplit(".", 1)[0].lower()
    return stem.startswith("test_") or stem.endswith("_test") or stem == "conftest"


def reference_reason(rel: str, data: bytes | None, issue: str = "") -> str | None:
    """Why the file at `rel` (relative to a task) looks like a reference solution, or None."""
    parts = rel.split("/")
    for part in parts[:-1]:
        if part.lower() in REFERENCE_DIRS:
            return f"it is inside a `{part}` folder, where reference solutions are kept"
    name = parts[-1]
    if name.lower().endswith(REFERENCE_SUFFIXES):
        return "patch/diff files are refused (a reference fix is usually one)"
    words = REFERENCE_WORDS.intersection(_tokens(name))
    if words and not _is_test_module(name) and not _named_by_issue(name, issue):
        return (f"its name contains {min(words)!r} (named like a fix, solution or "
                "reference)")
    if data is not None and not _is_test_module(name):
        head = data[:200_000].decode("utf-8", "replace")
        if DIFF_START.search(head) and re.search(r"^@@ -\d+", head, re.MULTILINE) \
                and re.search(r"^\+\+\+ ", head, re.MULTILINE):
            return "its content is a diff (a reference fix is usually one)"
    return None


def _named_by_issue(name: str, issue: str) -> bool:
    """The issue statement names this file as the code to fix (HumanEvalFix's `solution.py`)."""
    return bool(issue) and re.search(rf"(?<![\w/.]){re.escape(name)}(?![\w])", issue) is not None


def _refuse(path: Path, why: str) -> ReferenceInputError:
    return ReferenceInputError(
        f"refusing {path}: {why}. mulligan bench never takes a reference solution as input, "
        f"so that no fix can reach a prompt; keep reference fixes out of the task (in a "
        f"`{FIXES_DIR}` folder next to the tasks, read only by --scripted-p)")


# -- loading ------------------------------------------------------------------------------------


def load_tasks(paths: Sequence[Path | str], repos_dir: Path | None = None) -> list[BenchTask]:
    """Every task named by `paths` (task dirs, folders of task dirs, JSONL files), in order;
    ConfigError (ReferenceInputError for reference-looking inputs) on anything wrong."""
    if not paths:
        raise ConfigError("no tasks given: pass task directories, a folder of them, or a JSONL")
    tasks: list[BenchTask] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise ConfigError(f"{path}: no such file or directory")
        if path.is_file():
            if path.name.lower().endswith(REFERENCE_SUFFIXES):
                raise _refuse(path, "it is a patch file")
            if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
                tasks.extend(load_jsonl(path, repos_dir))
                continue
            raise ConfigError(f"{path}: not a task (a task is a directory with task.json, or "
                              "a SWE-bench-style .jsonl file)")
        elif path.resolve().name.lower() in REFERENCE_DIRS:
            raise _refuse(path, f"`{path.resolve().name}` is a folder of reference fixes, not "
                          "tasks (pass the folder that holds the task directories: its "
                          f"`{FIXES_DIR}` is skipped)")
        elif (path / "task.json").is_file():
            tasks.append(load_task_dir(path))
        else:
            found = sorted(p for p in path.iterdir() if p.is_dir()
                           and not p.name.startswith((".", "_"))
                           and p.name.lower() not in REFERENCE_DIRS
                           and (p / "task.json").is_file())
            if not found:
                raise ConfigError(f"{path}: no tasks found (a task directory holds task.json)")
            tasks.extend(load_task_dir(p) for p in found)
    seen: dict[str, str] = {}
    for task in tasks:
        if task.id in seen:
            raise ConfigError(f"duplicate task id {task.id!r} ({seen[task.id]} and {task.origin})")
        seen[task.id] = task.origin
    return tasks


def _walk(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in SKIP_PARTS for part in rel.parts) or path.suffix == ".pyc":
            continue
        yield path


def load_task_dir(path: Path) -> BenchTask:
    try:
        meta = json.loads((path / "task.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path / 'task.json'}: cannot read it ({exc})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path / 'task.json'}: expected a JSON object")
    for key in REFERENCE_KEYS:
        if meta.get(key):
            raise _refuse(path / "task.json", f"it has a `{key}` field")
    issue = meta.get("description")
    test_cmd = meta.get("test_command") or meta.get("test_cmd")
    if not isinstance(issue, str) or not issue.strip():
        raise ConfigError(f"{path / 'task.json'}: `description` (the issue statement) is missing")
    if not isinstance(test_cmd, str) or not test_cmd.strip():
        raise ConfigError(f"{path / 'task.json'}: `test_command` is missing")
    task_id = str(meta.get("id") or path.name)
    if not ID_RE.match(task_id):
        raise ConfigError(f"{path / 'task.json'}: id {task_id!r} is not a plain name")
    files: dict[str, bytes] = {}
    for file in _walk(path):
        rel = file.relative_to(path).as_posix()
        if file.is_dir():
            if file.name.lower() in REFERENCE_DIRS:
                raise _refuse(file, f"a task must not contain a `{file.name}` folder")
            continue
        if rel == "task.json" or not file.is_file():
            continue
        data = file.read_bytes()
        why = reference_reason(rel, data, issue)
        if why:
            raise _refuse(file, why)
        files[rel] = data
    if not files:
        raise ConfigError(f"{path}: the task has no files besides task.json")
    return BenchTask(task_id, "dir", issue, test_cmd, str(path.resolve()), files)


def _id_list(value: object, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"{where}: `{key}` is neither a list nor a JSON list") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of test ids")
    return tuple(value)


def _resolve_repo(repo: str, base: Path, repos_dir: Path | None) -> Path | None:
    options = []
    as_path = Path(repo).expanduser()
    options.append(as_path if as_path.is_absolute() else base / as_path)
    if repos_dir is not None:
        options += [repos_dir / repo.replace("/", "__"), repos_dir / repo,
                    repos_dir / repo.rsplit("/", 1)[-1]]
    for option in options:
        if option.is_dir() and ((option / ".git").exists() or (option / "HEAD").is_file()):
            return option.resolve()
    return None


def load_jsonl(path: Path, repos_dir: Path | None = None) -> list[BenchTask]:
    tasks = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                inst = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"{where}: not valid JSON ({exc})") from None
            if not isinstance(inst, dict):
                raise ConfigError(f"{where}: expected a JSON object per line")
            tasks.append(_instance(inst, where, path.parent, repos_dir))
    if not tasks:
        raise ConfigError(f"{path}: no instances")
    return tasks


def _instance(inst: dict, where: str, base: Path, repos_dir: Path | None) -> BenchTask:
    for key in REFERENCE_KEYS:
        if inst.get(key):
            raise ReferenceInputError(
                f"refusing {where}: the instance carries `{key}`, a reference solution "
                "(SWE-bench's gold patch). mulligan bench never takes one as input, so that no "
                "fix can reach a prompt: strip it first, e.g. "
                f"`jq -c 'del(.{key})' in.jsonl > tasks.jsonl`")
    missing = [k for k in REQUIRED_KEYS if k not in inst]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    task_id = str(inst["instance_id"])
    if not ID_RE.match(task_id):
        raise ConfigError(f"{where}: instance_id {task_id!r} is not a plain name")
    issue = inst["problem_statement"]
    if not isinstance(issue, str) or not issue.strip():
        raise ConfigError(f"{where}: empty problem_statement")
    f2p = _id_list(inst["FAIL_TO_PASS"], "FAIL_TO_PASS", where)
    p2p = _id_list(inst["PASS_TO_PASS"], "PASS_TO_PASS", where)
    if not f2p:
        raise ConfigError(f"{where}: FAIL_TO_PASS is empty (nothing would show a fix)")
    commit = str(inst["base_commit"])
    if not re.fullmatch(r"[0-9a-fA-F]{7,40}", commit):
        raise ConfigError(f"{where}: base_commit {commit!r} is not a commit hash")
    test_cmd = inst.get("test_cmd") or inst.get("test_command")
    if not test_cmd:
        ids = f2p + p2p
        if not all("::" in t for t in ids):
            raise ConfigError(f"{where}: the test ids are not pytest node ids "
                              "(file.py::test): give the instance a `test_cmd`")
        files = sorted({t.split("::", 1)[0] for t in ids})
        test_cmd = "python -m pytest -q " + " ".join(files)
    test_patch = inst.get("test_patch") or None
    if test_patch is not None and not isinstance(test_patch, str):
        raise ConfigError(f"{where}: test_patch must be a string (a diff)")
    repo_name = str(inst["repo"])
    repo = _resolve_repo(repo_name, base, repos_dir)
    unavailable = None
    if repo is None:
        slug = repo_name.replace("/", "__")
        unavailable = (f"no local clone of {repo_name}: `git clone https://github.com/"
                       f"{repo_name} REPOS/{slug}` and pass --repos-dir REPOS")
    else:
        known = git.run(["-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"])
        if not known.ok:
            unavailable = (f"{repo} lacks commit {commit}: "
                           f"`git -C {repo} fetch origin {commit}`")
    return BenchTask(task_id, "swebench", issue, str(test_cmd), where, repo=str(repo) if repo
                     else None, repo_name=repo_name, base_commit=commit, test_patch=test_patch,
                     fail_to_pass=f2p, pass_to_pass=p2p, image=inst.get("image") or None,
                     unavailable=unavailable)
