"""The model client: sample N chat completions from an OpenAI-compatible endpoint.

One request with ``n=N`` where the server honours ``n``; where it does not (Ollama and
others answer one choice whatever ``n`` is), the client notices, remembers it for this
instance (``honours_n = False``) and gets the missing candidates with concurrent requests,
each with its own seed (``seed + i``) when a seed is set.

Failures:

* timeouts, connection errors, 408/409/429 and 5xx, and malformed answers are retried with
  exponential backoff and jitter (``Retry-After`` / ``retry-after-ms`` honoured, capped);
  when retries run out: :class:`ModelUnavailable` (malformed answers: :class:`ModelError`);
* unknown model (404): :class:`ModelNotFound` at once, listing the server's models when
  ``GET /models`` works;
* 401/403 and other 4xx: :class:`ModelError` at once. A 400 that says a parameter is
  unsupported (reasoning models reject ``temperature``; some want ``max_completion_tokens``
  instead of ``max_tokens``; some servers reject ``n``) is cured once by dropping or
  renaming that parameter, and remembered.

Every error message is one line that names the base URL; the API key never appears in a
message, a log line or the settings' repr.

Usage and cost: the server reports usage per request. A request's prompt tokens are split
evenly over the choices it returned and its completion tokens in proportion to each
choice's text length (both with integer shares that add up exactly to the request's
totals), so summing ``Completion.usage`` over all candidates gives exactly what was billed.
Cost comes from a price table (:data:`DEFAULT_PRICES`, merged with ``ModelSettings.prices``);
unknown and local models cost 0.0.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import openai

from agent.models.window import MIN_ANSWER, Window, estimate_tokens, server_window

from agent.errors import ModelError, ModelNotFound, ModelUnavailable

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

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    # model: (USD per 1M input tokens, USD per 1M output tokens), OpenAI list prices
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o1": (15.00, 60.00),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}

_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{4}$")


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


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def __radd__(self, other: object) -> Usage:  # so that sum(usages) works
        if other == 0:
            return self
        return self.__add__(other)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop", "length", ... ("unknown" when the server gave none)
    usage: Usage  # this choice's share of its request's usage (see the module docstring)
    cost_usd: float
    request_id: str  # the completion id from the server (its x-request-id when none)
    seconds: float  # wall time of the request that produced it, retries included


@runtime_checkable
class ChatModel(Protocol):
    async def sample(
        self, messages: list[dict], n: int, *, seed: int | None = None
    ) -> list[Completion]: ...


# -- prices and usage ---------------------------------------------------------------------


def price_for(
    model: str, prices: dict[str, tuple[float, float]] | None = None
) -> tuple[float, float] | None:
    """The (input, output) USD per 1M tokens for ``model``, or None when unknown.

    Dated snapshots ("gpt-4o-2024-08-06") are priced as their family ("gpt-4o").
    """
    table = DEFAULT_PRICES if prices is None else prices
    if model in table:
        return table[model]
    base = _SNAPSHOT_SUFFIX.sub("", model)
    return table.get(base)


def cost_usd(
    model: str, usage: Usage, prices: dict[str, tuple[float, float]] | None = None
) -> float:
    price = price_for(model, prices)
    if price is None:
        return 0.0
    return (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1_000_000


def _shares(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` into integer shares proportional to ``weights`` (largest remainder)."""
    if not weights:
        return []
    if sum(weights) <= 0:
        weights = [1] * len(weights)
    wsum = sum(weights)
    exact = [total * w / wsum for w in weights]
    shares = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (shares[i] - exact[i], i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def split_usage(usage: Usage, texts: Sequence[str]) -> list[Usage]:
    """Split one request's usage over its choices.

    Prompt tokens are split evenly (the prompt was read once for all of them), completion
    tokens in proportion to each text's length; the shares add up exactly to ``usage``.
    """
    prompt = _shares(usage.prompt_tokens, [1] * len(texts))
    completion = _shares(usage.completion_tokens, [len(t) for t in texts])
    return [Usage(p, c) for p, c in zip(prompt, completion)]


# -- error text helpers ---------------------------------------------------------------------


def _display_url(url: str) -> str:
    """The URL without credentials, query or fragment, and without a trailing slash."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _server_message(exc: openai.APIError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    if isinstance(body, str) and body.strip():
        return body
    return getattr(exc, "message", "") or str(exc)


class _Malformed(Exception):
    """The server answered 200 with something that is not a chat completion."""


class _NUnsupported(Exception):
    """The server rejected ``n`` > 1."""


class _Retryable(Exception):
    def __init__(self, kind: str, detail: str, exc: BaseException, delay: float | None = None):
        super().__init__(detail)
        self.kind = kind  # "connect" | "timeout" | "status" | "malformed"
        self.detail = detail
        self.exc = exc
        self.delay = delay  # from Retry-After, already capped


def _retry_after(headers: Any, cap: float) -> float | None:
    if headers is None:
        return None
    value: float | None = None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
        except ValueError:
            value = None
    if value is None:
        raw = headers.get("retry-after")
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                return None
            value = when.timestamp() - time.time()
    if not math.isfinite(value):
        return None
    return min(max(value, 0.0), cap)


def _connect_reason(exc: BaseException) -> str:
    """A few words for why a connection failed, from the exception chain."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain and len(chain) < 12:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text:
        return "connection refused"
    if any(isinstance(e, socket.gaierror) for e in chain) or (
        "name or service not known" in text or "nodename nor servname" in text
    ):
        return "cannot resolve the host name"
    if any(isinstance(e, ConnectionResetError) for e in chain) or "reset" in text:
        return "connection reset by the server"
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "TLS error"
    inner = chain[-1]
    return " ".join(str(inner).split()) or type(inner).__name__


# -- the client ----------------------------------------------------------------------------


class OpenAIChatModel:
    """:class:`ChatModel` over ``openai.AsyncOpenAI`` (retries done here, not by the SDK).

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
        self._dropped: set[str] = set()  # parameters the server said it does not support
        self._max_tokens_param = "max_tokens"
        self._semaphore: asyncio.Semaphore | None = None
        self.window: Window | None = None  # the server's context size, learnt in preflight
        # a GBNF grammar the answers must follow, sent where the server is llama.cpp
        self.grammar: str | None = None

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self.settings.model!r}, base_url={self.base_url!r})"

    # -- plumbing

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            s = self.settings
            self._client = openai.AsyncOpenAI(
                base_url=s.base_url,
                api_key=self._api_key,
                max_retries=0,
                timeout=openai.Timeout(s.timeout_s, connect=min(s.timeout_s, 10.0)),
            )
        return self._client

    @property
    def base_url(self) -> str:
        """The base URL, as shown in messages (no credentials, no query)."""
        if self._client is None and self.settings.base_url:
            return _display_url(self.settings.base_url)
        return _display_url(str(self.client.base_url))

    async def preflight(self) -> None:
        """Fail fast, before any test runs, when the server cannot be reached at all. Only the
        connection is judged: servers differ in what /models lists (llama.cpp serves any name)."""
        try:
            await self.client.models.list(timeout=min(self.settings.timeout_s, 10.0))
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise ModelUnavailable(
                f"cannot reach the model server at {self.base_url}: {_connect_reason(exc)} — is it "
                "running? set OPENAI_BASE_URL or --base-url") from None
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
        except _NUnsupported:
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
        if "temperature" not in self._dropped:
            params["temperature"] = s.temperature
        if s.top_p is not None and "top_p" not in self._dropped:
            params["top_p"] = s.top_p
        if seed is not None and "seed" not in self._dropped:
            params["seed"] = seed
        if s.reasoning_effort is not None:
            params["reasoning_effort"] = s.reasoning_effort
        if s.max_completion_tokens is not None:
            params["max_completion_tokens"] = s.max_completion_tokens
        elif s.max_tokens is not None or self.window is not None:
            params[self._max_tokens_param] = self._answer_room(messages, s.max_tokens)
        if self.grammar and self.window is not None and "llama.cpp" in self.window.source:
            params["extra_body"] = {"grammar": self.grammar}
        return params

    def constrain(self, grammar: str | None) -> None:
        """Answers from now on follow `grammar` (GBNF), where the server supports it."""
        self.grammar = grammar

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
        """One chat completion request (with retries) -> its choices as Completions."""
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
                        self._classify(exc, n)  # raises
                    except ValueError as exc:  # invalid JSON in a 200 answer
                        raise _Retryable("malformed", f"invalid JSON ({exc})", exc) from exc
                    try:
                        return self._completions(response, messages, started)
                    except _Malformed as exc:
                        raise _Retryable("malformed", str(exc), exc) from exc
            except _Retryable as err:
                if attempt >= s.max_retries:
                    raise self._give_up(err, attempt + 1) from err.exc
                delay = err.delay if err.delay is not None else self._backoff(attempt)
                attempt += 1
                log.debug(
                    "model request failed (%s: %s); retry %d/%d in %.2fs",
                    err.kind,
                    self._line(err.detail),
                    attempt,
                    s.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
            except _NotFound as nf:
                raise await self._not_found(nf.exc) from None
            except _Adapted:
                adaptations += 1
                if adaptations > 4:  # cannot happen more than once per parameter
                    raise ModelError(
                        f"the model server at {self.base_url} keeps rejecting the request "
                        "parameters"
                    ) from None

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        delay = min(s.retry_max_delay_s, s.retry_base_delay_s * 2**attempt)
        return random.uniform(delay / 2, delay)

    def _classify(self, exc: openai.APIError, n: int) -> None:
        """Raise what ``exc`` means: _Retryable, _Adapted, _NUnsupported or a ModelError."""
        url = self.base_url
        s = self.settings
        if isinstance(exc, openai.APITimeoutError):
            raise _Retryable("timeout", f"no answer within {s.timeout_s:g}s", exc)
        if isinstance(exc, openai.APIConnectionError):
            raise _Retryable("connect", _connect_reason(exc), exc)
        if isinstance(exc, openai.APIResponseValidationError):
            raise _Retryable("malformed", self._line(_server_message(exc)), exc)
        if not isinstance(exc, openai.APIStatusError):
            raise ModelError(f"the model server at {url} failed: {self._line(str(exc))}") from exc
        status = exc.status_code
        message = self._line(_server_message(exc))
        if isinstance(exc, openai.AuthenticationError):
            raise ModelError(
                f"the model server at {url} rejected the API key (HTTP 401) — "
                "set OPENAI_API_KEY or --api-key"
            ) from None
        if isinstance(exc, openai.PermissionDeniedError):
            raise ModelError(
                f"the model server at {url} refused access to model {s.model!r} "
                f"(HTTP 403): {message}"
            ) from None
        if isinstance(exc, openai.NotFoundError):
            raise _NotFound(exc)
        if status in (408, 409, 429) or status >= 500:
            delay = _retry_after(exc.response.headers, s.retry_after_cap_s)
            raise _Retryable("status", f"HTTP {status}: {message}", exc, delay)
        if isinstance(exc, openai.BadRequestError):
            self._adapt(exc, n)  # raises _Adapted / _NUnsupported when it can cure it
        raise ModelError(
            f"the model server at {url} rejected the request (HTTP {status}): {message}"
        ) from None

    def _adapt(self, exc: openai.BadRequestError, n: int) -> None:
        param = exc.param or ""
        text = f"{exc.code or ''} {_server_message(exc)}".lower()
        if (
            "unsupported" not in text
            and "not supported" not in text
            and ("does not support" not in text)
        ):
            return
        if param == "n" and n > 1:
            raise _NUnsupported()
        if param in ("temperature", "top_p", "seed") and param not in self._dropped:
            log.info(
                "%s does not support %s for %s; dropping it",
                self.base_url,
                param,
                self.settings.model,
            )
            self._dropped.add(param)
            raise _Adapted()
        if param == "max_tokens" and self._max_tokens_param == "max_tokens":
            self._max_tokens_param = "max_completion_tokens"
            raise _Adapted()

    def _give_up(self, err: _Retryable, attempts: int) -> ModelError:
        url = self.base_url
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if err.kind == "connect":
            return ModelUnavailable(
                f"cannot reach the model server at {url}: {err.detail} — is it running? "
                "set OPENAI_BASE_URL or --base-url"
            )
        if err.kind == "timeout":
            return ModelUnavailable(
                f"the model server at {url} did not answer within "
                f"{self.settings.timeout_s:g}s ({tries}) — is it overloaded? "
                "raise the model timeout or use a smaller model"
            )
        if err.kind == "malformed":
            return ModelError(
                f"the model server at {url} kept sending malformed answers ({tries}): "
                f"{self._line(err.detail, 160)} — is it an OpenAI-compatible endpoint?"
            )
        status = getattr(err.exc, "status_code", None)
        if status == 429:
            return ModelUnavailable(
                f"the model server at {url} kept rate-limiting the requests ({tries}): "
                f"{self._line(err.detail, 200)} — wait, or sample fewer candidates"
            )
        return ModelUnavailable(
            f"the model server at {url} kept failing ({tries}): {self._line(err.detail, 200)}"
        )

    async def _not_found(self, exc: openai.NotFoundError) -> ModelError:
        url = self.base_url
        model = self.settings.model
        message = self._line(_server_message(exc))
        lowered = message.lower()
        if exc.code != "model_not_found" and "model" not in lowered:
            return ModelError(
                f"the model server at {url} has no chat completions endpoint (HTTP 404: "
                f"{message}) — check the base URL (OpenAI-compatible servers usually end in /v1)"
            )
        try:
            page = await self.client.models.list(timeout=min(self.settings.timeout_s, 10.0))
            names = sorted(m.id for m in page.data)
        except (openai.OpenAIError, ValueError, AttributeError, TypeError):  # best effort
            names = None
        if names:
            shown = ", ".join(names[:20]) + (
                f", … ({len(names)} in all)" if len(names) > 20 else ""
            )
            listing = f"available: {shown}"
        elif names == []:
            listing = "the server lists no models"
        else:
            listing = "could not list the available models"
        return ModelNotFound(f"model {model!r} is not available at {url} ({listing})")

    def _completions(self, response: Any, messages: list[dict], started: float) -> list[Completion]:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            kind = type(response).__name__
            raise _Malformed(f"no choices in the answer ({kind})")
        try:
            ordered = sorted(choices, key=lambda c: c.index if c.index is not None else 0)
            texts = [(c.message.content or "") if c.message is not None else "" for c in ordered]
            reasons = [c.finish_reason or "unknown" for c in ordered]
        except AttributeError as exc:
            raise _Malformed(f"unexpected answer shape ({exc})") from exc
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
        return [
            Completion(
                text=text,
                finish_reason=reason,
                usage=share,
                cost_usd=cost_usd(model, share, self.prices),
                request_id=request_id,
                seconds=seconds,
            )
            for text, reason, share in zip(texts, reasons, split_usage(total, texts))
        ]


class _Adapted(Exception):
    """A request parameter was dropped or renamed; send the request again at once."""


class _NotFound(Exception):
    def __init__(self, exc: openai.NotFoundError):
        super().__init__(str(exc))
        self.exc = exc


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
