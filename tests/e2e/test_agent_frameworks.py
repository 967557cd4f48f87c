"""Agent frameworks end to end: LangChain, instructor, pydantic-ai and the OpenAI Agents SDK
against a real `serve` in front of a real `mock-upstream` that uses tools (tests/clients has the
cases; what each framework sends is pinned in tests/data/agent_requests).

The mock calls a tool when the prompt offers tools, answers from a tool's result once it is in
the prompt, and writes schema-valid JSON when asked (app/mock_upstream/tools.py): so each run
below finishes only if the proxy put the tools into the prompt, read the calls out of the text
and answered as OpenAI does. Agent loops run on every tool format.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import BaseModel

from tests.clients import frameworks
from tests.clients.frameworks import CITY, TravelDesk, Trip, WeatherReport, WeatherTool
from tests.e2e.conftest import API_KEY
from tests.e2e.servers import Server, serve_config

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
INSTRUCTOR_VENV = ROOT / ".venv-instructor"
INSTRUCTOR_REQUIREMENTS = ROOT / "tests" / "clients" / "instructor-requirements.txt"

# model name → how the proxy is told to write the tools into the prompt and read the calls
FORMATS: dict[str, dict[str, str]] = {
    "agent-hermes": {"prompt_template": "chatml"},
    "agent-llama3_json": {"prompt_template": "llama3"},
    "agent-mistral": {"prompt_template": "mistral"},
    "agent-pythonic": {"prompt_template": "chatml", "tool_format": "pythonic"},
}
MODELS = list(FORMATS)
HERMES = "agent-hermes"
BOTH_CALLS = [("get_weather", CITY), ("get_local_time", CITY)]  # parallel, in the order named


@pytest.fixture(scope="module")
def agent_proxy(log_dir: Path, mock_upstream: Server) -> Iterator[str]:
    """A proxy with one model a tool format, all on the session's mock upstream: its /v1 URL."""
    models = [
        {"name": name, "api_base": f"{mock_upstream.url}/inference", **settings}
        for name, settings in FORMATS.items()
    ]
    server = serve_config(log_dir, "agent-proxy", {"models": models, "api_keys": [API_KEY]})
    try:
        yield f"{server.url}/v1"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def instructor_python() -> Path:
    """.venv-instructor's python (`make install` makes it; made here when missing)."""
    python = INSTRUCTOR_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(INSTRUCTOR_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-r", str(INSTRUCTOR_REQUIREMENTS)], check=True, timeout=600)
    return python


def assert_schema_valid(model: BaseModel) -> None:
    """The instance's JSON is valid for the schema the client sent (not only for Pydantic)."""
    schema = type(model).model_json_schema()
    errors = list(Draft202012Validator(schema).iter_errors(model.model_dump(mode="json")))
    assert not errors, errors


def assert_weather_call(name: str, args: dict[str, Any]) -> str:
    """A get_weather call for the city the question names; the city."""
    assert name == "get_weather"
    assert set(args) == {"city"}
    city = args["city"]
    assert isinstance(city, str)
    assert city == CITY, args  # the mock takes the capitalised word of the question
    return city


# LangChain


def test_langchain_bind_tools(agent_proxy: str) -> None:
    message = frameworks.langchain_bind_tools(agent_proxy, API_KEY, HERMES)
    assert isinstance(message, AIMessage)
    assert len(message.tool_calls) == 1, message
    call = message.tool_calls[0]
    assert_weather_call(call["name"], call["args"])
    assert call["id"]
    assert call["id"].startswith("call_")
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert not message.invalid_tool_calls


def test_langchain_stream_tools(agent_proxy: str) -> None:
    message = frameworks.langchain_stream_tools(agent_proxy, API_KEY, HERMES)
    assert len(message.tool_calls) == 1, message
    call = message.tool_calls[0]
    assert_weather_call(call["name"], call["args"])
    assert call["id"]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert not message.invalid_tool_calls
    assert message.usage_metadata is not None  # the usage chunk LangChain asks for came
    assert message.usage_metadata["input_tokens"] > 0


@pytest.mark.parametrize("model", MODELS)
def test_langchain_agent_runs_the_tool_and_answers_from_it(agent_proxy: str, model: str) -> None:
    messages, tool = frameworks.langchain_agent(agent_proxy, API_KEY, model)
    assert [type(m) for m in messages] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    call = messages[1].tool_calls[0]
    city = assert_weather_call(call["name"], call["args"])
    assert tool.calls == [city]  # the Python function ran once, with the model's arguments
    assert messages[2].content == WeatherTool.result(city)
    final = messages[3]
    assert not final.tool_calls
    assert WeatherTool.result(city) in final.content  # answered from the tool's result


@pytest.mark.parametrize("model", MODELS)
def test_langchain_agent_parallel_calls(agent_proxy: str, model: str) -> None:
    messages, desk = frameworks.langchain_agent_parallel(agent_proxy, API_KEY, model)
    assert [type(m) for m in messages] == [
        HumanMessage, AIMessage, ToolMessage, ToolMessage, AIMessage,
    ]  # fmt: skip
    calls = messages[1].tool_calls
    assert [(call["name"], call["args"]) for call in calls] == [
        (name, {"city": city}) for name, city in BOTH_CALLS
    ]
    assert len({call["id"] for call in calls}) == 2  # ids unique
    assert sorted(desk.calls) == sorted(BOTH_CALLS)  # LangGraph runs the two concurrently
    assert [m.tool_call_id for m in messages[2:4]] == [call["id"] for call in calls]
    final = messages[4]
    assert not final.tool_calls
    assert TravelDesk.time_result(CITY) in final.content  # the mock quotes the last result


def test_langchain_structured_output(agent_proxy: str) -> None:
    result = frameworks.langchain_structured(agent_proxy, API_KEY, HERMES)
    assert result["parsing_error"] is None
    trip = result["parsed"]
    assert isinstance(trip, Trip)
    assert_schema_valid(trip)
    # the message's content is exactly the JSON text
    assert json.loads(result["raw"].content) == trip.model_dump(mode="json")
    assert result["raw"].response_metadata["finish_reason"] == "stop"


def test_langchain_structured_output_function_calling(agent_proxy: str) -> None:
    # a named tool choice with parallel_tool_calls false
    trip = frameworks.langchain_structured_function_calling(agent_proxy, API_KEY, HERMES)
    assert isinstance(trip, Trip)
    assert_schema_valid(trip)


# instructor (its own virtualenv: it pins an older openai)


def test_instructor_default_mode(agent_proxy: str, instructor_python: Path) -> None:
    result = frameworks.instructor_run(instructor_python, agent_proxy, API_KEY, HERMES)
    assert result["instructor_mode"] == "TOOLS"  # the default: a named tool call
    assert result["type"] == "Trip"
    trip = Trip.model_validate(result["trip"])
    assert_schema_valid(trip)


# pydantic-ai


@pytest.mark.parametrize("model", MODELS)
def test_pydantic_ai_output_type(agent_proxy: str, model: str) -> None:
    trip = frameworks.pydantic_ai_output(agent_proxy, API_KEY, model)
    assert isinstance(trip, Trip)
    assert_schema_valid(trip)


def test_pydantic_ai_streamed_output_type(agent_proxy: str) -> None:
    trip, usage = frameworks.pydantic_ai_streamed_output(agent_proxy, API_KEY, HERMES)
    assert isinstance(trip, Trip)
    assert_schema_valid(trip)
    assert usage.requests == 1
    assert usage.input_tokens > 0  # from the usage chunk pydantic-ai asks for
    assert usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_pydantic_ai_tool_and_output_type(agent_proxy: str, model: str) -> None:
    report, tool = frameworks.pydantic_ai_tool_and_output(agent_proxy, API_KEY, model)
    # the function tool ran once, then the output tool was called
    assert tool.calls == [CITY]
    assert isinstance(report, WeatherReport)
    assert_schema_valid(report)


@pytest.mark.parametrize("model", MODELS)
def test_pydantic_ai_parallel_calls(agent_proxy: str, model: str) -> None:
    report, desk = frameworks.pydantic_ai_parallel(agent_proxy, API_KEY, model)
    # both tools ran (concurrently: in either order), then the output tool was called
    assert sorted(desk.calls) == sorted(BOTH_CALLS)
    assert isinstance(report, WeatherReport)
    assert_schema_valid(report)


# OpenAI Agents SDK


@pytest.mark.parametrize("model", MODELS)
def test_openai_agents_tool_and_output_type(agent_proxy: str, model: str) -> None:
    report, tool = frameworks.openai_agents(agent_proxy, API_KEY, model)
    # the function tool ran once, then the agent answered
    assert tool.calls == [CITY]
    assert isinstance(report, WeatherReport)
    assert_schema_valid(report)


def test_openai_agents_streamed(agent_proxy: str) -> None:
    report, tool = frameworks.openai_agents_streamed(agent_proxy, API_KEY, HERMES)
    assert tool.calls == [CITY]
    assert isinstance(report, WeatherReport)
    assert_schema_valid(report)


@pytest.mark.parametrize("model", MODELS)
def test_openai_agents_parallel_calls(agent_proxy: str, model: str) -> None:
    report, desk = frameworks.openai_agents_parallel(agent_proxy, API_KEY, model)
    assert sorted(desk.calls) == sorted(BOTH_CALLS)
    assert isinstance(report, WeatherReport)
    assert_schema_valid(report)


def test_openai_agents_parallel_calls_streamed(agent_proxy: str) -> None:
    # the SDK's stream handler puts each call together from its chunks, by index
    report, desk = frameworks.openai_agents_parallel(agent_proxy, API_KEY, HERMES, streamed=True)
    assert sorted(desk.calls) == sorted(BOTH_CALLS)
    assert isinstance(report, WeatherReport)
    assert_schema_valid(report)
