"""Anthropic's Messages API end to end: the official anthropic SDK against a real `serve` and
real `mock-upstream` processes: messages.create (plain, system, stop_sequences, thinking),
the SDK's stream helper (also when the stream opens before the upstream answered, with pings,
and with a failure in-band after that), a tool loop with tool_result, tool_choice,
count_tokens, models.list, aliases (`claude-*`), both ways of sending the key, and every
error as the SDK's own exception with Anthropic's envelope."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import Anthropic
from anthropic.types import MessageParam, ToolParam

from tests.e2e.servers import Server, mock_stats, running_mock, serve_config, wait_until

KEY = "sk-messages"
CHAT_ONLY_KEY = "sk-chat-only"
KEEPALIVE = 0.2
SLOW_MS = 800  # several keep-alive intervals: the stream opens before the answer
MAX_REQUEST_BYTES = 64 * 1024
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "the city"}},
        "required": ["city"],
    },
}
CLOCK: ToolParam = {
    "name": "get_time",
    "description": "The time now in a time zone",
    "input_schema": {
        "type": "object",
        "properties": {"zone": {"type": "string"}},
        "required": ["zone"],
    },
}
ASK: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris today?"}]
HELLO: list[MessageParam] = [{"role": "user", "content": "Hello there"}]
# The SDK has no sampling params any more; the proxy takes Anthropic's documented ones.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir: Path = tmp_path_factory.mktemp("messages")
    with (
        running_mock(log_dir, "mock-messages") as mock,
        running_mock(log_dir, "mock-messages-thinking", ["--reasoning"]) as thinking,
        running_mock(log_dir, "mock-messages-hang", ["--fault", "hang"]) as hang,
    ):
        upstream = f"{mock.url}/inference"
        once = {"max_retries": 0, "cooldown": {"failures": 1_000_000}}

        def fault(name: str, **headers: str) -> dict[str, Any]:
            return {"name": name, "api_base": upstream, "headers": headers, **once}

        models: list[dict[str, Any]] = [
            {"name": "chat", "api_base": upstream, "prompt_template": "chatml"},
            {
                "name": "demo-claude",
                "api_base": upstream,
                "prompt_template": "chatml",
                "aliases": ["claude-*"],
            },
            {
                "name": "thinker",
                "api_base": f"{thinking.url}/inference",
                "prompt_template": "chatml",
                "reasoning": "think_tags",
            },
            {**fault("slow", **{"x-mock-delay-ms": str(SLOW_MS)}), "prompt_template": "chatml"},
            fault("slow-500", **{"x-mock-delay-ms": str(SLOW_MS), "x-mock-fault": "status:500"}),
            fault("upstream-500", **{"x-mock-fault": "status:500"}),
            {**fault("too-slow", **{"x-mock-delay-ms": "3000"}), "timeout": 0.5},
            {
                "name": "busy",
                "api_base": f"{hang.url}/inference",
                "max_concurrency": 1,
                "queue": {"size": 0},
                **once,
            },
            {"name": "limited", "api_base": upstream, "rpm": 1},
        ]
        config = {
            "models": models,
            "api_keys": [KEY, {"key": CHAT_ONLY_KEY, "models": ["chat"]}],
            "stream_keepalive_seconds": KEEPALIVE,
            "max_request_bytes": MAX_REQUEST_BYTES,
        }
        server = serve_config(log_dir, "messages-proxy", config)
        server.hang = hang  # type: ignore[attr-defined]  # the hanging upstream, for its stats
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def sdk(proxy: Server) -> Iterator[Anthropic]:
    with Anthropic(base_url=proxy.url, api_key=KEY, max_retries=0, timeout=30) as client:
        yield client


def _text(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


# --- messages.create -----------------------------------------------------------------------


def test_a_plain_message(sdk: Anthropic) -> None:
    raw = sdk.messages.with_raw_response.create(model="chat", max_tokens=64, messages=HELLO)
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == "chat"
    [block] = message.content
    assert block.type == "text" and block.text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    assert message._request_id == raw.headers["request-id"]


def test_system_and_a_stop_sequence(sdk: Anthropic) -> None:
    plain = sdk.messages.create(model="chat", max_tokens=64, messages=HELLO, extra_body=GREEDY)
    assert "." in _text(plain)  # the mock's sentences end with periods
    stopped = sdk.messages.create(
        model="chat",
        max_tokens=64,
        messages=HELLO,
        extra_body=GREEDY,
        stop_sequences=["###", "."],
        system="You answer briefly.",
    )
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "."
    assert "." not in _text(stopped)
    # the system prompt reached the template: the prompt grew by it
    assert stopped.usage.input_tokens > plain.usage.input_tokens
    blocks = sdk.messages.create(
        model="chat",
        max_tokens=64,
        messages=HELLO,
        extra_body=GREEDY,
        system=[{"type": "text", "text": "You answer briefly."}],
    )
    assert blocks.usage.input_tokens == stopped.usage.input_tokens


def test_max_tokens_cuts_the_answer(sdk: Anthropic) -> None:
    message = sdk.messages.create(model="chat", max_tokens=2, messages=HELLO)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


def test_a_claude_name_reaches_the_aliased_model(sdk: Anthropic) -> None:
    message = sdk.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=HELLO)
    assert message.model == "claude-sonnet-4-5" and _text(message)


def test_thinking_comes_as_a_thinking_block(sdk: Anthropic) -> None:
    message = sdk.messages.create(model="thinker", max_tokens=200, messages=HELLO)
    assert [block.type for block in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.thinking.strip()
    assert "<think>" not in _text(message)
    with sdk.messages.stream(model="thinker", max_tokens=200, messages=HELLO) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in events  # the helper's own event for a thinking_delta
    assert [block.type for block in final.content] == ["thinking", "text"]


def test_claude_code_shapes_are_accepted(sdk: Anthropic) -> None:
    """What Claude Code sends: system messages inside `messages`, thinking, cache_control,
    metadata, beta headers and `?beta=true` (the SDK's beta namespace)."""
    message = sdk.beta.messages.create(
        model="claude-haiku-4-5",
        max_tokens=32,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        ],
        metadata={"user_id": "user-1"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        betas=["interleaved-thinking-2025-05-14"],
        extra_body={"context_management": {"edits": []}},
    )
    assert message.type == "message" and message.content[0].type == "text"


# --- streaming -----------------------------------------------------------------------------


def test_the_stream_helper_gives_the_same_message(sdk: Anthropic) -> None:
    ask: dict[str, Any] = {
        "model": "chat",
        "max_tokens": 64,
        "messages": HELLO,
        "extra_body": GREEDY,
    }
    whole = sdk.messages.create(**ask)
    with sdk.messages.stream(**ask) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == _text(whole) == _text(final)
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.stop_reason == whole.stop_reason


def test_a_stream_opened_before_the_answer_pings_then_answers(
    sdk: Anthropic, proxy: Server
) -> None:
    body = {"model": "slow", "max_tokens": 32, "messages": HELLO, "stream": True}
    with httpx.stream(
        "POST", f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        names = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[1] == "ping" and names[-1] == "message_stop"
    assert "content_block_delta" in names
    with sdk.messages.stream(model="slow", max_tokens=32, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and text == _text(final)
    assert final.usage.input_tokens > 0  # message_delta brought what message_start could not


def test_a_failure_after_the_stream_opened_is_an_error_event(sdk: Anthropic, proxy: Server) -> None:
    body = {"model": "slow-500", "max_tokens": 32, "messages": HELLO, "stream": True}
    with httpx.stream(
        "POST", f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=30
    ) as response:
        assert response.status_code == 200
        lines = list(response.iter_lines())
    names = [line[7:] for line in lines if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "error"
    error = json.loads(lines[lines.index("event: error") + 1].removeprefix("data: "))
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        sdk.messages.stream(model="slow-500", max_tokens=32, messages=HELLO) as stream,
    ):
        stream.get_final_message()
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "api_error"


def test_a_failure_before_the_stream_opened_is_an_http_error(sdk: Anthropic) -> None:
    with (
        pytest.raises(anthropic.InternalServerError) as caught,
        sdk.messages.stream(model="upstream-500", max_tokens=32, messages=HELLO) as stream,
    ):
        stream.get_final_message()
    assert caught.value.status_code == 502
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


# --- tools ---------------------------------------------------------------------------------


def test_a_tool_loop(sdk: Anthropic) -> None:
    first = sdk.messages.create(model="chat", max_tokens=256, messages=ASK, tools=[WEATHER, CLOCK])
    assert first.stop_reason == "tool_use" and first.stop_sequence is None
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    assert call.input == {"city": "Paris"}

    result = "21 degrees and sunny"
    second = sdk.messages.create(
        model="chat",
        max_tokens=256,
        tools=[WEATHER, CLOCK],
        messages=[
            *ASK,
            {"role": "assistant", "content": first.content},  # the SDK's blocks as they came
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": result}],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert [block.type for block in second.content] == ["text"]
    assert result in _text(second)
    assert second.usage.input_tokens > first.usage.input_tokens


def test_a_streamed_tool_call(sdk: Anthropic) -> None:
    with sdk.messages.stream(
        model="chat", max_tokens=256, messages=ASK, tools=[WEATHER, CLOCK]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in events  # the helper's event for an input_json_delta
    [call] = [block for block in final.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_tool_choice(sdk: Anthropic) -> None:
    joke: list[MessageParam] = [{"role": "user", "content": "Tell me a joke."}]
    named = sdk.messages.create(
        model="chat",
        max_tokens=256,
        messages=joke,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "tool", "name": "get_time"},
    )
    assert [block.name for block in named.content if block.type == "tool_use"] == ["get_time"]
    anyone = sdk.messages.create(
        model="chat",
        max_tokens=256,
        messages=joke,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "any"},
    )
    assert anyone.stop_reason == "tool_use"
    none = sdk.messages.create(
        model="chat", max_tokens=64, messages=ASK, tools=[WEATHER], tool_choice={"type": "none"}
    )
    assert [block.type for block in none.content] == ["text"]
    assert none.stop_reason in ("end_turn", "max_tokens")


def test_one_call_when_parallel_use_is_disabled(sdk: Anthropic) -> None:
    ask: list[MessageParam] = [
        {"role": "user", "content": "Use get_weather for Paris and get_time for Europe/Paris."}
    ]
    both = sdk.messages.create(model="chat", max_tokens=256, messages=ask, tools=[WEATHER, CLOCK])
    calls = [block for block in both.content if block.type == "tool_use"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert len({call.id for call in calls}) == 2
    one = sdk.messages.create(
        model="chat",
        max_tokens=256,
        messages=ask,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert [block.name for block in one.content if block.type == "tool_use"] == ["get_weather"]


# --- count_tokens and models ----------------------------------------------------------------


def test_count_tokens_is_the_prompt_the_message_would_send(sdk: Anthropic) -> None:
    for tools in ([], [WEATHER, CLOCK]):
        counted = sdk.messages.count_tokens(
            model="chat", messages=ASK, system="Be brief.", tools=tools
        )
        sent = sdk.messages.create(
            model="chat", max_tokens=64, messages=ASK, system="Be brief.", tools=tools
        )
        assert counted.input_tokens == sent.usage.input_tokens > 0
    bare = sdk.messages.count_tokens(model="chat", messages=ASK)
    assert bare.input_tokens < counted.input_tokens  # the tools are in the prompt


def test_models_in_anthropics_format(sdk: Anthropic, proxy: Server) -> None:
    page = sdk.models.list()
    ids = [model.id for model in page.data]
    assert ids[:3] == ["chat", "demo-claude", "thinker"]
    assert "claude-*" not in ids  # patterns are served, not listed
    assert all(model.type == "model" and model.display_name == model.id for model in page.data)
    assert page.data[0].created_at.tzinfo is not None
    assert [model.id for model in sdk.models.list(limit=2)] == ids  # the SDK pages on
    first = sdk.models.list(limit=2)
    assert first.has_more and (first.first_id, first.last_id) == ("chat", "demo-claude")
    assert sdk.models.retrieve("claude-opus-4-1").id == "claude-opus-4-1"
    # without anthropic-version: OpenAI's list
    openai_list = httpx.get(
        f"{proxy.url}/v1/models", headers={"authorization": f"Bearer {KEY}"}
    ).json()
    assert openai_list["object"] == "list" and openai_list["data"][0]["object"] == "model"


# --- keys and errors -----------------------------------------------------------------------


def test_the_key_as_x_api_key_or_bearer(proxy: Server) -> None:
    with Anthropic(base_url=proxy.url, auth_token=KEY, max_retries=0) as bearer:
        assert bearer.messages.create(model="chat", max_tokens=8, messages=HELLO).content
    with Anthropic(base_url=proxy.url, api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            wrong.messages.create(model="chat", max_tokens=8, messages=HELLO)
        assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        with pytest.raises(anthropic.AuthenticationError):
            wrong.messages.count_tokens(model="chat", messages=HELLO)
    response = httpx.post(f"{proxy.url}/v1/messages", json={})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def _error(caught: pytest.ExceptionInfo[anthropic.APIStatusError]) -> dict[str, Any]:
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert caught.value.request_id == caught.value.response.headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    return error


def test_client_errors_raise_the_sdks_exceptions(sdk: Anthropic, proxy: Server) -> None:
    with pytest.raises(anthropic.NotFoundError) as not_found:
        sdk.messages.create(model="no-such-model", max_tokens=8, messages=HELLO)
    assert _error(not_found)["type"] == "not_found_error"
    with (
        Anthropic(base_url=proxy.url, api_key=CHAT_ONLY_KEY, max_retries=0) as narrow,
        pytest.raises(anthropic.PermissionDeniedError) as denied,
    ):
        narrow.messages.create(model="thinker", max_tokens=8, messages=HELLO)
    assert _error(denied)["type"] == "permission_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk.messages.create(
            model="chat", max_tokens=8, messages=HELLO, extra_body={"temperature": 5}
        )
    assert _error(bad)["type"] == "invalid_request_error"
    assert "temperature" in _error(bad)["message"]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}
    with pytest.raises(anthropic.BadRequestError) as media:
        sdk.messages.create(
            model="chat", max_tokens=8, messages=[{"role": "user", "content": [image]}]
        )
    assert "messages[0].content[0].type" in _error(media)["message"]
    with pytest.raises(anthropic.ContentTooLargeError) as large:
        sdk.messages.create(
            model="chat",
            max_tokens=8,
            messages=[{"role": "user", "content": "x" * MAX_REQUEST_BYTES}],
        )
    assert _error(large)["type"] == "request_too_large"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "parse the JSON"),
        (b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}', "max_tokens"),
        (b"[]", "JSON object"),
    ],
)
def test_bad_bodies_are_400s_in_anthropics_envelope(proxy: Server, body: bytes, words: str) -> None:
    response = httpx.post(
        f"{proxy.url}/v1/messages",
        content=body,
        headers={"x-api-key": KEY, "content-type": "application/json"},
    )
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert words in payload["error"]["message"]
    assert payload["request_id"] == response.headers["request-id"]


def test_unknown_paths_and_methods_under_messages(proxy: Server) -> None:
    missing = httpx.post(f"{proxy.url}/v1/messages/batches", json={}, headers={"x-api-key": KEY})
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong_method = httpx.get(f"{proxy.url}/v1/messages", headers={"x-api-key": KEY})
    assert wrong_method.status_code == 405 and wrong_method.json()["type"] == "error"
    elsewhere = httpx.post(f"{proxy.url}/v1/chat/completions", json={})
    assert "type" not in elsewhere.json() and elsewhere.json()["error"]["code"]  # OpenAI's


def test_upstream_failures_raise_the_sdks_exceptions(sdk: Anthropic) -> None:
    with pytest.raises(anthropic.InternalServerError) as bad_gateway:
        sdk.messages.create(model="upstream-500", max_tokens=8, messages=HELLO)
    assert bad_gateway.value.status_code == 502
    assert _error(bad_gateway)["type"] == "api_error"
    with pytest.raises(anthropic.GatewayTimeoutError) as timeout:
        sdk.messages.create(model="too-slow", max_tokens=8, messages=HELLO)
    assert _error(timeout)["type"] == "timeout_error"


def test_rate_limited_with_retry_after(sdk: Anthropic) -> None:
    sdk.messages.create(model="limited", max_tokens=8, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk.messages.create(model="limited", max_tokens=8, messages=HELLO)
    assert _error(caught)["type"] == "rate_limit_error"
    assert int(caught.value.response.headers["retry-after"]) >= 1


def _open_stream(proxy: Server, model: str) -> socket.socket:
    """A streamed request sent by hand, so that the test decides when the client leaves."""
    body = json.dumps({"model": model, "max_tokens": 8, "messages": HELLO, "stream": True}).encode()
    head = (
        f"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    client.sendall(head + body)
    return client


def test_overloaded_is_529_and_a_leaving_client_cancels_the_work(
    sdk: Anthropic, proxy: Server
) -> None:
    hang: Server = proxy.hang  # type: ignore[attr-defined]
    first = _open_stream(proxy, "busy")
    try:
        wait_until(lambda: mock_stats(hang)["in_flight"] == 1)
        with pytest.raises(anthropic.OverloadedError) as caught:
            sdk.messages.create(model="busy", max_tokens=8, messages=HELLO)
        assert caught.value.status_code == 529
        assert _error(caught)["type"] == "overloaded_error"
    finally:
        first.close()
    wait_until(lambda: mock_stats(hang)["in_flight"] == 0)  # the upstream call was cancelled
    second = _open_stream(proxy, "busy")  # and its slot is free again
    try:
        wait_until(lambda: mock_stats(hang)["in_flight"] == 1)
    finally:
        second.close()
    wait_until(lambda: mock_stats(hang)["in_flight"] == 0)


# --- LangChain ------------------------------------------------------------------------------


def test_langchain_chat_anthropic_with_a_tool(proxy: Server) -> None:
    from langchain_anthropic import ChatAnthropic
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return f"21 degrees and sunny in {city}"

    llm = ChatAnthropic(
        model_name="claude-sonnet-5-5",
        base_url=proxy.url,
        api_key=KEY,
        max_tokens=256,
        max_retries=0,
    )
    assert str(llm.invoke("Hello there").content)
    bound = llm.bind_tools([get_weather])
    messages: list[Any] = [HumanMessage("What is the weather in Paris today?")]
    first = bound.invoke(messages)
    [call] = first.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    messages += [first, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    final = bound.invoke(messages)
    assert not final.tool_calls
    assert "21 degrees and sunny in Paris" in str(final.content)
