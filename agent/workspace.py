"""The user's working tree: where it is, what a patch would change in it, and the only place
that writes to it (applying an accepted patch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.errors import NotARepository, WorkspaceError, WorktreeChanged
from sandbox import git
from sandbox.diff import ChangeKind, FileChange, diff_paths, file_changes
from sandbox.snapshot import Snapshot


def find_repo_root(path: Path) -> Path:
    """The top of the git checkout holding `path` (a folder or a file); WorkspaceError that
    says what to do when there is none."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WorkspaceError(f"{path} does not exist")
    try:
        repo = git.find_repo(path if path.is_dir() else path.parent)
    except git.GitMissing as exc:
        raise WorkspaceError(str(exc)) from None
    if repo is None:
        raise NotARepository(f"{path.resolve()} is not inside a git repository "
                             "(run `git init` first)")
    if repo.working_tree_dir is None:
        raise WorkspaceError(f"{path} is a bare repository: run mulligan in a checkout")
    return Path(repo.working_tree_dir).resolve()


def tree_of(repo: Path) -> str:
    with Snapshot.from_directory(repo) as snap:
        return snap.tree


def apply_to_worktree(repo: Path, patch: str, snapshot_tree: str) -> list[str]:
    """Apply `patch` to the working tree (not the index); refuse if the files changed since
    the snapshot the patch was made against. Returns the paths it changed."""
    if tree_of(repo) != snapshot_tree:
        raise WorktreeChanged("the working tree changed since the run's snapshot; not applying "
                             "(save the patch with --patch-out and apply it yourself)")
    check = git.run(["apply", "--check", "-"], input=patch.encode(), cwd=repo)
    if not check.ok:
        raise WorkspaceError(f"the patch does not apply: {check.last_line()}")
    git.run(["apply", "-"], input=patch.encode(), cwd=repo, check=True)
    return changed_paths(patch)


def changed_paths(patch: str) -> list[str]:
    return diff_paths(patch)


def describe_changes(patch: str, paths: Sequence[str] | None = None) -> list[FileChange]:
    """Per-file line counts of a patch, for the user deciding whether to apply it; `paths`
    (from changed_paths) adds any file the diff names that could not be read."""
    files = file_changes(patch)
    named = {p for change in files for p in change.paths}
    return files + [FileChange(p, ChangeKind.MODIFIED, 0, 0) for p in paths or () if p not in named]
