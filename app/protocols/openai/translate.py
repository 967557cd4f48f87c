"""OpenAI chat's agent fields, translated at the edge into the API-neutral forms (pure).

    to_ask(chat)                  the whole request as an Ask (app.generation)
    to_output_spec(chat)          tools, tool_choice, parallel_tool_calls, response_format
                                  → OutputSpec (a 400 naming the param for what cannot be met)
    to_turns(messages)            messages → turns in Hugging Face's chat form: assistant
                                  `tool_calls` with their arguments as dicts, tool results
                                  named after the call they answer

What the model wrote comes back as `app.output` ToolCalls; `app.translate` builds OpenAI's
`tool_calls` from them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from app.errors import InvalidRequest
from app.generation import Ask, answer_format, named_tool, offered_tool
from app.output.spec import PLAIN, JsonMode, OutputSpec, ToolChoice
from app.output.types import ToolSpec
from app.schemas.openai import ChatCompletionRequest, ChatMessage, ChatTool, NamedToolChoice
from app.translate import chat_max_tokens, message_text, stop_sequences


def needs_agent_path(chat: ChatCompletionRequest) -> bool:
    """Whether the request uses tools, a JSON format or tool turns; False keeps the plain,
    fastest path (string messages through the template, the output as text)."""
    if _asks_output(chat):
        return True
    return any(m.role == "tool" or m.tool_calls for m in chat.messages)


def _asks_output(chat: ChatCompletionRequest) -> bool:
    """Tools offered, or an answer format other than text."""
    response_format = chat.response_format
    return bool(chat.tools) or (response_format is not None and response_format.type != "text")


def to_ask(chat: ChatCompletionRequest) -> Ask:
    """The chat request in no API's terms (app.generation)."""
    param = "max_completion_tokens" if chat.max_completion_tokens is not None else "max_tokens"
    turns, tool_turns = _turns(chat.messages)
    return Ask(
        turns=turns,
        spec=to_output_spec(chat) if tool_turns or _asks_output(chat) else PLAIN,
        tool_turns=tool_turns,
        max_tokens=chat_max_tokens(chat),
        max_tokens_param=param,
        temperature=chat.temperature,
        top_p=chat.top_p,
        top_k=chat.top_k,
        n=chat.n or 1,
        stops=stop_sequences(chat.stop),
    )


def to_output_spec(chat: ChatCompletionRequest) -> OutputSpec:
    """What the request asks of the answer (the model's tool format and reasoning are the
    model's own: app.generation fills them in)."""
    tools = _tool_specs(chat.tools or [])
    choice, name = _tool_choice(chat.tool_choice, tools)
    mode, schema, schema_name, strict = _json_format(chat)
    return OutputSpec(
        tools=tools,
        tool_choice=choice,
        tool_name=name,
        parallel_tool_calls=chat.parallel_tool_calls is not False,
        json=mode,
        schema=schema,
        schema_name=schema_name,
        strict=strict,
    )


def _tool_specs(tools: Sequence[ChatTool]) -> tuple[ToolSpec, ...]:
    seen: set[str] = set()
    return tuple(
        offered_tool(
            tool.function.name,
            tool.function.description,
            tool.function.parameters,
            strict=bool(tool.function.strict),
            seen=seen,
            where=f"tools[{index}].function",
        )
        for index, tool in enumerate(tools)
    )


def _tool_choice(
    choice: str | NamedToolChoice | None, tools: tuple[ToolSpec, ...]
) -> tuple[ToolChoice, str | None]:
    if choice is None:
        return "auto", None
    if isinstance(choice, str):
        if choice == "required" and not tools:
            raise InvalidRequest(
                "'tool_choice' is 'required' but no 'tools' were given.", param="tool_choice"
            )
        return choice, None  # type: ignore[return-value]  # the schema's Literal
    return "function", named_tool(choice.function.name, tools, "tool_choice")


def _json_format(
    chat: ChatCompletionRequest,
) -> tuple[JsonMode, dict[str, Any] | None, str | None, bool]:
    response_format = chat.response_format
    if response_format is None:
        return "text", None, None, False
    spec = response_format.json_schema
    if response_format.type == "json_schema" and spec is None:
        raise InvalidRequest(
            "'response_format' of type 'json_schema' needs a 'json_schema' object.",
            param="response_format.json_schema",
        )
    return answer_format(
        response_format.type,
        spec.schema_ if spec else None,
        spec.name if spec else None,
        spec.strict if spec else None,
        "response_format.json_schema.schema",
    )


def to_turns(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """The messages as turns in Hugging Face's chat form, ready for the prompt side."""
    return _turns(messages)[0]


def _turns(messages: Sequence[ChatMessage]) -> tuple[list[dict[str, Any]], bool]:
    """The turns, and whether any of them calls a tool or answers one (one pass for both)."""
    tool_turns = False
    turns: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call id → function name, for the tool turns that answer it
    for index, message in enumerate(messages):
        turn: dict[str, Any] = {"role": message.role, "content": message_text(message, index)}
        if message.name is not None:
            turn["name"] = message.name
        if message.tool_calls:
            tool_turns = True
            if message.role != "assistant":
                raise InvalidRequest(
                    "only assistant messages can have 'tool_calls'",
                    param=f"messages[{index}].tool_calls",
                )
            turn["tool_calls"] = [
                _call_turn(call.id, call.function.name, call.function.arguments, index, j)
                for j, call in enumerate(message.tool_calls)
            ]
            names.update((call.id, call.function.name) for call in message.tool_calls)
        if message.role == "tool":
            tool_turns = True
            if message.tool_call_id is None:
                raise InvalidRequest(
                    f"Missing required parameter: 'messages[{index}].tool_call_id'.",
                    param=f"messages[{index}].tool_call_id",
                )
            turn["tool_call_id"] = message.tool_call_id
            name = names.get(message.tool_call_id, message.name)
            if name is not None:
                turn["name"] = name
        turns.append(turn)
    return turns, tool_turns


def _call_turn(call_id: str, name: str, arguments: str, index: int, j: int) -> dict[str, Any]:
    param = f"messages[{index}].tool_calls[{j}].function.arguments"
    try:
        decoded = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        raise InvalidRequest(f"'{param}' is not valid JSON.", param=param) from None
    if not isinstance(decoded, dict):
        raise InvalidRequest(f"'{param}' must be a JSON object.", param=param)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": decoded}}
