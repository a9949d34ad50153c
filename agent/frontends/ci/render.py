"""What the CI bot writes for people: the pull-request comment and the job summary, with
every string from the repository or the model made inert Markdown (docs/security.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agent.events import ResultStatus
from sandbox.diff import diff_stats

MARKER = "<!-- mulligan -->"
COMMENT_LIMIT = 60_000  # GitHub refuses bodies above 65,536 characters


def code(text: object) -> str:
    """`text` as one inline code span nothing in it can end early: a backtick run longer than
    any inside, padded where it starts or ends with one, on one line. Inside a code span
    GitHub renders no links, no @-mentions, no HTML and no emphasis: inert text."""
    flat = " ".join(str(text).split()) or " "
    longest = max((len(m) for m in re.findall(r"`+", flat)), default=0)
    bar = "`" * (longest + 1)
    pad = " " if flat[0] == "`" or flat[-1] == "`" else ""
    return f"{bar}{pad}{flat}{pad}{bar}"


def fence(text: str, char: str = "`") -> str:
    longest = max((len(m) for m in re.findall(f"{re.escape(char)}+", text)), default=0)
    return char * max(3, longest + 1)


def _details(summary: str, patch: str, limit: int) -> str:
    note = ""
    if len(patch) > limit:
        patch = patch[:limit].rsplit("\n", 1)[0] + "\n"
        note = ("\n_The patch is cut short here; the whole patch is in the result file "
                "(the `mulligan-result` artifact)._\n")
    bar = fence(patch)
    return (f"<details><summary>{summary}</summary>\n\n{bar}diff\n{patch}"
            f"{'' if patch.endswith(chr(10)) else chr(10)}{bar}\n{note}\n</details>\n")


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
            return ResultStatus.ERROR
        if self.skipped is not None:
            return "skipped"
        return self.result.status if self.result is not None else ResultStatus.ERROR

    def title(self) -> str:
        return {
            ResultStatus.SOLVED: "✅ Mulligan found a fix for the failing tests",
            ResultStatus.UNSOLVED: "❌ Mulligan could not fix the failing tests",
            ResultStatus.NOTHING_TO_FIX: "✅ The tests pass: nothing to fix",
            "skipped": "Mulligan: nothing to do",
            ResultStatus.ERROR: "⚠️ Mulligan could not run",
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
        lines = [f"- {code(t)}" for t in targets[:limit]]
        if len(targets) > limit:
            lines.append(f"- … and {len(targets) - limit} more")
        return "\n".join(lines) + "\n"


def render_comment(o: Outcome) -> str:
    r = o.result
    sha = (o.head_sha or "")[:7]
    parts = [MARKER, f"### {o.title()}", ""]
    if o.status == ResultStatus.NOTHING_TO_FIX:
        parts.append(f"The tests of {code(sha)} pass, so there is nothing to fix.")
    elif r is not None:
        count = len(r.baseline.targets) if r.baseline else 0
        parts.append(f"{_n(count, 'test')} {'fails' if count == 1 else 'fail'} on {code(sha)}:\n")
        parts.append(o.failing_list())
        if o.status == ResultStatus.SOLVED:
            chosen = r.chosen
            parts.append(f"Mulligan tested a patch that makes them pass without breaking the "
                         f"others (candidate {code(chosen.id if chosen else '-')}, "
                         f"round {chosen.round if chosen else '-'}).")
        else:
            parts.append(f"No candidate passed: {code(r.reason or 'budget spent')}.")
    if o.fix_pull_url:
        parts.append(f"\n**Opened #{o.fix_pull_number} with the fix** (branch "
                     f"{code(o.fix_branch)}): {o.fix_pull_url}")
    elif o.fix_commit and o.fix_branch:
        parts.append(f"\n**Pushed the fix to {code(o.fix_branch)}** as {code(o.fix_commit[:7])}.")
    if o.suggestions:
        parts.append(f"\nThe fix is also posted as {_n(o.suggestions, 'suggestion')} in a "
                     "review, ready to commit from the pull request page.")
    for note in o.notes:
        parts.append(f"\n> {note}")
    if r is not None and r.patch:
        files, added, removed = diff_stats(r.patch)
        label = "Patch" if o.status == ResultStatus.SOLVED else "Best attempt (does not pass)"
        parts.append("")
        parts.append(_details(f"{label}: {_n(files, 'file')}, +{added} −{removed}", r.patch,
                              COMMENT_LIMIT - 4000))
        if o.status == ResultStatus.SOLVED:
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
        parts += [f"**Error:** {code(o.error)}", ""]
    if o.skipped:
        parts += [code(o.skipped), ""]
    rows: list[tuple[str, str]] = []
    if o.pr is not None:
        rows.append(("pull request", f"#{o.pr}" + (f" ({code(o.head_sha[:7])})" if o.head_sha
                                                      else "")))
    rows.append(("mode", o.mode))
    if r is not None:
        rows.append(("result", code(f"{r.status}{': ' + r.reason if r.reason else ''}")))
    rows += o.totals_rows()
    if o.comment_url:
        rows.append(("comment", o.comment_url))
    if o.fix_pull_url:
        rows.append(("fix pull request", o.fix_pull_url))
    elif o.fix_commit:
        rows.append(("fix commit", f"{code(o.fix_commit[:7])} on {code(o.fix_branch)}"))
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
                         f"{len(unusable)} | {tokens:,} | {_cell(code(best.id))} "
                         f"({len(best.fixed)} fixed, {len(best.regressions)} regressions) |")
    if r is not None and r.patch:
        files, added, removed = diff_stats(r.patch)
        label = "Patch" if r.status == ResultStatus.SOLVED else "Best attempt (does not pass)"
        parts += ["", _details(f"{label}: {_n(files, 'file')}, +{added} −{removed}", r.patch,
                               200_000)]
    return "\n".join(parts).rstrip() + "\n\n"

