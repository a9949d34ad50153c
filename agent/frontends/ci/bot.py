"""`mulligan ci`: the non-interactive pull-request bot behind `action.yml`.

It reads the GitHub Actions context from the standard environment, runs the tests of the
checked-out pull request head in the sandbox, and when they fail runs the solve-test-revise
loop. Then, by mode:

* ``comment`` (default): one PR comment with the result and the patch (updated in place on
  later runs, found by a hidden marker), plus ```suggestion review comments for small
  single-hunk changes on lines the pull request touched;
* ``push``: the fix committed to a new branch ``mulligan/fix-<pr>`` and a pull request
  against the PR's head branch (the PR's own branch only with ``--push-to-pr-branch``);
* ``check``: report only (job summary, result file, exit code); no GitHub writes.

Exit codes: 0 fixed or nothing to fix, 1 not fixed, 2 configuration or API error.
Secrets (the GitHub token, the model API key) are redacted from everything it writes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

from rich.console import Console

from agent.errors import ConfigError, MulliganError
from agent.frontends.ci.github import GitHub, GitHubError
from sandbox.errors import SandboxError

MARKER = "<!-- mulligan -->"
SUGGESTION_MARKER = "<!-- mulligan-suggestion:{} -->"
MODES = ("comment", "push", "check")
TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
COMMAND_RE = re.compile(r"^\s*/mulligan\s+fix\b[ \t]*(\S+)?", re.IGNORECASE)
COMMENT_LIMIT = 60_000  # GitHub refuses bodies above 65,536 characters
SUGGESTION_MAX_LINES = 12
BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"
CI_SETTINGS = ("model", "base_url", "test_cmd", "image", "ca_bundle", "test_timeout_s",
               "candidates", "rounds", "beam", "workers", "temperature", "seed", "token_budget",
               "cost_budget_usd", "time_budget_s", "allow_test_edits")


# -- redaction ------------------------------------------------------------------------------

_TOKEN_PATTERNS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|sk-[A-Za-z0-9_-]{20,})\b")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@")


class Redactor:
    """Replaces every known secret (and its base64 / URL-encoded forms, and anything shaped
    like a GitHub token or an OpenAI key) with ``***``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret.strip()) < 4:
            return
        secret = secret.strip()
        forms = {secret, quote(secret, safe=""),
                 base64.b64encode(f"x-access-token:{secret}".encode()).decode(),
                 base64.b64encode(secret.encode()).decode()}
        self._secrets.update(f for f in forms if len(f) >= 4)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        text = _URL_CREDENTIALS.sub("***@", text)
        return _TOKEN_PATTERNS.sub("***", text)

    def data(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self(obj)
        if isinstance(obj, Mapping):
            return {self(str(k)): self.data(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.data(v) for v in obj]
        return obj


class RedactingStream:
    """A text stream that redacts what is written through it."""

    def __init__(self, stream: TextIO, redact: Redactor) -> None:
        self._stream = stream
        self._redact = redact

    def write(self, text: str) -> int:
        self._stream.write(self._redact(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8") or "utf-8"


# -- the GitHub context -----------------------------------------------------------------------


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


# -- suggestions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    path: str
    start: int  # first line replaced, in the pull request's head version of the file
    end: int
    replacement: str

    @property
    def key(self) -> str:
        raw = f"{self.path}\0{self.start}\0{self.end}\0{self.replacement}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def body(self) -> str:
        fence = _fence(self.replacement)
        text = self.replacement if self.replacement.endswith("\n") or not self.replacement \
            else self.replacement + "\n"
        return (f"{SUGGESTION_MARKER.format(self.key)}\nMulligan suggests this change (the "
                f"tests pass with it):\n\n{fence}suggestion\n{text}{fence}")

    def review_comment(self) -> dict:
        comment: dict[str, Any] = {"path": self.path, "line": self.end, "side": "RIGHT",
                                   "body": self.body()}
        if self.start != self.end:
            comment.update(start_line=self.start, start_side="RIGHT")
        return comment


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def touched_lines(pr_files: Iterable[Mapping[str, Any]]) -> dict[str, set[int]]:
    """For each file of a pull request, the head-side line numbers its diff adds."""
    touched: dict[str, set[int]] = {}
    for item in pr_files:
        patch = item.get("patch")
        name = item.get("filename")
        if not patch or not name or item.get("status") == "removed":
            continue
        lines: set[int] = set()
        right = 0
        for line in str(patch).splitlines():
            match = _HUNK_RE.match(line)
            if match:
                right = int(match.group(3))
                continue
            if line.startswith("+"):
                lines.add(right)
                right += 1
            elif line.startswith(" ") or line == "":
                right += 1
        touched[str(name)] = lines
    return touched


def suggestions_for(patch: str, touched: Mapping[str, set[int]],
                    max_lines: int = SUGGESTION_MAX_LINES) -> list[Suggestion]:
    """GitHub suggestions for the files the fix changes in one small hunk, where every line
    it replaces is one the pull request added or changed."""
    from unidiff import PatchSet
    from unidiff.errors import UnidiffParseError

    try:
        files = PatchSet(patch)
    except UnidiffParseError:
        return []
    out = []
    for pf in files:
        if pf.is_added_file or pf.is_removed_file or pf.is_binary_file or len(pf) != 1:
            continue
        path = pf.path
        hunk = list(pf[0])
        changed = [i for i, line in enumerate(hunk) if line.is_added or line.is_removed]
        if not changed:
            continue
        first, last = changed[0], changed[-1]
        region = hunk[first:last + 1]
        old = [line.source_line_no for line in region if not line.is_added]
        new = [_line_text(line.value) for line in region if not line.is_removed]
        if not any(line.is_removed for line in region):  # a pure insertion: anchor on a line
            if first > 0 and hunk[first - 1].is_context:
                anchor = hunk[first - 1]
                new = [_line_text(anchor.value)] + new
            elif last + 1 < len(hunk) and hunk[last + 1].is_context:
                anchor = hunk[last + 1]
                new = new + [_line_text(anchor.value)]
            else:
                continue
            old = [anchor.source_line_no]
        start, end = min(old), max(old)
        if end - start + 1 > max_lines or len(new) > max_lines:
            continue
        lines = touched.get(path, set())
        if not all(n in lines for n in range(start, end + 1)):
            continue
        out.append(Suggestion(path, start, end, "".join(new)))
    return out


def _line_text(value: str) -> str:
    return value if value.endswith("\n") else value + "\n"


# -- git ----------------------------------------------------------------------------------


def _git(repo: Path, *args: str, env: Mapping[str, str] | None = None,
         input: str | None = None, redact: Redactor | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          env=dict(env) if env is not None else None, input=input,
                          check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        line = detail[-1] if detail else f"exit {proc.returncode}"
        if redact is not None:
            line = redact(line)
        raise MulliganError(f"git {args[0]} failed: {line}")
    return proc.stdout.strip()


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
    configured = subprocess.run(["git", "config", "--get-regexp", r"^http\..*extraheader$"],
                                cwd=repo, capture_output=True, text=True, check=False)
    if configured.stdout.strip():
        return env
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    count = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    env["GIT_CONFIG_COUNT"] = str(count + 1)
    env[f"GIT_CONFIG_KEY_{count}"] = f"http.{server.scheme}://{server.netloc}/.extraheader"
    env[f"GIT_CONFIG_VALUE_{count}"] = f"AUTHORIZATION: basic {basic}"
    return env


# -- rendering ----------------------------------------------------------------------------


def _fence(text: str, char: str = "`") -> str:
    longest = max((len(m) for m in re.findall(f"{re.escape(char)}+", text)), default=0)
    return char * max(3, longest + 1)


def _patch_stats(patch: str) -> tuple[int, int, int]:
    files = added = removed = 0
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            files += 1
        elif line.startswith("+") and not line.startswith("+++ "):
            added += 1
        elif line.startswith("-") and not line.startswith("--- "):
            removed += 1
    return files, added, removed


def _details(summary: str, patch: str, limit: int) -> str:
    note = ""
    if len(patch) > limit:
        patch = patch[:limit].rsplit("\n", 1)[0] + "\n"
        note = ("\n_The patch is cut short here; the whole patch is in the result file "
                "(the `mulligan-result` artifact)._\n")
    fence = _fence(patch)
    return (f"<details><summary>{summary}</summary>\n\n{fence}diff\n{patch}"
            f"{'' if patch.endswith(chr(10)) else chr(10)}{fence}\n{note}\n</details>\n")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _seconds(value: float) -> str:
    if value < 90:
        return f"{value:.1f}s"
    return f"{int(value // 60)}m {int(value % 60):02d}s"


@dataclass
class Outcome:
    """What one `mulligan ci` run did, for the comment, the summary and the result file."""

    pr: int | None
    mode: str
    head_sha: str | None = None
    result: Any = None  # agent.loop.Result
    error: str | None = None
    skipped: str | None = None
    comment_url: str | None = None
    fix_branch: str | None = None
    fix_commit: str | None = None
    fix_pull_url: str | None = None
    fix_pull_number: int | None = None
    suggestions: int = 0
    notes: list[str] = field(default_factory=list)
    trajectory: str | None = None
    exit_code: int = 0

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        if self.skipped is not None:
            return "skipped"
        return self.result.status if self.result is not None else "error"

    def title(self) -> str:
        return {
            "solved": "✅ Mulligan found a fix for the failing tests",
            "unsolved": "❌ Mulligan could not fix the failing tests",
            "nothing_to_fix": "✅ The tests pass: nothing to fix",
            "skipped": "Mulligan: nothing to do",
            "error": "⚠️ Mulligan could not run",
        }.get(self.status, f"Mulligan: {self.status}")

    def totals_rows(self) -> list[tuple[str, str]]:
        r = self.result
        if r is None:
            return []
        rows = []
        if r.baseline is not None:
            rows.append(("baseline", (f"{len(r.baseline.targets)} failing, "
                                      f"{len(r.baseline.keep)} passing")))
        rounds = sorted({c.round for c in r.candidates})
        rows.append(("candidates", f"{len(r.candidates)} in {_n(len(rounds), 'round')}"))
        rows.append(("tokens", (f"{r.usage.total:,} ({r.usage.prompt_tokens:,} prompt + "
                                f"{r.usage.completion_tokens:,} completion)")))
        rows.append(("cost", f"${r.cost_usd:.4f}"))
        rows.append(("time", f"{_seconds(r.seconds)} (sandbox {_seconds(r.sandbox_seconds)})"))
        return rows

    def failing_list(self, limit: int = 20) -> str:
        r = self.result
        if r is None or r.baseline is None or not r.baseline.targets:
            return ""
        targets = list(r.baseline.targets)
        lines = [f"- `{t}`" for t in targets[:limit]]
        if len(targets) > limit:
            lines.append(f"- … and {len(targets) - limit} more")
        return "\n".join(lines) + "\n"


def render_comment(o: Outcome) -> str:
    r = o.result
    sha = (o.head_sha or "")[:7]
    parts = [MARKER, f"### {o.title()}", ""]
    if o.status == "nothing_to_fix":
        parts.append(f"The tests of `{sha}` pass, so there is nothing to fix.")
    elif r is not None:
        count = len(r.baseline.targets) if r.baseline else 0
        parts.append(f"{_n(count, 'test')} {'fails' if count == 1 else 'fail'} on `{sha}`:\n")
        parts.append(o.failing_list())
        if o.status == "solved":
            chosen = r.chosen
            parts.append(f"Mulligan tested a patch that makes them pass without breaking the "
                         f"others (candidate `{chosen.id if chosen else '-'}`, "
                         f"round {chosen.round if chosen else '-'}).")
        else:
            parts.append(f"No candidate passed: {r.reason or 'budget spent'}.")
    if o.fix_pull_url:
        parts.append(f"\n**Opened #{o.fix_pull_number} with the fix** (branch "
                     f"`{o.fix_branch}`): {o.fix_pull_url}")
    elif o.fix_commit and o.fix_branch:
        parts.append(f"\n**Pushed the fix to `{o.fix_branch}`** as {o.fix_commit[:7]}.")
    if o.suggestions:
        parts.append(f"\nThe fix is also posted as {_n(o.suggestions, 'suggestion')} in a "
                     "review, ready to commit from the pull request page.")
    for note in o.notes:
        parts.append(f"\n> {note}")
    if r is not None and r.patch:
        files, added, removed = _patch_stats(r.patch)
        label = "Patch" if o.status == "solved" else "Best attempt (does not pass)"
        parts.append("")
        parts.append(_details(f"{label}: {_n(files, 'file')}, +{added} −{removed}", r.patch,
                              COMMENT_LIMIT - 4000))
        if o.status == "solved":
            parts.append("To apply it locally: save it as `fix.patch` and run "
                         "`git apply fix.patch`.\n")
    rows = o.totals_rows()
    if rows:
        parts.append("<sub>" + " · ".join(f"{k}: {v}" for k, v in rows[1:]) + "</sub>")
    body = "\n".join(parts).rstrip() + "\n"
    return body[:COMMENT_LIMIT]


def render_summary(o: Outcome) -> str:
    r = o.result
    parts = [f"## {o.title()}", ""]
    if o.error:
        parts += [f"**Error:** {o.error}", ""]
    if o.skipped:
        parts += [o.skipped, ""]
    rows: list[tuple[str, str]] = []
    if o.pr is not None:
        rows.append(("pull request", f"#{o.pr}" + (f" (`{o.head_sha[:7]}`)" if o.head_sha
                                                      else "")))
    rows.append(("mode", o.mode))
    if r is not None:
        rows.append(("result", f"{r.status}{': ' + r.reason if r.reason else ''}"))
    rows += o.totals_rows()
    if o.comment_url:
        rows.append(("comment", o.comment_url))
    if o.fix_pull_url:
        rows.append(("fix pull request", o.fix_pull_url))
    elif o.fix_commit:
        rows.append(("fix commit", f"`{o.fix_commit[:7]}` on `{o.fix_branch}`"))
    if o.suggestions:
        rows.append(("suggestions", str(o.suggestions)))
    rows.append(("exit code", str(o.exit_code)))
    parts += ["| | |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in rows]
    for note in o.notes:
        parts += ["", f"> {note}"]
    if r is not None and r.baseline is not None:
        parts += ["", "### Baseline failures", ""]
        parts.append(o.failing_list(50) or "none")
    if r is not None and r.candidates:
        parts += ["", "### Candidates per round", "",
                  "| round | candidates | passed | failed | unusable | tokens | best |",
                  "|---|---|---|---|---|---|---|"]
        by_round: dict[int, list] = {}
        for cand in r.candidates:
            by_round.setdefault(cand.round, []).append(cand)
        for round_no, cands in sorted(by_round.items()):
            passed = [c for c in cands if c.solved]
            unusable = [c for c in cands if c.format_error is not None
                        or (c.report is not None and c.report.patch_error)]
            failed = len(cands) - len(passed) - len(unusable)
            best = max(cands, key=lambda c: c.rank_key())
            tokens = sum(c.tokens for c in cands)
            parts.append(f"| {round_no} | {len(cands)} | {len(passed)} | {failed} | "
                         f"{len(unusable)} | {tokens:,} | `{best.id}` "
                         f"({len(best.fixed)} fixed, {len(best.regressions)} regressions) |")
    if r is not None and r.patch:
        files, added, removed = _patch_stats(r.patch)
        label = "Patch" if r.status == "solved" else "Best attempt (does not pass)"
        parts += ["", _details(f"{label}: {_n(files, 'file')}, +{added} −{removed}", r.patch,
                               200_000)]
    return "\n".join(parts).rstrip() + "\n\n"


# -- the command --------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds the `ci` subcommand to the `mulligan` command line."""
    p = sub.add_parser("ci", help="the GitHub Actions pull-request bot (see docs/ci.md)",
                       description="Run the tests of the checked-out pull request head; if "
                                   "they fail, look for a fix and report it on the pull "
                                   "request. Exit 0: fixed or nothing to fix, 1: not fixed, "
                                   "2: configuration or API error.")
    p.add_argument("path", nargs="?", default=".", help="the checked-out repository")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="comment (default): a PR comment and suggestions; push: a fix branch "
                        "and a pull request; check: report only")
    p.add_argument("--pr", type=int, default=None, help="the pull request number (default: "
                                                        "from the event)")
    p.add_argument("--push-to-pr-branch", action="store_true",
                   help="in push mode, commit the fix onto the pull request's own branch "
                        "instead of a new mulligan/fix-<pr> branch")
    p.add_argument("--remote", default="origin", help="the git remote to push to")
    p.add_argument("--trust-repo-config", action="store_true",
                   help="honour every setting of the checked-out .mulligan.toml / "
                        "[tool.mulligan] (by default only the test command and limits: the "
                        "endpoint, model, image and budgets come from the workflow)")
    p.add_argument("--no-suggestions", dest="suggestions", action="store_false",
                   help="do not post ```suggestion review comments")
    p.add_argument("--result-file", type=Path, default=Path("mulligan-result.json"),
                   help="where to write the JSON result (default: mulligan-result.json)")
    p.add_argument("--model", default=None, help="model name (MULLIGAN_MODEL)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint "
                                                     "(OPENAI_BASE_URL)")
    p.add_argument("--test-cmd", default=None)
    p.add_argument("--image", default=None, help="sandbox base image")
    p.add_argument("--ca-bundle", default=None, type=Path)
    p.add_argument("--timeout", dest="test_timeout_s", type=float, default=None,
                   help="wall-time limit per test run, seconds")
    p.add_argument("--candidates", type=int, default=None)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--beam", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--token-budget", dest="token_budget", type=int, default=None)
    p.add_argument("--cost-budget", dest="cost_budget_usd", type=float, default=None,
                   help="stop sampling once this many US dollars are spent")
    p.add_argument("--time-budget", dest="time_budget_s", type=float, default=None,
                   help="stop sampling after this many seconds")
    p.add_argument("--allow-test-edits", action="store_true", default=None)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(handler=cmd_ci)
    return p


def cmd_ci(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
           stderr: TextIO | None = None) -> int:
    environ = os.environ if environ is None else environ
    redact = Redactor([environ.get("GITHUB_TOKEN"), environ.get("OPENAI_API_KEY"),
                       environ.get("INPUT_API-KEY"), environ.get("INPUT_GITHUB-TOKEN")])
    console = Console(file=RedactingStream(stderr or sys.stderr, redact), highlight=False,
                      soft_wrap=True, no_color=True)
    bot = CiBot(args, environ, redact, console)
    return bot.main()


class CiBot:
    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str], redact: Redactor,
                 console: Console) -> None:
        self.args = args
        self.environ = environ
        self.redact = redact
        self.console = console
        self.ctx: Context | None = None
        self.gh: GitHub | None = None
        self.outcome = Outcome(pr=args.pr, mode=args.mode or "comment")

    def log(self, text: str) -> None:
        self.console.print(text, markup=False)

    def main(self) -> int:
        o = self.outcome
        try:
            try:
                self._run()
            finally:
                if self.gh is not None:
                    self.gh.close()
        except (MulliganError, SandboxError) as exc:
            o.error = self.redact(" ".join(str(exc).split())) or type(exc).__name__
            o.exit_code = 2
            self.log(f"mulligan: error: {o.error}")
        except KeyboardInterrupt:
            o.error = "interrupted"
            o.exit_code = 130
            self.log("mulligan: interrupted")
        except Exception as exc:  # noqa: BLE001 - a bug: still redact, still write the result
            o.error = self.redact(f"internal error: {type(exc).__name__}: {exc}")
            o.exit_code = 2
            self.log(self.redact(traceback.format_exc()))
            self.log(f"mulligan: error: {o.error}")
        self._write_outputs()
        return o.exit_code

    # -- the steps -------------------------------------------------------------------------

    def _run(self) -> None:
        from agent.environment import find_repo_root

        o, args = self.outcome, self.args
        ctx = self.ctx = load_context(self.environ, args.pr)
        o.pr = ctx.pr_number
        o.mode = ctx.command_mode or args.mode or "comment"
        if ctx.event_name == "pull_request_target":
            self.log("mulligan: warning: running on pull_request_target, with secrets, on code "
                     "from the pull request: use pull_request (see docs/ci.md)")
        if ctx.skip_reason:
            o.skipped = ctx.skip_reason
            self.log(f"mulligan: nothing to do: {ctx.skip_reason}")
            return
        repo = find_repo_root(Path(args.path))
        settings, ignored = ci_settings(repo, {n: getattr(args, n, None) for n in CI_SETTINGS},
                                        self.environ, getattr(args, "trust_repo_config", False))
        if ignored:
            self.log(f"mulligan: ignoring {', '.join(ignored)} from the repository's config "
                     "(set them in the workflow, or pass --trust-repo-config)")
        self.redact.add(settings.api_key)
        local_head = _head_sha(repo)

        pr: dict = {}
        if o.mode != "check":
            if not ctx.token:
                raise ConfigError(f"GITHUB_TOKEN is not set: {o.mode} mode writes to the pull "
                                  "request (give the step `GITHUB_TOKEN: ${{ github.token }}`, "
                                  "or use --mode check)")
            try:
                backoff = float(self.environ.get("MULLIGAN_GITHUB_BACKOFF_S") or 1.0)
            except ValueError:
                raise ConfigError("MULLIGAN_GITHUB_BACKOFF_S must be a number of seconds") \
                    from None
            self.gh = GitHub(ctx.token, ctx.repository, ctx.api_url, backoff_s=backoff,
                             max_wait_s=max(backoff, min(60.0, 60 * backoff)))
            pr = self.gh.pull(ctx.pr_number)  # checks the token and the repository first
        else:
            pr = ctx.event.get("pull_request") or {}
        o.head_sha = ((pr.get("head") or {}).get("sha")) or local_head
        self.log(f"mulligan ci: {ctx.repository}#{ctx.pr_number}, mode {o.mode}, head "
                 f"{(o.head_sha or '?')[:7]}")
        if o.head_sha and local_head and local_head != o.head_sha:
            o.notes.append(f"The checkout is `{local_head[:7]}`, not the pull request head "
                           f"`{o.head_sha[:7]}` (check out `github.event.pull_request.head.sha`"
                           "); line suggestions and pushes are skipped.")

        result = self._solve(repo, settings)
        o.result = result
        o.exit_code = 0 if result.status in ("solved", "nothing_to_fix") else 1
        if o.mode == "check" or self.gh is None:
            return
        self._report(repo, pr, local_head)

    def _solve(self, repo: Path, settings):
        from agent.events import EventBus
        from agent.frontends.progress import ConsoleProgress
        from agent.run import Run, RunRequest

        bus = EventBus()
        bus.subscribe(ConsoleProgress(self.console, verbose=self.args.verbose))
        run = Run(RunRequest(repo, settings), bus)
        self.outcome.trajectory = str(run.trajectory_path)
        return asyncio.run(run.execute())

    def _report(self, repo: Path, pr: dict, local_head: str | None) -> None:
        o, ctx, gh = self.outcome, self.ctx, self.gh
        assert ctx is not None and gh is not None and o.result is not None
        result = o.result
        at_head = bool(local_head and local_head == o.head_sha)
        head = pr.get("head") or {}
        same_repo = ((head.get("repo") or {}).get("full_name") or ctx.repository) \
            == ctx.repository
        if result.status == "solved" and result.patch:
            if o.mode == "push":
                if not same_repo:
                    o.notes.append("The pull request comes from a fork, where Mulligan cannot "
                                   "push: the patch is in this comment instead.")
                elif not at_head:
                    o.notes.append("The fix was not pushed: the checkout is not the pull "
                                   "request head.")
                else:
                    try:
                        self._push(repo, pr, local_head)
                    except GitHubError:
                        raise
                    except MulliganError as exc:  # git refused: the comment has the patch
                        o.notes.append(f"The fix was not pushed: {self.redact(str(exc))}")
                        self.log(f"mulligan: warning: {self.redact(str(exc))}")
            elif self.args.suggestions and at_head:
                self._suggest(pr)
        self._comment()

    def _write(self, what: str, call) -> Any:
        """A GitHub write; a 403 (a read-only token, as pull requests from forks get) is a
        warning in the summary, not a failure of the run: it returns None then."""
        try:
            return call()
        except GitHubError as exc:
            if exc.status != 403:
                raise
            note = (f"Could not {what}: the token may not write here (pull requests from "
                    "forks get a read-only GITHUB_TOKEN); the result is in the job summary "
                    "and the result file.")
            if note not in self.outcome.notes:
                self.outcome.notes.append(note)
            self.log(f"mulligan: warning: {self.redact(str(exc))}")
            return None

    def _comment(self) -> None:
        o, gh = self.outcome, self.gh
        assert gh is not None and o.pr is not None
        existing = self._own_comment(gh.issue_comments(o.pr))
        if existing is None and o.status == "nothing_to_fix":
            self.log("mulligan: the tests pass; no comment needed")
            return
        body = self.redact(render_comment(o))
        if existing is not None:
            try:
                comment = self._write("update the comment",
                                      lambda: gh.update_comment(existing["id"], body))
            except GitHubError as exc:
                if exc.status != 404:
                    raise
                comment = {}  # deleted meanwhile: post a new one
            if comment is None:
                return
            if comment:
                o.comment_url = comment.get("html_url")
                self.log(f"mulligan: updated the comment {o.comment_url or existing['id']}")
                return
        comment = self._write("comment on the pull request",
                              lambda: gh.create_comment(o.pr, body))
        if comment is not None:
            o.comment_url = comment.get("html_url")
            self.log(f"mulligan: commented {o.comment_url or ''}")

    @staticmethod
    def _own_comment(comments: list[dict]) -> dict | None:
        mine = [c for c in comments if str(c.get("body") or "").startswith(MARKER)]
        bots = [c for c in mine if str((c.get("user") or {}).get("type")) == "Bot"
                or str((c.get("user") or {}).get("login", "")).endswith("[bot]")]
        pool = bots or mine
        return pool[0] if pool else None

    def _suggest(self, pr: dict) -> None:
        o, gh = self.outcome, self.gh
        assert gh is not None and o.result is not None and o.pr is not None
        touched = touched_lines(gh.pull_files(o.pr))
        found = suggestions_for(o.result.patch, touched)
        if not found:
            return
        posted = {m for c in gh.review_comments(o.pr)
                  for m in re.findall(r"<!-- mulligan-suggestion:([0-9a-f]+) -->",
                                      str(c.get("body") or ""))}
        fresh = [s for s in found if s.key not in posted]
        o.suggestions = len(found)
        if not fresh:
            return
        body = self.redact(f"{MARKER}\nMulligan's fix for the failing tests, as suggestions "
                           f"(tested in the sandbox on `{(o.head_sha or '')[:7]}`).")
        comments = [self.redact.data(s.review_comment()) for s in fresh]
        try:
            self._write("post suggestions", lambda: gh.create_review(
                o.pr, commit_id=o.head_sha or "", body=body, comments=comments))
        except GitHubError as exc:
            if exc.status != 422:  # lines outside the diff: the comment has the patch anyway
                raise
            o.suggestions = 0
            self.log(f"mulligan: warning: suggestions refused: {self.redact(str(exc))}")

    def _push(self, repo: Path, pr: dict, local_head: str | None) -> None:
        o, ctx, gh, args = self.outcome, self.ctx, self.gh, self.args
        assert ctx is not None and gh is not None and o.result is not None and local_head
        head_ref = (pr.get("head") or {}).get("ref")
        if not head_ref:
            raise GitHubError(f"pull request #{o.pr} has no head branch in the API answer")
        result = o.result
        targets = len(result.baseline.targets) if result.baseline else 0
        message = (f"Fix the failing tests of #{o.pr}\n\nFound by Mulligan and tested in its "
                   f"sandbox: the {_n(targets, 'test')} that failed pass with this change, and "
                   "the others still pass.\n")
        commit = commit_patch(repo, result.patch, local_head, message)
        env = push_env(repo, args.remote, ctx.token, ctx.server_url)
        if args.push_to_pr_branch:
            branch = head_ref
            refspec = f"{commit}:refs/heads/{branch}"  # a fast-forward only, never forced
        else:
            branch = f"mulligan/fix-{o.pr}"
            refspec = f"+{commit}:refs/heads/{branch}"  # Mulligan's own branch
        _git(repo, "push", "--quiet", args.remote, refspec, env=env, redact=self.redact)
        o.fix_branch, o.fix_commit = branch, commit
        self.log(f"mulligan: pushed {commit[:7]} to {args.remote} {branch}")
        if args.push_to_pr_branch:
            return
        owner = ctx.repository.split("/")[0]
        open_pulls = gh.pulls(head=f"{owner}:{branch}", base=head_ref)
        body = self.redact(
            f"{MARKER}\nMulligan's fix for the failing tests of #{o.pr} "
            f"(`{(o.head_sha or '')[:7]}`). Merge it into `{head_ref}` to update #{o.pr}.\n\n"
            + "\n".join(f"- {k}: {v}" for k, v in o.totals_rows()))
        if open_pulls:
            fix = open_pulls[0]
        else:
            fix = self._write("open the fix pull request", lambda: gh.create_pull(
                title=f"Mulligan: fix the failing tests of #{o.pr}", head=branch,
                base=head_ref, body=body))
        if fix is not None:
            o.fix_pull_url = fix.get("html_url")
            o.fix_pull_number = fix.get("number")
            self.log(f"mulligan: fix pull request #{o.fix_pull_number} {o.fix_pull_url or ''}")

    # -- outputs ---------------------------------------------------------------------------

    def result_json(self) -> dict:
        o = self.outcome
        data: dict[str, Any] = o.result.to_json() if o.result is not None else {
            "status": o.status, "patch": None, "candidates": [], "totals": {}}
        data.update(status=o.status, error=o.error, skipped=o.skipped, pr=o.pr, mode=o.mode,
                    head_sha=o.head_sha, comment_url=o.comment_url, fix_branch=o.fix_branch,
                    fix_commit=o.fix_commit, fix_pull_request=o.fix_pull_url,
                    suggestions=o.suggestions, notes=o.notes, trajectory=o.trajectory,
                    exit_code=o.exit_code)
        return self.redact.data(data)

    def _write_outputs(self) -> None:
        o, args = self.outcome, self.args
        ctx_summary = self.ctx.summary_path if self.ctx else None
        summary = ctx_summary or (Path(self.environ["GITHUB_STEP_SUMMARY"])
                                  if self.environ.get("GITHUB_STEP_SUMMARY") else None)
        if summary is not None:
            try:
                with summary.open("a", encoding="utf-8") as fh:
                    fh.write(self.redact(render_summary(o)))
            except OSError as exc:
                self.log(f"mulligan: warning: cannot write the job summary: {exc.strerror}")
        try:
            path = Path(args.result_file)
            if path.parent != Path(""):
                path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.result_json(), indent=2) + "\n", encoding="utf-8")
            self.log(f"mulligan: result: {o.status} (exit {o.exit_code}), written to {path}")
        except OSError as exc:
            self.log(f"mulligan: warning: cannot write the result file: {exc.strerror}")
        output = self.environ.get("GITHUB_OUTPUT")
        if output:
            try:
                with open(output, "a", encoding="utf-8") as fh:
                    fh.write(f"status={o.status}\nexit-code={o.exit_code}\n"
                             f"result-file={Path(args.result_file).resolve()}\n")
                    if o.fix_pull_url:
                        fh.write(f"fix-pull-request={o.fix_pull_url}\n")
            except OSError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mulligan")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["ci", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
