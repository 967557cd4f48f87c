"""Streaming: OpenAI's chunk sequence, keep-alives while the upstream works, errors, disconnects.

The SDK shows what a client gets; httpx shows the raw SSE lines, each chunk validated against
OpenAI's schema. The proxy under test sends `: keep-alive` every 0.2 s.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai import APIStatusError, NotFoundError, OpenAI

from tests.e2e.conftest import API_KEY, KEEPALIVE_SECONDS, SLOW_MS
from tests.e2e.expected import SSE, chat_answer, continuations, parse_sse
from tests.e2e.servers import Server
from tests.openai_spec import validate_openai

pytestmark = pytest.mark.e2e

QUESTION = "Why do rivers bend?"
MESSAGES = [{"role": "user", "content": QUESTION}]
CHAT_CHUNK = "CreateChatCompletionStreamResponse"


def stream_raw(http: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, SSE]:
    """POST a streaming request and read every SSE line."""
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        if response.status_code != 200:
            response.read()  # an error answer is JSON, not a stream
            return response, parse_sse([])
        lines = list(response.iter_lines())
    return response, parse_sse(lines)


def validate_completion_chunk(event: dict[str, Any]) -> None:
    """Validate a legacy completions stream chunk against CreateCompletionResponse.

    OpenAI's spec has no chunk schema for legacy completions: its live API streams
    CreateCompletionResponse objects whose choices carry `finish_reason: null` until the last
    one, which the published schema (written for the whole response) does not allow. Only that
    null is tolerated; everything else is validated as published.
    """
    choices = [
        {**choice, "finish_reason": choice["finish_reason"] or "stop"}
        for choice in event["choices"]
    ]
    validate_openai("CreateCompletionResponse", {**event, "choices": choices})


def assert_sse_headers(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-request-id"]


def test_stream_without_usage(client: OpenAI, http: httpx.Client) -> None:
    request = {"model": "demo-raw", "messages": MESSAGES, "temperature": 0}
    with client.chat.completions.create(**request, stream=True) as stream:
        chunks = list(stream)
    expected = chat_answer("demo", QUESTION, temperature=0)
    non_streamed = client.chat.completions.create(**request).choices[0].message.content
    assert non_streamed == expected

    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    assert all(c.usage is None for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")

    response, sse = stream_raw(http, "/v1/chat/completions", request)
    assert_sse_headers(response)
    assert sse.done
    for event in sse.events:
        validate_openai(CHAT_CHUNK, event)
        assert event["object"] == "chat.completion.chunk"
        assert event.get("usage") is None
        assert len(event["choices"]) == 1
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in sse.events) == expected


def test_stream_with_include_usage(client: OpenAI, http: httpx.Client) -> None:
    request: dict[str, Any] = {
        "model": "demo-raw",
        "messages": MESSAGES,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }
    with client.chat.completions.create(**request, stream=True) as stream:
        chunks = list(stream)
    plain = {k: v for k, v in request.items() if k != "stream_options"}
    usage = client.chat.completions.create(**plain).usage
    assert usage is not None

    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.model_dump() == usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"

    response, sse = stream_raw(http, "/v1/chat/completions", request)
    assert_sse_headers(response)
    assert sse.done
    for event in sse.events:
        validate_openai(CHAT_CHUNK, event)
    assert sse.events[-1]["choices"] == []
    assert sse.events[-1]["usage"]["total_tokens"] == usage.total_tokens


def test_stream_n2_carries_each_choice_index(client: OpenAI) -> None:
    request = {"model": "demo-raw", "messages": MESSAGES, "temperature": 0.9, "n": 2}
    with client.chat.completions.create(**request, stream=True) as stream:
        chunks = list(stream)
    texts = {0: "", 1: ""}
    finishes: dict[int, str | None] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason is not None:
                finishes[choice.index] = choice.finish_reason
    expected = [c.lstrip() for c in continuations("demo", [QUESTION] * 2, temperature=0.9)]
    assert [texts[0], texts[1]] == expected
    assert set(finishes) == {0, 1}


def test_completions_stream(client: OpenAI, http: httpx.Client) -> None:
    prompts = ["Once upon a time", "The capital of France is P"]
    request = {"model": "demo-raw", "prompt": prompts, "temperature": 0.7, "max_tokens": 16}
    with client.completions.create(**request, stream=True) as stream:
        chunks = list(stream)
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert [texts[0], texts[1]] == continuations("demo", prompts, temperature=0.7, max_tokens=16)

    response, sse = stream_raw(http, "/v1/completions", request)
    assert_sse_headers(response)
    assert sse.done
    for event in sse.events:
        validate_completion_chunk(event)
    finishes = [c["finish_reason"] for e in sse.events for c in e["choices"]]
    assert finishes.count(None) == len(finishes) - 2  # one finish chunk per prompt


def test_slow_upstream_gets_keepalives_then_data(http: httpx.Client) -> None:
    request = {"model": "slow", "messages": MESSAGES, "temperature": 0}
    response, sse = stream_raw(http, "/v1/chat/completions", request)
    assert_sse_headers(response)
    minimum = int(SLOW_MS / 1000 / KEEPALIVE_SECONDS) // 2  # generous for a busy machine
    assert len(sse.comments) >= max(minimum, 1)
    assert set(sse.comments) == {": keep-alive"}
    first_data = next(i for i, line in enumerate(sse.lines) if line.startswith("data:"))
    assert all(not line.startswith("data:") for line in sse.lines[:first_data])
    assert sse.lines[0] == ": keep-alive"
    assert sse.done
    for event in sse.events:
        validate_openai(CHAT_CHUNK, event)
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in sse.events)
    assert content == chat_answer("demo", QUESTION, temperature=0)


@pytest.mark.parametrize(
    ("model", "code", "says"),
    [
        ("slow-500", "bad_upstream_response", "HTTP 500"),
        ("too-slow", "upstream_timeout", "did not answer within 0.5 s"),
    ],
)
def test_failure_after_keepalives_is_sent_in_band(
    http: httpx.Client, model: str, code: str, says: str
) -> None:
    response, sse = stream_raw(http, "/v1/chat/completions", {"model": model, "messages": MESSAGES})
    assert_sse_headers(response)
    assert sse.comments and sse.lines[0] == ": keep-alive"
    assert len(sse.events) == 1
    (event,) = sse.events
    validate_openai("ErrorResponse", event)
    assert set(event["error"]) == {"message", "type", "param", "code"}
    assert says in event["error"]["message"]
    assert event["error"]["code"] == code
    assert sse.done


def test_fast_failure_is_a_real_http_error(client: OpenAI, http: httpx.Client) -> None:
    with pytest.raises(APIStatusError) as caught:
        client.chat.completions.create(model="upstream-500", messages=MESSAGES, stream=True)
    assert caught.value.status_code == 502
    validate_openai("ErrorResponse", caught.value.response.json())

    response, sse = stream_raw(
        http, "/v1/chat/completions", {"model": "bad-json", "messages": MESSAGES}
    )
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    assert "invalid JSON" in response.json()["error"]["message"]
    assert sse.lines == []


def test_stream_validation_error_is_a_real_http_error(client: OpenAI) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES, stream=True)
    validate_openai("ErrorResponse", caught.value.response.json())


def test_client_disconnect_cancels_the_upstream_request(
    proxy: Server, http: httpx.Client, client: OpenAI
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": "hang", "messages": MESSAGES, "stream": True}
    # A client of its own, so closing the half-read response closes its connection.
    with (
        httpx.Client(base_url=proxy.url, headers=headers, timeout=30.0) as leaving,
        leaving.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert_sse_headers(response)
        request_id = response.headers["x-request-id"]
        first = next(line for line in response.iter_lines() if line)
        assert first == ": keep-alive"
    # Leaving the block mid-stream closed the connection.

    proxy.wait_for_log(
        f"client closed the stream; upstream request cancelled (request {request_id})"
    )
    completion = client.chat.completions.create(model="demo-raw", messages=MESSAGES, temperature=0)
    assert completion.choices[0].message.content == chat_answer("demo", QUESTION, temperature=0)
    assert http.get("/health").json() == {"status": "ok"}
