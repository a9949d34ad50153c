"""The model client: sample N chat completions from an OpenAI-compatible endpoint.

One request with ``n=N`` where the server honours ``n``; where it does not (Ollama and
others answer one choice whatever ``n`` is), the client notices, remembers it for this
instance (``honours_n = False``) and gets the missing candidates with concurrent requests,
each with its own seed (``seed + i``) when a seed is set.

Failures:

* timeouts, connection errors, 408/409/429 and 5xx are retried by the openai SDK itself
  (``max_retries``; it honours ``Retry-After`` / ``retry-after-ms`` and ``x-should-retry``);
  Mulligan only sets how long it waits (its backoff numbers, and a ``Retry-After`` longer
  than the SDK accepts is waited up to a cap and retried, not given up on). Answers that are
  not chat completions (invalid JSON, no choices) pass the SDK: they are retried here. When
  retries run out: :class:`ModelUnavailable` (malformed answers: :class:`ModelError`);
* unknown model (404): :class:`ModelNotFound` at once, listing the server's models when
  ``GET /models`` works;
* 401/403 and other 4xx: :class:`ModelError` at once. A 400 that says a parameter is
  unsupported (reasoning models reject ``temperature``; some want ``max_completion_tokens``
  instead of ``max_tokens``; some servers reject ``n``) is cured once by dropping or
  renaming that parameter, and remembered.

Every error message is one line that names the base URL; the API key never appears in a
message, a log line or the settings' repr.

Usage and cost: the server reports usage per request; agent.models.pricing splits it over
the choices and prices it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import openai

from agent.errors import ModelError
from agent.models import hints
from agent.models.failures import (
    Adapted,
    Malformed,
    NotFound,
    NUnsupported,
    Parameters,
    attempts,
    classify,
    display_url,
    model_not_found,
    names_a_model,
    no_endpoint,
    server_message,
    unreachable,
)
from agent.models.pricing import DEFAULT_PRICES, cost_usd, price_for, split_usage
from agent.models.window import MIN_ANSWER, Window, estimate_tokens, server_window
from agent.protocols import ChatModel, Completion, Usage

__all__ = [
    "DEFAULT_PRICES",
    "NO_KEY",
    "ChatModel",
    "Completion",
    "ModelSettings",
    "OpenAIChatModel",
    "Usage",
    "cost_usd",
    "price_for",
    "split_usage",
]

log = logging.getLogger(__name__)

NO_KEY = "sk-no-key"
"""The API key sent when none is configured (local servers accept anything)."""

@dataclass(frozen=True)
class ModelSettings:
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # None -> NO_KEY
    temperature: float = 0.8
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = 2048
    reasoning_effort: str | None = None
    max_completion_tokens: int | None = None  # sent instead of max_tokens when set
    timeout_s: float = 120.0
    max_retries: int = 4
    # model -> (USD per 1M input tokens, per 1M output tokens), merged over DEFAULT_PRICES
    prices: dict[str, tuple[float, float]] | None = field(default=None, hash=False)
    retry_base_delay_s: float = 0.5  # backoff: base * 2**attempt, with jitter
    retry_max_delay_s: float = 30.0
    retry_after_cap_s: float = 60.0  # a server's Retry-After is honoured up to this
    max_concurrent_requests: int = 8  # per model instance


# -- the client ----------------------------------------------------------------------------


def _backoff(settings: ModelSettings, attempt: int) -> float:
    """The wait before retry ``attempt + 1``: exponential, capped, with jitter."""
    delay = min(settings.retry_max_delay_s, settings.retry_base_delay_s * 2**attempt)
    return random.uniform(delay / 2, delay)


class _SDKClient(openai.AsyncOpenAI):
    """The SDK's client, retrying as the SDK does (what to retry, ``Retry-After``,
    ``x-should-retry``); only the waits are Mulligan's: ``ModelSettings``' backoff, and a
    ``Retry-After`` beyond the SDK's own limit waited up to ``retry_after_cap_s`` and retried
    (a rate-limited local server that asks for an hour still gets its retries)."""

    def __init__(self, *, mulligan: ModelSettings | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._mulligan = mulligan

    def copy(self, **kwargs: Any) -> _SDKClient:  # with_options: the copy keeps the waits
        clone = super().copy(**kwargs)
        clone._mulligan = self._mulligan
        return clone

    with_options = copy

    def _calculate_retry_timeout(self, remaining_retries: int, options: Any,
                                 response_headers: Any = None) -> float:
        retry_after = self._parse_retry_after_header(response_headers)
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            return min(retry_after, self._settings.retry_after_cap_s)
        attempt = options.get_max_retries(self.max_retries) - remaining_retries
        return _backoff(self._settings, attempt)

    @property
    def _settings(self) -> ModelSettings:
        assert self._mulligan is not None
        return self._mulligan

    def _should_retry(self, response: Any) -> bool:
        # The SDK decides on the same answer without its Retry-After: the wait is capped above.
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("retry-after", "retry-after-ms")}
        return super()._should_retry(type(response)(response.status_code, headers=headers))


class OpenAIChatModel:
    """:class:`ChatModel` over ``openai.AsyncOpenAI`` (the SDK retries; see the module doc).

    Use one instance per event loop (the HTTP client is created on first use); close it
    with ``await model.aclose()`` or ``async with``.
    """

    def __init__(self, settings: ModelSettings, *, client: openai.AsyncOpenAI | None = None):
        self.settings = settings
        self.honours_n = True  # set to False once the server answered fewer choices than n
        self.total_usage = Usage()
        self.total_cost_usd = 0.0
        self.request_count = 0  # HTTP requests that got an answer
        self.prices = {**DEFAULT_PRICES, **(settings.prices or {})}
        self._client = client
        self._api_key = settings.api_key or NO_KEY
        self._params_seen = Parameters()  # what the server said it does not support
        self._semaphore: asyncio.Semaphore | None = None
        self.window: Window | None = None  # the server's context size, learnt in preflight

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self.settings.model!r}, base_url={self.base_url!r})"

    # -- plumbing

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            s = self.settings
            self._client = _SDKClient(
                mulligan=s,
                max_retries=s.max_retries,
                base_url=s.base_url,
                api_key=self._api_key,
                timeout=openai.Timeout(s.timeout_s, connect=min(s.timeout_s, 10.0)),
            )
        return self._client

    @property
    def _listing_client(self) -> openai.AsyncOpenAI:
        """For GET /models: one try (a check that fails fast, or a best-effort listing)."""
        return self.client.with_options(max_retries=0)

    @property
    def base_url(self) -> str:
        """The base URL, as shown in messages (no credentials, no query)."""
        if self._client is None and self.settings.base_url:
            return display_url(self.settings.base_url)
        return display_url(str(self.client.base_url))

    async def preflight(self) -> None:
        """Fail fast, before any test runs, when the server cannot be reached at all. Only the
        connection is judged: servers differ in what /models lists (llama.cpp serves any name)."""
        try:
            await self._listing_client.models.list(timeout=min(self.settings.timeout_s, 10.0))
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise unreachable(self.base_url, exc) from None
        except (openai.OpenAIError, ValueError, TypeError):
            pass  # reachable; the first real request reports anything else precisely
        self.window = await server_window(str(self.client.base_url), self.settings.api_key,
                                          self.settings.model)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key != NO_KEY:
            text = text.replace(self._api_key, "***")
        return text

    def _line(self, text: str, limit: int = 300) -> str:
        text = " ".join(self._redact(str(text)).split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    # -- sampling

    async def sample(
        self, messages: list[dict], n: int, *, seed: int | None = None
    ) -> list[Completion]:
        """``n`` completions of ``messages``; ``seed`` overrides ``settings.seed``."""
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        if seed is None:
            seed = self.settings.seed
        if n == 1 or not self.honours_n:
            return await self._singles(messages, n, seed, start=0)
        try:
            first = await self._request(messages, n, seed)
        except NUnsupported:
            log.info("%s rejects n=%d; sending one request per candidate", self.base_url, n)
            self.honours_n = False
            return await self._singles(messages, n, seed, start=0)
        if len(first) >= n:
            return first[:n]
        log.info(
            "%s answered %d choice(s) for n=%d; sending one request per missing candidate",
            self.base_url,
            len(first),
            n,
        )
        self.honours_n = False
        rest = await self._singles(messages, n - len(first), seed, start=len(first))
        return first + rest

    async def _singles(
        self, messages: list[dict], count: int, seed: int | None, *, start: int
    ) -> list[Completion]:
        """``count`` concurrent one-choice requests; seeds ``seed + start + i``."""
        coros = [
            self._request(messages, 1, None if seed is None else seed + start + i)
            for i in range(count)
        ]
        results = await _gather_or_cancel(coros)
        return [c for batch in results for c in batch[:1]]

    def _params(self, messages: list[dict], n: int, seed: int | None) -> dict[str, Any]:
        s = self.settings
        params: dict[str, Any] = {"model": s.model, "messages": messages}
        if n > 1:
            params["n"] = n
        hint = hints.current()
        if "temperature" not in self._params_seen.dropped:
            params["temperature"] = s.temperature if hint.temperature is None \
                else hint.temperature
        if hint.extra_body:
            params["extra_body"] = dict(hint.extra_body)
        if s.top_p is not None and "top_p" not in self._params_seen.dropped:
            params["top_p"] = s.top_p
        if seed is not None and "seed" not in self._params_seen.dropped:
            params["seed"] = seed
        if s.reasoning_effort is not None:
            params["reasoning_effort"] = s.reasoning_effort
        if s.max_completion_tokens is not None:
            params["max_completion_tokens"] = _shorter(s.max_completion_tokens, hint.max_tokens)
        elif s.max_tokens is not None or hint.max_tokens is not None or self.window is not None:
            params[self._params_seen.max_tokens] = self._answer_room(
                messages, _shorter(s.max_tokens, hint.max_tokens))
        if hint.grammar and self.window is not None and "llama.cpp" in self.window.source:
            params.setdefault("extra_body", {})["grammar"] = hint.grammar
        return params

    def _answer_room(self, messages: list[dict], wanted: int | None) -> int | None:
        """max_tokens so that prompt + answer fit the server's window (never truncated)."""
        if self.window is None:
            return wanted
        room = self.window.answer_room(messages, wanted)
        if room < MIN_ANSWER:
            raise ModelError(
                f"the prompt (about {estimate_tokens(messages)} tokens) leaves no room for an "
                f"answer in the server's {self.window.tokens}-token context "
                f"({self.window.source}): lower --context-tokens or start the server with a "
                "larger context")
        return room

    async def _request(self, messages: list[dict], n: int, seed: int | None) -> list[Completion]:
        """One chat completion request -> its choices as Completions. The SDK retries
        transport failures; this loop retries malformed answers and re-sends once per
        parameter the server said it does not support."""
        s = self.settings
        started = time.monotonic()
        attempt = 0
        adaptations = 0
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(max(1, s.max_concurrent_requests))
        while True:
            params = self._params(messages, n, seed)
            try:
                async with self._semaphore:
                    try:
                        response = await self.client.chat.completions.create(**params)
                    except openai.APIError as exc:
                        classify(exc, url=self.base_url, model=s.model, timeout_s=s.timeout_s,
                                 max_retries=s.max_retries, n=n, params=self._params_seen,
                                 line=self._line)
                    except ValueError as exc:  # invalid JSON in a 200 answer
                        raise Malformed(f"invalid JSON ({exc})") from exc
                    return self._completions(response, messages, started)
            except Malformed as err:
                if attempt >= s.max_retries:
                    raise ModelError(
                        f"the model server at {self.base_url} kept sending malformed answers "
                        f"({attempts(attempt + 1)}): {self._line(str(err), 160)} — is it an "
                        "OpenAI-compatible endpoint?") from err
                delay = _backoff(s, attempt)
                attempt += 1
                log.debug("malformed answer (%s); retry %d/%d in %.2fs", self._line(str(err)),
                          attempt, s.max_retries, delay)
                await asyncio.sleep(delay)
            except NotFound as nf:
                raise await self._not_found(nf.exc) from None
            except Adapted:
                adaptations += 1
                if adaptations > 4:  # cannot happen more than once per parameter
                    raise ModelError(
                        f"the model server at {self.base_url} keeps rejecting the request "
                        "parameters"
                    ) from None

    async def _not_found(self, exc: openai.NotFoundError) -> ModelError:
        message = self._line(server_message(exc))
        if not names_a_model(exc, message):
            return no_endpoint(self.base_url, message)
        try:
            page = await self._listing_client.models.list(
                timeout=min(self.settings.timeout_s, 10.0))
            names: list[str] | None = sorted(m.id for m in page.data)
        except (openai.OpenAIError, ValueError, AttributeError, TypeError):  # best effort
            names = None
        return model_not_found(self.settings.model, self.base_url, names)

    def _completions(self, response: Any, messages: list[dict], started: float) -> list[Completion]:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            kind = type(response).__name__
            raise Malformed(f"no choices in the answer ({kind})")
        try:
            ordered = sorted(choices, key=lambda c: c.index if c.index is not None else 0)
            texts = [(c.message.content or "") if c.message is not None else "" for c in ordered]
            reasons = [c.finish_reason or "unknown" for c in ordered]
        except AttributeError as exc:
            raise Malformed(f"unexpected answer shape ({exc})") from exc
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
            # the server reported no usage: estimate it (4 characters per token)
            prompt_tokens = max(1, sum(len(str(m.get("content") or "")) for m in messages) // 4)
            completion_tokens = sum(max(1, len(t) // 4) for t in texts)
        total = Usage(prompt_tokens, completion_tokens)
        model = self.settings.model
        if price_for(model, self.prices) is None and getattr(response, "model", None):
            model = str(response.model)
        self.request_count += 1
        self.total_usage = self.total_usage + total
        self.total_cost_usd += cost_usd(model, total, self.prices)
        seconds = time.monotonic() - started
        request_id = str(getattr(response, "id", "") or "")
        cached, speed = _cache_and_speed(response, usage)
        return [
            Completion(
                text=text,
                finish_reason=reason,
                usage=share,
                cost_usd=cost_usd(model, share, self.prices),
                request_id=request_id,
                seconds=seconds,
                cached_tokens=cached,
                tokens_per_s=speed,
            )
            for text, reason, share in zip(texts, reasons, split_usage(total, texts))
        ]


def _cache_and_speed(response: Any, usage: Any) -> tuple[int, float | None]:
    """Cached prompt tokens and decode speed: llama.cpp's `timings` (cache_n, predicted_per_
    second), else the OpenAI `prompt_tokens_details.cached_tokens`."""
    extra = getattr(response, "model_extra", None) or {}
    timings = extra.get("timings") if isinstance(extra, dict) else None
    if isinstance(timings, dict):
        cached = timings.get("cache_n")
        speed = timings.get("predicted_per_second")
        return (cached if isinstance(cached, int) else 0,
                float(speed) if isinstance(speed, (int, float)) and speed > 0 else None)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None)
    return (cached if isinstance(cached, int) else 0), None


async def _gather_or_cancel(coros: Sequence[Awaitable[Any]]) -> list[Any]:
    """Like asyncio.gather, but the first failure cancels the others and is raised as is."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [t.result() for t in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _shorter(limit: int | None, hint: int | None) -> int | None:
    return limit if hint is None else hint if limit is None else min(limit, hint)
