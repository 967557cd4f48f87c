"""Tools, JSON answers and reasoning through the real app, the upstream scripted per call:
what goes into the prompt, what comes out of the answer, asking again, and the 502 when the
model never gets it right."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from app.config import ProxyConfig
from tests.api.conftest import FakeUpstream, assert_error, chat_body, model
from tests.api.test_streaming import sse_events
from tests.openai_spec import validate_openai

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
PARIS = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def scripted(fake_upstream: FakeUpstream, *outputs: str) -> None:
    """The upstream answers each call with the next output (one per prompt of the call)."""
    queue: Iterator[str] = iter(outputs)

    def answer(request: httpx.Request) -> httpx.Response:
        prompts = orjson.loads(request.content)["params"]["prompt"]
        data = [{"prompt": p, "output": [next(queue)], "params": {}} for p in prompts]
        return httpx.Response(200, content=orjson.dumps({"data": data, "message": "ok"}))

    fake_upstream.override = answer


def sent_prompts(fake_upstream: FakeUpstream) -> list[str]:
    return [body["params"]["prompt"][0] for body in fake_upstream.bodies]


@pytest.fixture
async def client(make_client: Any) -> httpx.AsyncClient:
    config = ProxyConfig(
        models=[
            model("hermes", prompt_template="chatml"),
            model("thinker", prompt_template="chatml", reasoning="think_tags"),
            model("no-retry", prompt_template="chatml", output_retries=0),
            model("no-tools", prompt_template="chatml", tool_format="none"),
        ]
    )
    result: httpx.AsyncClient = await make_client(config)
    return result


async def chat(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    fields.setdefault("model", "hermes")
    fields.setdefault("messages", ASK)
    return await client.post("/v1/chat/completions", json=chat_body(**fields))


def message_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    validate_openai("CreateChatCompletionResponse", body)
    message: dict[str, Any] = body["choices"][0]["message"]
    return message


async def test_every_tool_reaches_the_prompt_and_a_call_comes_back(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    scripted(fake_upstream, PARIS)
    response = await chat(client, tools=[WEATHER, TIME])
    message = message_of(response)
    assert response.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    prompt = sent_prompts(fake_upstream)[0]
    for text in ("get_weather", "Current weather in a city", '"city"', "get_time", "<tool_call>"):
        assert text in prompt
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] > 20  # the tool instructions count


async def test_parallel_calls_in_order_and_parallel_false_keeps_the_first(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    two = PARIS + '\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    scripted(fake_upstream, two, two)
    calls = message_of(await chat(client, tools=[WEATHER, TIME]))["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert len({c["id"] for c in calls}) == 2
    calls = message_of(await chat(client, tools=[WEATHER, TIME], parallel_tool_calls=False))[
        "tool_calls"
    ]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]


async def test_a_named_function_is_prefilled_and_finishes_with_stop(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    scripted(fake_upstream, '{"city": "Paris"}}\n</tool_call>')
    choice = {"type": "function", "function": {"name": "get_weather"}}
    response = await chat(client, tools=[WEATHER, TIME], tool_choice=choice)
    message = message_of(response)
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert message["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'
    assert (
        sent_prompts(fake_upstream)[0].endswith('"get_weather"')
        or "get_weather" in (sent_prompts(fake_upstream)[0][-80:])
    )


async def test_a_missing_required_call_is_asked_for_again_and_usage_adds_up(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    scripted(fake_upstream, "It is sunny, I think.", PARIS)
    response = await chat(client, tools=[WEATHER], tool_choice="required")
    assert message_of(response)["tool_calls"][0]["function"]["name"] == "get_weather"
    first, second = sent_prompts(fake_upstream)
    assert "It is sunny, I think." in second and len(second) > len(first)
    assert response.json()["usage"]["prompt_tokens"] > 2 * (len(first) // 8)


async def test_still_wrong_after_the_retries_is_a_502_saying_what(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    scripted(fake_upstream, "no call", "still no call")
    response = await chat(client, tools=[WEATHER], tool_choice="required")
    error = assert_error(response, 502, code="invalid_model_output")
    assert "tool call" in error["message"]
    assert len(fake_upstream.requests) == 2
    scripted(fake_upstream, "no call")
    assert_error(await chat(client, model="no-retry", tools=[WEATHER], tool_choice="required"), 502)
    assert len(fake_upstream.requests) == 3


async def test_a_call_to_a_tool_not_offered_is_not_a_call(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    wrong = '<tool_call>\n{"name": "launch", "arguments": {}}\n</tool_call>'
    scripted(fake_upstream, wrong, wrong)
    error = assert_error(await chat(client, tools=[WEATHER]), 502, code="invalid_model_output")
    assert "launch" in error["message"]


async def test_json_schema_answers_are_exactly_the_json_and_validated(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    fenced = 'Here you go:\n```json\n{"name": "Ada", "age": 36}\n```'
    scripted(fake_upstream, fenced)
    form = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    content = message_of(await chat(client, response_format=form))["content"]
    assert json.loads(content) == {"name": "Ada", "age": 36}
    assert content.lstrip().startswith("{") and content.rstrip().endswith("}")
    scripted(fake_upstream, '{"name": "Ada", "age": "old"}', '{"name": "Ada", "age": 36}')
    content = message_of(await chat(client, response_format=form))["content"]
    assert json.loads(content)["age"] == 36
    assert "age" in sent_prompts(fake_upstream)[-1]  # the re-ask says what was wrong


async def test_an_answer_cut_by_max_tokens_is_returned_as_length_not_asked_again(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    scripted(fake_upstream, '{"name": "Ada", "a')
    form = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    response = await chat(client, response_format=form, max_tokens=3)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "length"
    assert len(fake_upstream.requests) == 1


async def test_reasoning_is_split_from_the_content(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    scripted(fake_upstream, "<think>Paris is the capital.</think>\n\nParis.")
    message = message_of(await chat(client, model="thinker"))
    assert message["reasoning_content"] == "Paris is the capital."
    assert message["content"] == "Paris."


async def test_a_stream_carries_reasoning_then_the_calls(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    scripted(fake_upstream, "<think>Need the weather.</think>" + PARIS)
    response = await chat(client, model="thinker", tools=[WEATHER], stream=True)
    assert response.status_code == 200, response.text
    chunks = [e for e in sse_events(response.text)[1] if e != "[DONE]"]
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    kinds = [next(iter(k for k in d if k != "role"), "finish") for d in deltas]
    assert kinds.index("reasoning_content") < kinds.index("tool_calls")
    arguments = "".join(
        call["function"].get("arguments", "") for d in deltas for call in d.get("tool_calls", [])
    )
    assert arguments == '{"city":"Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_tools_for_a_model_without_a_tool_format_are_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await chat(client, model="no-tools", tools=[WEATHER])
    assert_error(response, 400, code="unsupported_parameter", param="tools")


async def test_a_tool_result_reaches_the_prompt(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream
) -> None:
    scripted(fake_upstream, "It is 21 C and sunny in Paris.")
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C, sunny"},
    ]
    message = message_of(await chat(client, tools=[WEATHER], messages=messages))
    assert message["content"] == "It is 21 C and sunny in Paris."
    prompt = sent_prompts(fake_upstream)[0]
    assert "21 C, sunny" in prompt and '"Paris"' in prompt
