"""The model server's real context window, and sizing prompt and answer to fit in it.

llama.cpp reports its per-slot context at `GET /props` (`default_generation_settings.n_ctx`),
vLLM the model's `max_model_len` in `GET /v1/models`. Servers that say neither (hosted APIs)
give None: nothing is capped then. Token counts are estimated from characters, on the safe
side for code (about 3 characters a token), so a prompt judged to fit does fit.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit


CHARS_PER_TOKEN_SAFE = 3.0
MESSAGE_OVERHEAD = 8  # chat-template tokens around each message
MIN_ANSWER = 256  # an answer room smaller than this cannot hold an edit


@dataclass(frozen=True)
class Window:
    tokens: int
    source: str  # where the size came from, for messages

    def answer_room(self, messages: Sequence[dict[str, Any]], wanted: int | None) -> int:
        """The max_tokens that keeps prompt + answer inside the window."""
        room = self.tokens - estimate_tokens(messages)
        return room if wanted is None else min(wanted, room)


def estimate_tokens(messages: Sequence[dict[str, Any]]) -> int:
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return int(chars / CHARS_PER_TOKEN_SAFE) + MESSAGE_OVERHEAD * len(messages)


def _root(base_url: str) -> str:
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    path = path[: -len("/v1")] if path.endswith("/v1") else path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _get_json(url: str, headers: dict[str, str], timeout_s: float) -> Any | None:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return json.loads(response.read(1 << 20))
    except (OSError, ValueError):  # refused, 404, timeout, not JSON
        return None


def _window(base_url: str, headers: dict[str, str], model: str, timeout_s: float
            ) -> Window | None:
    props = _get_json(_root(base_url) + "/props", headers, timeout_s)
    if isinstance(props, dict):
        n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx") \
            or props.get("n_ctx")
        if isinstance(n_ctx, int) and n_ctx > 0:
            return Window(n_ctx, "llama.cpp /props n_ctx")
    models = _get_json(base_url.rstrip("/") + "/models", headers, timeout_s)
    entries = models.get("data") if isinstance(models, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        length = entry.get("max_model_len") if isinstance(entry, dict) else None
        if isinstance(length, int) and length > 0 and (
                entry.get("id") == model or len(entries) == 1):
            return Window(length, "vLLM max_model_len")
    return None


async def server_window(base_url: str, api_key: str | None, model: str,
                        timeout_s: float = 5.0) -> Window | None:
    """Ask the server for its context size; None when it does not say (or cannot be asked)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return await asyncio.to_thread(_window, base_url, headers, model, timeout_s)
