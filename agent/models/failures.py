"""What a failed model request means: the openai SDK's exceptions turned into Mulligan's
one-line errors (agent.errors), and the request parameters a server said it does not support.

Transport failures reach :func:`classify` after the SDK's own retries, so they are final.
Every message names the server by its display URL (no credentials, no query); the caller
passes text through its own redaction (``line``) before it is shown.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import openai

from agent.errors import ModelAuthError, ModelError, ModelNotFound, ModelUnavailable

log = logging.getLogger(__name__)

Line = Callable[..., str]  # (text, limit=300) -> one redacted, shortened line


class Malformed(Exception):
    """The server answered 200 with something that is not a chat completion: retried."""


class NUnsupported(Exception):
    """The server rejected ``n`` > 1: the client switches to one request per candidate."""


class Adapted(Exception):
    """A request parameter was dropped or renamed; send the request again at once."""


class NotFound(Exception):
    """HTTP 404: the client lists the server's models (async) before it reports."""

    def __init__(self, exc: openai.NotFoundError):
        super().__init__(str(exc))
        self.exc = exc


@dataclass
class Parameters:
    """The request parameters this server rejected, remembered for the client's life."""

    dropped: set[str] = field(default_factory=set)  # not sent any more
    max_tokens: str = "max_tokens"  # or "max_completion_tokens", where the server wants it

    def adapt(self, exc: openai.BadRequestError, n: int, url: str, model: str) -> None:
        """Raise Adapted / NUnsupported when a 400 names a parameter that can be dropped or
        renamed; return when it cannot be cured."""
        param = exc.param or ""
        text = f"{exc.code or ''} {server_message(exc)}".lower()
        if not any(s in text for s in ("unsupported", "not supported", "does not support")):
            return
        if param == "n" and n > 1:
            raise NUnsupported()
        if param in ("temperature", "top_p", "seed") and param not in self.dropped:
            log.info("%s does not support %s for %s; dropping it", url, param, model)
            self.dropped.add(param)
            raise Adapted()
        if param == "max_tokens" and self.max_tokens == "max_tokens":
            self.max_tokens = "max_completion_tokens"
            raise Adapted()


def classify(exc: openai.APIError, *, url: str, model: str, timeout_s: float, max_retries: int,
             n: int, params: Parameters, line: Line) -> NoReturn:
    """Raise what ``exc`` means: Malformed, Adapted, NUnsupported, NotFound or a ModelError."""
    tries = attempts(max_retries + 1)
    if isinstance(exc, openai.APITimeoutError):
        raise ModelUnavailable(
            f"the model server at {url} did not answer within {timeout_s:g}s ({tries}) — "
            "is it overloaded? raise the model timeout or use a smaller model") from None
    if isinstance(exc, openai.APIConnectionError):
        raise unreachable(url, exc) from None
    if isinstance(exc, openai.APIResponseValidationError):
        raise Malformed(line(server_message(exc))) from exc
    if not isinstance(exc, openai.APIStatusError):
        raise ModelError(f"the model server at {url} failed: {line(str(exc))}") from exc
    status = exc.status_code
    message = line(server_message(exc))
    if isinstance(exc, openai.AuthenticationError):
        raise ModelAuthError(f"the model server at {url} rejected the API key (HTTP 401) — "
                             "set OPENAI_API_KEY or --api-key") from None
    if isinstance(exc, openai.PermissionDeniedError):
        raise ModelError(f"the model server at {url} refused access to model {model!r} "
                         f"(HTTP 403): {message}") from None
    if isinstance(exc, openai.NotFoundError):
        raise NotFound(exc)
    if status == 429:
        raise ModelUnavailable(
            f"the model server at {url} kept rate-limiting the requests ({tries}): "
            f"HTTP 429: {line(message, 200)} — wait, or sample fewer candidates") from None
    if status in (408, 409) or status >= 500:
        raise ModelUnavailable(f"the model server at {url} kept failing ({tries}): "
                               f"HTTP {status}: {line(message, 200)}") from None
    if isinstance(exc, openai.BadRequestError):
        params.adapt(exc, n, url, model)  # raises when it can cure it
    raise ModelError(
        f"the model server at {url} rejected the request (HTTP {status}): {message}") from None


def unreachable(url: str, exc: BaseException) -> ModelUnavailable:
    return ModelUnavailable(f"cannot reach the model server at {url}: {connect_reason(exc)} — "
                            "is it running? set OPENAI_BASE_URL or --base-url")


def names_a_model(exc: openai.NotFoundError, message: str) -> bool:
    """Whether a 404 is about the model (else the URL has no chat completions endpoint)."""
    return exc.code == "model_not_found" or "model" in message.lower()


def no_endpoint(url: str, message: str) -> ModelError:
    return ModelError(f"the model server at {url} has no chat completions endpoint (HTTP 404: "
                      f"{message}) — check the base URL (OpenAI-compatible servers usually end "
                      "in /v1)")


def model_not_found(model: str, url: str, names: list[str] | None) -> ModelNotFound:
    """``names``: the server's models, or None when they could not be listed."""
    if names:
        more = f", … ({len(names)} in all)" if len(names) > 20 else ""
        listing = f"available: {', '.join(names[:20])}{more}"
    elif names == []:
        listing = "the server lists no models"
    else:
        listing = "could not list the available models"
    return ModelNotFound(f"model {model!r} is not available at {url} ({listing})")


def display_url(url: str) -> str:
    """The URL without credentials, query or fragment, and without a trailing slash."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def server_message(exc: openai.APIError) -> str:
    """The server's own words from an error answer (OpenAI's shape, a bare string, or the SDK's)."""
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


def connect_reason(exc: BaseException) -> str:
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


def attempts(count: int) -> str:
    return f"{count} attempt{'s' if count != 1 else ''}"
