"""The Responses API end to end: the official openai SDK and the OpenAI Agents SDK against a
real `serve` in front of real `mock-upstream`s (one that uses tools as a tool-trained model
does, one that reasons in <think> tags).

What is proved: `responses.create` (text, tools across two turns with `function_call_output`,
`previous_response_id`, `store`), `responses.stream` and its accumulator, `responses.parse`
with a Pydantic `text_format`, retrieve and delete, a second key that cannot see the first
key's responses, the event stream as it goes out (named events, numbered, one id, keep-alives
and response.failed after the opening), the errors, a client leaving, and responses shared
by two proxies through Redis. Every JSON answer and event is checked against OpenAI's spec.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.clients import frameworks
from tests.clients.frameworks import CITY, WeatherReport
from tests.e2e.servers import (
    Server,
    clean_env,
    mock_stats,
    running_mock,
    serve_config,
    wait_until,
)
from tests.openai_spec import validate_openai
from tests.redis_server import RedisServer, require_redis_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ALICE, BOB = "sk-alice-responses", "sk-bob-responses"
TOOLS = "agent-hermes"  # chatml with hermes tool calls
QUESTION = f"What is the weather in {CITY} today?"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "the city"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
RESULT = "Sunny and 21 degrees in Paris"
KEEPALIVE = 0.2
SLOW_MS = 800  # several keep-alive intervals: the stream opens before the answer


class Person(BaseModel):
    name: str
    age: int
    role: Literal["engineer", "artist"]


def _config(mock: Server, thinking: Server) -> dict[str, Any]:
    upstream = f"{mock.url}/inference"
    once = {"max_retries": 0, "cooldown": {"failures": 1_000_000}}
    return {
        "models": [
            {"name": TOOLS, "api_base": upstream, "prompt_template": "chatml"},
            {"name": "plain", "api_base": upstream, "prompt_template": "chatml"},
            {
                "name": "thinker",
                "api_base": f"{thinking.url}/inference",
                "prompt_template": "chatml",
                "reasoning": "think_tags",
            },
            {"name": "slow", "api_base": upstream, "headers": {"x-mock-delay-ms": str(SLOW_MS)}},
            {
                "name": "slow-500",
                "api_base": upstream,
                "headers": {"x-mock-delay-ms": str(SLOW_MS), "x-mock-fault": "status:500"},
                **once,
            },
            {"name": "hang", "api_base": upstream, "headers": {"x-mock-fault": "hang"}, **once},
        ],
        "api_keys": [{"key": ALICE, "name": "alice"}, {"key": BOB, "name": "bob"}],
        "stream_keepalive_seconds": KEEPALIVE,
    }


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server, Server]]:
    log_dir: Path = tmp_path_factory.mktemp("responses")
    with (
        running_mock(log_dir, "mock-responses") as mock,
        running_mock(log_dir, "mock-responses-thinking", ["--reasoning"]) as thinking,
    ):
        yield log_dir, mock, thinking


@pytest.fixture(scope="module")
def proxy(upstreams: tuple[Path, Server, Server]) -> Iterator[Server]:
    log_dir, mock, thinking = upstreams
    server = serve_config(log_dir, "responses-proxy", _config(mock, thinking))
    try:
        yield server
    finally:
        server.stop()


def _client(server: Server, key: str = ALICE) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def sdk(proxy: Server) -> Iterator[OpenAI]:
    with _client(proxy) as client:
        yield client


@pytest.fixture(scope="module")
def http(proxy: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ALICE}"}
    with httpx.Client(base_url=proxy.url, headers=headers, timeout=30) as client:
        yield client


def _created(http: httpx.Client, **body: Any) -> dict[str, Any]:
    """POST /v1/responses; the JSON answer, checked against OpenAI's spec."""
    response = http.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    validate_openai("Response", answer)
    return answer


def _events(http: httpx.Client, **body: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """A streamed response as it went out: the comment lines, and each event (its `event:`
    line checked against its type, and against OpenAI's spec)."""
    comments: list[str] = []
    events: list[dict[str, Any]] = []
    name = None
    with http.stream("POST", "/v1/responses", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                assert event["type"] == name
                validate_openai("ResponseStreamEvent", event)
                events.append(event)
    return comments, events


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_a_text_answer(sdk: OpenAI, http: httpx.Client) -> None:
    response = sdk.responses.create(
        model="plain", input="Say something nice.", instructions="Be brief.", metadata={"a": "b"}
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.error is None
    assert response.output_text.strip()
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert response.instructions == "Be brief." and response.metadata == {"a": "b"}
    assert response.usage is not None and response.usage.input_tokens > 0
    assert response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens
    )
    raw = _created(http, model="plain", input=[{"role": "user", "content": "Hello"}])
    assert raw["output"][0]["content"][0]["type"] == "output_text"


def test_tools_across_two_turns_with_function_call_output(sdk: OpenAI) -> None:
    first = sdk.responses.create(
        model=TOOLS,
        input=QUESTION,
        tools=[WEATHER_TOOL],
        store=False,  # type: ignore[list-item]
    )
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": CITY}
    assert call.call_id.startswith("call_")

    # Stateless: the whole conversation again, the call's output added.
    history: list[Any] = [{"role": "user", "content": QUESTION}, call.model_dump()]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": RESULT})
    second = sdk.responses.create(model=TOOLS, input=history, tools=[WEATHER_TOOL], store=False)  # type: ignore[list-item]
    assert second.status == "completed"
    assert [item.type for item in second.output] == ["message"]
    assert RESULT in second.output_text
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens


def test_previous_response_id_continues_the_stored_conversation(sdk: OpenAI) -> None:
    first = sdk.responses.create(model=TOOLS, input=QUESTION, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    [call] = first.output
    assert call.type == "function_call"
    output = {"type": "function_call_output", "call_id": call.call_id, "output": RESULT}
    second = sdk.responses.create(
        model=TOOLS,
        previous_response_id=first.id,
        input=[output],  # type: ignore[list-item]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert second.previous_response_id == first.id
    assert RESULT in second.output_text  # the model saw the stored call and its output
    # and a third turn continues from the second: the whole history is in its prompt
    third = sdk.responses.create(model="plain", previous_response_id=second.id, input="Thanks!")
    alone = sdk.responses.create(model="plain", input="Thanks!", store=False)
    assert third.usage is not None and alone.usage is not None
    assert third.usage.input_tokens > alone.usage.input_tokens + len(RESULT.split())


def test_retrieve_and_delete(sdk: OpenAI) -> None:
    created = sdk.responses.create(model="plain", input="Remember me.")
    assert sdk.responses.retrieve(created.id).model_dump() == created.model_dump()
    sdk.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(created.id)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model="plain", previous_response_id=created.id, input="Hi")
    assert refused.value.code == "previous_response_not_found"


def test_the_input_items_of_a_stored_response(
    proxy: Server, sdk: OpenAI, http: httpx.Client
) -> None:
    given: list[Any] = [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "input_text", "text": QUESTION}]},
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": RESULT},
    ]
    made = sdk.responses.create(model=TOOLS, input=given, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    listed = sdk.responses.input_items.list(made.id, order="asc")
    kinds = [(item.type, getattr(item, "role", None)) for item in listed.data]
    assert kinds == [
        ("message", "developer"),
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
    ]
    assert listed.data[2].id == "fc_1" and listed.data[3].call_id == "call_1"  # type: ignore[union-attr]
    assert len({item.id for item in listed.data}) == 4
    page = http.get(f"/v1/responses/{made.id}/input_items", params={"limit": 3}).json()
    validate_openai("ResponseItemList", page)
    assert [item["type"] for item in page["data"]][0] == "function_call_output"  # newest first
    assert page["has_more"] is True and page["last_id"] == page["data"][-1]["id"]
    rest = http.get(
        f"/v1/responses/{made.id}/input_items", params={"limit": 3, "after": page["last_id"]}
    ).json()
    assert [item["role"] for item in rest["data"]] == ["developer"] and not rest["has_more"]
    assert _error(http.get(f"/v1/responses/{made.id}/input_items?limit=0"), 400)["param"] == (
        "limit"
    )
    with _client(proxy, BOB) as bob, pytest.raises(openai.NotFoundError):
        bob.responses.input_items.list(made.id)


def test_store_false_keeps_nothing(sdk: OpenAI, http: httpx.Client) -> None:
    response = sdk.responses.create(model="plain", input="Forget me.", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)
    error = _error(http.get(f"/v1/responses/{response.id}"), 404)
    assert error["type"] == "invalid_request_error"
    refused = http.post(
        "/v1/responses",
        json={"model": "plain", "previous_response_id": response.id, "input": "Hi"},
    )
    error = _error(refused, 400)
    assert error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id"


def test_another_key_cannot_see_a_response(proxy: Server, sdk: OpenAI) -> None:
    mine = sdk.responses.create(model="plain", input="Only for Alice.")
    with _client(proxy, BOB) as bob:
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.delete(mine.id)
        with pytest.raises(openai.BadRequestError) as refused:
            bob.responses.create(model="plain", previous_response_id=mine.id, input="Hi")
        assert refused.value.code == "previous_response_not_found"
        # Bob's own work is his: Alice cannot see it either
        his = bob.responses.create(model="plain", input="Only for Bob.")
        assert bob.responses.retrieve(his.id).id == his.id
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(his.id)
    assert sdk.responses.retrieve(mine.id).id == mine.id  # still there for Alice
    with _client(proxy, "sk-nobody") as nobody, pytest.raises(openai.AuthenticationError):
        nobody.responses.retrieve(mine.id)


def test_the_stream_helper_accumulates_the_events(sdk: OpenAI) -> None:
    with sdk.responses.stream(model=TOOLS, input=QUESTION, tools=[WEATHER_TOOL]) as stream:  # type: ignore[list-item]
        events = list(stream)
        final = stream.get_final_response()
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "response.function_call_arguments.done" in types
    assert [event.sequence_number for event in events] == list(range(len(events)))
    [call] = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": CITY}
    [stored] = sdk.responses.retrieve(final.id).output
    assert stored.type == "function_call"
    assert (stored.call_id, stored.arguments) == (call.call_id, call.arguments)

    with sdk.responses.stream(model="plain", input="Tell me something.") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        text = stream.get_final_response().output_text
    assert text and "".join(deltas) == text


def test_a_slow_answer_streams_its_opening_and_keepalives_first(http: httpx.Client) -> None:
    comments, events = _events(http, model="slow", input="Take your time.")
    assert comments and set(comments) == {": keep-alive"}
    types = [event["type"] for event in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    ids = {event["response"]["id"] for event in events if "response" in event}
    assert len(ids) == 1
    assert events[-1]["response"]["usage"]["output_tokens"] > 0
    # the opening carried the request before the answer; the stored response is the final one
    assert events[0]["response"]["status"] == "in_progress"
    stored = http.get(f"/v1/responses/{ids.pop()}").json()
    assert stored == events[-1]["response"]


def test_a_failure_after_the_opening_is_response_failed(http: httpx.Client) -> None:
    comments, events = _events(http, model="slow-500", input="Fail, please.")
    assert comments
    types = [event["type"] for event in events]
    assert types == ["response.created", "response.in_progress", "response.failed"]
    assert [event["sequence_number"] for event in events] == [0, 1, 2]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert "500" in failed["error"]["message"]
    assert http.get(f"/v1/responses/{failed['id']}").status_code == 404  # nothing stored


def test_a_failure_before_anything_went_out_is_an_http_error(sdk: OpenAI) -> None:
    # not streamed, the upstream's 500 is the answer's status (as on chat completions)
    with pytest.raises(openai.APIStatusError) as failed:
        sdk.responses.create(model="slow-500", input="Fail, please.")
    assert failed.value.status_code == 502


def test_parse_with_a_pydantic_text_format(sdk: OpenAI) -> None:
    parsed = sdk.responses.parse(
        model=TOOLS, input="Describe an engineer called Ada.", text_format=Person
    )
    person = parsed.output_parsed
    assert isinstance(person, Person)
    assert person.role in ("engineer", "artist") and isinstance(person.age, int)
    assert parsed.text is not None and parsed.text.format.type == "json_schema"


def test_json_object_format(sdk: OpenAI) -> None:
    response = sdk.responses.create(
        model=TOOLS,
        input="Answer in JSON: what is the capital of France?",
        text={"format": {"type": "json_object"}},
    )
    assert isinstance(json.loads(response.output_text), dict)


def test_reasoning_comes_as_a_reasoning_item(sdk: OpenAI, http: httpx.Client) -> None:
    response = sdk.responses.create(model="thinker", input="Think, then answer.")
    reasoning, message = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.content and reasoning.content[0].text.strip()
    assert message.type == "message" and "<think>" not in response.output_text
    _, events = _events(http, model="thinker", input="Think, then answer.")
    types = [event["type"] for event in events]
    assert "response.reasoning_text.delta" in types and "response.reasoning_text.done" in types
    # reasoning items the client sends back are dropped, not refused
    follow = sdk.responses.create(
        model="thinker",
        input=[
            {"role": "user", "content": "Think, then answer."},
            reasoning.model_dump(exclude_none=True),  # type: ignore[list-item]
            message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "user", "content": "And again?"},
        ],
    )
    assert follow.status == "completed"


def test_a_cut_answer_is_incomplete(sdk: OpenAI, http: httpx.Client) -> None:
    response = sdk.responses.create(model="plain", input="Talk at length.", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens <= 3
    _, events = _events(http, model="plain", input="Talk at length.", max_output_tokens=3)
    assert events[-1]["type"] == "response.incomplete"


def test_hosted_tools_are_left_out_and_a_choice_of_one_is_refused(
    sdk: OpenAI, http: httpx.Client
) -> None:
    hosted: list[Any] = [{"type": "web_search"}, {"type": "code_interpreter", "container": "x"}]
    response = sdk.responses.create(model=TOOLS, input="Say hello.", tools=hosted)
    assert [item.type for item in response.output] == ["message"]
    refused = http.post(
        "/v1/responses",
        json={
            "model": TOOLS,
            "input": "Search.",
            "tools": hosted,
            "tool_choice": {"type": "web_search"},
        },
    )
    assert _error(refused, 400)["param"] == "tool_choice.type"


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"input": "x", "n": 2}, 400, "n", "unknown_parameter"),
        ({"input": "x", "frobnicate": True}, 400, "frobnicate", "unknown_parameter"),
        ({"input": "x", "background": True}, 400, "background", "unsupported_parameter"),
        ({"input": "x", "temperature": "hot"}, 400, "temperature", None),
        ({}, 400, "input", None),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            400,
            "input[0].content[0].type",
            "unsupported_parameter",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c"}]},
            400,
            "input[0].output",
            None,
        ),
        ({"input": "x", "model": "no-such-model"}, 404, "model", "model_not_found"),
        ({"input": "x", "previous_response_id": "resp_nope"}, 400, None, None),
    ],
)
def test_bad_requests_get_openai_errors(
    http: httpx.Client, body: dict[str, Any], status: int, param: str | None, code: str | None
) -> None:
    error = _error(http.post("/v1/responses", json={"model": "plain", **body}), status)
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    validate_openai("Error", error)


def test_the_agents_sdk_default_model_runs_a_tool_loop(proxy: Server) -> None:
    for streamed in (False, True):
        report, tool = frameworks.openai_agents_responses(
            f"{proxy.url}/v1", ALICE, TOOLS, streamed=streamed
        )
        assert tool.calls == [CITY]  # the function tool ran once, then the agent answered
        assert isinstance(report, WeatherReport)
        assert report.city == CITY


def test_a_client_that_leaves_cancels_the_upstream_call(
    proxy: Server, upstreams: tuple[Path, Server, Server]
) -> None:
    _, mock, _ = upstreams
    with _client(proxy) as client:
        # not streamed: the client gives up waiting
        with pytest.raises(openai.APITimeoutError):
            client.with_options(timeout=0.5).responses.create(
                model="hang", input="Wait forever.", extra_headers={"x-request-id": "leave-json"}
            )
        wait_until(lambda: mock_stats(mock)["in_flight"] == 0, seconds=10)
        # streamed: the stream opened (response.created), then the client goes
        with client.responses.create(
            model="hang",
            input="Wait forever.",
            stream=True,
            extra_headers={"x-request-id": "leave-stream"},
        ) as events:
            assert next(iter(events)).type == "response.created"
        # the mock's hanging request returns once the proxy closed its connection
        wait_until(lambda: mock_stats(mock)["in_flight"] == 0, seconds=10)
    for request_id in ("leave-json", "leave-stream"):
        line = proxy.wait_for_log(f'"request_id":"{request_id}"')
        assert '"status":499' in line and '"client_disconnected":true' in line


def test_two_proxies_share_responses_through_redis(
    upstreams: tuple[Path, Server, Server], tmp_path: Path
) -> None:
    require_redis_server()
    log_dir, mock, thinking = upstreams
    config = _config(mock, thinking)
    with RedisServer.start(tmp_path) as redis:
        env = clean_env(PROXY_REDIS_URL=redis.url)
        one = serve_config(log_dir, "responses-redis-1", config, env)
        try:
            two = serve_config(log_dir, "responses-redis-2", config, env)
            try:
                with _client(one) as first, _client(two) as second, _client(two, BOB) as bob:
                    made = first.responses.create(model=TOOLS, input=QUESTION, tools=[WEATHER_TOOL])  # type: ignore[list-item]
                    assert second.responses.retrieve(made.id).model_dump() == made.model_dump()
                    with pytest.raises(openai.NotFoundError):
                        bob.responses.retrieve(made.id)
                    [call] = made.output
                    assert call.type == "function_call"
                    output = {"type": "function_call_output", "call_id": call.call_id}
                    after = second.responses.create(
                        model=TOOLS,
                        previous_response_id=made.id,
                        input=[{**output, "output": RESULT}],  # type: ignore[list-item]
                        tools=[WEATHER_TOOL],  # type: ignore[list-item]
                    )
                    assert RESULT in after.output_text
                    second.responses.delete(made.id)
                    with pytest.raises(openai.NotFoundError):
                        first.responses.retrieve(made.id)
            finally:
                two.stop()
        finally:
            one.stop()
