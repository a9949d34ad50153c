"""The threaded HTTP server the test fakes are built on (openai_server.py, fake_github.py).

Real HTTP on 127.0.0.1 (an ephemeral port), served from daemon threads of a
``ThreadingHTTPServer`` run in a background thread. A fake subclasses :class:`ThreadedServer`
and implements ``_respond(request, handler) -> Answer``; the handler reads the request
(:class:`Request`: method, raw path, lower-case headers, parsed JSON body, raw bytes, time),
hands it to the fake and writes the :class:`Answer` back (see :func:`json_answer`).

Lifecycle: ``start()`` / ``stop()`` or a ``with`` block; ``stop()`` shuts down the listening
socket and open keep-alive connections, wakes handlers waiting on ``self._stopped``, and
returns once done (also when another thread is stopping it). With ``max_lifetime_s`` the
server stops by itself after that long, whatever happens.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

__all__ = ["Answer", "Handler", "Hangup", "Request", "ThreadedServer", "json_answer"]


@dataclass
class Request:
    method: str
    path: str  # as sent, with the query
    headers: dict[str, str]  # lower-case names
    body: Any  # the parsed JSON body, or None
    raw: bytes
    time: float


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Answer:
    """A JSON answer; ``obj=None`` gives an empty body."""
    return Answer(status, b"" if obj is None else json.dumps(obj).encode(), dict(headers or {}))


class Hangup(Exception):
    """Raised by ``_respond``: hang up without answering (the client went away, or the server
    is stopping)."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ThreadedServer


class Handler(BaseHTTPRequestHandler):
    """Reads a request, asks the owner for the answer, writes it. Handles GET and POST;
    subclass it to add methods (``def do_PATCH(self): self._dispatch("PATCH")``) or to set
    ``server_version``."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this
    wbufsize = 1 << 16  # headers and body leave in one write (no Nagle/delayed-ACK stalls)
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; the fakes record every request instead

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        owner = self.server.owner
        request = owner.request_class(method=method, path=self.path,
                                      headers={k.lower(): v for k, v in self.headers.items()},
                                      body=body, raw=raw, time=time.time())
        try:
            try:
                answer = owner._respond(request, self)
            except Hangup:
                self.close_connection = True
                return
            except Exception as exc:  # noqa: BLE001 - the owner decides (a 500, or re-raise)
                answer = owner._failed(exc)
            self._send(answer, owner.content_type)
        finally:
            owner._handled_one()

    def _send(self, answer: Answer, content_type: str) -> None:
        try:
            self.send_response(answer.status)
            for name, value in {"Content-Type": content_type, **answer.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if answer.body:
                self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:  # the client went away (e.g. it timed out)
            self.close_connection = True

    def client_gone(self) -> bool:
        """Whether the client has hung up (e.g. timed out) while the request was handled."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class ThreadedServer:
    """Lifecycle, port and URL, request recording; subclasses implement ``_respond``."""

    handler_class: ClassVar[type[Handler]] = Handler
    request_class: ClassVar[type[Request]] = Request
    content_type: ClassVar[str] = "application/json"
    thread_name: ClassVar[str] = "test-http-server"

    def __init__(self, *, max_lifetime_s: float | None = None) -> None:
        self.max_lifetime_s = max_lifetime_s
        self.requests: list[Any] = []
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._closed = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._handled = 0
        self._handled_changed = threading.Condition(self._lock)

    # -- to implement ------------------------------------------------------------------------

    def _respond(self, request: Request, handler: Handler) -> Answer:
        raise NotImplementedError

    def _failed(self, exc: Exception) -> Answer:
        """The answer when ``_respond`` raised; by default the handler fails (the client sees
        the connection close)."""
        raise exc

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stopped.clear()
        self._closed.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), self.handler_class)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name.format(port=self.port),
            daemon=True,
        )
        self._thread.start()
        if self.max_lifetime_s is not None:
            self._timer = threading.Timer(self.max_lifetime_s, self.stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, wake stalled handlers, close the port. Waits until it is done."""
        with self._lock:
            if self._stopped.is_set():
                stopping_elsewhere = True
            else:
                stopping_elsewhere = False
                self._stopped.set()  # wakes stalled handlers
                httpd, self._httpd = self._httpd, None
                connections = list(self._connections)
        if stopping_elsewhere:
            self._closed.wait(timeout)
            return
        try:
            if self._timer is not None and self._timer is not threading.current_thread():
                self._timer.cancel()
            if httpd is None:
                return
            httpd.shutdown()
            for conn in connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
        finally:
            self._closed.set()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None and not self._stopped.is_set()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- internals ---------------------------------------------------------------------------

    def wait_handled(self, count: int, timeout: float = 30.0) -> bool:
        """Block until `count` requests have been fully handled (answered or hung up on)."""
        with self._handled_changed:
            return self._handled_changed.wait_for(lambda: self._handled >= count, timeout)

    def _handled_one(self) -> None:
        with self._handled_changed:
            self._handled += 1
            self._handled_changed.notify_all()

    def _record(self, item: Any) -> None:
        with self._lock:
            self.requests.append(item)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
