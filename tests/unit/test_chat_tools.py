"""OpenAI chat's agent fields → OutputSpec and turns, and the 400s for what cannot be met."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import InvalidRequest
from app.output.types import ToolSpec
from app.protocols.openai.schemas import ChatCompletionRequest
from app.protocols.openai.translate import needs_agent_path, to_output_spec, to_turns

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
BARE = {"type": "function", "function": {"name": "ping"}}
HI = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> ChatCompletionRequest:
    fields.setdefault("messages", HI)
    return ChatCompletionRequest.model_validate({"model": "m", **fields})


def test_tools_become_tool_specs_with_an_empty_object_schema_when_none_given() -> None:
    spec = to_output_spec(chat(tools=[WEATHER, BARE]))
    assert spec.tools == (
        ToolSpec("get_weather", "Weather in a city", WEATHER["function"]["parameters"]),
        ToolSpec("ping", "", {"type": "object", "properties": {}}),
    )
    assert (spec.tool_choice, spec.tool_name, spec.parallel_tool_calls) == ("auto", None, True)
    assert spec.offers_tools and not spec.plain


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tool_choice": "none"}, ("none", None, True)),
        ({"tool_choice": "required"}, ("required", None, True)),
        (
            {"tool_choice": {"type": "function", "function": {"name": "ping"}}},
            ("function", "ping", True),
        ),
        ({"parallel_tool_calls": False}, ("auto", None, False)),
    ],
)
def test_tool_choice_and_parallel_calls(
    fields: dict[str, Any], expected: tuple[str, str | None, bool]
) -> None:
    spec = to_output_spec(chat(tools=[WEATHER, BARE], **fields))
    assert (spec.tool_choice, spec.tool_name, spec.parallel_tool_calls) == expected


def test_tool_choice_none_offers_nothing() -> None:
    spec = to_output_spec(chat(tools=[WEATHER], tool_choice="none"))
    assert not spec.offers_tools and spec.plain


def test_json_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    as_schema = {
        "type": "json_schema",
        "json_schema": {"name": "A", "schema": schema, "strict": True},
    }
    spec = to_output_spec(chat(response_format=as_schema))
    assert (spec.json, spec.schema, spec.schema_name, spec.strict) == (
        "json_schema",
        schema,
        "A",
        True,
    )
    spec = to_output_spec(chat(response_format={"type": "json_object"}))
    assert (spec.json, spec.schema) == ("json_object", None)
    assert to_output_spec(chat(response_format={"type": "text"})).plain


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("duplicate names", {"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ("required without tools", {"tool_choice": "required"}, "tool_choice"),
    (
        "named tool not offered",
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice",
    ),
    (
        "invalid parameters schema",
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
        "tools[0].function.parameters",
    ),
    (
        "json_schema without its object",
        {"response_format": {"type": "json_schema"}},
        "response_format.json_schema",
    ),
    (
        "invalid response schema",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"required": 1}},
            }
        },
        "response_format.json_schema.schema",
    ),
]


@pytest.mark.parametrize(("fields", "param"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_what_cannot_be_met_is_a_400_naming_the_param(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_output_spec(chat(**fields))
    assert caught.value.param == param
    assert caught.value.message


def test_turns_in_hugging_faces_form() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "21 C"}]},
    ]
    assert to_turns(chat(messages=messages).messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        {"role": "tool", "content": "21 C", "tool_call_id": "call_1", "name": "get_weather"},
    ]


BAD_TURNS: list[tuple[str, list[dict[str, Any]], str]] = [
    (
        "arguments not JSON",
        [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{x"}}
                ],
            }
        ],
        "messages[0].tool_calls[0].function.arguments",
    ),
    (
        "arguments not an object",
        [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                ],
            }
        ],
        "messages[0].tool_calls[0].function.arguments",
    ),
    (
        "tool_calls on a user message",
        [
            {
                "role": "user",
                "content": "x",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            }
        ],
        "messages[0].tool_calls",
    ),
    (
        "tool result without its call id",
        [{"role": "tool", "content": "21 C"}],
        "messages[0].tool_call_id",
    ),
]


@pytest.mark.parametrize(
    ("messages", "param"), [c[1:] for c in BAD_TURNS], ids=[c[0] for c in BAD_TURNS]
)
def test_bad_turns_are_a_400_naming_the_param(messages: list[dict[str, Any]], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_turns(chat(messages=messages).messages)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, False),
        ({"response_format": {"type": "text"}}, False),
        ({"tools": [WEATHER]}, True),
        ({"response_format": {"type": "json_object"}}, True),
        ({"messages": [{"role": "tool", "tool_call_id": "c", "content": "x"}]}, True),
    ],
)
def test_only_agent_requests_leave_the_plain_path(fields: dict[str, Any], expected: bool) -> None:
    assert needs_agent_path(chat(**fields)) is expected
