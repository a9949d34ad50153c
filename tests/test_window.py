"""agent/models/window.py: the server's context size from llama.cpp /props or vLLM /v1/models,
and requests sized to fit it (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.errors import ModelError
from agent.models.client import ModelSettings, OpenAIChatModel
from agent.models.window import Window, estimate_tokens, server_window


def serve(routes: dict[str, object]):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = routes.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def http():
    servers = []

    def start(routes):
        server = serve(routes)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()


async def test_llama_cpp_props_give_the_slot_context(http):
    url = http({"/props": {"default_generation_settings": {"n_ctx": 8192}}})
    assert await server_window(url, None, "local") == Window(8192, "llama.cpp /props n_ctx")


async def test_vllm_max_model_len_for_the_named_model(http):
    url = http({"/v1/models": {"data": [{"id": "other", "max_model_len": 1},
                                        {"id": "coder", "max_model_len": 32768}]}})
    assert (await server_window(url, None, "coder")).tokens == 32768


async def test_a_server_that_does_not_say_gives_none(http):
    url = http({"/v1/models": {"data": [{"id": "gpt"}]}})
    assert await server_window(url, None, "gpt") is None


def test_max_tokens_shrinks_so_prompt_and_answer_fit_and_a_prompt_too_big_is_refused():
    model = OpenAIChatModel(ModelSettings(model="m", base_url="http://127.0.0.1:9/v1",
                                          max_tokens=2048))
    model.window = Window(4096, "test")
    messages = [{"role": "user", "content": "x" * 7000}]
    params = model._params(messages, 1, None)
    assert params["max_tokens"] == 4096 - estimate_tokens(messages) < 2048
    assert estimate_tokens(messages) + params["max_tokens"] <= 4096
    with pytest.raises(ModelError, match="leaves no room"):
        model._params([{"role": "user", "content": "x" * 12000}], 1, None)
