#!/usr/bin/env python3
"""A stand-in for llama.cpp's `llama-server`, for testing the code that manages it.

It takes the real server's flags that Mulligan passes (``-m``, ``--host``, ``--port``,
``-t``, ``-c``, ``-np``, ``--alias``, ``--kv-unified``, ``--no-webui``, ``--cache-ram``, ``--version``,
``--help``), binds like the real one (``couldn't bind HTTP server socket`` and exit 1 when the
port is taken), answers ``GET /health`` (503 "Loading model" while loading, then 200),
``GET /v1/models`` and ``POST /v1/chat/completions`` (non-streaming, honours ``n``).

Misbehaviour, chosen with environment variables:

* ``FAKE_LLAMA_LOAD_S=2.5``: report "Loading model" (503) for that long first;
* ``FAKE_LLAMA_NEVER_READY=1``: never become ready;
* ``FAKE_LLAMA_CRASH_AFTER=N``: answer N chat requests, then abort (SIGABRT) on the next;
* ``FAKE_LLAMA_FAIL_START=1``: print a load error and exit 1 without binding;
* ``FAKE_LLAMA_IGNORE_TERM=1``: ignore SIGTERM (only SIGKILL stops it);
* ``FAKE_LLAMA_ANSWER``: the content of every choice (default: a short fixed text);
* ``FAKE_LLAMA_ARGV_LOG=PATH``: append this process's argv (one JSON line) to PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llama-server", description="fake llama-server")
    p.add_argument("-m", "--model", required=False)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("-t", "--threads", type=int, default=-1)
    p.add_argument("-c", "--ctx-size", type=int, default=0)
    p.add_argument("-np", "--parallel", type=int, default=-1)
    p.add_argument("--alias", default=None)
    p.add_argument("--kv-unified", action="store_true")
    p.add_argument("--no-webui", action="store_true")
    p.add_argument("--cache-ram", type=int)
    p.add_argument("--version", action="store_true")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(msg, flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.version:
        print("version: 0 (fake)\nbuilt with python for testing", flush=True)
        return 0
    if os.environ.get("FAKE_LLAMA_ARGV_LOG"):
        with open(os.environ["FAKE_LLAMA_ARGV_LOG"], "a") as fh:
            fh.write(json.dumps(argv) + "\n")
    if os.environ.get("FAKE_LLAMA_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log(f"build: fake, threads: {args.threads}, ctx: {args.ctx_size}, slots: {args.parallel}")
    if not args.model or not os.path.isfile(args.model):
        log(f"llama_model_load: error loading model: failed to open {args.model}")
        log("main: exiting due to model loading error")
        return 1
    if os.environ.get("FAKE_LLAMA_FAIL_START"):
        log("gguf_init_from_file_impl: invalid magic characters")
        log("main: exiting due to model loading error")
        return 1

    alias = args.alias or os.path.basename(args.model)
    load_s = float(os.environ.get("FAKE_LLAMA_LOAD_S", "0") or 0)
    never_ready = bool(os.environ.get("FAKE_LLAMA_NEVER_READY"))
    crash_after = os.environ.get("FAKE_LLAMA_CRASH_AFTER")
    answer = os.environ.get("FAKE_LLAMA_ANSWER", "Fixed it.")
    started = time.monotonic()
    lock = threading.Lock()
    served = [0]

    def ready() -> bool:
        return not never_ready and time.monotonic() - started >= load_s

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *a: object) -> None:
            if "/health" not in self.path:  # like the real one, health checks are not logged
                log("srv  log_server_r: " + (fmt % a))

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _loading(self) -> None:
            self._json(503, {"error": {"code": 503, "message": "Loading model",
                                       "type": "unavailable_error"}})

        def do_GET(self) -> None:
            if not ready():
                return self._loading()
            if self.path == "/health":
                return self._json(200, {"status": "ok"})
            if self.path in ("/v1/models", "/models"):
                return self._json(200, {"object": "list", "data": [
                    {"id": alias, "object": "model", "created": 0, "owned_by": "llamacpp"}]})
            return self._json(404, {"error": {"code": 404, "message": "File Not Found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not ready():
                return self._loading()
            if self.path not in ("/v1/chat/completions", "/chat/completions"):
                return self._json(404, {"error": {"code": 404, "message": "File Not Found"}})
            with lock:
                if crash_after is not None and served[0] >= int(crash_after):
                    log("GGML_ASSERT(fake) failed: crashing as told")
                    sys.stdout.flush()
                    os.abort()
                served[0] += 1
                number = served[0]
            req = json.loads(raw or b"{}")
            n = int(req.get("n") or 1)
            if args.parallel > 0 and n > args.parallel:
                return self._json(400, {"error": {"code": 400, "type": "invalid_request_error",
                                                  "message": f"n must be <= {args.parallel}"}})
            choices = [{"index": i, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": answer}} for i in range(n)]
            prompt = sum(len(str(m.get("content", ""))) // 4 for m in req.get("messages", []))
            self._json(200, {
                "id": f"chatcmpl-fake-{number}", "object": "chat.completion",
                "created": int(time.time()), "model": req.get("model", alias),
                "choices": choices,
                "usage": {"prompt_tokens": prompt, "completion_tokens": 3 * n,
                          "total_tokens": prompt + 3 * n}})

    try:
        httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    except OSError:
        log(f"srv    start: couldn't bind HTTP server socket, hostname: {args.host}, "
            f"port: {args.port}")
        return 1
    httpd.daemon_threads = True
    log(f"main: server is listening on http://{args.host}:{args.port}")

    def on_term(signum: int, frame: object) -> None:
        log("srv    operator(): operator(): cleaning up before exit...")
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    if not os.environ.get("FAKE_LLAMA_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    httpd.serve_forever(poll_interval=0.05)
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
