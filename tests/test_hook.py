"""`mulligan hook`: real git repositories, real `git commit` through the installed hook, the
real Docker sandbox and the scripted model server.

The hook script runs `sys.executable -I -c ...` (the interpreter the tests run on, isolated);
the model and sandbox come from the environment (OPENAI_BASE_URL, MULLIGAN_MODEL,
MULLIGAN_IMAGE). Every test that commits checks the user's work byte for byte: working tree
files and modes, `git diff`, `git diff --cached`, the stash and the untracked files.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.frontends.hook import (
    CHAINED,
    MARKER,
    FixDoesNotApply,
    HookConfig,
    _worktree_plan,
    apply_fix,
    hook_config,
    install,
    related_tests,
    select_tests,
    staged_paths,
    uninstall,
)
from sandbox.snapshot import Snapshot
from tests.support.sandbox_env import docker_client, docker_image  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
PROMPT = b"a[b]ort the commit? "
COMMIT_TIMEOUT_S = 240

CALC_OK = '''"""A tiny calculator."""


def mean(values):
    """The arithmetic mean of a non-empty list of numbers."""
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / len(values)


def clamp(value, low, high):
    """`value` limited to the range [low, high]."""
    return max(low, min(value, high))


def double(value):
    return 2 * value
'''
CALC_BUG = CALC_OK.replace("sum(values) / len(values)", "sum(values) / (len(values) - 1)")
TESTS = '''import pytest

from calc import clamp, double, mean


def test_mean_of_two():
    assert mean([2, 4]) == 3


def test_mean_of_one():
    assert mean([5]) == 5


def test_mean_empty():
    with pytest.raises(ValueError):
        mean([])


def test_clamp():
    assert clamp(5, 0, 3) == 3


def test_double():
    assert double(4) == 8
'''
FIX_ANSWER = '''The divisor is off by one.

calc.py
```python
<<<<<<< SEARCH
    return sum(values) / (len(values) - 1)
=======
    return sum(values) / len(values)
>>>>>>> REPLACE
```
'''
HOOK_CONFIG = "hook_candidates = 1\nhook_rounds = 1\nworkers = 2\n"


# -- fixtures and helpers ------------------------------------------------------------------


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "MULLIGAN_", "OPENAI_")) and k not in ("PRE_COMMIT",)}
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("[user]\n\tname = Test\n\temail = test@example.com\n"
                         "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(gitconfig),
               MULLIGAN_HOME=str(tmp_path / "mulligan-home"),
               XDG_CACHE_HOME=str(tmp_path / "cache"), MULLIGAN_HOOK_NONINTERACTIVE="1")
    return env


@pytest.fixture
def git_env(tmp_path: Path) -> dict[str, str]:
    """No model, no sandbox: for install/uninstall and MULLIGAN_SKIP."""
    return _base_env(tmp_path)


@pytest.fixture
def hook_env(tmp_path: Path, openai_server, docker_image: str) -> dict[str, str]:  # noqa: F811
    env = _base_env(tmp_path)
    env.update(OPENAI_BASE_URL=openai_server.base_url, OPENAI_API_KEY="sk-test",
               MULLIGAN_MODEL="test-model", MULLIGAN_IMAGE=docker_image)
    return env


def git(repo: Path, env: dict[str, str], *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def make_repo(path: Path, env: dict[str, str], files: dict[str, str] | None = None,
              hook: bool = True) -> Path:
    path.mkdir()
    git(path, env, "init", "-q")
    files = files if files is not None else {"calc.py": CALC_OK, "tests/test_calc.py": TESTS,
                                             ".mulligan.toml": HOOK_CONFIG}
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    git(path, env, "add", "-A")
    git(path, env, "commit", "-q", "--no-verify", "-m", "init")
    if hook:
        proc = subprocess.run([sys.executable, "-m", "agent.frontends.hook", "install"], cwd=path,
                              env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    return path


def commit(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "commit", "-m", "change", *args], cwd=repo, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=COMMIT_TIMEOUT_S, check=False)


def work_state(repo: Path, env: dict[str, str]) -> dict[str, object]:
    """Everything of the user's work a hook could disturb."""
    files = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo)
        if rel.parts[0] == ".git" or path.is_dir():
            continue
        files[rel.as_posix()] = (oct(path.lstat().st_mode),
                                 hashlib.sha256(path.read_bytes()).hexdigest())
    return {
        "files": files,
        "diff": git(repo, env, "diff", "--binary"),
        "cached": git(repo, env, "diff", "--cached", "--binary"),
        "stash": git(repo, env, "stash", "list", "--format=%H %s"),
        "untracked": git(repo, env, "ls-files", "--others", "--exclude-standard"),
        "head": git(repo, env, "rev-parse", "HEAD"),
    }


def with_user_work(repo: Path, env: dict[str, str]) -> None:
    """A stash, an untracked file, and an unstaged edit of the test file."""
    (repo / "notes.txt").write_text("stash me\n")
    git(repo, env, "add", "notes.txt")
    git(repo, env, "stash", "-q")
    (repo / "scratch.txt").write_text("untracked, never touched\n")
    (repo / "tests" / "test_calc.py").write_text(TESTS + "\n# unstaged note\n")


def _changes(diff: str) -> list[str]:
    return [line for line in diff.splitlines()
            if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]


def patch_files(repo: Path) -> list[Path]:
    return sorted((repo / ".git" / "mulligan").glob("fix-*.patch"))


def drive_commit(repo: Path, env: dict[str, str], answer: bytes | None,
                 *args: str) -> tuple[int, str, str]:
    """`git commit` with a pty as the hook's terminal (MULLIGAN_HOOK_TTY); `answer` is typed
    at the prompt. Returns (exit code, stderr, what the terminal showed)."""
    master, slave = os.openpty()
    env = {**env, "MULLIGAN_HOOK_TTY": os.ttyname(slave)}
    env.pop("MULLIGAN_HOOK_NONINTERACTIVE", None)
    proc = subprocess.Popen(["git", "commit", "-m", "change", *args], cwd=repo, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out = {proc.stdout.fileno(): b"", proc.stderr.fileno(): b""}
    pipes = set(out)
    screen = b""
    answered = False
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    try:
        while pipes:  # until git and the hook have both closed their output
            left = deadline - time.monotonic()
            assert left > 0, f"git commit did not finish: {screen.decode(errors='replace')}"
            ready, _, _ = select.select([*pipes, master], [], [], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if fd == master:
                    screen += chunk
                    if answer is not None and not answered and PROMPT in screen:
                        os.write(master, answer + b"\n")
                        answered = True
                elif chunk:
                    out[fd] += chunk
                else:
                    pipes.discard(fd)
        proc.wait(timeout=30)
        while select.select([master], [], [], 0)[0]:
            screen += os.read(master, 65536)
    finally:
        os.close(master)
        os.close(slave)
    return (proc.returncode, out[proc.stderr.fileno()].decode(errors="replace"),
            screen.decode(errors="replace").replace("\r\n", "\n"))


# -- install / uninstall -------------------------------------------------------------------


def test_install_then_uninstall_restores_no_hook(tmp_path, git_env):
    repo = make_repo(tmp_path / "repo", git_env, hook=False)
    hooks = repo / ".git" / "hooks"
    before = sorted(p.name for p in hooks.iterdir())
    message = install(repo)
    hook = hooks / "pre-commit"
    assert "installed" in message
    text = hook.read_text()
    assert MARKER in text and f"exec {sys.executable} -I -c " in text  # isolated mode
    assert "from agent.frontends.hook import main" in text and repr(str(ROOT)) in text
    assert hook.stat().st_mode & 0o111
    assert install(repo).startswith("installed")  # again: rewritten in place, nothing chained
    assert not (hooks / CHAINED).exists()
    uninstall(repo)
    assert sorted(p.name for p in hooks.iterdir()) == before
    assert uninstall(repo) == "no mulligan hook is installed"


def test_foreign_hook_refused_then_chained_and_restored_byte_for_byte(tmp_path, git_env):
    repo = make_repo(tmp_path / "repo", git_env, hook=False)
    hooks = repo / ".git" / "hooks"
    ran = tmp_path / "chained-ran"
    original = (f"#!/bin/sh\n# the team's own hook\necho ran >> {ran}\n"
                '[ -f "$(git rev-parse --show-toplevel)/BLOCK" ] && exit 3\nexit 0\n').encode()
    (hooks / "pre-commit").write_bytes(original)
    (hooks / "pre-commit").chmod(0o750)
    proc = subprocess.run([sys.executable, "-m", "agent.frontends.cli", "hook", "install"], cwd=repo,
                          env=git_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "--force" in proc.stderr
    assert (hooks / "pre-commit").read_bytes() == original
    assert not (hooks / CHAINED).exists()

    proc = subprocess.run([sys.executable, "-m", "agent.frontends.cli", "hook", "install", "--force"],
                          cwd=repo, env=git_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (hooks / CHAINED).read_bytes() == original
    assert MARKER in (hooks / "pre-commit").read_text()

    # The chained hook runs first, and its failure stops the commit before mulligan runs.
    (repo / "calc.py").write_text(CALC_OK + "\n# one\n")
    git(repo, git_env, "add", "calc.py")
    (repo / "BLOCK").write_text("")
    blocked = commit(repo, {**git_env, "MULLIGAN_SKIP": "1"})
    assert blocked.returncode != 0 and ran.read_text() == "ran\n"
    (repo / "BLOCK").unlink()
    passed = commit(repo, {**git_env, "MULLIGAN_SKIP": "1"})
    assert passed.returncode == 0, passed.stderr
    assert ran.read_text() == "ran\nran\n"

    uninstall(repo)
    assert (hooks / "pre-commit").read_bytes() == original
    assert stat.S_IMODE((hooks / "pre-commit").stat().st_mode) == 0o750
    assert not (hooks / CHAINED).exists()


def test_install_respects_core_hooks_path(tmp_path, git_env):
    repo = make_repo(tmp_path / "repo", git_env, hook=False)
    git(repo, git_env, "config", "core.hooksPath", ".githooks")
    before = sorted(p.name for p in (repo / ".git" / "hooks").iterdir())
    install(repo)
    assert MARKER in (repo / ".githooks" / "pre-commit").read_text()
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    (repo / "calc.py").write_text(CALC_BUG)  # red, but skipped: proves git ran *this* hook
    git(repo, git_env, "add", "calc.py")
    proc = subprocess.run(["git", "commit", "-m", "x"], cwd=repo, capture_output=True,
                          text=True, env={**git_env, "MULLIGAN_SKIP": "1"}, check=False)
    assert proc.returncode == 0, proc.stderr
    uninstall(repo)
    assert not (repo / ".githooks").exists()  # it created the folder, so it removes it
    assert sorted(p.name for p in (repo / ".git" / "hooks").iterdir()) == before


def test_uninstall_leaves_a_foreign_hook_alone(tmp_path, git_env):
    repo = make_repo(tmp_path / "repo", git_env, hook=False)
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_bytes(b"#!/bin/sh\nexit 0\n")
    with pytest.raises(Exception, match="not written by mulligan"):
        uninstall(repo)
    assert hook.read_bytes() == b"#!/bin/sh\nexit 0\n"


def test_mulligan_skip_exits_at_once(tmp_path, git_env):
    repo = make_repo(tmp_path / "repo", git_env)
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, git_env, "add", "calc.py")
    # No model and no image configured: anything past the skip check would fail.
    proc = commit(repo, {**git_env, "MULLIGAN_SKIP": "1", "MULLIGAN_IMAGE": "no/such:image"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    skipped = subprocess.run([sys.executable, "-X", "importtime", "-m", "agent.frontends.hook", "run"],
                             cwd=repo, env={**git_env, "MULLIGAN_SKIP": "1"},
                             capture_output=True, text=True, check=False)
    assert skipped.returncode == 0
    imported = skipped.stderr
    assert " agent.errors\n" in imported  # the hook module did run
    for heavy in ("pydantic", "docker", "rich", "openai", "agent.config"):
        assert f" {heavy}\n" not in imported, heavy


def test_no_verify_never_runs_the_hook(tmp_path, git_env):
    repo = make_repo(tmp_path / "repo", git_env)
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, git_env, "add", "calc.py")
    proc = commit(repo, {**git_env, "MULLIGAN_IMAGE": "no/such:image"}, "--no-verify")
    assert proc.returncode == 0 and proc.stderr == ""


# -- configuration and test selection --------------------------------------------------------


def test_hook_config_validation():
    assert hook_config({}) == HookConfig()
    assert hook_config({"tests": "related", "mode": "advisory", "candidates": 3}).candidates == 3
    for bad in ({"tests": "some"}, {"mode": "loud"}, {"candidates": 0}, {"rounds": True},
                {"colour": "red"}):
        with pytest.raises(Exception, match="hook_"):
            hook_config(bad)


def test_related_tests_selection():
    paths = ["pkg/__init__.py", "pkg/calc.py", "pkg/util.py", "tests/test_calc.py",
             "tests/unit/test_calc.py", "tests/test_pkg.py", "tests/util_test.py",
             "tests/test_other.py", "README.md"]
    assert related_tests(["pkg/calc.py"], paths) == ["tests/test_calc.py",
                                                     "tests/unit/test_calc.py"]
    assert related_tests(["pkg/util.py", "tests/test_other.py"], paths) == [
        "tests/test_other.py", "tests/util_test.py"]
    assert related_tests(["pkg/__init__.py"], paths) == ["tests/test_pkg.py"]
    assert related_tests(["README.md"], paths) == []  # none found: the full suite
    assert related_tests(["pkg/calc.py", "tests/conftest.py"], paths) == []
    assert related_tests(["tests/test_gone.py"], paths) == []  # a deleted test file


def test_test_command_scopes():
    from agent.config import Settings

    settings = Settings(test_cmd="python -m pytest -q")
    related = HookConfig(tests="related")
    assert select_tests(settings, HookConfig(), ["calc.py"], ["tests/test_calc.py"])[0] == \
        "python -m pytest -q"
    assert select_tests(settings, related, ["calc.py"], ["tests/test_calc.py"])[0] == \
        "python -m pytest -q tests/test_calc.py"
    command, scope = select_tests(settings, related, ["docs.md"], ["tests/test_calc.py"])
    assert command == "python -m pytest -q" and "no related tests" in scope
    command, scope = select_tests(Settings(test_cmd="make test"), related, ["calc.py"],
                                  ["tests/test_calc.py"])
    assert command == "make test" and "pytest" in scope


# -- the staged snapshot and applying a fix (no sandbox) ---------------------------------------


def _locate(repo: Path, env: dict[str, str]) -> tuple[Path, Path, Path]:
    """(git dir, index, object store) of `repo`, absolute."""
    found = git(repo, env, "rev-parse", "--absolute-git-dir", "--git-path", "index",
                "--git-path", "objects").splitlines()
    git_dir, index, objects = (Path(os.path.join(repo, p)) for p in found)
    return git_dir, index, objects


@pytest.mark.parametrize("layout", ["plain", "split-index", "linked-worktree"])
def test_staged_snapshot_is_the_index_not_the_working_tree(tmp_path, git_env, layout):
    repo = make_repo(tmp_path / "repo", git_env, hook=False)
    if layout == "split-index":
        git(repo, git_env, "update-index", "--split-index")
    if layout == "linked-worktree":
        git(repo, git_env, "worktree", "add", "-q", str(tmp_path / "linked"), "-b", "linked")
        repo = tmp_path / "linked"
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, git_env, "add", "calc.py")
    (repo / "calc.py").write_text(CALC_OK + "# unstaged\n")
    (repo / "untracked.py").write_text("x = 1\n")
    before = work_state(repo, git_env)
    _, index, objects = _locate(repo, git_env)
    with Snapshot.from_index(repo, index, objects) as snapshot:
        files = snapshot.text_files()
    assert files["calc.py"] == CALC_BUG and "untracked.py" not in files
    assert staged_paths(repo, {**git_env, "GIT_INDEX_FILE": str(index)}) == ["calc.py"]
    assert work_state(repo, git_env) == before


def _red_staged(repo: Path, env: dict[str, str], worktree: str) -> tuple[Path, Path, Path, str]:
    from agent.edits import unified_diff

    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, env, "add", "calc.py")
    (repo / "calc.py").write_text(worktree)
    git_dir, index, objects = _locate(repo, env)
    return git_dir, index, objects, unified_diff({"calc.py": CALC_BUG}, {"calc.py": CALC_OK})


def test_apply_fix_merges_three_ways_around_unstaged_edits(tmp_path, git_env):
    repo = make_repo(tmp_path / "repo", git_env, hook=False)
    nearby = CALC_BUG.replace("\n\n\ndef clamp", "\n\n# next: clamp\ndef clamp")
    git_dir, index, objects, patch = _red_staged(repo, git_env, nearby)
    with Snapshot.from_index(repo, index, objects) as snapshot:
        plan = _worktree_plan(repo, snapshot, patch)
        assert plan is not None  # `git apply` refuses: the unstaged line is in its context
        apply_fix(repo, git_dir, index, snapshot, patch, stage=True)
    assert git(repo, git_env, "show", ":calc.py") == CALC_OK
    assert (repo / "calc.py").read_text() == CALC_OK.replace("\n\n\ndef clamp",
                                                             "\n\n# next: clamp\ndef clamp")


@pytest.mark.parametrize("stage", [True, False])
def test_apply_fix_refuses_and_changes_nothing_when_it_conflicts(tmp_path, git_env, stage):
    repo = make_repo(tmp_path / "repo", git_env, hook=False)
    with_user_work(repo, git_env)
    rewritten = CALC_BUG.replace("(len(values) - 1)", "max(1, len(values))")
    git_dir, index, objects, patch = _red_staged(repo, git_env, rewritten)
    before = work_state(repo, git_env)
    with Snapshot.from_index(repo, index, objects) as snapshot, \
            pytest.raises(FixDoesNotApply, match="conflict"):
        apply_fix(repo, git_dir, index, snapshot, patch, stage=stage)
    assert work_state(repo, git_env) == before


def test_apply_fix_never_overwrites_an_untracked_file(tmp_path, git_env):
    from agent.edits import unified_diff

    repo = make_repo(tmp_path / "repo", git_env, hook=False)
    (repo / "helpers.py").write_text("# the user's own, untracked\n")
    before = work_state(repo, git_env)
    git_dir, index, objects = _locate(repo, git_env)
    patch = unified_diff({}, {"helpers.py": "def helper():\n    return 1\n"})
    with Snapshot.from_index(repo, index, objects) as snapshot, pytest.raises(FixDoesNotApply):
        apply_fix(repo, git_dir, index, snapshot, patch, stage=True)
    assert work_state(repo, git_env) == before


# -- committing through the hook (real sandbox, scripted model) -----------------------------


@pytest.mark.docker
def test_green_commit_passes_through_without_the_model(tmp_path, hook_env, openai_server):
    repo = make_repo(tmp_path / "repo", hook_env)
    with_user_work(repo, hook_env)
    # A partially staged file: the staged part is green, the unstaged part would be red.
    (repo / "calc.py").write_text(CALC_OK + "\n\ndef triple(value):\n    return 3 * value\n")
    git(repo, hook_env, "add", "calc.py")
    (repo / "calc.py").write_text(CALC_BUG + "\n\ndef triple(value):\n    return 3 * value\n")
    before = work_state(repo, hook_env)

    proc = commit(repo, hook_env)
    assert proc.returncode == 0, proc.stderr
    assert "tests pass" in proc.stderr
    assert openai_server.chat_requests == []
    after = work_state(repo, hook_env)
    assert after["head"] != before["head"]
    assert git(repo, hook_env, "show", "HEAD:calc.py").endswith("return 3 * value\n")
    assert "(len(values) - 1)" not in git(repo, hook_env, "show", "HEAD:calc.py")
    # The unstaged part of calc.py and everything else is exactly as it was.
    for key in ("files", "diff", "stash", "untracked"):
        assert after[key] == before[key], key
    assert after["cached"] == ""


@pytest.mark.docker
def test_red_commit_unattended_saves_the_fix_and_stops(tmp_path, hook_env, openai_server):
    repo = make_repo(tmp_path / "repo", hook_env)
    with_user_work(repo, hook_env)
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, hook_env, "add", "calc.py")
    (repo / "calc.py").write_text(CALC_BUG + "\n# unstaged comment\n")  # partially staged
    openai_server.script(FIX_ANSWER)
    before = work_state(repo, hook_env)

    proc = commit(repo, hook_env)
    assert proc.returncode == 1, proc.stderr
    assert "test_mean_of_two" in proc.stderr
    assert "commit stopped" in proc.stderr and "--no-verify" in proc.stderr
    [saved] = patch_files(repo)
    command = f"git apply {saved.relative_to(repo).as_posix()}"
    assert f"    {command}" in proc.stderr.splitlines()
    assert len(openai_server.chat_requests) == 1
    assert work_state(repo, hook_env) == before  # nothing of the user's work moved

    # The command it printed works and gives a green tree.
    (repo / "calc.py").write_text(CALC_BUG)
    subprocess.run(command.split(), cwd=repo, env=hook_env, check=True)
    assert (repo / "calc.py").read_text() == CALC_OK


@pytest.mark.docker
def test_advisory_mode_lets_the_commit_through(tmp_path, hook_env, openai_server):
    repo = make_repo(tmp_path / "repo", hook_env, {
        "calc.py": CALC_OK, "tests/test_calc.py": TESTS,
        ".mulligan.toml": HOOK_CONFIG + 'hook_mode = "advisory"\n'})
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, hook_env, "add", "calc.py")
    openai_server.script(FIX_ANSWER)
    proc = commit(repo, hook_env)
    assert proc.returncode == 0, proc.stderr
    assert "advisory" in proc.stderr
    assert len(patch_files(repo)) == 1
    assert "(len(values) - 1)" in git(repo, hook_env, "show", "HEAD:calc.py")


@pytest.mark.docker
def test_interactive_apply_and_stage_keeps_the_unstaged_part(tmp_path, hook_env,
                                                              openai_server):
    repo = make_repo(tmp_path / "repo", hook_env)
    with_user_work(repo, hook_env)
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, hook_env, "add", "calc.py")
    # Unstaged: a comment two lines below the buggy line, inside the fix's context, so
    # `git apply` refuses and the three-way merge has to do it.
    unstaged = CALC_BUG.replace('\n\n\ndef clamp', '\n\n# next: clamp\ndef clamp')
    (repo / "calc.py").write_text(unstaged)
    openai_server.script(FIX_ANSWER)
    before = work_state(repo, hook_env)
    calc_diff = git(repo, hook_env, "diff", "--", "calc.py")

    code, stderr, screen = drive_commit(repo, hook_env, b"a")
    assert code == 0, stderr + screen
    assert "test_mean_of_two" in screen
    assert "-    return sum(values) / (len(values) - 1)" in screen
    assert "applied and staged" in screen
    assert git(repo, hook_env, "show", "HEAD:calc.py") == CALC_OK
    after = work_state(repo, hook_env)
    # The working tree has the fix *and* the unstaged comment, still unstaged.
    assert (repo / "calc.py").read_text() == CALC_OK.replace('\n\n\ndef clamp',
                                                             '\n\n# next: clamp\ndef clamp')
    assert after["cached"] == ""
    assert _changes(git(repo, hook_env, "diff", "--", "calc.py")) == _changes(calc_diff) == \
        ["-", "+# next: clamp"]
    assert after["diff"].split("diff --git a/tests/")[1] == before["diff"].split(
        "diff --git a/tests/")[1]  # the unstaged edit of the test file
    for key in ("stash", "untracked"):
        assert after[key] == before[key], key
    assert after["files"]["tests/test_calc.py"] == before["files"]["tests/test_calc.py"]
    assert patch_files(repo) == []


@pytest.mark.docker
def test_interactive_abort_leaves_no_trace(tmp_path, hook_env, openai_server):
    repo = make_repo(tmp_path / "repo", hook_env)
    with_user_work(repo, hook_env)
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, hook_env, "add", "calc.py")
    (repo / "calc.py").write_text(CALC_BUG + "\n# unstaged\n")
    openai_server.script(FIX_ANSWER)
    before = work_state(repo, hook_env)
    git_dir_before = sorted(p.name for p in (repo / ".git").iterdir())

    code, stderr, screen = drive_commit(repo, hook_env, b"b")
    assert code == 1, stderr + screen
    assert "commit aborted; nothing was changed" in screen
    assert work_state(repo, hook_env) == before
    assert sorted(p.name for p in (repo / ".git").iterdir()) == git_dir_before


@pytest.mark.docker
def test_interactive_skip_commits_as_staged(tmp_path, hook_env, openai_server):
    repo = make_repo(tmp_path / "repo", hook_env)
    with_user_work(repo, hook_env)
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, hook_env, "add", "calc.py")
    openai_server.script(FIX_ANSWER)
    before = work_state(repo, hook_env)
    code, stderr, screen = drive_commit(repo, hook_env, b"s")
    assert code == 0, stderr + screen
    assert git(repo, hook_env, "show", "HEAD:calc.py") == CALC_BUG
    after = work_state(repo, hook_env)
    for key in ("files", "diff", "stash", "untracked"):
        assert after[key] == before[key], key
    assert patch_files(repo) == []


@pytest.mark.docker
def test_interactive_apply_without_staging_stops_the_commit(tmp_path, hook_env, openai_server):
    repo = make_repo(tmp_path / "repo", hook_env)
    with_user_work(repo, hook_env)
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, hook_env, "add", "calc.py")
    openai_server.script(FIX_ANSWER)
    before = work_state(repo, hook_env)
    code, stderr, screen = drive_commit(repo, hook_env, b"w")
    assert code == 1, stderr + screen
    assert "not staged" in screen
    after = work_state(repo, hook_env)
    assert after["head"] == before["head"] and after["cached"] == before["cached"]
    assert (repo / "calc.py").read_text() == CALC_OK
    assert git(repo, hook_env, "show", ":calc.py") == CALC_BUG
    for key in ("stash", "untracked"):
        assert after[key] == before[key], key


@pytest.mark.docker
def test_fix_conflicting_with_unstaged_edits_is_refused_and_saved(tmp_path, hook_env,
                                                                   openai_server):
    repo = make_repo(tmp_path / "repo", hook_env)
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, hook_env, "add", "calc.py")
    # The user is already rewriting the very line the fix changes.
    (repo / "calc.py").write_text(CALC_BUG.replace("(len(values) - 1)", "max(1, len(values))"))
    openai_server.script(FIX_ANSWER)
    before = work_state(repo, hook_env)

    code, stderr, screen = drive_commit(repo, hook_env, b"a")
    assert code == 1, stderr + screen
    assert "conflict with the fix" in screen and "nothing was changed" in screen
    [saved] = patch_files(repo)
    assert f"git apply {saved.relative_to(repo).as_posix()}" in screen
    assert work_state(repo, hook_env) == before


@pytest.mark.docker
def test_commit_all_and_commit_paths_test_what_they_commit(tmp_path, hook_env, openai_server):
    repo = make_repo(tmp_path / "repo", hook_env)
    # Staged: a green change. Working tree: red on top. A plain commit records the index.
    (repo / "calc.py").write_text(CALC_OK + "\n# staged\n")
    git(repo, hook_env, "add", "calc.py")
    (repo / "calc.py").write_text(CALC_BUG + "\n# staged\n")
    proc = commit(repo, hook_env)
    assert proc.returncode == 0, proc.stderr
    assert openai_server.chat_requests == []

    # `git commit -a` records the red working tree (a temporary index): caught, fixed, staged.
    openai_server.script(FIX_ANSWER)
    code, stderr, screen = drive_commit(repo, hook_env, b"a", "-a")
    assert code == 0, stderr + screen
    assert git(repo, hook_env, "show", "HEAD:calc.py") == CALC_OK + "\n# staged\n"
    assert git(repo, hook_env, "status", "--porcelain") == ""

    # `git commit <path>` with something else staged: only the path is committed, and the
    # fix lands in both the commit and the index git keeps afterwards.
    (repo / "notes.md").write_text("staged, not committed\n")
    git(repo, hook_env, "add", "notes.md")
    (repo / "calc.py").write_text(CALC_BUG)
    openai_server.script(FIX_ANSWER)
    code, stderr, screen = drive_commit(repo, hook_env, b"a", "calc.py")
    assert code == 0, stderr + screen
    assert git(repo, hook_env, "show", "HEAD:calc.py") == CALC_OK
    assert git(repo, hook_env, "status", "--porcelain") == "A  notes.md\n"


@pytest.mark.docker
def test_related_tests_only(tmp_path, hook_env, openai_server):
    other_tests = "def test_broken_elsewhere():\n    assert False\n"
    repo = make_repo(tmp_path / "repo", hook_env, {
        "calc.py": CALC_OK, "tests/test_calc.py": TESTS, "other.py": "X = 1\n",
        "tests/test_other.py": other_tests,
        ".mulligan.toml": HOOK_CONFIG + 'hook_tests = "related"\n'})
    (repo / "calc.py").write_text(CALC_OK + "\n# touched\n")
    git(repo, hook_env, "add", "calc.py")
    proc = commit(repo, hook_env)
    assert proc.returncode == 0, proc.stderr
    assert "related tests: tests/test_calc.py" in proc.stderr
    assert openai_server.chat_requests == []


@pytest.mark.docker
def test_merge_in_progress_is_not_in_the_way(tmp_path, hook_env, openai_server):
    repo = make_repo(tmp_path / "repo", hook_env)
    git(repo, hook_env, "checkout", "-q", "-b", "topic")
    (repo / "calc.py").write_text(CALC_OK + "\n# topic\n")
    git(repo, hook_env, "commit", "-q", "--no-verify", "-am", "topic")
    git(repo, hook_env, "checkout", "-q", "main")
    (repo / "calc.py").write_text(CALC_OK + "\n# main\n")
    git(repo, hook_env, "commit", "-q", "--no-verify", "-am", "main")
    merge = subprocess.run(["git", "merge", "topic"], cwd=repo, env=hook_env,
                           capture_output=True, text=True, check=False)
    assert merge.returncode != 0 and (repo / ".git" / "MERGE_HEAD").exists()
    (repo / "calc.py").write_text(CALC_BUG + "\n# main\n# topic\n")  # even a red resolution
    git(repo, hook_env, "add", "calc.py")
    (repo / "scratch.txt").write_text("untracked\n")
    proc = subprocess.run(["git", "commit", "--no-edit"], cwd=repo, env=hook_env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "merge is in progress" in proc.stderr
    assert len(git(repo, hook_env, "rev-parse", "HEAD^@").split()) == 2
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert (repo / "scratch.txt").read_text() == "untracked\n"
    assert openai_server.chat_requests == []


@pytest.mark.docker
def test_ctrl_c_during_the_tests_keeps_everything(tmp_path, hook_env, openai_server,
                                                  docker_client, docker_image):  # noqa: F811
    from sandbox.images import LAYER_REPO, detect_dependencies
    from sandbox.snapshot import Snapshot

    slow = TESTS + "\n\ndef test_slow():\n    import time\n    time.sleep(120)\n"
    # A requirements file no other repository has gives this repository's containers an
    # image of their own, so the containers it leaves behind (none) can be counted.
    repo = make_repo(tmp_path / "repo", hook_env, {
        "calc.py": CALC_OK, "tests/test_calc.py": slow, ".mulligan.toml": HOOK_CONFIG,
        "requirements.txt": f"# {os.urandom(8).hex()}\n"})
    with Snapshot.from_directory(repo) as snapshot:
        spec = detect_dependencies(snapshot)
    layer = f"{LAYER_REPO}:{spec.digest(docker_client.images.get(docker_image).id)}"
    with_user_work(repo, hook_env)
    (repo / "calc.py").write_text(CALC_OK + "\n# staged\n")
    git(repo, hook_env, "add", "calc.py")
    (repo / "calc.py").write_text(CALC_OK + "\n# staged\n# unstaged\n")
    before = work_state(repo, hook_env)

    since = int(time.time()) - 1
    proc = subprocess.Popen(["git", "commit", "-m", "x"], cwd=repo, env=hook_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        # Blocks until the container running the tests has started (or gives up).
        started = docker_client.events(
            decode=True, since=since, until=since + 240,
            filters={"type": "container", "event": "start", "image": layer})
        assert next(iter(started), None) is not None, "the sandbox container never started"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        _, stderr = proc.communicate(timeout=120)  # EOF on both pipes: the hook exited too
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    try:
        assert proc.returncode != 0
        assert b"mulligan: interrupted; nothing was changed" in stderr
        assert work_state(repo, hook_env) == before
        assert docker_client.containers.list(all=True, filters={"ancestor": layer}) == []
        assert openai_server.chat_requests == []
    finally:
        docker_client.images.remove(layer, force=True)


@pytest.mark.docker
def test_unreachable_model_stops_the_commit_and_keeps_the_work(tmp_path, hook_env):
    repo = make_repo(tmp_path / "repo", hook_env)
    with_user_work(repo, hook_env)
    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, hook_env, "add", "calc.py")
    before = work_state(repo, hook_env)
    env = {**hook_env, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}  # nothing listens there
    proc = commit(repo, env)
    assert proc.returncode == 1
    assert "mulligan hook error" in proc.stderr and "nothing was changed" in proc.stderr
    assert work_state(repo, hook_env) == before
    assert patch_files(repo) == []


# -- the pre-commit framework ----------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.timeout(900)  # pre-commit builds a virtualenv with Mulligan's dependencies
def test_pre_commit_framework_try_repo(tmp_path, hook_env, openai_server):
    pytest.importorskip("pre_commit", reason="pre-commit is a dev extra")
    # `try-repo` only sees committed or tracked files of a local repository, so the hook
    # repository is a commit of this checkout (tracked and new files) made in tmp_path.
    source = tmp_path / "mulligan-src"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)
    git(source, hook_env, "init", "-q")
    git(source, hook_env, "add", "-A")
    git(source, hook_env, "commit", "-q", "--no-verify", "-m", "mulligan")

    repo = make_repo(tmp_path / "repo", hook_env, hook=False)
    env = {**hook_env, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    (repo / "calc.py").write_text(CALC_OK + "\n# green\n")
    git(repo, env, "add", "calc.py")
    green = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(source),
                            "mulligan", "--verbose"], cwd=repo, env=env, capture_output=True,
                           text=True, timeout=900, check=False)
    assert green.returncode == 0, green.stdout + green.stderr
    assert "tests pass" in green.stdout

    (repo / "calc.py").write_text(CALC_BUG)
    git(repo, env, "add", "calc.py")
    openai_server.script(FIX_ANSWER)
    before = work_state(repo, env)
    red = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(source),
                          "mulligan", "--verbose"], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=900, check=False)
    assert red.returncode == 1, red.stdout + red.stderr
    [saved] = patch_files(repo)
    assert f"git apply {saved.relative_to(repo).as_posix()}" in red.stdout
    assert work_state(repo, env) == before
