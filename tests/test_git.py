"""sandbox/git.py: the one way Mulligan runs git."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import git
from sandbox.errors import SandboxError


def make_repo(path: Path) -> Path:
    env = git.clean_env()
    git.run(["init", "-q", str(path)], env=env, check=True)
    (path / "a.txt").write_text("a\n")
    git.run(["add", "a.txt"], cwd=path, env=env, check=True)
    git.run(["commit", "-q", "-m", "one"], cwd=path, env=env, check=True)
    return path


def test_run_gives_git_exactly_the_environment_it_is_given(tmp_path: Path, monkeypatch) -> None:
    repo = make_repo(tmp_path / "repo")
    elsewhere = make_repo(tmp_path / "elsewhere")
    # Inside a git hook GIT_DIR points at the user's repository: a command given a clean
    # environment must not see it (gitpython's own runner would merge it back in).
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    top = git.run(["rev-parse", "--show-toplevel"], cwd=repo, env=git.clean_env(), check=True)
    assert Path(top.text.strip()) == repo.resolve()
    inherited = git.run(["rev-parse", "--absolute-git-dir"], cwd=repo, check=True)
    assert Path(inherited.text.strip()) == (elsewhere / ".git").resolve()
    assert "GIT_DIR" not in git.clean_env() and git.clean_env(GIT_DIR="x")["GIT_DIR"] == "x"


def test_input_goes_to_stdin_and_failures_carry_git_s_reason(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    blob = git.run(["hash-object", "--stdin"], cwd=repo, input="hello\n", check=True)
    assert blob.text.strip() == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git.run(["cat-file", "-p", "HEAD:a.txt"], cwd=repo).stdout == b"a\n"
    failed = git.run(["cat-file", "-p", "HEAD:missing.txt"], cwd=repo)
    assert not failed.ok and "missing.txt" in failed.last_line()
    with pytest.raises(git.GitFailed) as caught:
        git.run(["cat-file", "-p", "HEAD:missing.txt"], cwd=repo, check=True)
    assert isinstance(caught.value, SandboxError)
    message = str(caught.value)
    assert message.startswith("git cat-file failed: ") and "missing.txt" in message


def test_find_repo_searches_upward_and_sees_linked_worktrees(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    assert Path(git.find_repo(repo / "sub").working_tree_dir) == repo.resolve()
    git.run(["worktree", "add", "-q", str(tmp_path / "linked")], cwd=repo,
            env=git.clean_env(), check=True)
    linked = git.find_repo(tmp_path / "linked")
    assert Path(linked.working_tree_dir) == (tmp_path / "linked").resolve()
    assert git.find_repo(tmp_path / "nowhere") is None
    assert git.find_repo(tmp_path) is None
