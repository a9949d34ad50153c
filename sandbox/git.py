"""Every git command Mulligan runs goes through here: one call shape, one result, one error.

Repository look-ups (which repository a folder is in, its branch and HEAD) use gitpython's
`Repo`. Commands go through `run`, which passes its environment to git exactly as given:
gitpython's `Git.execute` always merges `os.environ` into the child's environment, and
Mulligan must be able to take variables away (inside a git hook, `GIT_INDEX_FILE` and
`GIT_DIR` point at the user's repository and must never reach a command aimed at the
private snapshot store), and feed patches on stdin.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.errors import SandboxError

if TYPE_CHECKING:
    import git

__all__ = ["GitFailed", "GitMissing", "GitResult", "clean_env", "find_repo", "run"]


@dataclass(frozen=True)
class GitResult:
    args: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def text(self) -> str:
        """stdout as text (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    def last_line(self, fallback: str | None = None) -> str:
        """The last line git wrote on stderr (on stdout where stderr is empty): its reason."""
        for stream in (self.stderr, self.stdout):
            lines = stream.decode("utf-8", "replace").strip().splitlines()
            if lines:
                return lines[-1]
        return fallback if fallback is not None else f"exit {self.returncode}"


class GitMissing(SandboxError):
    """There is no git program on this machine."""


class GitFailed(SandboxError):
    """A git command exited non-zero; the message is "git <command> failed: <its reason>"."""

    def __init__(self, result: GitResult) -> None:
        self.result = result
        name = result.args[0] if result.args else "git"
        super().__init__(f"git {name} failed: {result.last_line()}")


def run(args: Sequence[str], *, cwd: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None, input: bytes | str | None = None,
        check: bool = False) -> GitResult:
    """`git ARGS` in `cwd`; `env` replaces the environment (None: this process's); `input`
    goes to stdin (text as UTF-8, lone surrogates kept as the bytes they stand for)."""
    data = input.encode("utf-8", "surrogateescape") if isinstance(input, str) else input
    proc = subprocess.run(["git", *args], cwd=cwd,
                          env=dict(env) if env is not None else None, input=data,
                          capture_output=True, check=False)
    result = GitResult(tuple(args), proc.returncode, proc.stdout, proc.stderr)
    if check and not result.ok:
        raise GitFailed(result)
    return result


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any GIT_* variable (a hook's GIT_INDEX_FILE, a
    caller's GIT_DIR), with no system config, no prompts and a fixed identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="mulligan", GIT_AUTHOR_EMAIL="mulligan@localhost",
               GIT_COMMITTER_NAME="mulligan", GIT_COMMITTER_EMAIL="mulligan@localhost")
    env.update(extra)
    return env


def find_repo(path: str | os.PathLike) -> git.Repo | None:
    """The repository `path` is in (searching upward), or None outside any."""
    try:
        import git  # gitpython checks for the git program when it is imported
    except ImportError:
        raise GitMissing("git is not installed: install it (sudo apt-get install git)") from None
    try:
        return git.Repo(Path(path), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
