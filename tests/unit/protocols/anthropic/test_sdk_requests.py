"""What the anthropic SDK itself sends (caught at its transport) parses through the proxy's
own body parser and becomes the expected Ask; a malformed body is a 400 naming the param."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import pytest

from app.errors import InvalidRequest
from app.protocols.anthropic.schemas import CountTokensRequest, MessagesRequest
from app.protocols.anthropic.translate import to_ask
from app.routes._request import parse_body

ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [{"type": "text", "text": "ok"}],
    "model": "m",
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "cache_control": {"type": "ephemeral"},
}
LOOP: Any = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Two calls.", "signature": "sig"},
            {
                "type": "tool_use",
                "id": "toolu_a",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_b",
                "is_error": True,
                "content": [{"type": "text", "text": "service down"}],
            },
        ],
    },
]


def sent_body(call: str, **params: Any) -> bytes:
    """The body the SDK sends for `client.messages.<call>(**params)`."""
    bodies: list[bytes] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        bodies.append(request.read())
        answer = {"input_tokens": 3} if call == "count_tokens" else ANSWER
        return httpx2.Response(200, json=answer)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    with anthropic.Anthropic(
        api_key="k", base_url="http://127.0.0.1:9", http_client=http
    ) as client:
        getattr(client.messages, call)(**params)
    return bodies[0]


def test_the_sdks_tool_loop_request_becomes_the_expected_ask() -> None:
    body = sent_body(
        "create",
        model="claude-x",
        max_tokens=512,
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        messages=LOOP,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto", "disable_parallel_tool_use": False},
        thinking={"type": "enabled", "budget_tokens": 1024},
        stop_sequences=["END"],
        cache_control={"type": "ephemeral"},
        # This SDK no longer offers the sampling knobs; older SDKs and Claude Code send them.
        extra_body={"temperature": 1, "top_k": 5},
        metadata={"user_id": "u"},
        service_tier="auto",
    )
    ask = to_ask(parse_body(MessagesRequest, body))
    assert [turn["role"] for turn in ask.turns] == ["system", "user", "assistant", "tool", "tool"]
    assert [call["function"]["arguments"] for call in ask.turns[2]["tool_calls"]] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    assert [t["content"] for t in ask.turns[3:]] == ["18C", "Error: service down"]
    assert [t["name"] for t in ask.turns[3:]] == ["get_weather", "get_weather"]
    assert [tool.name for tool in ask.spec.tools] == ["get_weather"]
    assert (ask.max_tokens, ask.temperature, ask.top_k, ask.stops) == (512, 1, 5, ("END",))


def test_the_sdks_structured_output_request_asks_for_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    body = sent_body(
        "create",
        model="claude-x",
        max_tokens=100,
        messages=[{"role": "user", "content": "A city?"}],
        output_config={"effort": "low", "format": {"type": "json_schema", "schema": schema}},
    )
    spec = to_ask(parse_body(MessagesRequest, body)).spec
    assert (spec.json, spec.schema) == ("json_schema", schema)


def test_the_sdks_count_tokens_request_is_the_same_conversation() -> None:
    fields: Any = {
        "model": "claude-x",
        "system": "Be terse.",
        "messages": LOOP,
        "tools": [WEATHER_TOOL],
    }
    counted = to_ask(parse_body(CountTokensRequest, sent_body("count_tokens", **fields)))
    sent = to_ask(parse_body(MessagesRequest, sent_body("create", max_tokens=9, **fields)))
    assert (counted.turns, counted.spec) == (sent.turns, sent.spec)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        (
            {"max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "hi"}]}]},
            "messages[0].content",  # the str | list union: the field is named
        ),
        ({"max_tokens": 5, "messages": [{"role": "bot", "content": "hi"}]}, "messages[0].role"),
        (
            {
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
                "system": [{"type": "text"}],
            },
            "system",
        ),
        (
            {
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"input_schema": {}}],
            },
            "tools[0].name",
        ),
        (
            {
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
                "tool_choice": {"type": "some"},
            },
            "tool_choice.type",
        ),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "top_p": 2}, "top_p"),
    ],
)
def test_a_malformed_body_is_a_400_naming_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_body(MessagesRequest, json.dumps({"model": "m", **body}).encode())
    assert caught.value.param == param
