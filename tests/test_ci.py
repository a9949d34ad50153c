"""`mulligan ci` against a fake GitHub REST server, real git repositories, the scripted model
server and the real Docker sandbox; plus the GitHub client, the event parsing, the
suggestions and the redaction on their own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.frontends.ci.bot import (
    MARKER,
    Redactor,
    Suggestion,
    load_context,
    push_env,
    render_comment,
    suggestions_for,
    touched_lines,
)
from agent.errors import ConfigError
from agent.frontends.ci.github import GitHub, GitHubError
from tests.support.fake_github import FakeGitHub
from tests.support.sandbox_env import docker_image  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-Secret-0123456789-abcdefXYZ"  # shaped like no known token: only exact redaction
API_KEY = "key-Model-9876543210-zyxwvuQRS"
REPO = "octo/calc"
PR = 7

GOOD = '''"""A tiny calculator."""


def mean(values):
    """The arithmetic mean of a non-empty list of numbers."""
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / len(values)


def clamp(value, low, high):
    return max(low, min(value, high))
'''

BUGGY = GOOD.replace("return sum(values) / len(values)",
                     "total = sum(values)\n    return total / (len(values) - 1)")

TESTS = '''import os

from calc import clamp, mean


def test_mean_of_two():
    assert mean([2, 4]) == 3


def test_mean_of_one():
    assert mean([5]) == 5


def test_clamp():
    assert clamp(5, 0, 3) == 3


def test_no_secrets_in_the_sandbox():
    assert "GITHUB_TOKEN" not in os.environ
    assert "OPENAI_API_KEY" not in os.environ
'''

FIX_ANSWER = '''The mean divides by one too few.

calc.py
```python
<<<<<<< SEARCH
    return total / (len(values) - 1)
=======
    return total / len(values)
>>>>>>> REPLACE
```
'''


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def fake_github():
    with FakeGitHub(REPO, token=TOKEN) as server:
        yield server


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env,
                          check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


class PullRequestRepo:
    """A bare `origin`, a checkout of the PR's head branch `feature`, the PR in the fake
    GitHub (with its files as the API gives them) and a pull_request event file."""

    def __init__(self, tmp: Path, github: FakeGitHub, feature_calc: str,
                 head_repo: str | None = None) -> None:
        self.tmp = tmp
        self.origin = tmp / "origin.git"
        self.work = tmp / "work"
        git(tmp, "init", "--bare", "-b", "main", str(self.origin))
        git(tmp, "init", "-b", "main", str(self.work))
        (self.work / "tests").mkdir()
        (self.work / "calc.py").write_text(GOOD)
        (self.work / "tests" / "test_calc.py").write_text(TESTS)
        (self.work / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
        (self.work / ".gitignore").write_text("mulligan-result.json\n")
        git(self.work, "add", ".")
        git(self.work, "commit", "-q", "-m", "calc")
        self.base_sha = git(self.work, "rev-parse", "HEAD")
        git(self.work, "checkout", "-q", "-b", "feature")
        (self.work / "calc.py").write_text(feature_calc)
        git(self.work, "commit", "-q", "-am", "refactor mean")
        self.head_sha = git(self.work, "rev-parse", "HEAD")
        git(self.work, "remote", "add", "origin", str(self.origin))
        git(self.work, "push", "-q", "origin", "main", "feature")
        files = []
        for name in git(self.work, "diff", "--name-only", "main", "feature").splitlines():
            diff = git(self.work, "diff", "main", "feature", "--", name)
            hunks = diff[diff.index("\n@@") + 1:] if "\n@@" in diff else ""
            files.append({"filename": name, "status": "modified", "patch": hunks})
        github.add_pull(PR, head_ref="feature", head_sha=self.head_sha, base_ref="main",
                        base_sha=self.base_sha, head_repo=head_repo, files=files)
        self.event = tmp / "event.json"
        self.event.write_text(json.dumps({
            "action": "synchronize", "number": PR,
            "pull_request": {"number": PR, "head": {"ref": "feature", "sha": self.head_sha},
                             "base": {"ref": "main", "sha": self.base_sha}},
            "repository": {"full_name": REPO}}))
        self.summary = tmp / "summary.md"
        self.result = tmp / "out" / "mulligan-result.json"
        self.home = tmp / "home"


def ci_env(pr: PullRequestRepo, github: FakeGitHub, model_server, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "OPENAI_", "MULLIGAN_", "INPUT_"))}
    env.update({
        "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(pr.event), "GITHUB_REPOSITORY": REPO,
        "GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": github.url,
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_STEP_SUMMARY": str(pr.summary), "GITHUB_OUTPUT": str(pr.tmp / "output.txt"),
        "OPENAI_BASE_URL": model_server.base_url, "OPENAI_API_KEY": API_KEY,
        "MULLIGAN_MODEL": "test-model", "MULLIGAN_IMAGE": "mulligan/base:bookworm",
        "MULLIGAN_HOME": str(pr.home), "MULLIGAN_GITHUB_BACKOFF_S": "0.01",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


def run_ci(pr: PullRequestRepo, env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "agent.frontends.cli", "ci", "--candidates", "2", "--rounds", "1",
           "--workers", "2", "--timeout", "60", "--result-file", str(pr.result), *args]
    return subprocess.run(cmd, cwd=pr.work, env=env, capture_output=True, text=True,
                          timeout=280, check=False)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert API_KEY not in text


def everything_written(pr: PullRequestRepo, proc: subprocess.CompletedProcess,
                       github: FakeGitHub) -> list[str]:
    texts = [proc.stdout, proc.stderr]
    for path in (pr.summary, pr.result, pr.tmp / "output.txt"):
        if path.exists():
            texts.append(path.read_text())
    texts += [json.dumps(r.body) for r in github.requests if r.body is not None]
    texts += [c["body"] for c in github.comments]
    texts += [json.dumps(c) for c in github.review_comments]
    texts += [json.dumps(p) for p in github.pulls.values()]
    for trajectory in pr.home.glob("runs/*/trajectory.jsonl"):
        texts.append(trajectory.read_text())
    return texts


def patch_in(body: str) -> str:
    m = re.search(r"<details><summary>Patch[^<]*</summary>\n\n(`{3,})diff\n(.*?)\n\1\n", body,
                  re.DOTALL)
    assert m, body
    return m.group(2) + "\n"


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.docker
def test_failing_pr_gets_one_comment_with_a_patch_that_applies_then_it_is_updated(
        tmp_path, fake_github, openai_server, docker_image):  # noqa: F811
    openai_server.required_api_key = API_KEY
    openai_server.fallback = lambda _req: FIX_ANSWER
    pr = PullRequestRepo(tmp_path, fake_github, BUGGY)
    env = ci_env(pr, fake_github, openai_server)

    proc = run_ci(pr, env)
    assert proc.returncode == 0, proc.stderr

    creates = fake_github.calls("POST", rf"/repos/{REPO}/issues/{PR}/comments")
    assert len(creates) == 1
    comments = fake_github.comments_on(PR)
    assert len(comments) == 1
    body = comments[0]["body"]
    assert body.startswith(MARKER)
    assert "found a fix" in body
    patch = patch_in(body)
    check = subprocess.run(["git", "apply", "--check", "-"], cwd=pr.work, input=patch,
                           text=True, capture_output=True, check=False)
    assert check.returncode == 0, check.stderr

    # the bug is on a line the PR changed, and the fix is one small hunk: a suggestion
    assert len(fake_github.reviews) == 1
    assert fake_github.reviews[0]["commit_id"] == pr.head_sha
    [suggestion] = fake_github.review_comments
    assert suggestion["path"] == "calc.py"
    assert "```suggestion\n    return total / len(values)\n```" in suggestion["body"]
    assert (pr.work / "calc.py").read_text() == BUGGY  # the checkout is not touched

    summary = pr.summary.read_text()
    assert "Baseline failures" in summary and "test_mean_of_two" in summary
    assert "Candidates per round" in summary and "tokens" in summary and "cost" in summary
    result = json.loads(pr.result.read_text())
    assert result["status"] == "solved" and result["exit_code"] == 0
    assert result["patch"] == patch and result["comment_url"]
    assert "status=solved" in (tmp_path / "output.txt").read_text()
    assert_no_secret(*everything_written(pr, proc, fake_github))

    # a second run (a new push) edits the same comment; no second comment, no duplicate
    # suggestions
    first_model_requests = len(openai_server.chat_requests)
    assert first_model_requests >= 1
    proc2 = run_ci(pr, env)
    assert proc2.returncode == 0, proc2.stderr
    assert len(fake_github.calls("POST", rf"/repos/{REPO}/issues/{PR}/comments")) == 1
    updates = fake_github.calls("PATCH", rf"/repos/{REPO}/issues/comments/\d+")
    assert len(updates) == 1
    assert updates[0].path.endswith(f"/{comments[0]['id']}")
    assert len(fake_github.comments_on(PR)) == 1
    assert len(fake_github.reviews) == 1 and len(fake_github.review_comments) == 1
    assert_no_secret(*everything_written(pr, proc2, fake_github))
    for request in fake_github.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"  # sent, only there


@pytest.mark.docker
def test_push_mode_opens_a_pull_request_against_the_pr_head_branch(
        tmp_path, fake_github, openai_server, docker_image):  # noqa: F811
    openai_server.fallback = lambda _req: FIX_ANSWER
    pr = PullRequestRepo(tmp_path, fake_github, BUGGY)
    env = ci_env(pr, fake_github, openai_server)

    proc = run_ci(pr, env, "--mode", "push")
    assert proc.returncode == 0, proc.stderr

    fix_sha = git(pr.origin, "rev-parse", "refs/heads/mulligan/fix-7")
    assert git(pr.origin, "rev-parse", f"{fix_sha}^") == pr.head_sha
    assert git(pr.origin, "rev-parse", "refs/heads/feature") == pr.head_sha  # untouched
    fixed = git(pr.origin, "show", f"{fix_sha}:calc.py")
    assert "return total / len(values)" in fixed
    assert git(pr.work, "rev-parse", "HEAD") == pr.head_sha
    assert git(pr.work, "status", "--porcelain") == ""

    [create] = fake_github.calls("POST", rf"/repos/{REPO}/pulls")
    assert create.body["base"] == "feature"
    assert create.body["head"] == "mulligan/fix-7"
    assert "#7" in create.body["title"]
    [comment] = fake_github.comments_on(PR)
    assert "mulligan/fix-7" in comment["body"]
    result = json.loads(pr.result.read_text())
    assert result["fix_branch"] == "mulligan/fix-7" and result["fix_pull_request"]
    assert not fake_github.reviews  # push mode: the fix is the pull request
    assert_no_secret(*everything_written(pr, proc, fake_github))

    # again: the branch is updated, the open fix PR is reused
    proc2 = run_ci(pr, env, "--mode", "push")
    assert proc2.returncode == 0, proc2.stderr
    assert len(fake_github.calls("POST", rf"/repos/{REPO}/pulls")) == 1
    assert len(fake_github.comments_on(PR)) == 1


@pytest.mark.docker
def test_push_to_pr_branch_only_when_asked_and_only_fast_forward(
        tmp_path, fake_github, openai_server, docker_image):  # noqa: F811
    openai_server.fallback = lambda _req: FIX_ANSWER
    pr = PullRequestRepo(tmp_path, fake_github, BUGGY)
    proc = run_ci(pr, ci_env(pr, fake_github, openai_server), "--mode", "push",
                  "--push-to-pr-branch")
    assert proc.returncode == 0, proc.stderr
    new_head = git(pr.origin, "rev-parse", "refs/heads/feature")
    assert git(pr.origin, "rev-parse", f"{new_head}^") == pr.head_sha
    assert "return total / len(values)" in git(pr.origin, "show", f"{new_head}:calc.py")
    assert "mulligan/fix-7" not in git(pr.origin, "branch", "--list")
    assert fake_github.calls("POST", rf"/repos/{REPO}/pulls") == []
    [comment] = fake_github.comments_on(PR)
    assert "Pushed the fix to `feature`" in comment["body"]


@pytest.mark.docker
def test_fork_pr_with_a_read_only_token_falls_back_to_the_summary(
        tmp_path, fake_github, openai_server, docker_image):  # noqa: F811
    openai_server.fallback = lambda _req: FIX_ANSWER
    pr = PullRequestRepo(tmp_path, fake_github, BUGGY, head_repo="stranger/calc")
    fake_github.fail(403, times=None, match=r"^POST ",
                     message="Resource not accessible by integration")
    proc = run_ci(pr, ci_env(pr, fake_github, openai_server), "--mode", "push")
    assert proc.returncode == 0, proc.stderr  # solved; the write failure is a warning
    assert git(pr.origin, "for-each-ref", "--format=%(refname:short)").split() == ["feature", "main"]
    assert fake_github.calls("POST", rf"/repos/{REPO}/pulls") == []
    assert len(fake_github.calls("POST", rf"/repos/{REPO}/issues/{PR}/comments")) == 1
    summary = pr.summary.read_text()
    assert "comes from a fork" in summary and "read-only" in summary
    assert patch_in(summary)
    result = json.loads(pr.result.read_text())
    assert result["status"] == "solved" and result["comment_url"] is None
    assert_no_secret(*everything_written(pr, proc, fake_github))


@pytest.mark.docker
def test_unsolved_exits_1_and_says_so(tmp_path, fake_github, openai_server,
                                      docker_image):  # noqa: F811
    wrong = FIX_ANSWER.replace("return total / len(values)", "return total / 2")
    openai_server.fallback = lambda _req: wrong
    pr = PullRequestRepo(tmp_path, fake_github, BUGGY)
    # no one-token changes: `/ 2` is a wrong answer no mutant of the line repairs, but the
    # tracer points at `len(values) - 1`, whose mutant would
    proc = run_ci(pr, ci_env(pr, fake_github, openai_server), "--mutants", "0")
    assert proc.returncode == 1, proc.stderr
    [comment] = fake_github.comments_on(PR)
    assert "could not fix" in comment["body"]
    assert "Best attempt (does not pass)" in comment["body"]
    assert fake_github.reviews == []  # no suggestion for a patch that does not pass
    assert json.loads(pr.result.read_text())["status"] == "unsolved"


@pytest.mark.docker
def test_passing_pr_gets_no_fix_attempt(tmp_path, fake_github, openai_server,
                                        docker_image):  # noqa: F811
    pr = PullRequestRepo(tmp_path, fake_github, GOOD.replace('"""A tiny calculator."""',
                                                             '"""A tiny, correct calculator."""'))
    proc = run_ci(pr, ci_env(pr, fake_github, openai_server))
    assert proc.returncode == 0, proc.stderr
    assert openai_server.requests == []  # no model request at all
    assert fake_github.comments == []  # and nothing to say on the PR
    result = json.loads(pr.result.read_text())
    assert result["status"] == "nothing_to_fix" and result["candidates"] == []
    assert "nothing to fix" in pr.summary.read_text()
    assert_no_secret(*everything_written(pr, proc, fake_github))


@pytest.mark.parametrize("failure", ["401", "500"])
def test_api_errors_exit_2_with_one_clear_line(tmp_path, fake_github, openai_server, failure):
    pr = PullRequestRepo(tmp_path, fake_github, BUGGY)
    if failure == "401":  # a proxy that echoes the credentials it got: they must not leak
        fake_github.fail(401, times=None, message=f"Bad credentials (got Bearer {TOKEN})")
    else:
        fake_github.fail(500, times=None)
    proc = run_ci(pr, ci_env(pr, fake_github, openai_server))
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mulligan: error")]
    assert len(errors) == 1, proc.stderr
    assert f"HTTP {failure}" in errors[0] and f"/pulls/{PR}" in errors[0]
    assert ("Bad credentials" in errors[0]) if failure == "401" else ("retries" in errors[0])
    assert "Traceback" not in proc.stderr
    assert openai_server.requests == []  # it stops before spending anything on the model
    if failure == "500":
        assert len(fake_github.requests) == 5  # the first try and 4 retries
    result = json.loads(pr.result.read_text())
    assert result["status"] == "error" and result["exit_code"] == 2
    assert "Error" in pr.summary.read_text()
    assert_no_secret(*everything_written(pr, proc, fake_github))


def test_missing_token_is_a_configuration_error(tmp_path, fake_github, openai_server):
    pr = PullRequestRepo(tmp_path, fake_github, BUGGY)
    env = ci_env(pr, fake_github, openai_server)
    del env["GITHUB_TOKEN"]
    proc = run_ci(pr, env)
    assert proc.returncode == 2
    assert "GITHUB_TOKEN is not set" in proc.stderr
    assert fake_github.requests == [] and openai_server.requests == []


def test_comment_from_an_outsider_is_ignored(tmp_path, fake_github, openai_server):
    pr = PullRequestRepo(tmp_path, fake_github, BUGGY)
    pr.event.write_text(json.dumps({
        "action": "created", "issue": {"number": PR, "pull_request": {"url": "x"}},
        "comment": {"body": "/mulligan fix", "author_association": "NONE"}}))
    proc = run_ci(pr, ci_env(pr, fake_github, openai_server,
                             GITHUB_EVENT_NAME="issue_comment"))
    assert proc.returncode == 0, proc.stderr
    assert "owners, members and collaborators" in proc.stderr
    assert fake_github.requests == [] and openai_server.requests == []
    assert json.loads(pr.result.read_text())["status"] == "skipped"


# -- the GitHub client -------------------------------------------------------------------------


def client(server: FakeGitHub, waits: list[float] | None = None, **kw) -> GitHub:
    sleep = waits.append if waits is not None else (lambda _s: None)
    return GitHub(TOKEN, REPO, server.url, sleep=sleep, **kw)


def test_client_retries_5xx_with_backoff_then_succeeds(fake_github):
    fake_github.add_pull(1, head_ref="f", head_sha="abc")
    fake_github.fail(502, times=2)
    waits: list[float] = []
    assert client(fake_github, waits, backoff_s=0.5).pull(1)["head"]["sha"] == "abc"
    assert waits == [0.5, 1.0]
    assert len(fake_github.requests) == 3


def test_client_waits_for_the_rate_limit_reset_within_a_cap(fake_github):
    fake_github.add_pull(1, head_ref="f", head_sha="abc")
    fake_github.rate_limited(reset_in=5)
    fake_github.rate_limited(reset_in=3600)
    fake_github.rate_limited(retry_after=2, status=429)
    waits: list[float] = []
    assert client(fake_github, waits, max_wait_s=30).pull(1)["number"] == 1
    assert 4 <= waits[0] <= 7  # until the reset, plus a second
    assert waits[1] == 30  # an hour away: capped
    assert waits[2] == 2  # retry-after
    assert len(fake_github.requests) == 4


def test_client_gives_up_on_a_persistent_rate_limit(fake_github):
    fake_github.add_pull(1, head_ref="f", head_sha="abc")
    fake_github.rate_limited(times=10, reset_in=1)
    with pytest.raises(GitHubError, match="HTTP 403: rate limited"):
        client(fake_github, max_retries=2).pull(1)
    assert len(fake_github.requests) == 3


def test_a_plain_403_is_not_retried(fake_github):
    fake_github.add_pull(1, head_ref="f", head_sha="abc")
    fake_github.fail(403, message="Resource not accessible by integration")
    with pytest.raises(GitHubError) as info:
        client(fake_github).create_comment(1, "hi")
    assert info.value.status == 403 and "not accessible" in str(info.value)
    assert len(fake_github.requests) == 1


def test_client_errors_are_one_line_and_name_the_call(fake_github):
    with pytest.raises(GitHubError) as info:
        client(fake_github).pull(99)
    text = str(info.value)
    assert "\n" not in text and "HTTP 404" in text and f"GET /repos/{REPO}/pulls/99" in text
    assert info.value.exit_code == 2
    with pytest.raises(GitHubError, match="HTTP 401.*Bad credentials"):
        GitHub("wrong", REPO, fake_github.url, sleep=lambda _s: None).pull(1)
    with pytest.raises(GitHubError, match="unreachable"):
        GitHub(TOKEN, REPO, "http://127.0.0.1:9", max_retries=1,
               sleep=lambda _s: None).pull(1)
    with pytest.raises(GitHubError, match="owner/name"):
        GitHub(TOKEN, "no-slash", fake_github.url)


def test_client_paginates_and_honours_an_enterprise_api_prefix():
    with FakeGitHub(REPO, token=TOKEN, prefix="/api/v3", page_size=2) as ghe:
        ghe.add_pull(3, head_ref="f", head_sha="abc")
        for i in range(5):
            ghe.add_comment(3, f"comment {i}")
        gh = client(ghe)
        assert gh.api_url.endswith("/api/v3")
        assert [c["body"] for c in gh.issue_comments(3)] == [f"comment {i}" for i in range(5)]
        assert len(ghe.requests) == 3
        assert all(r.path == f"/repos/{REPO}/issues/3/comments" for r in ghe.requests)


def test_fake_github_stops_at_teardown():
    server = FakeGitHub().start()
    port = server.port
    server.stop()
    import socket

    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


# -- the event, the suggestions, the comment, redaction --------------------------------------------


def write_event(tmp_path: Path, event: dict) -> dict[str, str]:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return {"GITHUB_EVENT_PATH": str(path), "GITHUB_REPOSITORY": REPO}


def test_context_from_a_pull_request_event(tmp_path):
    env = write_event(tmp_path, {"number": 4, "pull_request": {"number": 4}})
    ctx = load_context({**env, "GITHUB_API_URL": "https://ghe.example/api/v3/"})
    assert ctx.pr_number == 4 and ctx.event_name == "pull_request"
    assert ctx.api_url == "https://ghe.example/api/v3" and ctx.skip_reason is None


@pytest.mark.parametrize("body,association,pr_link,expect", [
    ("/mulligan fix", "MEMBER", True, ("run", None)),
    ("/mulligan fix push\nplease", "OWNER", True, ("run", "push")),
    ("/MULLIGAN FIX check", "COLLABORATOR", True, ("run", "check")),
    ("/mulligan fix", "CONTRIBUTOR", True, ("skip", "owners, members")),
    ("looks good", "OWNER", True, ("skip", "not a `/mulligan fix`")),
    ("/mulligan fix", "OWNER", False, ("skip", "not on a pull request")),
])
def test_context_from_an_issue_comment(tmp_path, body, association, pr_link, expect):
    issue: dict = {"number": 9}
    if pr_link:
        issue["pull_request"] = {"url": "https://api.github.com/repos/octo/calc/pulls/9"}
    env = write_event(tmp_path, {"action": "created", "issue": issue,
                                 "comment": {"body": body, "author_association": association}})
    ctx = load_context({**env, "GITHUB_EVENT_NAME": "issue_comment"})
    if expect[0] == "run":
        assert ctx.pr_number == 9 and ctx.skip_reason is None
        assert ctx.command_mode == expect[1]
    else:
        assert ctx.skip_reason and expect[1] in ctx.skip_reason


def test_context_errors(tmp_path):
    with pytest.raises(ConfigError, match="GITHUB_EVENT_PATH is not set"):
        load_context({"GITHUB_REPOSITORY": REPO})
    env = write_event(tmp_path, {"ref": "refs/heads/main"})
    with pytest.raises(ConfigError, match="no pull request in the push event"):
        load_context({**env, "GITHUB_EVENT_NAME": "push"})
    assert load_context({**env, "GITHUB_EVENT_NAME": "push"}, pr=12).pr_number == 12
    env = write_event(tmp_path, {"action": "created", "issue": {"number": 1, "pull_request": {"url": "x"}},
                                 "comment": {"body": "/mulligan fix everything",
                                             "author_association": "OWNER"}})
    with pytest.raises(ConfigError, match="mode must be one of"):
        load_context(env)


PR_FILE_PATCH = """@@ -1,6 +1,7 @@
 def mean(values):
     if not values:
         raise ValueError("empty")
-    return sum(values) / len(values)
+    total = sum(values)
+    return total / (len(values) - 1)
 
 
 def clamp(value, low, high):
"""


def test_touched_lines_are_the_added_lines_of_the_pr():
    touched = touched_lines([{"filename": "calc.py", "status": "modified",
                              "patch": PR_FILE_PATCH},
                             {"filename": "big.bin", "status": "modified"}])
    assert touched == {"calc.py": {4, 5}}


def _fix(old_line: str, new_lines: str, start: int = 2) -> str:
    return (f"diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n"
            f"@@ -{start},4 +{start},{3 + new_lines.count(chr(10))} @@\n"
            f"     if not values:\n         raise ValueError(\"empty\")\n"
            f"     total = sum(values)\n-{old_line}\n"
            + "".join(f"+{line}\n" for line in new_lines.splitlines()))


def test_a_small_fix_on_touched_lines_becomes_a_suggestion():
    touched = {"calc.py": {4, 5}}
    [s] = suggestions_for(_fix("    return total / (len(values) - 1)",
                               "    return total / len(values)\n"), touched)
    assert (s.path, s.start, s.end) == ("calc.py", 5, 5)
    assert s.replacement == "    return total / len(values)\n"
    comment = s.review_comment()
    assert comment["line"] == 5 and comment["side"] == "RIGHT" and "start_line" not in comment
    assert "```suggestion\n    return total / len(values)\n```" in comment["body"]
    # a line the PR did not touch: no suggestion (the comment still has the patch)
    assert suggestions_for(_fix("    return total / (len(values) - 1)",
                                "    return total / len(values)\n"), {"calc.py": {4}}) == []


def test_multi_line_and_insertion_suggestions():
    patch = ("diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,4 +1,4 @@\n"
             " a = 1\n-b = 2\n-c = 3\n+b = 20\n+c = 30\n d = 4\n")
    [s] = suggestions_for(patch, {"m.py": {2, 3}})
    assert (s.start, s.end, s.replacement) == (2, 3, "b = 20\nc = 30\n")
    assert s.review_comment()["start_line"] == 2
    insertion = ("diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,4 @@\n"
                 " a = 1\n b = 2\n+b2 = 2.5\n c = 3\n")
    [s] = suggestions_for(insertion, {"m.py": {2}})
    assert (s.start, s.end, s.replacement) == (2, 2, "b = 2\nb2 = 2.5\n")
    two_hunks = patch + "@@ -20,2 +20,2 @@\n x\n-y\n+z\n"
    assert suggestions_for(two_hunks, {"m.py": set(range(1, 30))}) == []
    new_file = ("diff --git a/n.py b/n.py\nnew file mode 100644\n--- /dev/null\n+++ b/n.py\n"
                "@@ -0,0 +1 @@\n+x = 1\n")
    assert suggestions_for(new_file, {"n.py": {1}}) == []


def test_a_suggestion_with_backticks_gets_a_longer_fence():
    s = Suggestion("a.md", 1, 1, "```python\n")
    assert "````suggestion\n```python\n````" in s.body()


def test_redactor_hides_secrets_in_every_form():
    import base64

    redact = Redactor([TOKEN, API_KEY, None, ""])
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    text = f"a {TOKEN} b {API_KEY} c {basic} d ghp_{'x' * 36} e sk-{'y' * 40}"
    out = redact(text)
    assert TOKEN not in out and API_KEY not in out and basic not in out
    assert "ghp_" not in out and "sk-yyyy" not in out and out.count("***") == 5
    assert redact.data({"k": [TOKEN, 1]}) == {"k": ["***", 1]}
    assert redact("https://user:pa55@proxy.example/v1") == "https://***@proxy.example/v1"


def test_push_env_sends_the_token_as_a_header_for_https_remotes_only(tmp_path):
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "remote", "add", "origin", "https://github.example/octo/calc.git")
    env = push_env(repo, "origin", TOKEN, "https://github.example")
    key = next(k for k, v in env.items() if k.startswith("GIT_CONFIG_KEY_")
               and v.endswith(".extraheader"))
    assert env[key] == "http.https://github.example/.extraheader"
    assert env[key.replace("KEY", "VALUE")].startswith("AUTHORIZATION: basic ")
    assert TOKEN not in json.dumps(env)  # base64 in a header value, never in a URL or argv
    for other in (str(tmp_path / "bare.git"), "https://elsewhere.example/octo/calc.git"):
        git(repo, "remote", "set-url", "origin", other)
        env = push_env(repo, "origin", TOKEN, "https://github.example")
        assert not any(v.endswith(".extraheader") for k, v in env.items()
                       if k.startswith("GIT_CONFIG_KEY_"))


def test_a_pull_request_cannot_reconfigure_the_endpoint_or_budgets(tmp_path):
    from agent.frontends.ci.bot import ci_settings

    (tmp_path / ".mulligan.toml").write_text(
        'base_url = "https://attacker.example/v1"\nca_bundle = "/etc/shadow"\n'
        'candidates = 64\ntest_cmd = "python -m pytest -x"\nmemory_mb = 2048\n')
    env = {"OPENAI_API_KEY": API_KEY, "MULLIGAN_MODEL": "m"}
    settings, ignored = ci_settings(tmp_path, {"candidates": None, "rounds": 2}, env)
    assert settings.base_url is None and settings.ca_bundle is None
    assert settings.candidates == 4 and settings.rounds == 2 and settings.model == "m"
    assert settings.test_cmd == "python -m pytest -x" and settings.memory_mb == 2048
    assert ignored == ["base_url", "ca_bundle", "candidates"]
    trusted, _ = ci_settings(tmp_path, {}, env, trust_repo_config=True)
    assert trusted.base_url == "https://attacker.example/v1"


def test_comment_is_capped_below_githubs_limit():
    from agent.frontends.ci.bot import Outcome
    from agent.events import ResultStatus
    from agent.loop import Result

    result = Result("run", ResultStatus.SOLVED, None, "+x\n" * 40_000, [], None)
    o = Outcome(pr=1, mode="comment", head_sha="a" * 40, result=result)
    body = render_comment(o)
    assert body.startswith(MARKER) and len(body) < 65_536
    assert "cut short" in body


def test_result_file_and_summary_on_a_configuration_error(tmp_path, monkeypatch):
    from argparse import Namespace

    from agent.frontends.ci.bot import cmd_ci

    args = Namespace(pr=None, mode=None, path=str(tmp_path), result_file=tmp_path / "r.json",
                     verbose=False, suggestions=True)
    summary = tmp_path / "s.md"
    started = time.monotonic()
    code = cmd_ci(args, environ={"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_TOKEN": TOKEN,
                                 "GITHUB_REPOSITORY": REPO})
    assert code == 2 and time.monotonic() - started < 5
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["status"] == "error" and "GITHUB_EVENT_PATH" in data["error"]
    assert "could not run" in summary.read_text()
