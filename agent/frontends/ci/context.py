"""The GitHub Actions context of a `mulligan ci` run (the event, the pull request, a
`/mulligan fix` command and who may give it) and the run's settings."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

MODES = ("comment", "push", "check")
TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
COMMAND_RE = re.compile(r"^\s*/mulligan\s+fix\b[ \t]*(\S+)?", re.IGNORECASE)


@dataclass
class Context:
    event_name: str
    event: dict
    repository: str
    api_url: str
    server_url: str
    token: str | None
    summary_path: Path | None
    output_path: Path | None
    pr_number: int | None = None
    command_mode: str | None = None  # from "/mulligan fix push"
    skip_reason: str | None = None  # the event is not one to act on


def load_context(environ: Mapping[str, str], pr: int | None = None) -> Context:
    """The GitHub Actions context from the standard environment variables."""
    event: dict = {}
    event_path = environ.get("GITHUB_EVENT_PATH")
    if event_path:
        try:
            event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read GITHUB_EVENT_PATH {event_path}: {exc.strerror}") \
                from None
        except ValueError:
            raise ConfigError(f"GITHUB_EVENT_PATH {event_path} is not JSON") from None
        if not isinstance(event, dict):
            raise ConfigError(f"GITHUB_EVENT_PATH {event_path} is not a JSON object")
    elif pr is None:
        raise ConfigError("not running in GitHub Actions: GITHUB_EVENT_PATH is not set "
                          "(pass --pr N to name the pull request)")
    repository = environ.get("GITHUB_REPOSITORY") or \
        (event.get("repository") or {}).get("full_name") or ""
    if not repository:
        raise ConfigError("GITHUB_REPOSITORY is not set (owner/name)")
    event_name = environ.get("GITHUB_EVENT_NAME") or _guess_event_name(event)
    summary = environ.get("GITHUB_STEP_SUMMARY")
    output = environ.get("GITHUB_OUTPUT")
    ctx = Context(
        event_name=event_name, event=event, repository=repository,
        api_url=(environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
        server_url=(environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/"),
        token=environ.get("GITHUB_TOKEN") or None,
        summary_path=Path(summary) if summary else None,
        output_path=Path(output) if output else None)
    if pr is not None:
        ctx.pr_number = pr
        return ctx
    if "pull_request" in event and isinstance(event["pull_request"], dict):
        ctx.pr_number = _int(event["pull_request"].get("number") or event.get("number"))
    elif event_name == "issue_comment" or ("comment" in event and "issue" in event):
        issue = event.get("issue") or {}
        comment = event.get("comment") or {}
        match = COMMAND_RE.match(str(comment.get("body") or ""))
        if not issue.get("pull_request"):
            ctx.skip_reason = "the comment is on an issue, not on a pull request"
        elif event.get("action", "created") != "created":
            ctx.skip_reason = f"the comment was {event.get('action')}, not created"
        elif match is None:
            ctx.skip_reason = "the comment is not a `/mulligan fix` command"
        elif str(comment.get("author_association") or "").upper() not in TRUSTED_ASSOCIATIONS:
            ctx.skip_reason = ("only the repository's owners, members and collaborators can "
                               "ask for `/mulligan fix`")
        else:
            ctx.pr_number = _int(issue.get("number"))
            word = (match.group(1) or "").lower()
            if word:
                if word not in MODES:
                    raise ConfigError(f"`/mulligan fix {word}`: the mode must be one of "
                                      f"{', '.join(MODES)}")
                ctx.command_mode = word
        if ctx.skip_reason:
            return ctx
    if ctx.pr_number is None:
        raise ConfigError(f"no pull request in the {event_name or 'unknown'} event: run on "
                          "pull_request or issue_comment, or pass --pr N")
    return ctx


def _guess_event_name(event: dict) -> str:
    if "pull_request" in event:
        return "pull_request"
    if "comment" in event and "issue" in event:
        return "issue_comment"
    return ""


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def ci_settings(repo: Path, flags: Mapping[str, Any], environ: Mapping[str, str],
                trust_repo_config: bool = False) -> tuple[Any, list[str]]:
    """Settings for a CI run (agent.config's RepoPolicy.CI: a pull request's config may set
    only the test command and limits), and the repository config keys that were ignored."""
    from agent.config import RepoPolicy, load_settings, repo_settings

    ignored = list(repo_settings(repo, trust=bool(trust_repo_config),
                                 policy=RepoPolicy.CI).ignored)
    settings = load_settings(repo, {**flags, "trust_repo": trust_repo_config or None},
                             environ=dict(environ), policy=RepoPolicy.CI, notice=None)
    return settings, ignored

