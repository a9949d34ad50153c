"""Per-request sampling hints (a temperature for this call, the server slot of a lineage, the
server's own request fields) set by the search around one `sample` call. They travel in a
context variable, so every ChatModel wrapper (replay, watchdog) passes them through without
the ChatModel protocol growing a parameter for each server's extras."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hints:
    temperature: float | None = None  # None: the model settings' temperature
    extra_body: dict[str, Any] = field(default_factory=dict)  # e.g. llama.cpp cache_prompt
    grammar: str | None = None  # GBNF the answer must follow, sent where the server is llama.cpp
    max_tokens: int | None = None  # a shorter answer than the settings' (a corrected line)


_current: ContextVar[Hints] = ContextVar("mulligan_sampling_hints", default=Hints())


def current() -> Hints:
    return _current.get()


@contextlib.contextmanager
def hinted(hints: Hints) -> Iterator[None]:
    token = _current.set(hints)
    try:
        yield
    finally:
        _current.reset(token)
