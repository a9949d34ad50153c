"""Redaction of every secret (the GitHub token, the model API key, URL credentials, anything
shaped like a token) from what the CI bot writes: logs, comments, summary, result file and
the trajectory artifact."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import quote

_TOKEN_PATTERNS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|sk-[A-Za-z0-9_-]{20,})\b")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@")


class Redactor:
    """Replaces every known secret (and its base64 / URL-encoded forms, and anything shaped
    like a GitHub token or an OpenAI key) with ``***``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret.strip()) < 4:
            return
        secret = secret.strip()
        forms = {secret, quote(secret, safe=""),
                 base64.b64encode(f"x-access-token:{secret}".encode()).decode(),
                 base64.b64encode(secret.encode()).decode()}
        self._secrets.update(f for f in forms if len(f) >= 4)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        text = _URL_CREDENTIALS.sub("***@", text)
        return _TOKEN_PATTERNS.sub("***", text)

    def data(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self(obj)
        if isinstance(obj, Mapping):
            return {self(str(k)): self.data(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.data(v) for v in obj]
        return obj


class RedactingStream:
    """A text stream that redacts what is written through it."""

    def __init__(self, stream: TextIO, redact: Redactor) -> None:
        self._stream = stream
        self._redact = redact

    def write(self, text: str) -> int:
        self._stream.write(self._redact(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8") or "utf-8"

