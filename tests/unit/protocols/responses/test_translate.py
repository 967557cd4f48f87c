"""Responses requests → Ask: every input item kind, tools left out, 400s and their params."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.errors import InvalidRequest
from app.output.types import ToolSpec
from app.protocols.responses.schemas import CreateResponse
from app.protocols.responses.translate import (
    check_features,
    output_turns,
    to_ask,
    to_output_spec,
    turns_to_store,
)
from tests.openai_spec import schemas, validate_openai

DATA = Path(__file__).resolve().parents[3] / "data" / "responses"
TURN_CASES = json.loads((DATA / "turns.json").read_text())
ERROR_CASES = json.loads((DATA / "errors.json").read_text())

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}
# What Codex and the Agents SDK send next to their function tools: none runs here.
HOSTED = [
    {"type": "web_search"},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "image_generation"},
    {
        "type": "computer_use_preview",
        "display_width": 1,
        "display_height": 1,
        "environment": "linux",
    },
    {"type": "mcp", "server_label": "s", "server_url": "http://127.0.0.1:1"},
    {"type": "local_shell"},
    {"type": "custom", "name": "apply_patch", "format": {"type": "text"}},
    {
        "type": "namespace",
        "name": "ns",
        "description": "a group",
        "tools": [{"type": "function", "name": "inner", "parameters": {}, "strict": False}],
    },
]


def request(**fields: Any) -> CreateResponse:
    fields.setdefault("input", "hi")
    return CreateResponse.model_validate({"model": "m", **fields})


@pytest.mark.parametrize("case", TURN_CASES, ids=[case["name"] for case in TURN_CASES])
def test_input_becomes_turns(case: dict[str, Any]) -> None:
    assert to_ask(request(**case["request"])).turns == case["turns"]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[case["name"] for case in ERROR_CASES])
def test_what_cannot_be_met_is_a_400_naming_the_param(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_ask(request(**case["request"]))
    assert caught.value.param == case["param"]
    assert caught.value.status == 400
    assert caught.value.code == case.get("code")


def test_the_asks_other_fields_come_from_the_request() -> None:
    ask = to_ask(request(max_output_tokens=50, temperature=0.3, top_p=0.9, top_k=7))
    assert (ask.max_tokens, ask.temperature, ask.top_p, ask.top_k, ask.n) == (50, 0.3, 0.9, 7, 1)
    assert (ask.max_tokens_param, ask.messages_param, ask.stops) == (
        "max_output_tokens",
        "input",
        (),
    )
    assert ask.plain


def test_earlier_turns_follow_the_instructions_and_name_the_calls_they_made() -> None:
    earlier = [
        {"role": "user", "content": "ping"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "ping", "arguments": {}}}
            ],
        },
    ]
    given = [dict(turn) for turn in earlier]
    ask = to_ask(
        request(
            instructions="rules",
            input=[{"type": "function_call_output", "call_id": "call_1", "output": "pong"}],
        ),
        earlier,
    )
    assert ask.turns == [
        {"role": "system", "content": "rules"},
        *earlier,
        {"role": "tool", "tool_call_id": "call_1", "content": "pong", "name": "ping"},
    ]
    assert earlier == given  # the stored turns are not changed
    assert not ask.plain


def test_hosted_tools_are_left_out_and_function_tools_kept() -> None:
    spec = to_output_spec(request(tools=[*HOSTED, WEATHER, {"type": "function", "name": "ping"}]))
    assert spec.tools == (
        ToolSpec("get_weather", "Weather in a city", WEATHER["parameters"], strict=True),
        ToolSpec("ping", "", {"type": "object", "properties": {}}),
    )
    assert (spec.tool_choice, spec.tool_name, spec.parallel_tool_calls) == ("auto", None, True)


def test_only_hosted_tools_keep_the_plain_path() -> None:
    ask = to_ask(request(tools=HOSTED, tool_choice="auto"))
    assert ask.spec.tools == () and ask.plain


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tool_choice": "none"}, ("none", None, True)),
        ({"tool_choice": "required"}, ("required", None, True)),
        (
            {"tool_choice": {"type": "function", "name": "get_weather"}},
            ("function", "get_weather", True),
        ),
        ({"parallel_tool_calls": False}, ("auto", None, False)),
    ],
)
def test_tool_choice_and_parallel_calls(fields: dict[str, Any], expected: tuple[Any, ...]) -> None:
    spec = to_output_spec(request(tools=[WEATHER], **fields))
    assert (spec.tool_choice, spec.tool_name, spec.parallel_tool_calls) == expected


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"type": "text"}, ("text", None, None, False)),
        ({"type": "json_object"}, ("json_object", None, None, False)),
        (
            {"type": "json_schema", "name": "point", "schema": {"type": "object"}, "strict": True},
            ("json_schema", {"type": "object"}, "point", True),
        ),
        ({"type": "json_schema", "name": "any"}, ("json_schema", {"type": "object"}, "any", False)),
    ],
)
def test_text_format_is_the_json_mode(form: dict[str, Any], expected: tuple[Any, ...]) -> None:
    spec = to_output_spec(request(text={"format": form, "verbosity": "low"}))
    assert (spec.json, spec.schema, spec.schema_name, spec.strict) == expected


def test_fields_that_change_nothing_are_accepted() -> None:
    parsed = request(
        reasoning={"effort": "high", "summary": "auto"},
        include=["reasoning.encrypted_content"],
        prompt_cache_key="k",
        client_metadata={"a": "b"},
        truncation="auto",
        service_tier="auto",
        user="u",
        store=False,
        stream=True,
        metadata={"k": "v"},
        previous_response_id="resp_1",
        safety_identifier="s",
        stream_options={"include_obfuscation": False},
        max_tool_calls=3,
        prompt_cache_retention="24h",
        background=False,
        top_logprobs=0,
        top_k=40,
    )
    check_features(parsed)
    assert to_ask(parsed).turns == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"n": 2}, "n", "unknown_parameter"),
        ({"frequency_penalty": 0.5}, "frequency_penalty", "unknown_parameter"),
        ({"background": True}, "background", "unsupported_parameter"),
        ({"conversation": "conv_1"}, "conversation", "unsupported_parameter"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "unsupported_parameter"),
        ({"top_logprobs": 2}, "top_logprobs", "unsupported_parameter"),
    ],
)
def test_what_the_api_lacks_or_cannot_be_done_here_is_a_400(
    fields: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_features(request(**fields))
    assert (refused.value.param, refused.value.code) == (param, code)
    assert f"'{param}'" in refused.value.message


def test_every_parameter_of_openais_create_response_is_known() -> None:
    # None of OpenAI's own parameters is refused as unknown: each is used, ignored or
    # refused by name (check_features).
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                walk(schemas()[node["$ref"].rsplit("/", 1)[-1]])
            for key in ("allOf", "anyOf", "oneOf"):
                for part in node.get(key, ()):
                    walk(part)
            found.update(node.get("properties", {}))

    walk(schemas()["CreateResponse"])
    assert "input" in found and "previous_response_id" in found
    assert set(found) <= set(CreateResponse.model_fields)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"input": []}, ("input",)),
        ({"temperature": "0.5"}, ("temperature",)),
        ({"max_output_tokens": 0}, ("max_output_tokens",)),
        ({"tools": [{"name": "no type"}]}, ("tools", 0, "type")),
        ({"text": {"format": {"type": "yaml"}}}, ("text", "format", "type")),
        ({"tool_choice": "sometimes"}, ("tool_choice",)),
    ],
)
def test_malformed_fields_fail_validation_at_their_place(
    fields: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        request(**fields)
    assert any(error["loc"][: len(loc)] == loc for error in caught.value.errors())


def test_output_turns_replay_a_response_as_its_input_would() -> None:
    response = {
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "content": [{"type": "output_text", "text": "Calling."}]},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a":1}'},
        ]
    }
    replayed = to_ask(
        request(
            input=[
                {"role": "assistant", "content": "Calling."},
                {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a":1}'},
            ]
        )
    ).turns
    assert output_turns(response) == replayed


def test_a_stored_conversation_continues_where_it_left_off() -> None:
    first = request(instructions="rules", input="ping it")
    answer = {
        "output": [
            {"type": "function_call", "call_id": "call_9", "name": "ping", "arguments": "{}"}
        ]
    }
    stored = turns_to_store(first, None, answer)
    assert stored == [
        {"role": "user", "content": "ping it"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "ping", "arguments": {}}}
            ],
        },
    ]
    second = request(
        input=[{"type": "function_call_output", "call_id": "call_9", "output": "pong"}]
    )
    assert to_ask(second, stored).turns == [
        *stored,
        {"role": "tool", "tool_call_id": "call_9", "content": "pong", "name": "ping"},
    ]


def test_the_tool_shapes_accepted_are_openais() -> None:
    # (Input items are not checked here: the spec's `oneOf` finds a message without `type`
    # valid under two of its branches, and so refuses what OpenAI and its SDK accept.)
    validate_openai(
        "CreateResponse",
        {
            "model": "m",
            "input": "x",
            "tools": [WEATHER, *HOSTED],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "text": {"format": {"type": "json_schema", "name": "p", "schema": {}, "strict": True}},
        },
    )
