"""What real agent frameworks send (recorded by tests/clients/record_agent_requests.py) is read
by the chat edge as the framework meant it: every fixture parses, and its tools, tool choice,
JSON format and messages become the expected OutputSpec and turns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.protocols.openai.schemas import ChatCompletionRequest
from app.protocols.openai.translate import to_output_spec, to_turns

FIXTURES = Path(__file__).parents[1] / "data" / "agent_requests"

WEATHER = ("get_weather",)
DESK = ("get_weather", "get_local_time")
RESULTS = {"get_weather": "Sunny and 21 degrees in Paris", "get_local_time": "It is 14:05 in Paris"}
TRIP_SCHEMA = {"traveller", "days", "cities", "mode"}

# fixture → (tools offered, tool_choice, tool_name, json mode, schema name, strict, roles)
EXPECTED: dict[str, tuple[tuple[str, ...], str, str | None, str, str | None, bool, str]] = {
    "langchain-bind_tools": (WEATHER, "auto", None, "text", None, False, "user"),
    "langchain-stream_tools": (WEATHER, "auto", None, "text", None, False, "user"),
    "langchain-create_agent-1": (WEATHER, "auto", None, "text", None, False, "system user"),
    "langchain-create_agent-2": (
        WEATHER, "auto", None, "text", None, False, "system user assistant tool",
    ),
    "langchain-create_agent_parallel-1": (DESK, "auto", None, "text", None, False, "user"),
    "langchain-create_agent_parallel-2": (
        DESK, "auto", None, "text", None, False, "user assistant tool tool",
    ),
    "langchain-structured_output": ((), "auto", None, "json_schema", "Trip", True, "user"),
    "langchain-structured_function_calling": (
        ("Trip",), "function", "Trip", "text", None, False, "user",
    ),
    "instructor-default_mode": (("Trip",), "function", "Trip", "text", None, False, "user"),
    "pydantic_ai-output_type": (
        ("final_result",), "required", None, "text", None, False, "user",
    ),
    "pydantic_ai-streamed_output_type": (
        ("final_result",), "required", None, "text", None, False, "user",
    ),
    "pydantic_ai-tool_and_output_type-1": (
        ("get_weather", "final_result"), "required", None, "text", None, False, "user",
    ),
    "pydantic_ai-tool_and_output_type-2": (
        ("get_weather", "final_result"), "required", None, "text", None, False,
        "user assistant tool",
    ),
    "pydantic_ai-parallel_tools-1": (
        (*DESK, "final_result"), "required", None, "text", None, False, "user",
    ),
    "pydantic_ai-parallel_tools-2": (
        (*DESK, "final_result"), "required", None, "text", None, False,
        "user assistant tool tool",
    ),
    "openai_agents-parallel_tools-1": (
        DESK, "auto", None, "json_schema", "final_output", True, "system user",
    ),
    "openai_agents-parallel_tools-2": (
        DESK, "auto", None, "json_schema", "final_output", True,
        "system user assistant tool tool",
    ),
    "openai_agents-parallel_tools_streamed-1": (
        DESK, "auto", None, "json_schema", "final_output", True, "system user",
    ),
    "openai_agents-parallel_tools_streamed-2": (
        DESK, "auto", None, "json_schema", "final_output", True,
        "system user assistant tool tool",
    ),
    "openai_agents-tool_and_output_type-1": (
        WEATHER, "auto", None, "json_schema", "final_output", True, "system user",
    ),
    "openai_agents-tool_and_output_type-2": (
        WEATHER, "auto", None, "json_schema", "final_output", True,
        "system user assistant tool",
    ),
    "openai_agents-streamed-1": (
        WEATHER, "auto", None, "json_schema", "final_output", True, "system user",
    ),
    "openai_agents-streamed-2": (
        WEATHER, "auto", None, "json_schema", "final_output", True,
        "system user assistant tool",
    ),
}  # fmt: skip


def load(name: str) -> ChatCompletionRequest:
    """The recorded body, parsed as the route parses it (strict JSON validation)."""
    return ChatCompletionRequest.model_validate_json((FIXTURES / f"{name}.json").read_bytes())


def test_every_fixture_has_expectations() -> None:
    assert sorted(path.stem for path in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_output_spec(name: str) -> None:
    tools, choice, tool_name, mode, schema_name, strict, _ = EXPECTED[name]
    spec = to_output_spec(load(name))
    assert tuple(tool.name for tool in spec.tools) == tools
    assert (spec.tool_choice, spec.tool_name) == (choice, tool_name)
    assert (spec.json, spec.schema_name, spec.strict) == (mode, schema_name, strict)
    # only LangChain's function_calling method turns parallel calls off
    assert spec.parallel_tool_calls == (name != "langchain-structured_function_calling")
    assert spec.offers_tools == bool(tools)
    assert all(tool.description for tool in spec.tools)  # docstrings reach the tools


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_schemas_keep_their_structure(name: str) -> None:
    spec = to_output_spec(load(name))
    schemas: list[dict[str, Any]] = [tool.parameters for tool in spec.tools]
    if spec.schema is not None:
        schemas.append(spec.schema)
    for schema in schemas:
        assert schema["type"] == "object"
        properties = set(schema["properties"])
        assert properties in ({"city"}, {"city", "summary"}, TRIP_SCHEMA)
        assert set(schema.get("required", [])) == properties
        if properties == TRIP_SCHEMA:
            # the nested City: a $ref into $defs (Pydantic's form), or inlined (LangChain's
            # function_calling)
            city = schema["properties"]["cities"]["items"]
            if "$ref" in city:
                assert city == {"$ref": "#/$defs/City"}
                city = schema["$defs"]["City"]
            assert set(city["properties"]) == {"name", "country"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_turns(name: str) -> None:
    *_, roles = EXPECTED[name]
    turns = to_turns(load(name).messages)
    assert " ".join(turn["role"] for turn in turns) == roles
    assert all(isinstance(turn["content"], str) for turn in turns)
    calls = [call for turn in turns for call in turn.get("tool_calls", [])]
    results = [turn for turn in turns if turn["role"] == "tool"]
    assert len(calls) == len(results)
    for call, result in zip(calls, results, strict=True):
        # arguments as a dict (HF's form); the tool turn named after the call it answers
        name = call["function"]["name"]
        assert call["function"] == {"name": name, "arguments": {"city": "Paris"}}
        assert result["tool_call_id"] == call["id"]
        assert result["name"] == name
        assert result["content"] == RESULTS[name]


def test_the_recorded_shapes() -> None:
    """The forms the frameworks use that the edge must take, pinned so a re-recording that
    changes them is noticed."""
    bodies = {path.stem: json.loads(path.read_text()) for path in FIXTURES.glob("*.json")}
    assert bodies["instructor-default_mode"]["tool_choice"] == {
        "type": "function",
        "function": {"name": "Trip"},
    }
    assert bodies["pydantic_ai-output_type"]["tools"][0]["function"]["strict"] is True
    agents = bodies["openai_agents-tool_and_output_type-2"]
    assert agents["response_format"]["json_schema"]["strict"] is True
    assert agents["messages"][2]["content"] is None  # the assistant turn with only calls
    for name in ("langchain-stream_tools", "pydantic_ai-streamed_output_type"):
        assert bodies[name]["stream"] is True
        assert bodies[name]["stream_options"] == {"include_usage": True}
    assert [name for name, body in bodies.items() if "parallel_tool_calls" in body] == [
        "langchain-structured_function_calling"
    ]
