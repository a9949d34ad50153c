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
import json
import os
import re
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from agent.errors import ConfigError, MulliganError
from agent.events import ResultStatus
from agent.frontends.ci.context import MODES, Context, ci_settings, load_context
from agent.frontends.ci.github import GitHub, GitHubError
from agent.frontends.ci.gitops import BOT_NAME as BOT_LOGIN
from agent.frontends.ci.gitops import _git, _head_sha, commit_patch, push_env
from agent.frontends.ci.redact import RedactingStream, Redactor
from agent.frontends.ci.render import (
    MARKER,
    Outcome,
    _n,
    code,
    render_comment,
    render_summary,
)
from agent.frontends.ci.suggestions import Suggestion, suggestions_for, touched_lines  # noqa: F401
from agent.frontends.options import CI_SETTINGS, add_setting_flags, setting_values

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
    p.add_argument("--trust-repo-config", "--trust-repo", dest="trust_repo_config",
                   action="store_true",
                   help="honour every setting of the checked-out .mulligan.toml / "
                        "[tool.mulligan] (by default only the test command and limits: the "
                        "endpoint, model, image and budgets come from the workflow)")
    p.add_argument("--no-suggestions", dest="suggestions", action="store_false",
                   help="do not post ```suggestion review comments")
    p.add_argument("--result-file", type=Path, default=Path("mulligan-result.json"),
                   help="where to write the JSON result (default: mulligan-result.json)")
    add_setting_flags(p, CI_SETTINGS)
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
        self.login: str | None = None
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
        except MulliganError as exc:
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
        from agent.workspace import find_repo_root

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
        settings, ignored = ci_settings(repo, setting_values(args, CI_SETTINGS),
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
            o.notes.append(f"The checkout is {code(local_head[:7])}, not the pull request head "
                           f"{code(o.head_sha[:7])} (check out `github.event.pull_request.head.sha`"
                           "); line suggestions and pushes are skipped.")

        result = self._solve(repo, settings)
        o.result = result
        o.exit_code = 0 if result.status in (ResultStatus.SOLVED,
                                             ResultStatus.NOTHING_TO_FIX) else 1
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
        if result.status is ResultStatus.SOLVED and result.patch:
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
                        o.notes.append(f"The fix was not pushed: {code(self.redact(str(exc)))}")
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
        if existing is None and o.status == ResultStatus.NOTHING_TO_FIX:
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

    def _login(self) -> str:
        """Who the bot is on GitHub: the token's login, else the Actions bot (the author of
        what a GITHUB_TOKEN writes), else MULLIGAN_BOT_LOGIN when set for an app token."""
        if self.login is None:
            assert self.gh is not None
            self.login = (self.gh.viewer_login() or self.environ.get("MULLIGAN_BOT_LOGIN")
                          or BOT_LOGIN)
        return self.login

    def _own_comment(self, comments: list[dict]) -> dict | None:
        """The bot's earlier comment: the marker AND written by the bot's own login. A
        comment anyone else starts with the marker is not ours and is never edited."""
        return next((c for c in comments if _is_own(c, self._login())), None)

    def _suggest(self, pr: dict) -> None:
        o, gh = self.outcome, self.gh
        assert gh is not None and o.result is not None and o.pr is not None
        touched = touched_lines(gh.pull_files(o.pr))
        found = suggestions_for(o.result.patch, touched)
        if not found:
            return
        posted = {m for c in gh.review_comments(o.pr)
                  if str((c.get("user") or {}).get("login") or "") == self._login()
                  for m in re.findall(r"<!-- mulligan-suggestion:([0-9a-f]+) -->",
                                      str(c.get("body") or ""))}
        fresh = [s for s in found if s.key not in posted]
        o.suggestions = len(found)
        if not fresh:
            return
        body = self.redact(f"{MARKER}\nMulligan's fix for the failing tests, as suggestions "
                           f"(tested in the sandbox on {code((o.head_sha or '')[:7])}).")
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
            f"({code((o.head_sha or '')[:7])}). Merge it into {code(head_ref)} to update "
            f"#{o.pr}.\n\n"
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

    def _redact_trajectory(self) -> None:
        """The trajectory is uploaded as an artifact: redacted in place like every other
        output (the endpoint with credentials, error texts, anything token-shaped)."""
        if not self.outcome.trajectory:
            return
        path = Path(self.outcome.trajectory)
        try:
            text = path.read_text(encoding="utf-8")
            clean = self.redact(text)
            if clean != text:
                tmp = path.with_name(path.name + ".redacting")
                tmp.write_text(clean, encoding="utf-8")
                os.replace(tmp, path)
        except OSError as exc:
            self.log(f"mulligan: warning: cannot redact the trajectory: {exc.strerror}")

    def _write_outputs(self) -> None:
        o, args = self.outcome, self.args
        self._redact_trajectory()
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


def _is_own(comment: Mapping[str, Any], login: str) -> bool:
    return str(comment.get("body") or "").startswith(MARKER) and \
        str((comment.get("user") or {}).get("login") or "") == login


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mulligan")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["ci", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
