"""The model client, through the real openai client over real HTTP to the scripted server."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request

import pytest

from agent.errors import ModelError, ModelNotFound, ModelUnavailable
from agent.models.hints import Hints, hinted
from agent.models.client import (
    DEFAULT_PRICES,
    ChatModel,
    Completion,
    ModelSettings,
    OpenAIChatModel,
    Usage,
    cost_usd,
    price_for,
    split_usage,
)
from tests.support.openai_server import (
    ScriptedOpenAIServer,
    error,
    estimate_tokens,
    ignore_n,
    malformed,
    stall,
    truncated,
)

PROMPT = [
    {"role": "system", "content": "You fix bugs."},
    {"role": "user", "content": "Make test_add pass."},
]


def make_model(server: ScriptedOpenAIServer | None, **overrides) -> OpenAIChatModel:
    fields = {
        "model": "test-model",
        "base_url": server.base_url if server is not None else None,
        "api_key": None,
        "timeout_s": 5.0,
        "max_retries": 3,
        "retry_base_delay_s": 0.001,
        "retry_max_delay_s": 0.01,
    }
    fields.update(overrides)
    return OpenAIChatModel(ModelSettings(**fields))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- sampling ---------------------------------------------------------------------------------


async def test_n_is_honoured_in_one_request(openai_server):
    openai_server.script("answer A", "answer B", "answer C")
    async with make_model(openai_server, seed=7) as model:
        assert isinstance(model, ChatModel)
        out = await model.sample(PROMPT, 3)
        assert model.honours_n is True
    assert [c.text for c in out] == ["answer A", "answer B", "answer C"]
    assert all(isinstance(c, Completion) and c.finish_reason == "stop" for c in out)
    assert len({c.request_id for c in out}) == 1 and out[0].request_id.startswith("chatcmpl-")
    (req,) = openai_server.chat_requests
    assert req.body["n"] == 3
    assert req.body["seed"] == 7
    assert req.body["temperature"] == 0.8
    assert req.body["max_tokens"] == 2048
    assert req.body["messages"] == PROMPT
    assert "Make test_add pass." in req.prompt
    assert openai_server.remaining == 0


async def test_single_sample_sends_no_n(openai_server):
    openai_server.script("only")
    async with make_model(openai_server) as model:
        (out,) = await model.sample(PROMPT, 1, seed=3)
    assert out.text == "only"
    (req,) = openai_server.chat_requests
    assert "n" not in req.body and req.body["seed"] == 3


async def test_ignored_n_is_detected_and_filled_with_concurrent_requests(openai_server):
    openai_server.honour_n = False
    # the two fill-in requests each stall 0.4 s: they overlap only if sent concurrently
    openai_server.script("first", stall(0.4), stall(0.4), "second", "third")
    async with make_model(openai_server) as model:
        out = await model.sample(PROMPT, 3, seed=10)
        assert model.honours_n is False
        reqs = openai_server.chat_requests
        assert len(reqs) == 3
        assert reqs[0].body["n"] == 3
        fill = reqs[1:]
        assert all("n" not in r.body for r in fill)
        assert sorted(r.body["seed"] for r in fill) == [11, 12]
        assert abs(fill[0].time - fill[1].time) < 0.3  # both arrived before either answered
        assert out[0].text == "first"
        assert sorted(c.text for c in out[1:]) == ["second", "third"]

        # remembered: the next call goes straight to one request per candidate
        openai_server.script("x", "y")
        out = await model.sample(PROMPT, 2)
    assert sorted(c.text for c in out) == ["x", "y"]
    later = openai_server.chat_requests[3:]
    assert len(later) == 2 and all("n" not in r.body and "seed" not in r.body for r in later)


async def test_ignore_n_on_one_request_only(openai_server):
    openai_server.script(ignore_n("one"), "two")
    async with make_model(openai_server) as model:
        out = await model.sample(PROMPT, 2)
    assert [c.text for c in out] == ["one", "two"]
    assert len(openai_server.chat_requests) == 2


async def test_server_rejecting_n_falls_back_to_single_requests(openai_server):
    openai_server.script(
        error(400, "Unsupported value: 'n' must be 1.", param="n", code="unsupported_value"),
        "a",
        "b",
    )
    async with make_model(openai_server) as model:
        out = await model.sample(PROMPT, 2)
        assert model.honours_n is False
    assert sorted(c.text for c in out) == ["a", "b"]
    assert len(openai_server.chat_requests) == 3


# -- retries ----------------------------------------------------------------------------------


async def test_500_then_success(openai_server):
    openai_server.script(error(500), error(503), "fixed")
    async with make_model(openai_server) as model:
        (out,) = await model.sample(PROMPT, 1)
        assert model.request_count == 1
    assert out.text == "fixed"
    assert len(openai_server.chat_requests) == 3


async def test_5xx_until_retries_run_out(openai_server):
    openai_server.script(*[error(500, "kaput")] * 3)
    async with make_model(openai_server, max_retries=2) as model:
        with pytest.raises(ModelUnavailable) as info:
            await model.sample(PROMPT, 1)
    message = str(info.value)
    assert "\n" not in message
    assert openai_server.base_url in message and "kaput" in message and "3 attempts" in message
    assert len(openai_server.chat_requests) == 3


async def test_429_honours_retry_after(openai_server):
    openai_server.script(error(429, retry_after=0.5), "after the wait")
    async with make_model(openai_server) as model:
        start = time.monotonic()
        (out,) = await model.sample(PROMPT, 1)
        elapsed = time.monotonic() - start
    assert out.text == "after the wait"
    assert elapsed >= 0.45
    assert len(openai_server.chat_requests) == 2


async def test_retry_after_is_capped(openai_server):
    openai_server.script(error(429, retry_after=3600), "soon")
    async with make_model(openai_server, retry_after_cap_s=0.05) as model:
        start = time.monotonic()
        (out,) = await model.sample(PROMPT, 1)
    assert out.text == "soon" and time.monotonic() - start < 2


async def test_stall_past_timeout_then_retry_succeeds(openai_server):
    openai_server.script(stall(10), "quick now")
    async with make_model(openai_server, timeout_s=0.3) as model:
        start = time.monotonic()
        (out,) = await model.sample(PROMPT, 1)
        elapsed = time.monotonic() - start
    assert out.text == "quick now"
    assert 0.3 <= elapsed < 3
    assert len(openai_server.chat_requests) == 2


async def test_timeouts_until_retries_run_out(openai_server):
    openai_server.script(*[stall(10)] * 2)
    async with make_model(openai_server, timeout_s=0.2, max_retries=1) as model:
        with pytest.raises(ModelUnavailable, match=r"did not answer within 0\.2s \(2 attempts\)"):
            await model.sample(PROMPT, 1)


async def test_server_down_gives_one_line():
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    async with make_model(None, base_url=base_url, max_retries=2) as model:
        start = time.monotonic()
        with pytest.raises(ModelUnavailable) as info:
            await model.sample(PROMPT, 2)
    assert time.monotonic() - start < 5
    assert str(info.value) == (
        f"cannot reach the model server at {base_url}: connection refused — is it running? "
        "set OPENAI_BASE_URL or --base-url"
    )


async def test_malformed_json_is_retried(openai_server):
    openai_server.script(malformed(), "well formed")
    async with make_model(openai_server) as model:
        (out,) = await model.sample(PROMPT, 1)
    assert out.text == "well formed"
    assert len(openai_server.chat_requests) == 2


async def test_malformed_json_until_retries_run_out(openai_server):
    openai_server.script(malformed(), malformed())
    async with make_model(openai_server, max_retries=1) as model:
        with pytest.raises(ModelError) as info:
            await model.sample(PROMPT, 1)
    assert not isinstance(info.value, ModelUnavailable)
    assert "malformed" in str(info.value) and "\n" not in str(info.value)


# -- errors that are not retried ----------------------------------------------------------------


async def test_unknown_model_lists_available_models(openai_server):
    openai_server.models = ["test-model", "qwen2.5-coder:7b"]
    async with make_model(openai_server, model="gpt-9") as model:
        with pytest.raises(ModelNotFound) as info:
            await model.sample(PROMPT, 3)
    message = str(info.value)
    assert "'gpt-9'" in message and openai_server.base_url in message
    assert "qwen2.5-coder:7b" in message and "test-model" in message
    assert len(openai_server.chat_requests) == 1  # no retries
    assert any(r.method == "GET" and r.path == "/v1/models" for r in openai_server.requests)


async def test_unknown_model_when_models_cannot_be_listed(openai_server):
    openai_server.models_status = 500
    async with make_model(openai_server, model="gpt-9") as model:
        with pytest.raises(ModelNotFound, match="could not list the available models"):
            await model.sample(PROMPT, 1)


async def test_wrong_base_url_path(openai_server):
    async with make_model(openai_server, base_url=openai_server.url + "/nope") as model:
        with pytest.raises(ModelError, match="check the base URL") as info:
            await model.sample(PROMPT, 1)
    assert not isinstance(info.value, ModelNotFound)


async def test_auth_error_is_clear_and_never_shows_the_key():
    key = "sk-proj-SECRET-1234567890"
    with ScriptedOpenAIServer(required_api_key="sk-the-right-one") as server:
        base_url = server.base_url
        server.script("never")
        async with make_model(server, api_key=key) as model:
            with pytest.raises(ModelError) as info:
                await model.sample(PROMPT, 1)
        assert server.chat_requests[0].headers["authorization"] == f"Bearer {key}"
        assert len(server.chat_requests) == 1  # no retries
    message = str(info.value)
    assert "401" in message and "API key" in message and base_url in message
    assert key not in message


async def test_api_key_never_in_messages_even_when_echoed(openai_server):
    key = "sk-proj-SECRET-abcdef"
    openai_server.script(error(500, f"upstream rejected key {key}"), error(400, f"bad {key}"))
    async with make_model(openai_server, api_key=key, max_retries=0) as model:
        with pytest.raises(ModelUnavailable) as first:
            await model.sample(PROMPT, 1)
        with pytest.raises(ModelError) as second:
            await model.sample(PROMPT, 1)
        assert key not in repr(model) and key not in repr(model.settings)
    for info in (first, second):
        assert key not in str(info.value) and "***" in str(info.value)


async def test_no_api_key_sends_placeholder(openai_server):
    openai_server.script("ok")
    async with make_model(openai_server, api_key=None) as model:
        await model.sample(PROMPT, 1)
    assert openai_server.chat_requests[0].headers["authorization"] == "Bearer sk-no-key"


# -- answers, usage, cost, parameters ----------------------------------------------------------


async def test_truncated_answer_has_finish_reason_length(openai_server):
    full = "def add(a, b):\n    return a + b\n"
    openai_server.script(truncated(full), "complete")
    async with make_model(openai_server) as model:
        out = await model.sample(PROMPT, 2)
    assert out[0].finish_reason == "length"
    assert out[0].text == full[: len(full) // 2]
    assert out[1].finish_reason == "stop" and out[1].text == "complete"


async def test_a_hint_shortens_the_answer_but_never_lengthens_it(openai_server):
    openai_server.script("a", "b")
    async with make_model(openai_server, max_tokens=500) as model:
        with hinted(Hints(max_tokens=100)):
            await model.sample(PROMPT, 1)
        with hinted(Hints(max_tokens=4000)):
            await model.sample(PROMPT, 1)
    assert [r.body["max_tokens"] for r in openai_server.chat_requests] == [100, 500]


async def test_server_truncates_at_max_tokens(openai_server):
    openai_server.script("x" * 400)
    async with make_model(openai_server, max_tokens=10) as model:
        (out,) = await model.sample(PROMPT, 1)
    assert out.finish_reason == "length" and len(out.text) == 40


async def test_usage_and_cost_are_summed(openai_server):
    openai_server.models.append("gpt-4o-mini")
    texts = ["a" * 400, "b" * 40, "c" * 4]
    openai_server.script(*texts)
    async with make_model(openai_server, model="gpt-4o-mini") as model:
        out = await model.sample(PROMPT, 3)
        prompt_tokens = estimate_tokens(openai_server.chat_requests[0].prompt)
        completion_tokens = sum(estimate_tokens(t) for t in texts)
        total = sum((c.usage for c in out), Usage())
        assert total == Usage(prompt_tokens, completion_tokens)
        assert model.total_usage == total
        assert [c.usage.completion_tokens for c in out] == [100, 10, 1]
        assert sum(c.usage.prompt_tokens for c in out) == prompt_tokens
        in_price, out_price = DEFAULT_PRICES["gpt-4o-mini"]
        expected = (prompt_tokens * in_price + completion_tokens * out_price) / 1e6
        assert sum(c.cost_usd for c in out) == pytest.approx(expected)
        assert model.total_cost_usd == pytest.approx(expected)

        # filled-in requests: each request's prompt is counted once per request
        openai_server.honour_n = False
        openai_server.script("d" * 8, "e" * 8)
        more = await model.sample(PROMPT, 2)
        assert sum(c.usage.prompt_tokens for c in more) == 2 * prompt_tokens
        assert model.total_usage == total + sum((c.usage for c in more), Usage())
        assert model.request_count == 3


async def test_unknown_and_local_models_cost_nothing(openai_server):
    openai_server.script("free")
    async with make_model(openai_server) as model:
        (out,) = await model.sample(PROMPT, 1)
    assert out.cost_usd == 0.0 and out.usage.total > 0


async def test_price_table_is_overridable(openai_server):
    openai_server.script("a" * 4000)
    async with make_model(openai_server, prices={"test-model": (1.0, 2.0)}) as model:
        (out,) = await model.sample(PROMPT, 1)
    assert out.cost_usd == pytest.approx(
        (out.usage.prompt_tokens * 1.0 + out.usage.completion_tokens * 2.0) / 1e6
    )
    assert out.usage.completion_tokens == 1000


async def test_reasoning_params_are_forwarded(openai_server):
    openai_server.script("thought hard")
    async with make_model(
        openai_server, reasoning_effort="high", max_completion_tokens=4000, top_p=0.9
    ) as model:
        await model.sample(PROMPT, 1)
    body = openai_server.chat_requests[0].body
    assert body["reasoning_effort"] == "high"
    assert body["max_completion_tokens"] == 4000
    assert "max_tokens" not in body
    assert body["top_p"] == 0.9


async def test_unsupported_temperature_is_dropped_and_remembered(openai_server):
    openai_server.script(
        error(
            400,
            "Unsupported value: 'temperature' does not support 0.8 with this model. "
            "Only the default (1) value is supported.",
            param="temperature",
            code="unsupported_value",
        ),
        error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        ),
        "ok",
        "again",
    )
    async with make_model(openai_server, reasoning_effort="low", max_retries=0) as model:
        (out,) = await model.sample(PROMPT, 1)
        assert out.text == "ok"
        await model.sample(PROMPT, 1)
    bodies = [r.body for r in openai_server.chat_requests]
    assert len(bodies) == 4
    assert "temperature" in bodies[0] and "temperature" not in bodies[1]
    assert bodies[2]["max_completion_tokens"] == 2048 and "max_tokens" not in bodies[2]
    assert "temperature" not in bodies[3] and "max_tokens" not in bodies[3]


async def test_other_bad_request_is_not_retried(openai_server):
    openai_server.script(error(400, "This model's maximum context length is 8192 tokens."))
    async with make_model(openai_server) as model:
        with pytest.raises(ModelError, match="HTTP 400.*maximum context length"):
            await model.sample(PROMPT, 1)
    assert len(openai_server.chat_requests) == 1


async def test_transport_retries_are_the_sdks(openai_server):
    # the openai SDK sends the retries (it numbers them in x-stainless-retry-count)
    openai_server.script(error(500), error(429), "fixed")
    async with make_model(openai_server) as model:
        (out,) = await model.sample(PROMPT, 1)
    assert out.text == "fixed"
    assert [r.headers.get("x-stainless-retry-count") for r in openai_server.chat_requests] == \
        ["0", "1", "2"]


async def test_the_server_saying_do_not_retry_is_obeyed(openai_server):
    openai_server.script(error(503, "down for maintenance", headers={"x-should-retry": "false"}),
                         "never asked")
    async with make_model(openai_server) as model:
        with pytest.raises(ModelUnavailable, match="down for maintenance"):
            await model.sample(PROMPT, 1)
    assert len(openai_server.chat_requests) == 1


async def test_the_model_check_and_listing_try_once():
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    async with make_model(None, base_url=base_url, max_retries=3,
                          retry_base_delay_s=5.0, retry_max_delay_s=5.0) as model:
        start = time.monotonic()
        with pytest.raises(ModelUnavailable, match="connection refused"):
            await model.preflight()
    assert time.monotonic() - start < 4  # no 5 s backoff: the check is not retried


def test_usage_split_and_prices():
    shares = split_usage(Usage(10, 7), ["aaaa", "", "aa"])
    assert sum(shares, Usage()) == Usage(10, 7)
    assert [s.prompt_tokens for s in shares] == [4, 3, 3]
    assert [s.completion_tokens for s in shares] == [5, 0, 2]
    assert split_usage(Usage(3, 3), ["", ""]) == [Usage(2, 2), Usage(1, 1)]
    assert Usage(1, 2) + Usage(3, 4) == Usage(4, 6) and Usage(1, 2).total == 3
    assert price_for("gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    assert price_for("gpt-4o-mini-2024-07-18") == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for("qwen2.5-coder:7b") is None
    assert cost_usd("llama3", Usage(10**6, 10**6)) == 0.0
    assert cost_usd("gpt-4.1", Usage(10**6, 10**6)) == pytest.approx(10.0)


# -- the scripted server itself ----------------------------------------------------------------


async def test_exhausted_script_is_a_clear_500(openai_server):
    async with make_model(openai_server, max_retries=0) as model:
        with pytest.raises(ModelUnavailable, match="script exhausted"):
            await model.sample(PROMPT, 1)


async def test_short_script_consumes_nothing_and_fallback_answers(openai_server):
    openai_server.script("only one")
    async with make_model(openai_server, max_retries=0) as model:
        with pytest.raises(ModelUnavailable, match="script exhausted"):
            await model.sample(PROMPT, 2)
        assert openai_server.remaining == 1
        openai_server.fallback = lambda req: f"echo: {req['messages'][-1]['content']}"
        out = await model.sample(PROMPT, 2)
    assert [c.text for c in out] == ["only one", "echo: Make test_add pass."]


async def test_callable_items_see_the_request(openai_server):
    openai_server.script(lambda req: [f"{req['n']}-a", f"{req['n']}-b"])
    async with make_model(openai_server) as model:
        out = await model.sample(PROMPT, 2)
    assert [c.text for c in out] == ["2-a", "2-b"]


async def test_stalled_request_whose_client_left_consumes_nothing(openai_server):
    openai_server.script(stall(0.5), "A", "B")
    async with make_model(openai_server, timeout_s=0.2, max_retries=0) as model:
        with pytest.raises(ModelUnavailable):
            await model.sample(PROMPT, 1)
        # the server wakes up, sees the client gone, answers nothing
        assert await asyncio.to_thread(openai_server.wait_handled, 1)
        assert openai_server.remaining == 2
        out = await model.sample(PROMPT, 2)
    assert [c.text for c in out] == ["A", "B"]


def test_models_endpoint_and_unknown_path(openai_server):
    with urllib.request.urlopen(openai_server.base_url + "/models", timeout=5) as resp:
        assert b'"test-model"' in resp.read()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(openai_server.url + "/v2/elsewhere", timeout=5)
    assert info.value.code == 404


async def test_server_stops_stalled_handlers_and_by_itself():
    server = ScriptedOpenAIServer(max_lifetime_s=0.5).start()
    server.script(stall(60))
    port = server.port
    start = time.monotonic()
    async with make_model(server, max_retries=0, timeout_s=30) as model:
        with pytest.raises(ModelError):
            await model.sample(PROMPT, 1)  # the lifetime limit ends the stall
    assert time.monotonic() - start < 5
    assert not server.running
    server.stop()  # returns once the lifetime timer's stop has finished
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
