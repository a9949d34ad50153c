"""sandbox.diff on patches git itself writes, and on the sloppy ones models write."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandbox.diff import (
    ChangeKind,
    DiffStats,
    FileChange,
    diff_paths,
    diff_stats,
    file_changes,
    normalize_diff,
    parse_patch,
    unified_diff,
)

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "keep.py").write_text("a = 1\nb = 2\nc = 3\n")
    (tmp_path / "gone.py").write_text("x = 1\ny = 2\n")
    (tmp_path / "old name.py").write_text("".join(f"line {i}\n" for i in range(20)))
    (tmp_path / "tail.txt").write_text("one\ntwo\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "base")
    return tmp_path


def git_patch(repo: Path) -> str:
    """Edit every kind of change into the work tree; what `git diff` says about it."""
    (repo / "keep.py").write_text("a = 1\nb = 20\nc = 3\nd = 4\n")
    (repo / "gone.py").unlink()
    (repo / "old name.py").rename(repo / "new name.py")
    (repo / "new name.py").write_text("".join(f"line {i}\n" for i in range(20)) + "line 20\n")
    (repo / "tail.txt").write_text("one\ntwo\nthree")  # no newline at the end
    (repo / "pkg").mkdir()
    (repo / "pkg" / "fresh.py").write_text("def f():\n    return 1\n")
    git(repo, "add", "-A")
    return git(repo, "diff", "--cached", "-M")


def test_file_changes_of_a_git_patch(repo: Path) -> None:
    changes = file_changes(git_patch(repo))
    assert changes == [
        FileChange("gone.py", ChangeKind.DELETED, 0, 2),
        FileChange("keep.py", ChangeKind.MODIFIED, 2, 1),
        FileChange("new name.py", ChangeKind.RENAMED, 1, 0),
        FileChange("pkg/fresh.py", ChangeKind.ADDED, 2, 0),
        FileChange("tail.txt", ChangeKind.MODIFIED, 1, 0),
    ]
    renamed = changes[2]
    assert renamed.old_path == "old name.py" and renamed.paths == ("old name.py", "new name.py")


def test_paths_and_stats_of_a_git_patch(repo: Path) -> None:
    patch = git_patch(repo)
    assert diff_paths(patch) == ["gone.py", "keep.py", "old name.py", "new name.py",
                                 "pkg/fresh.py", "tail.txt"]
    assert diff_stats(patch) == DiffStats(files=5, added=6, removed=3)
    files, added, removed = diff_stats(patch)
    assert (files, added, removed) == (5, 6, 3)


def test_removed_lines_that_look_like_headers_are_not_files(repo: Path) -> None:
    (repo / "keep.py").write_text("-- a comment\n++ b\nc = 3\n")
    git(repo, "commit", "-qam", "odd lines")
    (repo / "keep.py").write_text("c = 3\n")
    patch = git(repo, "diff")
    assert "\n--- a comment\n" in patch  # the removed line reads like a file header
    assert diff_paths(patch) == ["keep.py"]
    assert diff_stats(patch) == DiffStats(1, 0, 2)


def test_unified_diff_round_trips_through_git_apply(repo: Path) -> None:
    old = {"keep.py": "a = 1\nb = 2\nc = 3\n", "gone.py": "x = 1\ny = 2\n",
           "tail.txt": "one\ntwo\n"}
    new = {"keep.py": "a = 1\nb = 2\n", "tail.txt": "one\ntwo\nthree",
           "dir x/ñ.py": "z = 1\n", "empty.txt": ""}
    patch = unified_diff(old, new)
    subprocess.run(["git", "apply", "-"], cwd=repo, env=GIT_ENV, input=patch.encode(),
                   check=True, capture_output=True)
    for path, text in new.items():
        assert (repo / path).read_text() == text
    assert not (repo / "gone.py").exists()
    assert set(diff_paths(patch)) == {"keep.py", "gone.py", "tail.txt", "dir x/ñ.py",
                                      "empty.txt"}
    kinds = {c.path: c.kind for c in file_changes(patch)}
    assert kinds == {"dir x/ñ.py": "added", "empty.txt": "added", "gone.py": "deleted",
                     "keep.py": "modified", "tail.txt": "modified"}
    assert unified_diff(old, old) == ""


def test_a_sloppy_patch_is_read_leniently() -> None:
    sloppy = ("--- a/pkg/foo.py\n+++ b/pkg/foo.py\n@@ -1,9 +1,9 @@\n-a\n+b\n+c\n"
              "--- /dev/null\n+++ b/pkg/new.py\n@@ -0,0 +1,5 @@\n+x\n")
    assert parse_patch(sloppy) is None
    assert file_changes(sloppy) == [FileChange("pkg/foo.py", ChangeKind.MODIFIED, 2, 1),
                                    FileChange("pkg/new.py", ChangeKind.ADDED, 1, 0)]
    assert diff_paths("") == [] and diff_stats("") == DiffStats(0, 0, 0)
    assert file_changes("not a diff at all\n") == []


def test_normalize_diff_equates_the_same_change_at_other_lines() -> None:
    base = "".join(f"l{i}\n" for i in range(10))
    one = unified_diff({"a.py": base}, {"a.py": base.replace("l5", "L5")})
    shifted = "".join(f"top{i}\n" for i in range(10)) + base
    two = unified_diff({"a.py": shifted}, {"a.py": shifted.replace("l5", "L5")})
    assert one != two and normalize_diff(one) == normalize_diff(two)
    noisy = one.replace("\n+L5\n", "\n+L5   \n").replace("diff --git a/a.py b/a.py\n",
                                                        "diff --git a/a.py b/a.py\nindex 1..2\n")
    assert normalize_diff(noisy) == normalize_diff(one)
    other = unified_diff({"a.py": base}, {"a.py": base.replace("l5", "M5")})
    assert normalize_diff(other) != normalize_diff(one)
    assert normalize_diff("") == ""
