"""The settings flags, declared once: every front end builds its options from this table.

A flag sets one `Settings` field; its type and bounds are the field's own (agent/config.py),
so a front end cannot disagree with the settings about what a value may be. The CLI's
`fix`, `doctor`, `sandbox run` and `tui`, `mulligan ci` and the TUI's setup screen all take
their flags here; the hook takes none (its settings come from the repository's config).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.errors import ConfigError

__all__ = [
    "BUDGET",
    "CI_SETTINGS",
    "DOCTOR_SETTINGS",
    "FIX_SETTINGS",
    "MODEL",
    "SANDBOX",
    "SEARCH",
    "SETTING_FLAGS",
    "TUI_SETTINGS",
    "SettingFlag",
    "add_issue_flags",
    "add_setting_flags",
    "add_trust_flag",
    "add_tui_arguments",
    "bounds",
    "read_issue",
    "setting_values",
]


@dataclass(frozen=True)
class SettingFlag:
    """A command-line flag that sets one Settings field (`field`)."""

    field: str
    flag: str
    type: type | None  # None: a switch that sets True
    help: str | None = None
    choices: tuple[str, ...] | None = None


SETTING_FLAGS: tuple[SettingFlag, ...] = (
    SettingFlag("model", "--model", str, "model name (MULLIGAN_MODEL)"),
    SettingFlag("base_url", "--base-url", str, "OpenAI-compatible endpoint (OPENAI_BASE_URL)"),
    SettingFlag("test_cmd", "--test-cmd", str, "test command (default: python -m pytest -q)"),
    SettingFlag("image", "--image", str,
                "base image (default: python:3.12-slim, else mulligan/base:bookworm)"),
    SettingFlag("ca_bundle", "--ca-bundle", Path,
                "CA bundle for a TLS-intercepting proxy, used when installing deps"),
    SettingFlag("test_timeout_s", "--timeout", float, "wall-time limit per test run, seconds"),
    SettingFlag("candidates", "--candidates", int, "candidates per round"),
    SettingFlag("rounds", "--rounds", int, "rounds (1 = no revision)"),
    SettingFlag("beam", "--beam", int, "candidates revised per round"),
    SettingFlag("workers", "--workers", int, "sandboxes at once"),
    SettingFlag("temperature", "--temperature", float, "sampling temperature"),
    SettingFlag("seed", "--seed", int, "sampling seed"),
    SettingFlag("token_budget", "--token-budget", int, "stop after this many model tokens"),
    SettingFlag("cost_budget_usd", "--cost-budget", float, "stop after this many US dollars"),
    SettingFlag("time_budget_s", "--time-budget", float,
                "seconds for the whole run; the best candidate so far is kept"),
    SettingFlag("schedule", "--schedule", str,
                "search width: narrow = one greedy sample first (auto on a slow local "
                "server), wide = all candidates at once (docs/search.md)",
                choices=("auto", "narrow", "wide")),
    SettingFlag("keep_going", "--keep-going", None,
                "test every candidate of the round even after one passes"),
    SettingFlag("min_passing", "--min-passing", int,
                "stop once this many distinct changes pass (default 1)"),
    SettingFlag("max_requests", "--max-requests", int,
                "model requests at once (default: the server's slots)"),
    SettingFlag("mutants", "--mutants", int,
                "mutants of the suspect lines (one-token, then wider changes) to test "
                "when the first answer fails (default 150; 0: none)"),
    SettingFlag("allow_test_edits", "--allow-test-edits", None,
                "let candidates edit the tests and the test configuration"),
    SettingFlag("edit_format", "--edit-format", str,
                "how the model writes edits (default: whole_file for the local model, "
                "search_replace otherwise)", choices=("search_replace", "whole_file", "function")),
)
_BY_FIELD = {f.field: f for f in SETTING_FLAGS}

# The groups front ends pick from.
MODEL = ("model", "base_url")
SANDBOX = ("test_cmd", "image", "ca_bundle", "test_timeout_s")
SEARCH = ("candidates", "rounds", "beam", "workers", "temperature", "seed", "schedule",
          "keep_going", "min_passing", "max_requests", "mutants")
BUDGET = ("token_budget", "cost_budget_usd", "time_budget_s")

# What each front end offers.
DOCTOR_SETTINGS = (*MODEL, "image")
FIX_SETTINGS = (*MODEL, *SANDBOX, *SEARCH, *BUDGET, "allow_test_edits", "edit_format")
CI_SETTINGS = (*MODEL, *SANDBOX, *SEARCH, *BUDGET, "allow_test_edits")
TUI_SETTINGS = (*MODEL, *SANDBOX, "candidates", "rounds", "workers", "schedule",
                "time_budget_s")


def add_trust_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--trust-repo: not a Settings field but how far the repository's own config is honoured
    (agent/config.py takes `trust_repo` from the flags; `mulligan ci` spells it
    --trust-repo-config too)."""
    parser.add_argument("--trust-repo", dest="trust_repo", action="store_true", default=None,
                        help="honour every key of the repository's own config this once "
                             "(base_url, image, ca_bundle, ...; see `mulligan trust`)")


def add_setting_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                      fields: Iterable[str]) -> None:
    """Add the flags for `fields` (Settings field names); each defaults to None, "not given",
    so the repository's config and the environment still apply underneath."""
    for name in fields:
        flag = _BY_FIELD[name]
        if flag.type is None:
            parser.add_argument(flag.flag, dest=flag.field, action="store_true", default=None,
                                help=flag.help)
        else:
            parser.add_argument(flag.flag, dest=flag.field, type=flag.type, default=None,
                                choices=flag.choices, help=flag.help,
                                metavar=None if flag.choices else flag.flag[2:].upper())


def setting_values(args: argparse.Namespace | Mapping[str, Any],
                   fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The settings flags given on a parsed command line (field -> value, None: not given)."""
    get = args.get if isinstance(args, Mapping) else lambda n: getattr(args, n, None)
    names = _BY_FIELD if fields is None else fields
    values = {name: get(name) for name in names}
    if get("trust_repo"):
        values["trust_repo"] = True  # add_trust_flag's switch
    return values


def bounds(field: str) -> tuple[float | None, float | None]:
    """The (low, high) a Settings field accepts, from its declaration (None: unbounded)."""
    low = high = None
    for rule in Settings.model_fields[field].metadata:
        low = getattr(rule, "ge", None) if getattr(rule, "ge", None) is not None else low
        high = getattr(rule, "le", None) if getattr(rule, "le", None) is not None else high
    return low, high


def add_tui_arguments(parser: argparse.ArgumentParser) -> None:
    """`mulligan tui`'s arguments (declared here: the core never imports the TUI)."""
    parser.add_argument("path", nargs="?", default=".")
    parser.add_argument("--run", default=None, metavar="RUN",
                        help="open a run from its trajectory (id or path); r resumes it")
    add_issue_flags(parser)
    add_setting_flags(parser, TUI_SETTINGS)
    add_trust_flag(parser)
    parser.add_argument("--demo", action="store_true",
                        help="show a recorded example run (no Docker, no model)")


def add_issue_flags(parser: argparse.ArgumentParser) -> None:
    """--issue TEXT or --issue-file FILE: the bug in words, when no test fails yet."""
    issue = parser.add_mutually_exclusive_group()
    issue.add_argument("--issue", default=None, help="issue statement (text)")
    issue.add_argument("--issue-file", type=Path, default=None, help="issue statement (file)")


def read_issue(args: argparse.Namespace) -> str | None:
    """The issue statement the flags give; ConfigError when the file cannot be read."""
    path = getattr(args, "issue_file", None)
    if path is None:
        return getattr(args, "issue", None)
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
