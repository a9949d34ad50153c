"""The only place that writes to the user's working tree: applying an accepted patch."""

from __future__ import annotations

import subprocess
from pathlib import Path

from agent.errors import WorkspaceError, WorktreeChanged
from sandbox.snapshot import Snapshot


def tree_of(repo: Path) -> str:
    with Snapshot.from_directory(repo) as snap:
        return snap.tree


def apply_to_worktree(repo: Path, patch: str, snapshot_tree: str) -> list[str]:
    """Apply `patch` to the working tree (not the index); refuse if the files changed since
    the snapshot the patch was made against. Returns the paths it changed."""
    if tree_of(repo) != snapshot_tree:
        raise WorktreeChanged("the working tree changed since the run's snapshot; not applying "
                             "(save the patch with --patch-out and apply it yourself)")
    check = subprocess.run(["git", "apply", "--check", "-"], input=patch.encode(), cwd=repo,
                           capture_output=True)
    if check.returncode != 0:
        raise WorkspaceError("the patch does not apply: "
                             + check.stderr.decode("utf-8", "replace").strip().splitlines()[-1])
    subprocess.run(["git", "apply", "-"], input=patch.encode(), cwd=repo, check=True,
                   capture_output=True)
    return changed_paths(patch)


def changed_paths(patch: str) -> list[str]:
    from agent.edits import diff_paths

    return diff_paths(patch)
