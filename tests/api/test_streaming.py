"""`stream: true`: OpenAI's SSE sequence, keep-alives while waiting, errors in-band or not."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from app.config import ProxyConfig
from tests.api.conftest import FakeUpstream, assert_error, chat_body, model
from tests.openai_spec import validate_openai


def sse_events(text: str) -> tuple[list[str], list[Any]]:
    """(comment lines, decoded data events) of an SSE body; `[DONE]` kept as the string."""
    comments: list[str] = []
    events: list[Any] = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith(":"):
                comments.append(line)
            elif line.startswith("data: "):
                data = line[len("data: ") :]
                events.append(data if data == "[DONE]" else orjson.loads(data))
    return comments, events


def assert_sse_headers(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-request-id"]


async def test_stream_matches_the_plain_answer(client: httpx.AsyncClient) -> None:
    plain = (await client.post("/v1/chat/completions", json=chat_body(temperature=0))).json()
    response = await client.post("/v1/chat/completions", json=chat_body(temperature=0, stream=True))
    assert_sse_headers(response)
    comments, events = sse_events(response.text)
    assert comments == []
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk)
        assert "usage" not in chunk
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert content == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert len({chunk["id"] for chunk in chunks}) == 1


async def test_include_usage_adds_a_last_usage_chunk(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(stream=True, n=2, stream_options={"include_usage": True}),
    )
    _, events = sse_events(response.text)
    chunks = events[:-1]
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk)
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert {c["choices"][0]["index"] for c in chunks[:-1]} == {0, 1}


async def test_slow_upstream_gets_keepalives_then_data(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.delay = 0.2  # keep-alive interval in the test config is 0.05 s
    response = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert_sse_headers(response)
    comments, events = sse_events(response.text)
    assert comments and set(comments) == {": keep-alive"}
    assert response.text.startswith(": keep-alive\n\n")
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"][0]["finish_reason"] in {"stop", "length"}


async def test_failure_after_stream_started_is_in_band(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.delay = 0.2
    fake_upstream.override = lambda _request: httpx.Response(500, content=b"GPU on fire")
    response = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert response.status_code == 200
    _, events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    validate_openai("ErrorResponse", events[-2])
    assert "GPU on fire" in events[-2]["error"]["message"]
    assert events[-2]["error"]["code"] == "bad_upstream_response"


async def test_fast_failure_is_a_real_http_error(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.override = lambda _request: httpx.Response(503, content=b"warming up")
    response = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert_error(response, 503, code="upstream_unavailable")


async def test_validation_errors_before_streaming_are_http_errors(
    client: httpx.AsyncClient,
) -> None:
    assert_error(
        await client.post("/v1/chat/completions", json=chat_body(stream=True, model="x")), 404
    )
    assert_error(
        await client.post("/v1/chat/completions", json=chat_body(stream=True, tools=[{}])), 400
    )


async def test_legacy_completions_stream(make_client: Any) -> None:
    client = await make_client(ProxyConfig(models=[model("m")]))
    response = await client.post(
        "/v1/completions",
        json={
            "model": "m",
            "prompt": ["a", "b"],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert_sse_headers(response)
    _, events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    for chunk in events[:-2]:
        assert chunk["object"] == "text_completion"
        # OpenAI streams finish_reason null until the end, which its schema does not allow.
        choice = chunk["choices"][0]
        patched = {
            **chunk,
            "choices": [{**choice, "finish_reason": choice["finish_reason"] or "stop"}],
        }
        validate_openai("CreateCompletionResponse", patched)
    assert events[-2]["choices"] == [] and events[-2]["usage"]["prompt_tokens"] == 2
    finished = [c["choices"][0] for c in events[:-2] if c["choices"][0]["finish_reason"]]
    assert [choice["index"] for choice in finished] == [0, 1]
