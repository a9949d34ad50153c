"""Settings from flags, the environment, and the repository's config, in that precedence:
flags > environment > `[tool.mulligan]` in pyproject.toml > `.mulligan.toml` > defaults,
with the repository's part filtered by how far the user trusts that repository.

A repository is hostile by default (docs/security.md): its files may set how the tests run
and small numbers, but not the keys that route secrets or choose what runs on the host
(`REPO_TRUSTED_ONLY`) nor numbers above `REPO_MAXIMA`, unless the user trusts it (the
allowlist of agent/trust.py, `mulligan trust`, or `--trust-repo`). What is ignored is named
in one notice line. `mulligan ci` uses the stricter `RepoPolicy.CI`: only `CI_REPO_KEYS`,
and only the flag lifts it (every pull request is the same path and remote)."""

from __future__ import annotations

import enum
import math
import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import ConfigError

ENV_VARS = {
    "base_url": "OPENAI_BASE_URL",
    "api_key": "OPENAI_API_KEY",
    "model": "MULLIGAN_MODEL",
    "image": "MULLIGAN_IMAGE",
    "ca_bundle": "MULLIGAN_CA_BUNDLE",
    "test_cmd": "MULLIGAN_TEST_CMD",
}

# Keys a repository's files set only when the user trusts the repository: they send the API
# key somewhere (base_url, api_key), put a host file or a chosen image under the tests
# (ca_bundle, image), make a test-editing patch count as a fix (allow_test_edits), or turn
# the cost budget off (prices).
REPO_TRUSTED_ONLY = frozenset({"base_url", "api_key", "ca_bundle", "image",
                               "allow_test_edits", "prices"})
# What an untrusted repository may set at most (more spends the user's money, time or
# memory); a larger value is ignored and named in the notice. Documented in docs/security.md.
REPO_MAXIMA: dict[str, float] = {
    "candidates": 8, "rounds": 5, "beam": 4, "workers": 8, "max_tokens": 8192,
    "max_completion_tokens": 8192, "request_timeout_s": 300, "token_budget": 2_000_000,
    "cost_budget_usd": 5.0, "time_budget_s": 3600, "test_timeout_s": 600, "memory_mb": 4096,
    "context_tokens": 32_768, "mutants": 200,
}
# What a pull request's own config may set in `mulligan ci` (within REPO_MAXIMA): the rest
# comes from the workflow.
CI_REPO_KEYS = frozenset({"test_cmd", "test_timeout_s", "memory_mb", "context_tokens",
                          "temperature", "seed"})
# Keys of a front end's own table entries (e.g. `hook_mode`), read by that front end.
FRONT_END_PREFIXES = ("hook_",)
TRUST_FLAG = "trust_repo"  # in a front end's flags: --trust-repo


class RepoPolicy(enum.Enum):
    LOCAL = "local"  # cli, tui, hook: the allowlist or --trust-repo trusts a repository
    CI = "ci"  # mulligan ci: only --trust-repo(-config); CI_REPO_KEYS otherwise


class Settings(BaseModel):
    """Every numeric setting has an upper bound, whoever sets it (docs/security.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    test_cmd: str = "python -m pytest -q"
    image: str | None = None  # None: python:3.12-slim where present or pullable, else offline
    ca_bundle: Path | None = None
    candidates: int = Field(default=4, ge=1, le=64)
    rounds: int = Field(default=3, ge=1, le=20)
    beam: int = Field(default=2, ge=1, le=16)
    workers: int = Field(default_factory=lambda: min(os.cpu_count() or 1, 64), ge=1, le=64)
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    seed: int | None = None
    max_tokens: int | None = Field(default=2048, ge=1, le=131_072)
    reasoning_effort: str | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1, le=131_072)
    request_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    token_budget: int | None = Field(default=None, ge=1, le=1_000_000_000)
    cost_budget_usd: float | None = Field(default=None, ge=0, le=10_000)
    time_budget_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    test_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    memory_mb: int = Field(default=1024, ge=64, le=65_536)
    allow_test_edits: bool = False
    # How the model is asked to write edits; None: whole files for the bundled 1.5B model (it
    # follows that format far more reliably, see docs/local-model.md), SEARCH/REPLACE otherwise.
    edit_format: Literal["search_replace", "whole_file", "function"] | None = None
    context_tokens: int = Field(default=6000, ge=256, le=1_048_576)
    # Constrain answers to the edit format with the server's grammar support (llama.cpp).
    constrained_decoding: bool = True
    # The search (agent.schedule, docs/search.md): auto | narrow | wide; stop when this many
    # distinct changes pass, unless keep_going samples every round to the end.
    schedule: Literal["auto", "narrow", "wide"] = "auto"
    keep_going: bool = False
    min_passing: int = Field(default=1, ge=1, le=64)
    max_requests: int | None = Field(default=None, ge=1, le=64)  # None: the server's slots
    # Mutants of the suspect lines screened against the failing tests after the model's
    # first answer fails (agent/edits/mutants.py); 0: none. 150: every one-token and wider
    # mutant of a short function's executed lines (the public tasks have up to ~140).
    mutants: int = Field(default=150, ge=0, le=1000)
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None


def file_settings(repo: Path) -> dict[str, Any]:
    """`.mulligan.toml` overlaid by pyproject's `[tool.mulligan]` (the latter wins), as the
    repository has them: unfiltered (see `repo_settings`)."""
    merged: dict[str, Any] = dict(_read_toml(repo / ".mulligan.toml"))
    tool = _read_toml(repo / "pyproject.toml").get("tool", {})
    table = tool.get("mulligan", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{repo / 'pyproject.toml'}: [tool.mulligan] is not a table")
    merged.update(table)
    return {str(k).replace("-", "_"): v for k, v in merged.items()}


def env_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    return {field: environ[var] for field, var in ENV_VARS.items() if environ.get(var)}


@dataclass(frozen=True)
class RepoSettings:
    """The part of a repository's config that is honoured, and what was left out and why."""

    values: dict[str, Any]
    ignored: tuple[str, ...]  # "base_url", "candidates=50 (above 8)", ...
    trusted: bool

    def notice(self) -> str | None:
        if not self.ignored:
            return None
        return (f"mulligan: ignoring {', '.join(self.ignored)} from the repository's config: "
                "the repository is not trusted (`mulligan trust`, or --trust-repo)")


def _above_maximum(key: str, value: Any) -> float | None:
    limit = REPO_MAXIMA.get(key)
    if limit is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None  # not a number: the Settings validation names it
    return limit if math.isnan(number) or number > limit else None


def repo_settings(repo: Path, *, trust: bool | None = None,
                  policy: RepoPolicy = RepoPolicy.LOCAL) -> RepoSettings:
    """The repository's settings as far as it is trusted. `trust`: True (the user's flag),
    False, or None to look the repository up in the allowlist (RepoPolicy.LOCAL only)."""
    values = {k: v for k, v in file_settings(repo).items()
              if not k.startswith(FRONT_END_PREFIXES)}
    if trust is None:
        if policy is RepoPolicy.LOCAL and values:
            from agent.trust import is_trusted

            trust = is_trusted(repo)
        else:
            trust = False
    if trust:
        if "api_key" in values:
            raise ConfigError("do not put api_key in a committed config file: set "
                              "OPENAI_API_KEY")
        return RepoSettings(values, (), True)
    kept: dict[str, Any] = {}
    ignored: list[str] = []
    for key in sorted(values):
        value = values[key]
        limit = _above_maximum(key, value)
        if key in REPO_TRUSTED_ONLY or (policy is RepoPolicy.CI and key not in CI_REPO_KEYS):
            ignored.append(key)
        elif limit is not None:
            ignored.append(f"{key}={value} (above {limit:g})")
        else:
            kept[key] = value
    return RepoSettings(kept, tuple(ignored), False)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_settings(repo: Path, flags: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None, *,
                  policy: RepoPolicy = RepoPolicy.LOCAL,
                  notice: Callable[[str], None] | None = _stderr) -> Settings:
    """The settings of a run in `repo`. `flags` may carry `trust_repo` (--trust-repo); the
    notice line about ignored repository keys goes to `notice` (stderr by default)."""
    flags = dict(flags or {})
    trust = True if flags.pop(TRUST_FLAG, None) else None
    from_repo = repo_settings(repo, trust=trust, policy=policy)
    line = from_repo.notice()
    if line and notice is not None:
        notice(line)
    values = dict(from_repo.values)
    values.update(env_settings(environ))
    values.update({k: v for k, v in flags.items() if v is not None})
    return validate(values)


def validate(values: Mapping[str, Any]) -> Settings:
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
