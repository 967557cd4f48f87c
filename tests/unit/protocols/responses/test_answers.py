"""Finished choices → Response objects and their event streams, checked against OpenAI's
OpenAPI description, the openai SDK's types and the SDK's own stream accumulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from app.output.types import ToolCall
from app.protocols.responses.answers import (
    ResponseHead,
    call_id,
    input_items,
    started,
    to_response,
)
from app.protocols.responses.events import (
    failed_event,
    failed_events,
    opening_events,
    response_events,
    sse_body,
    sse_frame,
)
from app.protocols.responses.schemas import CreateResponse
from app.translate import Choice
from tests.openai_spec import validate_openai

HEAD = ResponseHead(id="resp_0123456789abcdef", created_at=1_764_000_000, model="m")
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}
CALLS = [
    ToolCall("get_weather", '{"city":"Paris"}'),
    ToolCall("get_weather", '{"city":"Rome"}'),
]
EVENTS = TypeAdapter(ResponseStreamEvent)

CHOICES = {
    "text": Choice(0, "Hello there.", "stop", 5),
    "empty": Choice(0, "", "stop", 0),
    "reasoning and text": Choice(0, "42.", "stop", 5, reasoning="Six times seven."),
    "calls only": Choice(0, "", "tool_calls", 5, calls=CALLS),
    "text, reasoning and calls": Choice(
        0, "Checking both.", "tool_calls", 5, calls=CALLS, reasoning="Two cities."
    ),
    "cut by the limit": Choice(0, "Once upon a", "length", 5),
    "json": Choice(0, '{"x": 1, "y": 2}', "stop", 5),
}
REQUESTS = {
    "plain": {"input": "hi"},
    "everything": {
        "input": [{"role": "user", "content": "hi"}],
        "instructions": "Be brief.",
        "tools": [WEATHER, {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "point", "schema": {"type": "object"}}},
        "max_output_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.5,
        "store": False,
        "previous_response_id": "resp_earlier",
        "metadata": {"team": "a"},
    },
}


def request(name: str = "plain") -> CreateResponse:
    return CreateResponse.model_validate({"model": "m", **REQUESTS[name]})


def answer(choice: str, request_name: str = "plain") -> dict[str, Any]:
    return to_response(HEAD, request(request_name), CHOICES[choice], USAGE)


@pytest.mark.parametrize("request_name", sorted(REQUESTS))
@pytest.mark.parametrize("choice", sorted(CHOICES))
def test_responses_match_the_spec_and_the_sdk_types(choice: str, request_name: str) -> None:
    response = answer(choice, request_name)
    validate_openai("Response", response)
    parsed = Response.model_validate(response)
    assert parsed.id == HEAD.id and parsed.output_text == CHOICES[choice].text
    json.dumps(response)  # plain JSON data


def test_the_output_items() -> None:
    output = answer("text, reasoning and calls")["output"]
    digits = "0123456789abcdef"
    assert output == [
        {
            "id": f"rs_{digits}",
            "type": "reasoning",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "Two cities."}],
            "status": "completed",
        },
        {
            "id": f"msg_{digits}",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Checking both.", "annotations": [], "logprobs": []}
            ],
        },
        *(
            {
                "id": f"fc_{digits}{position:02x}",
                "type": "function_call",
                "status": "completed",
                "call_id": call_id(HEAD, position),
                "name": "get_weather",
                "arguments": arguments,
            }
            for position, arguments in enumerate(['{"city":"Paris"}', '{"city":"Rome"}'])
        ),
    ]
    assert [item["type"] for item in answer("calls only")["output"]] == ["function_call"] * 2


def test_status_usage_and_the_echoed_request() -> None:
    done = answer("text", "everything")
    assert (done["status"], done["incomplete_details"], done["error"]) == ("completed", None, None)
    assert done["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 17,
    }
    assert done["tools"] == [WEATHER, {"type": "web_search"}]
    assert done["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert done["text"] == {
        "format": {
            "type": "json_schema",
            "name": "point",
            "schema": {"type": "object"},
            "strict": False,
        }
    }
    assert (
        done["instructions"],
        done["max_output_tokens"],
        done["temperature"],
        done["top_p"],
    ) == (
        "Be brief.",
        64,
        0.2,
        0.5,
    )
    assert (done["parallel_tool_calls"], done["store"], done["previous_response_id"]) == (
        False,
        False,
        "resp_earlier",
    )
    assert done["metadata"] == {"team": "a"}
    plain = answer("text")
    assert (plain["tool_choice"], plain["tools"], plain["text"], plain["store"]) == (
        "auto",
        [],
        {"format": {"type": "text"}},
        True,
    )
    cut = answer("cut by the limit")
    assert (cut["status"], cut["incomplete_details"]) == (
        "incomplete",
        {"reason": "max_output_tokens"},
    )
    assert cut["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize("choice", sorted(CHOICES))
def test_every_event_matches_the_spec_and_the_sdk_types(choice: str) -> None:
    events = response_events(answer(choice, "everything"))
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    for event in events:
        validate_openai("ResponseStreamEvent", event)
        assert EVENTS.validate_python(event).type == event["type"]
    lifecycle = [event["response"]["id"] for event in events if "response" in event]
    assert lifecycle == [HEAD.id] * 3


def test_the_event_sequence_of_a_message_and_a_call() -> None:
    choice = Choice(0, "Checking.", "tool_calls", 5, calls=CALLS[:1])
    events = response_events(to_response(HEAD, request(), choice, USAGE))
    assert [(event["type"], event.get("output_index")) for event in events] == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", 0),
        ("response.content_part.added", 0),
        ("response.output_text.delta", 0),
        ("response.output_text.done", 0),
        ("response.content_part.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1),
        ("response.completed", None),
    ]
    created = events[0]["response"]
    assert (created["status"], created["output"], "usage" in created) == ("in_progress", [], False)
    assert events[2]["item"]["content"] == [] and events[2]["item"]["status"] == "in_progress"
    assert events[8]["item"]["arguments"] == ""
    assert events[-1]["response"]["usage"]["total_tokens"] == 17


@pytest.mark.parametrize("request_name", sorted(REQUESTS))
def test_the_opening_events_can_go_out_before_the_upstream_answers(request_name: str) -> None:
    early = opening_events(started(HEAD, request(request_name)))
    for choice in CHOICES:
        assert response_events(answer(choice, request_name))[:2] == early
    validate_openai("Response", early[0]["response"])


def test_a_cut_answer_ends_with_response_incomplete() -> None:
    events = response_events(answer("cut by the limit"))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert sum(event["type"].startswith("response.completed") for event in events) == 0


def test_a_failure_after_the_start_is_response_failed() -> None:
    opening = opening_events(answer("text"))
    event = failed_event(
        opening[-1]["response"], 2, "upstream_timeout", "The endpoint took too long."
    )
    validate_openai("ResponseStreamEvent", event)
    assert EVENTS.validate_python(event).type == "response.failed"
    assert event["sequence_number"] == 2
    assert event["response"]["status"] == "failed"
    assert event["response"]["error"] == {
        "code": "server_error",
        "message": "The endpoint took too long.",
    }
    limited = failed_event(opening[-1]["response"], 2, "upstream_rate_limited", "Slow down.")
    assert limited["response"]["error"]["code"] == "rate_limit_exceeded"


def test_sse_frame_names_the_event() -> None:
    frame = sse_frame({"type": "response.created", "sequence_number": 0})
    assert (
        frame
        == b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
    )


def sdk_client(answer_for: Callable[[dict[str, Any]], httpx.Response]) -> openai.OpenAI:
    """The openai SDK over a transport that answers with our bytes."""

    def handle(http_request: httpx.Request) -> httpx.Response:
        return answer_for(json.loads(http_request.content))

    transport = httpx.MockTransport(handle)
    return openai.OpenAI(
        api_key="k", base_url="http://127.0.0.1:9/v1", http_client=httpx.Client(transport=transport)
    )


def serve(response: dict[str, Any]) -> openai.OpenAI:
    def answer_for(body: dict[str, Any]) -> httpx.Response:
        if not body.get("stream"):
            return httpx.Response(200, json=response)
        stream = sse_body(response_events(response))
        return httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})

    return sdk_client(answer_for)


@pytest.mark.parametrize("choice", sorted(CHOICES))
def test_the_sdks_accumulator_rebuilds_the_answer_from_the_stream(choice: str) -> None:
    response = answer(choice, "everything")
    client = serve(response)
    created = client.responses.create(model="m", input="hi")
    parsed = client.responses.parse(model="m", input="hi")
    with client.responses.stream(model="m", input="hi") as stream:
        seen = list(stream)
    # The SDK's get_final_response() wants response.completed; an incomplete response (cut
    # by max_output_tokens) ends with response.incomplete, as OpenAI's own do.
    final = seen[-1].response
    if seen[-1].type == "response.completed":
        assert stream.get_final_response() == final
    else:
        parsed = created  # the SDK parses only response.completed's output
    assert created.id == final.id == HEAD.id
    assert [item.model_dump() for item in final.output] == [
        item.model_dump() for item in parsed.output
    ]
    assert final.output_text == created.output_text == CHOICES[choice].text
    assert final.usage == created.usage
    cut = choice == "cut by the limit"
    assert seen[-1].type == ("response.incomplete" if cut else "response.completed")


class Point(BaseModel):
    x: int
    y: int


def test_the_sdk_parses_a_json_answer_from_the_stream() -> None:
    client = serve(answer("json", "everything"))
    with client.responses.stream(model="m", input="a point", text_format=Point) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Point(x=1, y=2)


def test_a_stream_that_failed_before_any_output_opens_then_fails() -> None:
    events = failed_events(started(HEAD, request()), "upstream_timeout", "Took too long.")
    assert [(event["type"], event["sequence_number"]) for event in events] == [
        ("response.created", 0),
        ("response.in_progress", 1),
        ("response.failed", 2),
    ]
    body = sse_body(events)
    client = sdk_client(
        lambda _: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    with client.responses.stream(model="m", input="hi") as stream:
        seen = list(stream)
    assert seen[-1].type == "response.failed"
    assert seen[-1].response.id == HEAD.id
    assert seen[-1].response.error is not None
    assert seen[-1].response.error.message == "Took too long."


def test_input_items_are_listed_back_as_openai_lists_them() -> None:
    head = ResponseHead(id="resp_0a1b", created_at=1, model="m")
    request = CreateResponse.model_validate(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "message", "role": "assistant", "content": "hello", "id": "msg_9"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "ok"},
            ],
        }
    )
    items = input_items(head, request)
    for item in items:
        validate_openai("ItemResource", item)
    assert [item["id"] for item in items] == [
        "msg_0a1bi000",
        "msg_9",
        "rs_1",
        "fc_0a1bi003",
        "fco_0a1bi004",
    ]
    [part] = items[1]["content"]
    assert (part["type"], part["text"]) == ("output_text", "hello")
    text = CreateResponse.model_validate({"model": "m", "input": "just this"})
    [only] = input_items(head, text)
    assert (only["role"], only["content"]) == (
        "user",
        [{"type": "input_text", "text": "just this"}],
    )
    assert input_items(head, CreateResponse.model_validate({"model": "m"})) == []
