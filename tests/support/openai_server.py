"""A scripted OpenAI-compatible HTTP server for tests.

Real HTTP on 127.0.0.1 (an ephemeral port), served from background threads (the shared
server of tests/support/http_server.py), so the code under test talks to it through the
real ``openai`` client exactly as it would talk to vLLM, llama.cpp, Ollama or api.openai.com.

Endpoints: ``POST /v1/chat/completions`` (non-streaming) and ``GET /v1/models``.

Scripting
---------
The server holds a queue (the *script*). Items are consumed **one per choice**, so the
same script gives the same answers whether the client asks for ``n=3`` in one request or
sends three requests of ``n=1``::

    server.script("answer A", "answer B", "answer C")

An item is one of:

* a string: the content of one choice;
* a list of strings: the contents of several choices;
* a callable ``fn(request_json) -> str | list[str] | Reply``, called when the item is
  consumed (e.g. to answer from the prompt: ``lambda req: req["messages"][-1]["content"]``);
* a :class:`Reply`, which adds misbehaviours. Build them with the helpers
  :func:`error`, :func:`stall`, :func:`truncated`, :func:`malformed`, :func:`ignore_n`.

*Request-level* misbehaviours (``status``, ``stall``, ``malformed``, ``ignore_n``) apply only
when the item is at the head of the queue when a request is handled:

* ``error(500)`` / ``error(429, retry_after=1)``: answers that HTTP error (OpenAI-style error
  body) and is consumed; the next request gets the next item.
* ``stall(seconds, content=None)``: sleeps before handling the request (interruptible at
  shutdown). The stall item is consumed; if it carries content, that content is put back at
  the head of the queue so it answers the next request (e.g. the client's retry). After the
  sleep, if the client has hung up (timed out), nothing else is consumed; otherwise the
  request is handled normally as if it had just arrived.
* ``malformed()``: a 200 answer whose body is not valid JSON; consumed.
* ``ignore_n(content)``: answers exactly one choice whatever ``n`` is (like Ollama).
  ``server.honour_n = False`` does that for every request.

Per-choice options (allowed on any item): ``truncate`` (``finish_reason="length"`` and the
content cut in half, or to ``truncate`` characters when it is an int) and ``finish_reason``.
The server also truncates, with ``"length"``, a content longer than the request's
``max_tokens`` / ``max_completion_tokens`` (at 4 characters per token).

When the script runs out, ``server.fallback`` (``fn(request_json) -> item``) is called for
each missing item; by default there is none and the request gets a 500 whose message says
``script exhausted``, so a test notices. When the queue holds fewer plain answers than a
request needs (before the end or before a request-level item) and there is no fallback,
the request gets that 500 too and nothing is consumed.

A model not in ``server.models`` gets a 404 ``model_not_found`` error, like OpenAI's.
``server.required_api_key`` (when set) makes requests with another bearer token get a 401.

Every request is recorded in ``server.requests`` (:class:`RecordedRequest`: method, path,
headers with lower-case names, parsed JSON body); ``server.chat_requests`` filters the chat
completions ones. Usage is estimated as ``len(text) // 4`` tokens (at least 1).

The server stops at ``stop()`` / context exit / fixture teardown, and by itself after
``max_lifetime_s`` whatever happens.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tests.support.http_server import Answer, Handler, Hangup, Request, ThreadedServer, json_answer

__all__ = [
    "RecordedRequest",
    "Reply",
    "ScriptedOpenAIServer",
    "error",
    "estimate_tokens",
    "ignore_n",
    "malformed",
    "stall",
    "truncated",
]

Contents = str | list[str]


@dataclass(frozen=True)
class Reply:
    """One scripted item with optional misbehaviours (see the module docstring)."""

    content: Contents | Callable[[dict], Contents] | None = None
    # per choice
    truncate: bool | int = False
    finish_reason: str | None = None
    # per request (only when at the head of the queue)
    status: int | None = None
    message: str | None = None
    error_type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | str | None = None
    headers: Mapping[str, str] | None = None
    stall: float | None = None
    ignore_n: bool = False
    malformed: bool = False

    @property
    def request_level(self) -> bool:
        return self.status is not None or self.stall is not None or self.ignore_n or self.malformed


def error(
    status: int = 500,
    message: str | None = None,
    *,
    retry_after: float | str | None = None,
    code: str | None = None,
    param: str | None = None,
    error_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """An HTTP error answer (consumed; the next request gets the next item)."""
    return Reply(
        status=status,
        message=message,
        retry_after=retry_after,
        code=code,
        param=param,
        error_type=error_type,
        headers=headers,
    )


def stall(seconds: float, content: Contents | Callable[[dict], Contents] | None = None) -> Reply:
    """Sleep ``seconds`` before handling the request; ``content`` then answers the next request."""
    return Reply(content=content, stall=seconds)


def truncated(content: Contents, keep: int | None = None) -> Reply:
    """An answer cut short with ``finish_reason="length"``."""
    return Reply(content=content, truncate=True if keep is None else keep)


def malformed() -> Reply:
    """A 200 answer whose body is not valid JSON."""
    return Reply(malformed=True)


def ignore_n(content: Contents | Callable[[dict], Contents]) -> Reply:
    """One choice whatever ``n`` the request asked for."""
    return Reply(content=content, ignore_n=True)


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


@dataclass
class RecordedRequest(Request):
    """method, path, headers (lower-case names), body (parsed JSON), raw, time."""

    @property
    def messages(self) -> list[dict]:
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return self.body["messages"]
        return []

    @property
    def prompt(self) -> str:
        """All message contents joined by blank lines (handy for ``assert "x" in r.prompt``)."""
        return "\n\n".join(_message_text(m) for m in self.messages)

    @property
    def n(self) -> int:
        if isinstance(self.body, dict) and isinstance(self.body.get("n"), int):
            return self.body["n"]
        return 1


_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request (scripted 400)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", None, "Forbidden (scripted 403)."),
    404: ("invalid_request_error", None, "Not found (scripted 404)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (scripted 429)."),
    500: ("server_error", None, "The server had an error processing your request (scripted 500)."),
    502: ("server_error", None, "Bad gateway (scripted 502)."),
    503: ("server_error", None, "The engine is currently overloaded (scripted 503)."),
}


def _error_answer(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    d_type, d_code, d_message = _ERROR_DEFAULTS.get(
        status,
        (
            "server_error" if status >= 500 else "invalid_request_error",
            None,
            f"Scripted error {status}.",
        ),
    )
    body = {
        "error": {
            "message": message or d_message,
            "type": error_type or d_type,
            "param": param,
            "code": code or d_code,
        }
    }
    return json_answer(status, body, headers)


_MALFORMED_BODY = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind'


class _Handler(Handler):
    server_version = "ScriptedOpenAI/1.0"


class ScriptedOpenAIServer(ThreadedServer):
    """See the module docstring. Use as a context manager, or ``start()`` / ``stop()``."""

    handler_class = _Handler
    request_class = RecordedRequest
    thread_name = "scripted-openai-{port}"

    def __init__(
        self,
        *,
        models: Iterable[str] = ("test-model",),
        honour_n: bool = True,
        required_api_key: str | None = None,
        max_lifetime_s: float = 600.0,
    ) -> None:
        super().__init__(max_lifetime_s=max_lifetime_s)
        self.models: list[str] = list(models)
        self.honour_n = honour_n
        self.required_api_key = required_api_key
        self.models_status: int | None = None  # make GET /models fail with this status
        self.fallback: Callable[[dict], Any] | None = None
        self.requests: list[RecordedRequest] = []
        self.errors: list[BaseException] = []
        self._script: deque[Any] = deque()
        self._counter = 0

    # -- lifecycle (start, stop, running, port, url: ThreadedServer) -------------------------

    @property
    def base_url(self) -> str:
        """What to give the openai client as ``base_url``."""
        return f"{self.url}/v1"

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *items: Any) -> ScriptedOpenAIServer:
        """Append items to the script (see the module docstring); returns self."""
        with self._lock:
            self._script.extend(items)
        return self

    add = script

    def clear_script(self) -> None:
        with self._lock:
            self._script.clear()

    @property
    def remaining(self) -> int:
        """How many script items have not been consumed yet."""
        with self._lock:
            return len(self._script)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]

    def reset(self) -> None:
        """Forget the recorded requests and the script."""
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.errors.clear()

    # -- internals ---------------------------------------------------------------------------

    def _failed(self, exc: Exception) -> Answer:  # a scripted callable raised: tell the test
        self.errors.append(exc)
        traceback.print_exc()
        return _error_answer(500, f"scripted responder raised {type(exc).__name__}: {exc}")

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _respond(self, req: Request, handler: Handler) -> Answer:
        self._record(req)
        path = req.path.split("?", 1)[0].rstrip("/")
        expected = f"Bearer {self.required_api_key}"
        if self.required_api_key is not None and req.headers.get("authorization") != expected:
            return _error_answer(
                401,
                "Incorrect API key provided. You can find your API key in your settings.",
                code="invalid_api_key",
            )
        if req.method == "GET" and path in ("/v1/models", "/models"):
            if self.models_status is not None:
                return _error_answer(self.models_status)
            created = int(time.time())
            data = [
                {"id": m, "object": "model", "created": created, "owned_by": "mulligan-tests"}
                for m in self.models
            ]
            return json_answer(200, {"object": "list", "data": data})
        if req.method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            return self._chat(req, handler)
        return _error_answer(404, f"Unknown request URL: {req.method} {req.path}.")

    def _normalize(self, item: Any, body: dict) -> Reply:
        """Turn a script item into a Reply whose content is None or a list of strings."""
        if callable(item) and not isinstance(item, Reply):
            item = item(body)
        if isinstance(item, str):
            return Reply(content=[item])
        if isinstance(item, list):
            return Reply(content=[str(c) for c in item])
        if isinstance(item, Reply):
            content = item.content
            if callable(content):
                content = content(body)
            if isinstance(content, str):
                content = [content]
            elif content is not None:
                content = [str(c) for c in content]
            return replace(item, content=content)
        raise TypeError(f"unsupported script item: {item!r}")

    def _take(self, body: dict) -> tuple[Reply | None, bool]:
        """Pop the head item (or ask the fallback). Returns (reply, came_from_script)."""
        with self._lock:
            if self._script:
                return self._normalize(self._script.popleft(), body), True
            if self.fallback is not None:
                return self._normalize(self.fallback(body), body), False
            return None, False

    def _chat(self, req: Request, handler: Handler) -> Answer:
        body = req.body
        if not isinstance(body, dict):
            return _error_answer(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if model not in self.models:
            return _error_answer(
                404,
                f"The model `{model}` does not exist",
                error_type="invalid_request_error",
                code="model_not_found",
            )
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1:
            return _error_answer(400, f"Invalid value for 'n': {n!r}.", param="n")

        override: Reply | None = None
        while True:
            if override is not None:
                head, from_script = override, False
                override = None
            else:
                head, from_script = self._take(body)
            if head is None:
                count = len(self.chat_requests)
                return _error_answer(
                    500, f"script exhausted: no scripted answer left for request #{count}"
                )
            if head.stall is None:
                break
            rest = replace(head, stall=None)
            if rest.content is not None or rest.request_level:
                if from_script:
                    with self._lock:
                        self._script.appendleft(rest)
                else:
                    override = rest
            if self._stopped.wait(head.stall) or handler.client_gone():
                raise Hangup()

        if head.status is not None:
            headers = dict(head.headers or {})
            if head.retry_after is not None:
                headers["Retry-After"] = str(head.retry_after)
            return _error_answer(
                head.status,
                head.message,
                error_type=head.error_type,
                code=head.code,
                param=head.param,
                headers=headers,
            )
        if head.malformed:
            return Answer(
                200,
                _MALFORMED_BODY,
                {"x-request-id": f"req_{self._next_id()}"},
            )

        needed = 1 if (head.ignore_n or not self.honour_n) else n
        choices = self._fill(head, needed, body)
        if choices is None:
            if from_script:  # nothing is consumed
                with self._lock:
                    self._script.appendleft(head)
            return _error_answer(
                500,
                f"script exhausted: the request asked for {needed} choice(s) but the script "
                "holds fewer plain answers (and no fallback is set)",
            )
        return self._completion(body, choices)

    def _choices_of(self, reply: Reply, limit: int | None) -> list[tuple[str, str]]:
        out = []
        for text in reply.content or []:
            finish = reply.finish_reason or "stop"
            if reply.truncate is not False:
                keep = len(text) // 2 if reply.truncate is True else int(reply.truncate)
                text, finish = text[: max(0, keep)], "length"
            if limit is not None and len(text) > limit * 4:
                text, finish = text[: limit * 4], "length"
            out.append((text, finish))
        return out

    def _fill(self, head: Reply, needed: int, body: dict) -> list[tuple[str, str]] | None:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        limit = limit if isinstance(limit, int) and limit > 0 else None
        choices = self._choices_of(head, limit)
        taken: list[Reply] = []
        with self._lock:
            while len(choices) < needed:
                if self._script:
                    if isinstance(self._script[0], Reply) and self._script[0].request_level:
                        break
                    nxt = self._normalize(self._script.popleft(), body)
                    taken.append(nxt)
                elif self.fallback is not None:
                    nxt = self._normalize(self.fallback(body), body)
                else:
                    break
                choices.extend(self._choices_of(nxt, limit))
            if len(choices) < needed and self.fallback is None:
                # put back what was taken: nothing is consumed
                self._script.extendleft(reversed(taken))
                return None
        return choices[:needed]

    def _completion(self, body: dict, choices: list[tuple[str, str]]) -> Answer:
        prompt = "\n\n".join(_message_text(m) for m in body.get("messages") or [])
        prompt_tokens = estimate_tokens(prompt)
        completion_tokens = sum(estimate_tokens(text) for text, _ in choices)
        obj = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_scripted",
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for i, (text, finish) in enumerate(choices)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return json_answer(200, obj, {"x-request-id": f"req_{self._next_id()}"})
