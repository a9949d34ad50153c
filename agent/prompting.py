"""What the model is asked: the source shown (within the server's window), the failures
quoted, the edit format, and the feedback that turns a tested candidate into a revision."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.candidate import Candidate
from agent.config import Settings
from agent.context.localize import Suspect
from agent.context.repomap import RepoMap, TracebackHit, parse_traceback_locations
from agent.protocols import ChatModel
from prompts import render
from sandbox.api import RunStatus, TestReport
from sandbox.testpaths import is_test_path

MESSAGE_CHARS = 1500
OUTPUT_CHARS = 3000


@dataclass
class Prompter:
    """Builds prompts for one run. `base_files` and `baseline_report` follow the solver's
    working base (a reproduction test becomes part of it); `suspects` come from localization."""

    settings: Settings
    repo_map: RepoMap
    model: ChatModel  # for the server's real context window, learnt at preflight
    base_files: dict[str, str] = field(default_factory=dict)
    baseline_report: TestReport | None = None
    suspects: list[Suspect] = field(default_factory=list)
    partial_sources: bool = False  # a file was shown in part: never ask for whole files

    def focus(self, report: TestReport | None, failing: Sequence) -> list[TracebackHit]:
        text = "\n".join(t.message for t in failing)
        if report is not None:
            text += "\n" + report.output
        return parse_traceback_locations(text, self.base_files.keys())

    def context_budget(self) -> int:
        """Tokens of source per prompt: the setting, within the server's real window less
        the answer and the rest of the prompt (instructions, failures, repository map)."""
        budget = self.settings.context_tokens
        window = self.model.window
        if window is not None:
            answer = self.settings.max_tokens or 2048
            budget = min(budget, max(256, (window.tokens - answer) // 2))
        return budget

    def sources(self, files: dict[str, str], focus: list[TracebackHit]) -> dict[str, str]:
        budget = self.context_budget()
        if self.suspects:
            sources, partial = self.repo_map.function_source(files, self.suspects,
                                                             token_budget=budget)
            if sources:
                self.partial_sources = self.partial_sources or partial
                return sources
        sources = self.repo_map.implicated_source(files, focus, token_budget=budget)
        if not sources:
            sources = {p: t for p, t in files.items() if p.endswith(".py") and not is_test_path(p)}
        total, kept = 0, {}
        for path, text in sources.items():
            total += len(text) // 4
            if kept and total > budget:
                break
            kept[path] = text
        return kept

    def failure_views(self, cases: Sequence) -> list[dict[str, str]]:
        return [{"nodeid": c.nodeid, "message": quote(c.message or "(no message)", MESSAGE_CHARS)}
                for c in cases][:10]

    def feedback(self, parent: Candidate) -> str:
        if parent.changes_nothing:
            # Seen on the bundled model: told "answer again in the format", it answers "the
            # file is already correct" and copies it again. The failures say it is not.
            return self.render("no_change", parent.fmt, layout_only=bool(parent.patch),
                               failures=self.failure_views(self.baseline_report.failing())[:3])
        if parent.format_error is not None or parent.files is None:
            focus = self.focus(self.baseline_report, self.baseline_report.failing())
            return self.render("format_error", parent.fmt,
                                error=parent.format_error or "no usable edits",
                                sources=self.sources(self.base_files, focus))
        if parent.dependency_edits and not parent.rejected:
            focus = self.focus(self.baseline_report, self.baseline_report.failing())
            return self.render("dependency_edit", parent.fmt, files=parent.dependency_edits,
                                patch=parent.patch, sources=self.sources(self.base_files, focus))
        if parent.rejected:
            focus = self.focus(self.baseline_report, self.baseline_report.failing())
            return self.render("test_edit", parent.fmt, files=parent.edited_tests,
                                patch=parent.patch,
                                sources=self.sources(self.base_files, focus))
        report = parent.report
        assert report is not None
        focus = self.focus(report, parent.still_failing + parent.regressions)
        return self.render(
            "revise", parent.fmt, patch=parent.patch, patch_error=report.patch_error,
            timed_out=report.status is RunStatus.TIMED_OUT,
            still_failing=self.failure_views(parent.still_failing),
            regressions=self.failure_views(parent.regressions),
            output=quote(report.output, OUTPUT_CHARS),
            sources=self.sources(parent.files, focus))

    @property
    def edit_format(self) -> str:
        chosen = self.settings.edit_format or (
            "whole_file" if self.settings.model == "local" else "search_replace")
        if chosen == "whole_file" and self.partial_sources:
            return "function"  # a file shown in part cannot be given back whole
        return chosen

    def other_format(self) -> str:
        """The format a round that made no progress tries instead: never a whole file of a
        file shown in part."""
        if self.edit_format != "search_replace":
            return "search_replace"
        return "function" if self.partial_sources else "whole_file"

    def render(self, name: str, fmt: str | None = None, **context: object) -> str:
        return render(name, lang=lang, edit_format=fmt or self.edit_format, **context)

    def system(self, sources: dict[str, str], fmt: str | None = None) -> str:
        example = next(iter(sources), "path/to/file.py")
        return render("system", edit_format=fmt or self.edit_format, example_path=example)


# What differs from one run of the same failing tests to the next: object addresses
# (`<function f at 0x7f3a...>`) and the summary's duration. Left in, the same failure would
# be another prompt each time: no prefix cached across runs, no reproducible greedy answer.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]{6,}(?=>)")
_DURATION = re.compile(r"(?m)^(.*\b(?:passed|failed|errors?|skipped|xfailed|xpassed|deselected|"
                       r"warnings?|no tests ran)\b.*?) in \d+(?:\.\d+)?s(?: \(\d+:\d\d:\d\d\))?")


def quote(text: str, limit: int) -> str:
    """Test output as the model is shown it: steady from run to run, and at most `limit`
    characters (the middle cut out: the first failure and the summary matter most)."""
    text = _DURATION.sub(r"\1", _ADDRESS.sub("", text)).strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + "\n...\n" + text[-half:]


def words(text: str | None) -> list[str]:
    return re.findall(r"[A-Za-z_][A-Za-z0-9_]{2,}", text or "")


def lang(path: str) -> str:
    return {"py": "python", "js": "javascript", "ts": "typescript", "md": "markdown",
            "toml": "toml", "json": "json", "yml": "yaml", "yaml": "yaml"}.get(
        path.rsplit(".", 1)[-1], "")
