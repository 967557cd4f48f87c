"""OpenAI's chat and legacy completion requests, translated at the edge into the API-neutral
forms (pure).

    check_chat_features(chat)     a 400 naming the param for what the custom format cannot do
    to_ask(chat)                  the whole request as an Ask (app.generation)
    to_output_spec(chat)          tools, tool_choice, parallel_tool_calls, response_format
                                  → OutputSpec (a 400 naming the param for what cannot be met)
    to_turns(messages)            messages → turns in Hugging Face's chat form: assistant
                                  `tool_calls` with their arguments as dicts, tool results
                                  named after the call they answer

    completion_prompts(legacy)    the legacy endpoint's prompts as strings

What the model wrote comes back as `app.output` ToolCalls; `app.protocols.openai.answers`
builds OpenAI's `tool_calls` from them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from app.errors import InvalidRequest, UnsupportedParameter
from app.generation import Ask, answer_format, check_tools_offered, named_tool, offered_tool
from app.output.spec import PLAIN, JsonMode, OutputSpec, ToolChoice
from app.output.types import ToolSpec
from app.protocols.openai.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    ChatTool,
    CompletionRequest,
    NamedToolChoice,
)
from app.translate import stop_sequences


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
    turns, tool_turns = _turns(chat.messages)
    newer = chat.max_completion_tokens  # wins over the deprecated max_tokens (chat_max_tokens)
    return Ask(
        turns=turns,
        spec=to_output_spec(chat) if tool_turns or _asks_output(chat) else PLAIN,
        tool_turns=tool_turns,
        max_tokens=chat.max_tokens if newer is None else newer,
        max_tokens_param="max_tokens" if newer is None else "max_completion_tokens",
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
        if choice == "required":
            check_tools_offered(choice, tools, "'tools'")
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
        content = message.content
        turn: dict[str, Any] = {
            "role": message.role,
            "content": content if type(content) is str else message_text(message, index),
        }
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


# Chat features the proxy cannot honour: silently ignoring them would lie to the client.
# (`tools` and `response_format` are honoured by the proxy itself: `to_output_spec`.)
_UNSUPPORTED_CHAT = ("functions", "function_call", "audio")


def check_chat_features(request: ChatCompletionRequest) -> None:
    """Refuse, with the offending `param`, what the custom format cannot do."""
    if (  # what nearly every request sends: none of them, checked at once
        request.functions is None
        and request.function_call is None
        and request.audio is None
        and not request.logprobs
        and request.top_logprobs is None
        and request.modalities is None
    ):
        return
    for name in _UNSUPPORTED_CHAT:
        value = getattr(request, name)
        if value in (None, [], {}):
            continue
        raise UnsupportedParameter(
            f"'{name}' is not supported: send 'tools' instead of functions; audio cannot be made",
            param=name,
        )
    if request.logprobs or request.top_logprobs is not None:
        param = "logprobs" if request.logprobs else "top_logprobs"
        raise UnsupportedParameter(
            "log probabilities are not supported by the custom endpoint", param=param
        )
    if request.modalities not in (None, ["text"]):
        raise UnsupportedParameter(
            "only the 'text' modality is supported by the custom endpoint", param="modalities"
        )


def message_text(message: ChatMessage, index: int) -> str:
    """A message's content as one string (text parts joined by newlines); a 400 naming the
    part for anything but text."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part_index, part in enumerate(content):
        if part.type == "text" and part.text is None:
            raise InvalidRequest(
                "a content part of type 'text' needs a 'text' string",
                param=f"messages[{index}].content[{part_index}].text",
            )
        if part.type != "text" or part.text is None:
            raise UnsupportedParameter(
                f"content parts of type '{part.type}' are not supported: "
                "the custom endpoint takes text only",
                param=f"messages[{index}].content[{part_index}].type",
            )
        texts.append(part.text)
    return "\n".join(texts)


def completion_prompts(request: CompletionRequest) -> list[str]:
    """The legacy endpoint's prompts as strings, refusing what cannot be honoured."""
    prompt = request.prompt
    if isinstance(prompt, str):
        prompts = [prompt]
    elif all(isinstance(item, str) for item in prompt):
        prompts = [str(item) for item in prompt]
    else:
        raise UnsupportedParameter(
            "token-id prompts are not supported: send the prompt as text", param="prompt"
        )
    if request.suffix:
        raise UnsupportedParameter("'suffix' is not supported", param="suffix")
    if request.logprobs is not None:
        raise UnsupportedParameter("'logprobs' is not supported", param="logprobs")
    if request.best_of is not None and request.best_of != (request.n or 1):
        raise UnsupportedParameter("'best_of' other than n is not supported", param="best_of")
    return prompts


def chat_max_tokens(request: ChatCompletionRequest) -> int | None:
    """`max_completion_tokens` (the current name) wins over `max_tokens` (the deprecated one)."""
    if request.max_completion_tokens is not None:
        return request.max_completion_tokens
    return request.max_tokens
