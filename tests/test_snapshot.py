"""Workspace snapshots (no Docker): what goes in, what stays out, and the user's repository
left exactly as it was."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

import sandbox.snapshot as snapshot_module
from sandbox.errors import SnapshotError
from sandbox.snapshot import PatchDoesNotApply, Snapshot
from tests.support.sandbox_env import make_patch, tree_digest

GIT_ENV = {"GIT_AUTHOR_NAME": "User", "GIT_AUTHOR_EMAIL": "user@example.com",
           "GIT_COMMITTER_NAME": "User", "GIT_COMMITTER_EMAIL": "user@example.com",
           "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_ENV)
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's directory for this test alone, so leftovers can be listed exactly."""
    tmp = tmp_path / "private-tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.fixture
def repo(tmp_path):
    """A user's repository in the middle of work: committed files, a staged change, an
    unstaged change, a deleted file, untracked and ignored files, and a stash entry."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root, {
        "pkg/__init__.py": "",
        "pkg/core.py": "def f():\n    return 1\n",
        "pkg/gone.py": "X = 1\n",
        "tests/test_core.py": "from pkg.core import f\n\n\ndef test_f():\n    assert f() == 1\n",
        ".gitignore": "*.log\nbuild/\n.env\n",
        "sub/.gitignore": "local.cfg\n",
        "sub/mod.py": "Y = 2\n",
        "stashed.txt": "original\n",
    })
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    os.symlink("pkg/core.py", root / "core-link.py")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    # A stash entry.
    (root / "stashed.txt").write_text("stashed change\n")
    git(root, "stash", "-q")
    # Staged, then changed again in the working tree: the working tree is what counts.
    (root / "pkg/core.py").write_text("def f():\n    return 2\n")
    git(root, "add", "pkg/core.py")
    (root / "pkg/core.py").write_text("def f():\n    return 3\n")
    (root / "pkg/gone.py").unlink()
    write(root, {
        "pkg/new.py": "Z = 3\n",  # untracked, not ignored
        "debug.log": "ignored\n",
        "build/out.txt": "ignored\n",
        ".env": "OPENAI_API_KEY=sk-do-not-ship\n",
        "sub/local.cfg": "ignored by sub/.gitignore\n",
        "excluded.txt": "ignored by .git/info/exclude\n",
    })
    (root / ".git/info").mkdir(exist_ok=True)
    (root / ".git/info/exclude").write_text("excluded.txt\n")
    return root


def repo_state(root: Path) -> dict:
    """Every byte under the repository (.git included), then git's own view of it (read
    with --no-optional-locks, so that looking does not refresh the index)."""
    index = root / ".git" / "index"
    state = {"tree": tree_digest(root), "index_mtime": index.stat().st_mtime_ns}
    state["status"] = git(root, "--no-optional-locks", "status", "--porcelain=v1",
                          "--untracked-files=all")
    state["stash"] = git(root, "--no-optional-locks", "stash", "list")
    state["head"] = git(root, "rev-parse", "HEAD")
    return state


def test_working_tree_untracked_included_ignored_excluded(repo):
    with Snapshot.from_directory(repo) as snap:
        paths = set(snap.paths())
        text = snap.text_files()
    assert paths == {
        ".gitignore", "core-link.py", "pkg/__init__.py", "pkg/core.py", "pkg/new.py",
        "run.sh", "stashed.txt", "sub/.gitignore", "sub/mod.py", "tests/test_core.py",
    }
    assert text["pkg/core.py"] == "def f():\n    return 3\n"  # the working tree, not the index
    assert text["stashed.txt"] == "original\n"  # the stash is not applied
    assert "core-link.py" not in text  # symlinks are not text for the model
    assert not any("sk-do-not-ship" in t for t in text.values())


def test_racily_clean_file_is_read_from_the_working_tree(tmp_path):
    """A file rewritten, same size, in the second it was staged has the stat data git
    recorded: only the index's own mtime (not older than the file's) tells git to re-hash
    it. The snapshot's copy of the index must keep that mtime."""
    root = tmp_path / "racy"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    core = root / "core.py"
    past = 1_600_000_000 * 10**9
    core.write_text("X = 2\n")
    os.utime(core, ns=(past, past))
    git(root, "add", "core.py")
    core.write_text("X = 3\n")  # same size; mtime set back to what the index recorded
    os.utime(core, ns=(past, past))
    index = root / ".git" / "index"
    os.utime(index, ns=(past, past))  # as if git wrote the index in that same second
    assert git(root, "--no-optional-locks", "status", "--porcelain").strip() == "AM core.py"
    with Snapshot.from_directory(root) as snap:
        assert snap.text_files()["core.py"] == "X = 3\n"


def test_users_repository_is_byte_identical(repo, private_tmp):
    before = repo_state(repo)
    with Snapshot.from_directory(repo) as snap:
        old = snap.text_files()
        good = make_patch({"pkg/core.py": old["pkg/core.py"]},
                          {"pkg/core.py": "def f():\n    return 4\n", "pkg/extra.py": "E = 5\n"})
        tree = snap.apply(good)
        assert snap.text_files(tree)["pkg/core.py"] == "def f():\n    return 4\n"
        with pytest.raises(PatchDoesNotApply):
            snap.apply(make_patch({"pkg/core.py": "nope\n"}, {"pkg/core.py": "x\n"}))
        snap.tar(tree)
        snap.materialize(private_tmp / "out", tree)
        Snapshot.from_directory(repo).close()  # a second snapshot reuses the stat cache
    assert repo_state(repo) == before


def test_snapshot_of_a_subfolder(repo):
    with Snapshot.from_directory(repo / "sub") as snap:
        assert set(snap.paths()) == {".gitignore", "mod.py"}


def test_subfolder_honours_the_repositorys_ignore_rules(repo):
    """A subfolder of a repository is still inside it: files the repository ignores (a
    virtualenv, build output, an .env with secrets) must not enter the snapshot."""
    write(repo, {"sub/build/big.bin": "x\n", "sub/trace.log": "log\n",
                 "sub/.env": "OPENAI_API_KEY=sk-do-not-ship\n"})
    with Snapshot.from_directory(repo / "sub") as snap:
        assert set(snap.paths()) == {".gitignore", "mod.py"}


def test_plain_directory_without_git(tmp_path):
    write(tmp_path, {"a.py": "A = 1\n", "d/b.py": "B = 2\n"})
    with Snapshot.from_directory(tmp_path) as snap:
        assert set(snap.paths()) == {"a.py", "d/b.py"}
    assert not (tmp_path / ".git").exists()


def test_git_worktree(repo, tmp_path):
    """A `git worktree add` checkout: its objects live in the main repository's common dir."""
    other = tmp_path / "worktree"
    git(repo, "worktree", "add", "-q", str(other), "-b", "feature")
    # An established checkout: files older than its index, whose stat cache is valid, so
    # git does not hash them again (their blobs exist only in the shared object store).
    past = time.time() - 3600
    for path in other.rglob("*"):
        if ".git" not in path.parts and not path.is_symlink():
            os.utime(path, (past, past))
    git(other, "status", "--porcelain")  # refreshes the worktree's index
    (other / "pkg/core.py").write_text("def f():\n    return 9\n")
    with Snapshot.from_directory(other) as snap:
        assert snap.text_files()["pkg/core.py"] == "def f():\n    return 9\n"
        assert "pkg/gone.py" in snap.paths()  # committed; deleted only in the main tree


def test_tar_keeps_modes_and_symlinks(repo):
    with Snapshot.from_directory(repo) as snap:
        data = snap.tar()
        patch = ("diff --git a/run.sh b/run.sh\nold mode 100755\nnew mode 100644\n"
                 "diff --git a/pkg/core.py b/pkg/core.py\nold mode 100644\nnew mode 100755\n"
                 "diff --git a/abs-link b/abs-link\nnew file mode 120000\n--- /dev/null\n"
                 "+++ b/abs-link\n@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n")
        changed = snap.tar(snap.apply(patch))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["run.sh"].mode & 0o777 == 0o755
        assert members["pkg/core.py"].mode & 0o777 == 0o644
        assert members["core-link.py"].issym()
        assert members["core-link.py"].linkname == "pkg/core.py"
        assert all(m.uid == 1000 and m.gid == 1000 for m in members.values())
        assert tar.extractfile("run.sh").read() == b"#!/bin/sh\necho hi\n"
    with tarfile.open(fileobj=io.BytesIO(changed)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["run.sh"].mode & 0o777 == 0o644
        assert members["pkg/core.py"].mode & 0o777 == 0o755
        assert members["abs-link"].issym() and members["abs-link"].linkname == "/etc/passwd"


def test_materialize_keeps_modes_and_symlinks(repo, tmp_path):
    with Snapshot.from_directory(repo) as snap:
        out = snap.materialize(tmp_path / "out")
    assert os.access(out / "run.sh", os.X_OK)
    assert not os.access(out / "pkg/core.py", os.X_OK)
    assert os.readlink(out / "core-link.py") == "pkg/core.py"


def test_patch_errors_carry_gits_message(repo):
    with Snapshot.from_directory(repo) as snap:
        current = snap.text_files()["pkg/core.py"]
        with pytest.raises(PatchDoesNotApply) as wrong_context:
            snap.apply(make_patch({"pkg/core.py": "def f():\n    return 7\n"},
                                  {"pkg/core.py": "def f():\n    return 8\n"}))
        assert "pkg/core.py" in str(wrong_context.value)
        assert "patch does not apply" in str(wrong_context.value)
        with pytest.raises(PatchDoesNotApply) as missing:
            snap.apply(make_patch({"pkg/missing.py": "A\n"}, {"pkg/missing.py": "B\n"}))
        assert "pkg/missing.py" in str(missing.value)
        with pytest.raises(PatchDoesNotApply) as exists:
            snap.apply(make_patch({}, {"pkg/new.py": "again\n"}))
        assert "already exists" in str(exists.value)
        with pytest.raises(PatchDoesNotApply) as garbage:
            snap.apply("this is not a diff\n@@ nonsense @@\n")
        assert str(garbage.value)
        with pytest.raises(PatchDoesNotApply):
            snap.apply("--- a/pkg/core.py\n+++ b/pkg/core.py\n@@ -1,2 +1,2 @@\n-broken\n")
        # Nothing half-applied: the snapshot is unchanged and still applies good patches.
        assert snap.text_files()["pkg/core.py"] == current
        assert snap.apply("") == snap.tree
        assert snap.apply("  \n") == snap.tree
        tree = snap.apply(make_patch({"pkg/core.py": current}, {"pkg/core.py": "ok\n"}))
        assert tree != snap.tree
        assert not list(snap._store.glob("index-*"))  # temporary indexes removed


def test_from_files_and_text_filtering():
    files = {"a.py": "A = 1\n", "blob.bin": b"\x00\x01\x02", "latin.txt": b"caf\xe9\n",
             "big.txt": "x" * ((1 << 20) + 1), "d/e.py": "E = 1\n"}
    with Snapshot.from_files(files) as snap:
        assert snap.origin is None
        assert set(snap.paths()) == set(files)
        assert set(snap.text_files()) == {"a.py", "d/e.py"}
        blobs = snap.read_blobs(snap.entries())
        assert blobs["blob.bin"] == b"\x00\x01\x02"
        assert blobs["latin.txt"] == b"caf\xe9\n"


def test_not_a_directory(tmp_path):
    with pytest.raises(SnapshotError):
        Snapshot.from_directory(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SnapshotError):
        Snapshot.from_directory(tmp_path / "file")


def test_temporary_store_removed_on_close_and_on_failure(repo, private_tmp, monkeypatch):
    snap = Snapshot.from_directory(repo)
    store = snap._store
    assert store.is_dir() and store.parent == private_tmp
    snap.close()
    assert not store.exists()
    with Snapshot.from_files({"a.py": "A = 1\n"}):
        pass
    assert list(private_tmp.iterdir()) == []

    real_git = snapshot_module._git

    def failing_git(args, env, cwd=None):
        if args[0] == "write-tree":
            raise SnapshotError("git write-tree failed: simulated")
        return real_git(args, env, cwd)

    monkeypatch.setattr(snapshot_module, "_git", failing_git)
    with pytest.raises(SnapshotError):
        Snapshot.from_directory(repo)
    with pytest.raises(SnapshotError):
        Snapshot.from_files({"a.py": "A = 1\n"})
    assert list(private_tmp.iterdir()) == []
