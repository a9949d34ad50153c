"""Settings from flags, the environment, and the repository's config, in that precedence:
flags > environment > `[tool.mulligan]` in pyproject.toml > `.mulligan.toml` > defaults."""

from __future__ import annotations

import os
import tomllib
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


class Settings(BaseModel):
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
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    seed: int | None = None
    max_tokens: int | None = 2048
    reasoning_effort: str | None = None
    max_completion_tokens: int | None = None
    request_timeout_s: float = Field(default=120.0, gt=0)
    token_budget: int | None = Field(default=None, ge=1)
    cost_budget_usd: float | None = Field(default=None, ge=0)
    time_budget_s: float | None = Field(default=None, gt=0)
    test_timeout_s: float = Field(default=120.0, gt=0)
    memory_mb: int = Field(default=1024, ge=64)
    allow_test_edits: bool = False
    # How the model is asked to write edits; None: whole files for the bundled 1.5B model (it
    # follows that format far more reliably, see docs/local-model.md), SEARCH/REPLACE otherwise.
    edit_format: Literal["search_replace", "whole_file", "function"] | None = None
    context_tokens: int = Field(default=6000, ge=256)
    # Constrain answers to the edit format with the server's grammar support (llama.cpp).
    constrained_decoding: bool = True
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def file_settings(repo: Path) -> dict[str, Any]:
    """`.mulligan.toml` overlaid by pyproject's `[tool.mulligan]` (the latter wins)."""
    merged: dict[str, Any] = dict(_read_toml(repo / ".mulligan.toml"))
    merged.update(_read_toml(repo / "pyproject.toml").get("tool", {}).get("mulligan", {}))
    return {k.replace("-", "_"): v for k, v in merged.items()}


def env_settings(environ: dict[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    return {field: environ[var] for field, var in ENV_VARS.items() if environ.get(var)}


# Keys of a front end's own table entries (e.g. `hook_mode`), read by that front end.
FRONT_END_PREFIXES = ("hook_",)


def load_settings(repo: Path, flags: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    values = {k: v for k, v in file_settings(repo).items()
              if not k.startswith(FRONT_END_PREFIXES)}
    if "api_key" in values:
        raise ConfigError("do not put api_key in a committed config file: set OPENAI_API_KEY")
    values.update(env_settings(environ))
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
