"""The git side of the CI bot: the checkout's head, a commit of the fix made without
touching the working tree, and the environment that lets `git push` use the token."""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from agent.errors import MulliganError
from agent.frontends.ci.redact import Redactor
from sandbox import git

BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"


def _git(repo: Path, *args: str, env: Mapping[str, str] | None = None,
         input: str | None = None, redact: Redactor | None = None) -> str:
    proc = git.run(args, cwd=repo, env=env, input=input)
    if not proc.ok:
        line = proc.last_line()
        if redact is not None:
            line = redact(line)
        raise MulliganError(f"git {args[0]} failed: {line}")
    return proc.text.strip()


def _head_sha(repo: Path) -> str | None:
    try:
        return _git(repo, "rev-parse", "HEAD")
    except MulliganError:
        return None


def commit_patch(repo: Path, patch: str, parent: str, message: str) -> str:
    """A commit of `parent` plus `patch`, made without touching the working tree, the index
    or any branch (a private index file)."""
    with tempfile.TemporaryDirectory(prefix="mulligan-ci-") as tmp:
        index = str(Path(tmp) / "index")
        patch_file = Path(tmp) / "fix.patch"
        patch_file.write_text(patch)
        env = {**os.environ, "GIT_INDEX_FILE": index}
        env.setdefault("GIT_AUTHOR_NAME", BOT_NAME)
        env.setdefault("GIT_AUTHOR_EMAIL", BOT_EMAIL)
        env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
        env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
        _git(repo, "read-tree", parent, env=env)
        _git(repo, "apply", "--cached", "--whitespace=nowarn", str(patch_file), env=env)
        tree = _git(repo, "write-tree", env=env)
        return _git(repo, "commit-tree", tree, "-p", parent, "-m", message, env=env)


def push_env(repo: Path, remote: str, token: str | None, server_url: str) -> dict[str, str]:
    """The environment for `git push`: the token as an HTTP header for the GitHub server
    when the remote is HTTPS there and the checkout did not persist credentials itself.
    It goes through GIT_CONFIG_* variables, never the command line or the remote URL."""
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    if not token:
        return env
    try:
        url = _git(repo, "remote", "get-url", remote)
    except MulliganError:
        return env
    if not url.startswith(("https://", "http://")):
        return env
    server = urlsplit(server_url)
    if urlsplit(url).hostname != server.hostname:
        return env
    configured = git.run(["config", "--get-regexp", r"^http\..*extraheader$"], cwd=repo)
    if configured.text.strip():
        return env
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    count = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    env["GIT_CONFIG_COUNT"] = str(count + 1)
    env[f"GIT_CONFIG_KEY_{count}"] = f"http.{server.scheme}://{server.netloc}/.extraheader"
    env[f"GIT_CONFIG_VALUE_{count}"] = f"AUTHORIZATION: basic {basic}"
    return env

