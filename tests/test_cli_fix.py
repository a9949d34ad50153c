"""`mulligan fix` as a subprocess: the --json contract, exit codes, error lines, --apply,
--patch-out, and that a run never touches the user's working tree, index or untracked files.

The model is the scripted OpenAI-compatible server over real HTTP; the sandbox is real
Docker (except for the configuration errors that end before any sandbox is needed).
"""

# ruff: noqa: F811 - the fixtures imported from tests.support.sandbox_env are parameters
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.sandbox_env import docker_image, tree_digest  # noqa: F401

MODEL = "test-model"
ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost",
           "GIT_CONFIG_NOSYSTEM": "1"}
BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TESTS = ("from calc import add\n\n\ndef test_add():\n    assert add(3, 3) == 6\n\n\n"
         "def test_zero():\n    assert add(0, 0) == 0\n")
JSON_KEYS = {"status", "patch", "candidates", "totals"}


def sr(path: str, search: str, replace: str) -> str:
    return (f"{path}\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n"
            ">>>>>>> REPLACE\n```\n")


RIGHT = sr("calc.py", "    return a - b", "    return a + b")
WRONG = sr("calc.py", "    return a - b", "    return a * b")


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True, env=GIT_ENV)
    return proc.stdout


def make_repo(root: Path, calc: str = BUGGY) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "calc.py").write_text(calc)
    (root / "tests" / "test_calc.py").write_text(TESTS)
    (root / "README.md").write_text("calc\n")
    (root / ".gitignore").write_text("*.log\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def dirty(repo: Path) -> None:
    """Make the index differ from HEAD and the working tree differ from the index, and add
    untracked and ignored files: a run must leave all of that exactly as it is."""
    (repo / "notes.txt").write_text("staged note\n")
    git(repo, "add", "notes.txt")
    (repo / "README.md").write_text("calc, edited but not staged\n")
    (repo / "scratch.py").write_text("# untracked\n")
    (repo / "debug.log").write_text("ignored\n")


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MULLIGAN_"))}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update(MULLIGAN_HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               TMPDIR=str(tmp_path / "tmp"), PYTHONUNBUFFERED="1")
    return env


def fix(tmp_path: Path, repo: Path, *args: str, base_url: str | None = None,
        image: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "agent.frontends.cli", "fix", str(repo), "--model", MODEL,
           "--workers", "2", "--timeout", "60", *args]
    if base_url is not None:
        cmd += ["--base-url", base_url]
    if image is not None:
        cmd += ["--image", image]
    return subprocess.run(cmd, cwd=ROOT, env=env_for(tmp_path), capture_output=True,
                          text=True, timeout=timeout, check=False)


def one_json_object(stdout: str) -> dict:
    """stdout holds exactly one JSON object and nothing else."""
    obj, end = json.JSONDecoder().raw_decode(stdout.lstrip())
    assert stdout.lstrip()[end:].strip() == "", f"more than one JSON value on stdout: {stdout!r}"
    assert isinstance(obj, dict)
    return obj


def assert_one_error_line(stderr: str, *needles: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("mulligan: error:")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- solved ----------------------------------------------------------------------------------


def test_json_solved_with_patch_out_leaves_worktree_index_and_untracked_files_alone(
        tmp_path, openai_server, docker_image):
    repo = make_repo(tmp_path / "repo")
    dirty(repo)
    before = tree_digest(repo)
    patch_out = tmp_path / "fix.patch"
    openai_server.script(WRONG, RIGHT)

    # narrow: the first answer is tested alone, then the second (a fixed verdict order)
    proc = fix(tmp_path, repo, "--json", "--candidates", "2", "--rounds", "1", "--patch-out",
               str(patch_out), "--schedule", "narrow", base_url=openai_server.base_url,
               image=docker_image)

    assert proc.returncode == 0, proc.stderr
    out = one_json_object(proc.stdout)
    assert JSON_KEYS <= out.keys()
    assert out["status"] == "solved"
    assert out["patch"] and "+    return a + b" in out["patch"]
    assert [c["state"] for c in out["candidates"]] == ["failed", "passed"]
    assert out["totals"]["tokens"] > 0 and out["totals"]["sandbox_seconds"] > 0
    # progress is on stderr only
    assert "baseline: 1 failing" in proc.stderr and "solved" in proc.stderr
    assert "baseline" not in proc.stdout and "round 1" not in proc.stdout
    # byte-identical: tracked, staged, unstaged, untracked and ignored files, and .git
    assert tree_digest(repo) == before
    assert patch_out.read_text() == out["patch"]
    check = subprocess.run(["git", "apply", "--check", str(patch_out)], cwd=repo,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def test_apply_writes_the_patch_to_the_worktree_only(tmp_path, openai_server, docker_image):
    repo = make_repo(tmp_path / "repo")
    dirty(repo)
    index = digest(repo / ".git" / "index")
    openai_server.script(RIGHT)

    proc = fix(tmp_path, repo, "--json", "--apply", "--candidates", "1", "--rounds", "1",
               base_url=openai_server.base_url, image=docker_image)

    assert proc.returncode == 0, proc.stderr
    assert one_json_object(proc.stdout)["status"] == "solved"
    assert "applied to the working tree: calc.py" in proc.stderr
    assert (repo / "calc.py").read_text() == FIXED
    assert digest(repo / ".git" / "index") == index  # not staged
    assert (repo / "README.md").read_text() == "calc, edited but not staged\n"
    assert (repo / "scratch.py").read_text() == "# untracked\n"
    assert git(repo, "diff", "--cached", "--name-only").split() == ["notes.txt"]


def test_apply_refuses_when_the_tree_changed_during_the_run(tmp_path, openai_server,
                                                           docker_image):
    repo = make_repo(tmp_path / "repo")
    patch_out = tmp_path / "fix.patch"

    def user_edits_then_answer(body: dict) -> str:
        # the user keeps working while the run is in progress (after the snapshot)
        (repo / "README.md").write_text("calc, edited during the run\n")
        return RIGHT

    openai_server.script(user_edits_then_answer)

    proc = fix(tmp_path, repo, "--json", "--apply", "--patch-out", str(patch_out),
               "--candidates", "1", "--rounds", "1", base_url=openai_server.base_url,
               image=docker_image)

    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, "working tree changed")
    assert (repo / "calc.py").read_text() == BUGGY  # not applied
    assert (repo / "README.md").read_text() == "calc, edited during the run\n"
    out = one_json_object(proc.stdout)
    assert out["status"] == "solved" and "working tree changed" in out["error"]
    assert patch_out.read_text() == out["patch"]  # the patch is not lost


# -- unsolved and nothing to fix ---------------------------------------------------------------


def test_unsolved_exits_1_with_the_best_partial_and_apply_does_nothing(
        tmp_path, openai_server, docker_image):
    repo = make_repo(tmp_path / "repo")
    before = tree_digest(repo)
    openai_server.script(WRONG)

    proc = fix(tmp_path, repo, "--json", "--apply", "--candidates", "1", "--rounds", "1",
               "--mutants", "0",  # the one-token fix of `a - b` would be found
               base_url=openai_server.base_url, image=docker_image)

    assert proc.returncode == 1, proc.stderr
    out = one_json_object(proc.stdout)
    assert out["status"] == "unsolved"
    assert out["patch"] and "+    return a * b" in out["patch"]  # the best partial
    assert out["candidates"][0]["state"] == "failed"
    assert "applied" not in proc.stderr
    assert tree_digest(repo) == before


def test_nothing_failing_and_no_issue_exits_0_with_nothing_to_fix(tmp_path, openai_server,
                                                                 docker_image):
    repo = make_repo(tmp_path / "repo", calc=FIXED)
    proc = fix(tmp_path, repo, "--json", base_url=openai_server.base_url, image=docker_image)
    assert proc.returncode == 0, proc.stderr
    out = one_json_object(proc.stdout)
    assert out["status"] == "nothing_to_fix"
    assert out["patch"] is None and out["candidates"] == []
    assert openai_server.chat_requests == []


# -- configuration errors: exit 2, one line, no traceback -------------------------------------


def test_not_a_git_repository(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    proc = fix(tmp_path, plain, "--json", base_url="http://127.0.0.1:9/v1")
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, "not inside a git repository")
    out = one_json_object(proc.stdout)
    assert out["status"] == "error" and "git" in out["error"]


def test_zero_candidates_is_a_config_error(tmp_path):
    repo = make_repo(tmp_path / "repo")
    before = tree_digest(repo)
    proc = fix(tmp_path, repo, "--json", "--candidates", "0", base_url="http://127.0.0.1:9/v1")
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, "candidates")
    assert one_json_object(proc.stdout)["status"] == "error"
    proc = fix(tmp_path, repo, "--candidates", "0", base_url="http://127.0.0.1:9/v1")
    assert proc.returncode == 2 and proc.stdout == ""  # without --json: nothing on stdout
    assert_one_error_line(proc.stderr, "candidates")
    assert tree_digest(repo) == before


def test_an_unreachable_model_is_a_config_error(tmp_path, docker_image):
    repo = make_repo(tmp_path / "repo")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = fix(tmp_path, repo, "--json", "--candidates", "1", "--rounds", "1",
               base_url=f"http://127.0.0.1:{port}/v1", image=docker_image)
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, "cannot reach the model server", str(port))
    out = one_json_object(proc.stdout)
    assert out["status"] == "error" and "cannot reach" in out["error"]
    assert not list((tmp_path / "tmp").glob("mulligan-*"))  # temp dirs removed


@pytest.mark.parametrize("args", [["--resume", "no-such-run"],
                                  ["--issue-file", "/nonexistent/issue.md"]])
def test_other_bad_arguments_are_one_line_errors(tmp_path, args):
    repo = make_repo(tmp_path / "repo")
    proc = fix(tmp_path, repo, "--json", *args, base_url="http://127.0.0.1:9/v1")
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr)
    assert one_json_object(proc.stdout)["status"] == "error"
