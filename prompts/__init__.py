"""Prompt templates (jinja2 text files beside this module), one per step of the loop."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

HERE = Path(__file__).parent


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )


def render(name: str, **context: object) -> str:
    """Render `prompts/<name>.j2`; a missing variable is an error, not an empty string."""
    return _env().get_template(f"{name}.j2").render(**context).strip() + "\n"
