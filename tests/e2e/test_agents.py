"""Agents end to end: the official openai SDK against a real `serve` and a real `mock-upstream`
that uses tools as a tool-trained model does, for every tool format and the templates that
carry them: calls with auto, required and a named function, the tool's result answered in
text, the SDK's stream helper accumulating calls, `chat.completions.parse` with a Pydantic
model, JSON mode, and reasoning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest
from openai import OpenAI, pydantic_function_tool
from pydantic import BaseModel

from tests.e2e.servers import Server, running_mock, serve_config

KEY = "sk-agents"
JINJA = (Path(__file__).parents[1] / "data" / "templates" / "qwen2_5_tools.jinja").read_text(
    "utf-8"
)
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "the city"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": WEATHER_SCHEMA,
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time now in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris today?"}]
# model name → (prompt_template, tool_format or None for the template's own)
FORMATS: dict[str, tuple[str, str | None]] = {
    "agent-chatml": ("chatml", None),
    "agent-llama3": ("llama3", None),
    "agent-mistral": ("mistral", None),
    "agent-pythonic": ("llama3", "pythonic"),
    "agent-raw": ("raw", None),
    "agent-jinja": (JINJA, None),  # a Qwen 2.5-style template that renders the tools itself
}


class Person(BaseModel):
    name: str
    age: int
    role: Literal["engineer", "artist"]


class GetWeather(BaseModel):
    """Current weather in a city."""

    city: str


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir: Path = tmp_path_factory.mktemp("agents")
    with (
        running_mock(log_dir, "mock-agents") as mock,
        running_mock(log_dir, "mock-thinking", ["--reasoning"]) as thinking,
    ):
        models: list[dict[str, Any]] = [
            {
                "name": name,
                "api_base": f"{mock.url}/inference",
                "prompt_template": template,
                **({"tool_format": fmt} if fmt else {}),
            }
            for name, (template, fmt) in FORMATS.items()
        ]
        models.append(
            {
                "name": "thinker",
                "api_base": f"{thinking.url}/inference",
                "prompt_template": "chatml",
                "reasoning": "think_tags",
            }
        )
        server = serve_config(log_dir, "agents-proxy", {"models": models, "api_keys": [KEY]})
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def sdk(agents: Server) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{agents.url}/v1", api_key=KEY, max_retries=0, timeout=30) as client:
        yield client


@pytest.mark.parametrize("model", FORMATS)
def test_a_tool_call_then_an_answer_from_its_result(sdk: OpenAI, model: str) -> None:
    first = sdk.chat.completions.create(model=model, messages=ASK, tools=[WEATHER, CLOCK])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)

    result = "21 degrees and sunny"
    messages = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": result},
    ]
    second = sdk.chat.completions.create(model=model, messages=messages, tools=[WEATHER, CLOCK])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.tool_calls is None
    assert result in (second.choices[0].message.content or "")
    assert second.usage is not None and second.usage.prompt_tokens > first.usage.prompt_tokens  # type: ignore[union-attr]


@pytest.mark.parametrize("model", FORMATS)
def test_required_and_named_choices(sdk: OpenAI, model: str) -> None:
    ask = [{"role": "user", "content": "Tell me a joke."}]
    required = sdk.chat.completions.create(
        model=model, messages=ask, tools=[WEATHER, CLOCK], tool_choice="required"
    )
    assert required.choices[0].finish_reason == "tool_calls"
    assert required.choices[0].message.tool_calls
    named = sdk.chat.completions.create(
        model=model,
        messages=ask,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert named.choices[0].finish_reason == "stop"
    [call] = named.choices[0].message.tool_calls or []
    assert call.function.name == "get_time"
    assert isinstance(json.loads(call.function.arguments)["zone"], str)


@pytest.mark.parametrize("model", FORMATS)
def test_parallel_calls_and_parallel_tool_calls_false(sdk: OpenAI, model: str) -> None:
    # The mock calls every tool the question names, in order (app/mock_upstream/tools.py).
    ask = [{"role": "user", "content": "Use get_weather for Paris and get_time for Europe/Paris."}]
    both = sdk.chat.completions.create(model=model, messages=ask, tools=[WEATHER, CLOCK])
    calls = both.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert len({c.id for c in calls}) == 2
    one = sdk.chat.completions.create(
        model=model, messages=ask, tools=[WEATHER, CLOCK], parallel_tool_calls=False
    )
    assert [c.function.name for c in one.choices[0].message.tool_calls or []] == ["get_weather"]


def test_tool_choice_none_answers_in_text(sdk: OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model="agent-chatml", messages=ASK, tools=[WEATHER], tool_choice="none"
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.choices[0].message.tool_calls is None
    assert "<tool_call>" not in (answer.choices[0].message.content or "")


@pytest.mark.parametrize("model", ["agent-chatml", "agent-mistral"])
def test_the_sdks_stream_helper_accumulates_the_call(sdk: OpenAI, model: str) -> None:
    with sdk.chat.completions.stream(
        model=model, messages=ASK, tools=[pydantic_function_tool(GetWeather)]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    [call] = final.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("model", [*FORMATS, "thinker"])
def test_parse_with_a_pydantic_model(sdk: OpenAI, model: str) -> None:
    completion = sdk.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Make up a person."}],
        response_format=Person,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Person)
    assert (
        completion.choices[0].message.content == parsed.model_dump_json()
        or json.loads(completion.choices[0].message.content or "") == parsed.model_dump()
    )


def test_json_mode_answers_a_json_object(sdk: OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model="agent-chatml",
        messages=[{"role": "user", "content": "Give me a JSON object about Paris."}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)


def test_reasoning_is_apart_from_the_answer(sdk: OpenAI) -> None:
    answer = sdk.chat.completions.create(model="thinker", messages=ASK)
    message = answer.choices[0].message
    reasoning = getattr(message, "reasoning_content", None)
    assert isinstance(reasoning, str) and reasoning
    assert "<think>" not in (message.content or "") and "</think>" not in (message.content or "")
    with sdk.chat.completions.stream(model="thinker", messages=ASK, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    assert getattr(final.choices[0].message, "reasoning_content", None)
    assert final.choices[0].message.tool_calls
