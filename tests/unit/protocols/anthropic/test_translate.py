"""Anthropic Messages requests → Ask: every block kind, the system prompt, tools, tool_choice,
the JSON format, and the 400s naming the param."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import ModelConfig
from app.errors import InvalidRequest, UnsupportedParameter
from app.generation import plan_generation
from app.output.spec import OutputSpec
from app.output.types import ToolSpec
from app.protocols.anthropic.schemas import CountTokensRequest, MessagesRequest
from app.protocols.anthropic.translate import to_ask, to_output_spec, to_turns
from app.routing import build_route

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": WEATHER_SCHEMA,
}
ASKED = {"role": "user", "content": "Weather in Paris?"}
CALLED = {
    "role": "assistant",
    "content": [
        {"type": "thinking", "thinking": "I should look it up.", "signature": "c2ln"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
}
CALL_TURN = {
    "role": "assistant",
    "content": "Let me check.",
    "tool_calls": [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
        }
    ],
}


def request(**fields: Any) -> MessagesRequest:
    fields.setdefault("messages", [ASKED])
    return MessagesRequest.model_validate({"model": "claude-x", "max_tokens": 64, **fields})


# (request fields, the turns they become)
TURN_CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
    ("string content", {}, [{"role": "user", "content": "Weather in Paris?"}]),
    (
        "text blocks joined by newlines, cache_control ignored",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "<reminder>be brief</reminder>"},
                        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
                    ],
                }
            ]
        },
        [{"role": "user", "content": "<reminder>be brief</reminder>\nhi"}],
    ),
    (
        "system string",
        {"system": "Be terse."},
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
    ),
    (
        "system blocks and system-role messages merge into the first turn",
        {
            "system": [
                {"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}},
            ],
            "messages": [
                ASKED,
                {"role": "system", "content": [{"type": "text", "text": "Mode: plan."}]},
                {"role": "assistant", "content": "Sunny."},
                {"role": "system", "content": "Be kind."},
            ],
        },
        [
            {
                "role": "system",
                "content": "You are Claude Code.\nUse tools.\n\nMode: plan.\n\nBe kind.",
            },
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Sunny."},
        ],
    ),
    (
        "empty system prompts make no system turn",
        {"system": [], "messages": [{"role": "system", "content": ""}, ASKED]},
        [{"role": "user", "content": "Weather in Paris?"}],
    ),
    (
        "a tool loop: tool_use → tool_calls, tool_result → a named tool turn, then the text",
        {
            "messages": [
                ASKED,
                CALLED,
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                        {"type": "text", "text": "And tomorrow?"},
                    ],
                },
            ]
        },
        [
            {"role": "user", "content": "Weather in Paris?"},
            CALL_TURN,
            {"role": "tool", "content": "18C", "tool_call_id": "toolu_1", "name": "get_weather"},
            {"role": "user", "content": "And tomorrow?"},
        ],
    ),
    (
        "tool_result with text blocks and is_error; no text after it",
        {
            "messages": [
                ASKED,
                CALLED,
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "is_error": True,
                            "content": [
                                {"type": "text", "text": "city not found"},
                                {"type": "text", "text": "try again"},
                            ],
                        }
                    ],
                },
            ]
        },
        [
            {"role": "user", "content": "Weather in Paris?"},
            CALL_TURN,
            {
                "role": "tool",
                "content": "Error: city not found\ntry again",
                "tool_call_id": "toolu_1",
                "name": "get_weather",
            },
        ],
    ),
    (
        "tool_result with no content; thinking and redacted_thinking dropped",
        {
            "messages": [
                ASKED,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "redacted_thinking", "data": "abc"},
                        {"type": "tool_use", "id": "t2", "name": "ping", "input": {}},
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2"}]},
            ]
        },
        [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "t2", "type": "function", "function": {"name": "ping", "arguments": {}}}
                ],
            },
            {"role": "tool", "content": "", "tool_call_id": "t2", "name": "ping"},
        ],
    ),
]


@pytest.mark.parametrize(
    ("fields", "turns"), [c[1:] for c in TURN_CASES], ids=[c[0] for c in TURN_CASES]
)
def test_messages_become_turns(fields: dict[str, Any], turns: list[dict[str, Any]]) -> None:
    assert to_turns(request(**fields)) == turns


# (request fields, the param the 400 names, whether it is an unsupported_parameter)
ERROR_CASES: list[tuple[dict[str, Any], str, bool]] = [
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "see"}, {"type": "image", "source": {}}],
                }
            ]
        },
        "messages[0].content[1].type",
        True,
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
        "messages[0].content[0].type",
        True,
    ),
    (
        {
            "messages": [
                ASKED,
                CALLED,
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "image", "source": {}}],
                        }
                    ],
                },
            ]
        },
        "messages[2].content[0].content[0].type",
        True,
    ),
    (
        {
            "system": "s",
            "messages": [{"role": "system", "content": [{"type": "image", "source": {}}]}],
        },
        "messages[0].content[0].type",
        True,
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "x"}],
                }
            ]
        },
        "messages[0].content[0].tool_use_id",
        False,
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
        "messages[0].content[0].tool_use_id",
        False,
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                }
            ]
        },
        "messages[0].content[0].type",
        False,
    ),
    (
        {
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}
            ]
        },
        "messages[0].content[0].id",
        False,
    ),
    (
        {
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}
            ]
        },
        "messages[0].content[0].name",
        False,
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages[0].content[0].text",
        False,
    ),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].name", False),
    ({"tools": [{"name": "f"}]}, "tools[0].input_schema", False),
    ({"tools": [{"name": "f", "input_schema": {"type": 12}}]}, "tools[0].input_schema", False),
    ({"tool_choice": {"type": "any"}}, "tool_choice", False),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool"}}, "tool_choice.name", False),
    (
        {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
        "tool_choice.name",
        False,
    ),
    (
        {
            "tools": [WEATHER, {"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "tool", "name": "web_search"},
        },
        "tool_choice.name",
        False,
    ),
    (
        {"output_config": {"format": {"type": "json_schema", "schema": {"type": "nonsense"}}}},
        "output_config.format.schema",
        False,
    ),
    ({"mcp_servers": [{"type": "url", "url": "http://x", "name": "x"}]}, "mcp_servers", True),
]


@pytest.mark.parametrize(("fields", "param", "unsupported"), ERROR_CASES)
def test_what_cannot_be_met_is_a_400_naming_the_param(
    fields: dict[str, Any], param: str, unsupported: bool
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_ask(request(**fields))
    assert caught.value.param == param
    assert isinstance(caught.value, UnsupportedParameter) == unsupported
    assert caught.value.status == 400


# (tool_choice, (choice, name, parallel))
CHOICE_CASES: list[tuple[dict[str, Any] | None, tuple[str, str | None, bool]]] = [
    (None, ("auto", None, True)),
    ({"type": "auto"}, ("auto", None, True)),
    ({"type": "any"}, ("required", None, True)),
    ({"type": "tool", "name": "get_weather"}, ("function", "get_weather", True)),
    ({"type": "none"}, ("none", None, True)),
    ({"type": "auto", "disable_parallel_tool_use": True}, ("auto", None, False)),
    ({"type": "any", "disable_parallel_tool_use": False}, ("required", None, True)),
]


@pytest.mark.parametrize(("choice", "expected"), CHOICE_CASES)
def test_tool_choice_maps_to_the_output_spec(
    choice: dict[str, Any] | None, expected: tuple[str, str | None, bool]
) -> None:
    fields: dict[str, Any] = {"tools": [WEATHER]}
    if choice is not None:
        fields["tool_choice"] = choice
    spec = to_output_spec(request(**fields))
    assert (spec.tool_choice, spec.tool_name, spec.parallel_tool_calls) == expected


def test_custom_tools_are_offered_and_anthropics_own_tools_left_out() -> None:
    tools = [
        WEATHER,
        {"type": "custom", "name": "ping", "input_schema": {"type": "object"}},
        {"type": "bash_20250124", "name": "bash"},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        # Claude Code's placeholder for tools its tool search loads later
        {
            "name": "DeferredToolPlaceholder",
            "description": "never call this tool",
            "input_schema": {"type": "object", "properties": {}},
            "defer_loading": True,
        },
    ]
    spec = to_output_spec(request(tools=tools))
    assert spec.tools == (
        ToolSpec("get_weather", "Weather in a city", WEATHER_SCHEMA),
        ToolSpec("ping", "", {"type": "object"}),
    )


def test_only_server_tools_ask_nothing_special() -> None:
    assert (
        to_output_spec(request(tools=[{"type": "bash_20250124", "name": "bash"}])) == OutputSpec()
    )


def test_a_json_schema_format_is_honoured_like_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    spec = to_output_spec(
        request(
            output_config={"effort": "high", "format": {"type": "json_schema", "schema": schema}}
        )
    )
    assert (spec.json, spec.schema, spec.strict, spec.tools) == ("json_schema", schema, True, ())


def test_sampling_stops_and_ignored_fields() -> None:
    ask = to_ask(
        request(
            max_tokens=300,
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            stop_sequences=["\n\nHuman:", ""],
            stream=True,
            metadata={"user_id": "u1"},
            thinking={"type": "enabled", "budget_tokens": 1024},
            context_management={"edits": []},
            service_tier="auto",
        )
    )
    assert (ask.max_tokens, ask.max_tokens_param, ask.n) == (300, "max_tokens", 1)
    assert (ask.temperature, ask.top_p, ask.top_k) == (0.2, 0.9, 40)
    assert ask.stops == ("\n\nHuman:",)
    assert ask.spec == OutputSpec() and ask.plain


def test_a_count_tokens_request_is_the_same_prompt_without_sampling() -> None:
    fields = {"model": "claude-x", "system": "Be terse.", "messages": [ASKED], "tools": [WEATHER]}
    counted = to_ask(CountTokensRequest.model_validate(fields))
    sent = to_ask(request(**fields))
    assert counted.turns == sent.turns and counted.spec == sent.spec
    assert counted.max_tokens is None and counted.stops == ()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"temperature": "0.5"}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
        ({"tool_choice": {"type": "required"}}, "tool_choice"),
    ],
)
def test_the_schema_refuses_malformed_fields(fields: dict[str, Any], param: str) -> None:
    body = {"model": "claude-x", "max_tokens": 64, "messages": [ASKED], **fields}
    body = {key: value for key, value in body.items() if value is not None}
    with pytest.raises(ValueError, match=param):
        MessagesRequest.model_validate(body)


def test_a_tool_loop_plans_and_renders_for_a_model() -> None:
    """The turns satisfy the shared prompt side: the call, its result, the offered tool."""
    fields = {
        "system": "Be terse.",
        "tools": [WEATHER],
        "messages": [
            ASKED,
            CALLED,
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}],
            },
        ],
    }
    config = ModelConfig(name="m", api_base="http://127.0.0.1:1/x", prompt_template="chatml")
    job = plan_generation(to_ask(request(**fields)), build_route(config, source="test", index=0))
    prompt = job.prompts[0]
    assert job.output is not None and job.output.tools[0].name == "get_weather"
    assert prompt.index("Be terse.") < prompt.index('"city": "Paris"') < prompt.index("18C")
