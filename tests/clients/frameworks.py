"""Agent frameworks driven against an OpenAI-compatible base URL, one function a case.

The same cases record what each framework sends (`record_agent_requests.py`, against a canned
model) and prove the proxy end to end (tests/e2e/test_agent_frameworks.py, against `serve` and
`mock-upstream`). Each returns what the framework produced; the caller asserts on it.
instructor runs in its own virtualenv (it pins an older `openai`): see `instructor_client.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tests.clients.trip import Trip

MODEL = "agent"
CITY = "Paris"
QUESTION = f"What is the weather in {CITY} today?"
# The mock upstream calls every tool the user's turn names, at once (parallel calls)
PARALLEL_QUESTION = f"Use get_weather and get_local_time: what is it like in {CITY} now?"
TRIP_REQUEST = "Plan a trip for Ada through Lyon by train."
CLIENTS_DIR = Path(__file__).parent


class WeatherReport(BaseModel):
    city: str
    summary: str


@dataclass
class WeatherTool:
    """get_weather as a Python function that notes every call (one instance a run)."""

    calls: list[str] = field(default_factory=list)

    def get_weather(self, city: str) -> str:
        """Get the current weather in a city."""
        self.calls.append(city)
        return self.result(city)

    @staticmethod
    def result(city: str) -> str:
        return f"Sunny and 21 degrees in {city}"


@dataclass
class TravelDesk:
    """Two tools for parallel calls, noting every call as (tool, city) (one instance a run)."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def get_weather(self, city: str) -> str:
        """Get the current weather in a city."""
        self.calls.append(("get_weather", city))
        return WeatherTool.result(city)

    def get_local_time(self, city: str) -> str:
        """Get the local time in a city."""
        self.calls.append(("get_local_time", city))
        return self.time_result(city)

    @staticmethod
    def time_result(city: str) -> str:
        return f"It is 14:05 in {city}"


def _chat_openai(base_url: str, api_key: str, model: str, **options: Any) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=model, base_url=base_url, api_key=api_key, max_retries=0, timeout=30, **options
    )


def _weather_lc_tool(tool: WeatherTool) -> Any:
    from langchain_core.tools import StructuredTool

    return StructuredTool.from_function(tool.get_weather, name="get_weather")


def langchain_bind_tools(base_url: str, api_key: str, model: str = MODEL) -> Any:
    """ChatOpenAI.bind_tools: the AIMessage with the model's tool calls."""
    chat = _chat_openai(base_url, api_key, model).bind_tools([_weather_lc_tool(WeatherTool())])
    return chat.invoke(QUESTION)


def langchain_stream_tools(base_url: str, api_key: str, model: str = MODEL) -> Any:
    """ChatOpenAI.stream with bind_tools, usage asked for: the chunks added up into one message."""
    chat = _chat_openai(base_url, api_key, model, stream_usage=True)
    chat = chat.bind_tools([_weather_lc_tool(WeatherTool())])
    message = None
    for chunk in chat.stream(QUESTION):
        message = chunk if message is None else message + chunk
    return message


def langchain_agent(
    base_url: str, api_key: str, model: str = MODEL
) -> tuple[list[Any], WeatherTool]:
    """create_agent's loop: the messages of the run, and the tool with the calls it got."""
    from langchain.agents import create_agent

    tool = WeatherTool()
    agent = create_agent(
        _chat_openai(base_url, api_key, model),
        tools=[_weather_lc_tool(tool)],
        system_prompt="You answer questions about the weather; use the tool.",
    )
    state = agent.invoke({"messages": [{"role": "user", "content": QUESTION}]})
    return state["messages"], tool


def langchain_agent_parallel(
    base_url: str, api_key: str, model: str = MODEL
) -> tuple[list[Any], TravelDesk]:
    """create_agent with two tools, asked for both: the run's messages and the tools' calls."""
    from langchain.agents import create_agent
    from langchain_core.tools import StructuredTool

    desk = TravelDesk()
    tools = [
        StructuredTool.from_function(desk.get_weather, name="get_weather"),
        StructuredTool.from_function(desk.get_local_time, name="get_local_time"),
    ]
    agent = create_agent(_chat_openai(base_url, api_key, model), tools=tools)
    state = agent.invoke({"messages": [{"role": "user", "content": PARALLEL_QUESTION}]})
    return state["messages"], desk


def langchain_structured(base_url: str, api_key: str, model: str = MODEL) -> Any:
    """with_structured_output(Trip) with its default method (json_schema): {"raw": the
    AIMessage, "parsed": the Trip, "parsing_error": None or the error}."""
    chat = _chat_openai(base_url, api_key, model).with_structured_output(Trip, include_raw=True)
    return chat.invoke(TRIP_REQUEST)


def langchain_structured_function_calling(base_url: str, api_key: str, model: str = MODEL) -> Any:
    """with_structured_output(Trip, method="function_calling"): a named tool, one call only."""
    chat = _chat_openai(base_url, api_key, model)
    return chat.with_structured_output(Trip, method="function_calling").invoke(TRIP_REQUEST)


def pydantic_ai_output(base_url: str, api_key: str, model: str = MODEL) -> Any:
    """A pydantic-ai Agent with output_type=Trip on its OpenAI chat model: the run's output."""
    return asyncio.run(_pydantic_ai(base_url, api_key, model, Trip, TRIP_REQUEST, []))


def pydantic_ai_streamed_output(base_url: str, api_key: str, model: str = MODEL) -> Any:
    """The output_type=Trip agent run with run_stream: (the output, the run's usage)."""
    return asyncio.run(
        _pydantic_ai(base_url, api_key, model, Trip, TRIP_REQUEST, [], streamed=True)
    )


def pydantic_ai_tool_and_output(
    base_url: str, api_key: str, model: str = MODEL
) -> tuple[Any, WeatherTool]:
    """A pydantic-ai Agent with a function tool and output_type=WeatherReport: the output and
    the tool with the calls it got."""
    tool = WeatherTool()
    functions = [tool.get_weather]
    output = asyncio.run(_pydantic_ai(base_url, api_key, model, WeatherReport, QUESTION, functions))
    return output, tool


def pydantic_ai_parallel(base_url: str, api_key: str, model: str = MODEL) -> tuple[Any, TravelDesk]:
    """A pydantic-ai Agent with two tools, asked for both, and output_type=WeatherReport."""
    desk = TravelDesk()
    functions = [desk.get_weather, desk.get_local_time]
    output = asyncio.run(
        _pydantic_ai(base_url, api_key, model, WeatherReport, PARALLEL_QUESTION, functions)
    )
    return output, desk


async def _pydantic_ai(
    base_url: str,
    api_key: str,
    model: str,
    output_type: type[BaseModel],
    prompt: str,
    functions: list[Callable[[str], str]],
    *,
    streamed: bool = False,
) -> Any:
    """The run's output; (output, usage) when streamed. Agent.run in asyncio.run, with a client
    closed at the end: run_sync would leave its own event loop open behind it."""
    from openai import AsyncOpenAI
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    async with AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0) as client:
        chat_model = OpenAIChatModel(model, provider=OpenAIProvider(openai_client=client))
        agent = Agent(chat_model, output_type=output_type, tools=functions, retries=0)
        if streamed:
            async with agent.run_stream(prompt) as stream:
                return await stream.get_output(), stream.usage
        result = await agent.run(prompt)
        return result.output


def openai_agents(base_url: str, api_key: str, model: str = MODEL) -> tuple[Any, WeatherTool]:
    """An Agents SDK agent on OpenAIChatCompletionsModel with a function tool and output_type:
    the final output and the tool with the calls it got. Tracing is off (no export)."""
    tool = WeatherTool()
    output = asyncio.run(_openai_agents(base_url, api_key, model, [tool.get_weather], QUESTION))
    return output, tool


def openai_agents_streamed(
    base_url: str, api_key: str, model: str = MODEL
) -> tuple[Any, WeatherTool]:
    """The same agent run with Runner.run_streamed (every event consumed)."""
    tool = WeatherTool()
    output = asyncio.run(
        _openai_agents(base_url, api_key, model, [tool.get_weather], QUESTION, streamed=True)
    )
    return output, tool


def openai_agents_parallel(
    base_url: str, api_key: str, model: str = MODEL, *, streamed: bool = False
) -> tuple[Any, TravelDesk]:
    """The Agents SDK agent with two function tools, asked for both: output and the calls."""
    desk = TravelDesk()
    functions = [desk.get_weather, desk.get_local_time]
    output = asyncio.run(
        _openai_agents(base_url, api_key, model, functions, PARALLEL_QUESTION, streamed=streamed)
    )
    return output, desk


async def _openai_agents(
    base_url: str,
    api_key: str,
    model: str,
    functions: list[Callable[[str], str]],
    question: str,
    *,
    streamed: bool = False,
) -> Any:
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    async with AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0) as client:
        agent = Agent(
            name="weather",
            instructions="Answer with the weather report; call the tools first.",
            model=OpenAIChatCompletionsModel(model=model, openai_client=client),
            tools=[function_tool(f, name_override=f.__name__) for f in functions],
            output_type=WeatherReport,
        )
        if not streamed:
            result = await Runner.run(agent, question, max_turns=4)
            return result.final_output
        stream = Runner.run_streamed(agent, question, max_turns=4)
        async for _event in stream.stream_events():
            pass
        return stream.final_output


def openai_agents_responses(
    base_url: str, api_key: str, model: str = MODEL, *, streamed: bool = False
) -> tuple[Any, WeatherTool]:
    """The Agents SDK with its default model, OpenAIResponsesModel (its OpenAIProvider uses
    the Responses API unless told otherwise), a function tool and output_type: the final
    output and the tool with the calls it got."""
    tool = WeatherTool()
    output = asyncio.run(
        _openai_agents_responses(base_url, api_key, model, [tool.get_weather], streamed=streamed)
    )
    return output, tool


async def _openai_agents_responses(
    base_url: str,
    api_key: str,
    model: str,
    functions: list[Callable[[str], str]],
    *,
    streamed: bool,
) -> Any:
    from agents import Agent, OpenAIProvider, RunConfig, Runner, function_tool, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    async with AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0) as client:
        provider = OpenAIProvider(openai_client=client)  # the default provider, on our client
        assert isinstance(provider.get_model(model), OpenAIResponsesModel)
        agent = Agent(
            name="weather",
            instructions="Answer with the weather report; call the tools first.",
            model=model,
            tools=[function_tool(f, name_override=f.__name__) for f in functions],
            output_type=WeatherReport,
        )
        config = RunConfig(model_provider=provider, tracing_disabled=True)
        if not streamed:
            result = await Runner.run(agent, QUESTION, max_turns=4, run_config=config)
            return result.final_output
        stream = Runner.run_streamed(agent, QUESTION, max_turns=4, run_config=config)
        async for _event in stream.stream_events():
            pass
        return stream.final_output


def instructor_run(python: Path, base_url: str, api_key: str, model: str = MODEL) -> dict[str, Any]:
    """`instructor_client.py` run by `python` (the instructor virtualenv): its printed JSON."""
    env = {**os.environ, "AGENT_BASE_URL": base_url, "AGENT_API_KEY": api_key, "AGENT_MODEL": model}
    done = subprocess.run(
        [str(python), str(CLIENTS_DIR / "instructor_client.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"instructor client failed:\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result
