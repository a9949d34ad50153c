"""Putting an accepted fix into the index being committed and the working tree: checked
first, all or nothing, merged three ways with the user's unstaged edits."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import MulliganError
from agent.frontends.hook_git import _git, _last_line
from sandbox import git

if TYPE_CHECKING:
    from sandbox.snapshot import Snapshot


class FixDoesNotApply(MulliganError):
    """The fix cannot go into the index or the working tree without touching the user's
    work; nothing was changed."""



def _with_index(index: Path) -> dict[str, str]:
    return {**os.environ, "GIT_INDEX_FILE": str(index)}


@contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ctrl-C waits until the index and the working tree are both written (or neither)."""
    caught = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM,
                                                                  signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in caught.items():
            signal.signal(sig, handler)


def _merge3(ours: bytes, base: bytes, theirs: bytes) -> bytes | None:
    """`git merge-file` of the three versions; None when they conflict."""
    with tempfile.TemporaryDirectory(prefix="mulligan-merge-") as tmp:
        names = []
        for label, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            Path(tmp, label).write_bytes(data)
            names.append(str(Path(tmp, label)))
        proc = git.run(["merge-file", "-p", "--quiet", *names])
    return proc.stdout if proc.ok else None


def _worktree_plan(top: Path, snapshot: Snapshot, patch: str
                   ) -> dict[str, tuple[bytes | None, str]] | None:
    """How the fix goes into the working tree: None when `git apply` takes it as it is,
    else path -> (new content or None to delete, git mode), merged three ways with the
    user's unstaged edits. Raises FixDoesNotApply when those conflict with the fix."""
    from sandbox.snapshot import PatchDoesNotApply

    if _git(["apply", "--check", "--whitespace=nowarn", "-"], top, data=patch.encode(),
            check=False).returncode == 0:
        return None
    try:
        fixed = snapshot.apply(patch)
    except PatchDoesNotApply as exc:
        raise FixDoesNotApply(f"the fix does not apply to the staged files: {exc}") from None
    before = {e.path: e for e in snapshot.entries()}
    after = {e.path: e for e in snapshot.entries(fixed)}
    changed = sorted(p for p in before.keys() | after.keys()
                     if _identity(before.get(p)) != _identity(after.get(p)))
    base = snapshot.read_blobs([before[p] for p in changed if p in before])
    theirs = snapshot.read_blobs([after[p] for p in changed if p in after])
    plan: dict[str, tuple[bytes | None, str]] = {}
    for path in changed:
        modes = {e.mode for e in (before.get(path), after.get(path)) if e is not None}
        target = top / path
        if not modes <= {"100644", "100755"} or target.is_symlink() or (
                os.path.lexists(target) and not target.is_file()):
            raise FixDoesNotApply(f"{path} is not a regular file")
        ours = target.read_bytes() if target.is_file() else None
        old, new = base.get(path), theirs.get(path)
        mode = after[path].mode if path in after else before[path].mode
        if ours == new:
            continue
        if ours == old:
            plan[path] = (new, mode)
            continue
        merged = None if None in (ours, old, new) else _merge3(ours, old, new)
        if merged is None:
            raise FixDoesNotApply(f"your unstaged changes to {path} conflict with the fix")
        plan[path] = (merged, mode)
    return plan


def _identity(entry: Any) -> tuple[str, str] | None:
    return None if entry is None else (entry.sha, entry.mode)


def _write_plan(top: Path, plan: Mapping[str, tuple[bytes | None, str]]) -> None:
    """Each file replaced in one rename (a crash leaves it old or new, never half)."""
    staged: list[tuple[Path, Path | None]] = []
    try:
        for path, (data, mode) in plan.items():
            target = top / path
            if data is None:
                staged.append((target, None))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            keep = target.stat().st_mode & 0o7777 if target.is_file() else (
                0o755 if mode == "100755" else 0o644)
            os.chmod(tmp, keep)
            staged.append((target, Path(tmp)))
    except BaseException:
        for _, tmp in staged:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        raise
    for target, tmp in staged:
        if tmp is None:
            target.unlink(missing_ok=True)
        else:
            os.replace(tmp, target)


def apply_fix(top: Path, git_dir: Path, index: Path, snapshot: Snapshot, patch: str, *,
              stage: bool) -> None:
    """Put the fix into the working tree, and with `stage` into the index being committed.
    Everything is checked first; on any doubt FixDoesNotApply and nothing is changed."""
    data = patch.encode()
    indexes = [index] if stage else []
    pending = git_dir / "index.lock"
    if stage and index.name.startswith("next-index") and pending.is_file():
        # `git commit <paths>` commits a temporary index and then makes index.lock the
        # index: the fix goes into both, or the next `git status` would show it reverted.
        indexes.append(pending)
    for idx in indexes:
        check = _git(["apply", "--cached", "--check", "--whitespace=nowarn", "-"], top,
                     _with_index(idx), data, check=False)
        if check.returncode != 0:
            raise FixDoesNotApply(f"the fix does not apply to the index: "
                                  f"{_last_line(check.stderr)}")
    plan = _worktree_plan(top, snapshot, patch)
    with _no_interrupts():
        done: list[Path] = []
        try:
            for idx in indexes:
                _git(["apply", "--cached", "--whitespace=nowarn", "-"], top, _with_index(idx),
                     data)
                done.append(idx)
            if plan is None:
                _git(["apply", "--whitespace=nowarn", "-"], top, data=data)
            else:
                _write_plan(top, plan)
        except BaseException:
            for idx in done:
                _git(["apply", "--cached", "-R", "--whitespace=nowarn", "-"], top,
                     _with_index(idx), data, check=False)
            raise
