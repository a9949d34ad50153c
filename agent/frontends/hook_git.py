"""The git plumbing the pre-commit hook needs, with its errors as HookError lines."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from agent.errors import MulliganError
from sandbox import git


class HookError(MulliganError):
    exit_code = 1


def _git(args: list[str], cwd: Path, env: Mapping[str, str] | None = None,
         data: bytes | None = None, check: bool = True) -> git.GitResult:
    proc = git.run(args, cwd=cwd, env=env, input=data)
    if check and not proc.ok:
        raise HookError(f"git {args[0]} failed: {_last_line(proc.stderr)}")
    return proc


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "(no message)"


def _git_path(cwd: Path, name: str) -> Path:
    """`git rev-parse --git-path NAME` as an absolute path (hooks: core.hooksPath)."""
    proc = _git(["rev-parse", "--git-path", name], cwd, check=False)
    if proc.returncode != 0:
        raise HookError(f"{cwd} is not inside a git repository")
    return Path(os.path.normpath(os.path.join(cwd, proc.stdout.decode().strip())))

