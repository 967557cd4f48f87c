"""A Responses request, translated into the API-neutral Ask (pure).

    check_features(request)          a 400 for what cannot be done here, or is not the API's
    to_ask(request, earlier_turns)   the whole request as an Ask (app.generation):
                                     `instructions` as the first system turn, then the turns
                                     of a stored earlier response, then `input`; the system
                                     and developer turns it starts with joined into one
    to_turns(input, names)           input items → turns in Hugging Face's chat form
    to_output_spec(request)          function tools, tool_choice, parallel_tool_calls,
                                     text.format → OutputSpec
    turns_to_store(request, earlier, response)   the conversation so far, for the store
    output_turns(response)           a finished response's output as turns

Input items: messages (user, assistant, system, developer; text or `input_text` /
`output_text` parts); `function_call` items become an assistant turn's `tool_calls` (their
arguments as dicts; consecutive calls, and calls right after an assistant message, make one
turn); `function_call_output` items become tool turns named after the call they answer;
`reasoning` items are dropped (the model's earlier thoughts are not shown to it again). Any
other kind, and anything that does not fit, is a 400 naming the param (`input[2].arguments`).
Tools the custom endpoint cannot run (web_search, file_search, mcp, custom, …) are left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from app.errors import InvalidRequest, UnsupportedParameter
from app.generation import Ask, answer_format, check_tools_offered, named_tool, offered_tool
from app.output.spec import JsonMode, OutputSpec, ToolChoice
from app.output.types import ToolSpec
from app.protocols.responses.schemas import (
    ContentPart,
    CreateResponse,
    InputItem,
    NamedToolChoice,
    ResponseTool,
)

_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_SYSTEM_ROLES = frozenset({"system", "developer"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def check_features(request: CreateResponse) -> None:
    """Refuse, with the offending `param`, what the custom endpoint cannot do, and any
    parameter the Responses API does not have (as OpenAI does: `unknown_parameter`)."""
    for name in request.model_extra or ():
        hint = " (the Responses API makes one answer per request)" if name == "n" else ""
        raise InvalidRequest(
            f"Unknown parameter: '{name}'{hint}.", param=name, code="unknown_parameter"
        )
    refused = (
        ("background", request.background, "background responses are not supported"),
        (
            "conversation",
            request.conversation,
            "conversations are not supported: use 'previous_response_id'",
        ),
        (
            "prompt",
            request.prompt,
            "stored prompt templates are not supported: send 'instructions' and 'input'",
        ),
        (
            "top_logprobs",
            request.top_logprobs,
            "log probabilities are not supported by the custom endpoint",
        ),
    )
    for name, value, why in refused:
        if value not in (None, False, 0):
            raise UnsupportedParameter(f"'{name}': {why}.", param=name)


def to_ask(request: CreateResponse, earlier_turns: Sequence[dict[str, Any]] | None = None) -> Ask:
    """The request in no API's terms; `earlier_turns` are those of the response named by
    `previous_response_id` (its input and output, without its instructions, which OpenAI
    does not carry over)."""
    turns: list[dict[str, Any]] = []
    if request.instructions:
        turns.append({"role": "system", "content": request.instructions})
    earlier = list(earlier_turns or ())
    turns.extend(earlier)
    turns.extend(to_turns(request.input or (), _call_names(earlier)))
    if not any(turn["role"] != "system" for turn in turns):
        raise InvalidRequest(
            "Missing required parameter: 'input' (or a 'previous_response_id' to continue).",
            param="input",
        )
    return Ask(
        turns=_one_system_turn(turns),
        spec=to_output_spec(request),
        max_tokens=request.max_output_tokens,
        max_tokens_param="max_output_tokens",
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        messages_param="input",
    )


def _one_system_turn(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The system and developer turns the conversation starts with (the instructions, then
    the agent's own developer messages, as Codex sends them) as one system turn: several
    templates (mistral, llama2) take at most one, and first."""
    lead = 0
    while lead < len(turns) and turns[lead]["role"] in _SYSTEM_ROLES:
        lead += 1
    if lead < 2:
        return turns
    joined = "\n\n".join(turn["content"] for turn in turns[:lead] if turn["content"])
    return [{"role": "system", "content": joined}, *turns[lead:]]


def _call_names(turns: Sequence[dict[str, Any]]) -> dict[str, str]:
    return {
        call["id"]: call["function"]["name"]
        for turn in turns
        for call in turn.get("tool_calls") or ()
    }


def to_turns(
    items: str | Sequence[InputItem], names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The input as turns in Hugging Face's chat form. `names` maps call ids of earlier
    turns to their function names (for tool turns answering them)."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    turns: list[dict[str, Any]] = []
    known = dict(names or {})  # call id → function name
    for index, item in enumerate(items):
        kind = item.type or "message"
        if kind == "message":
            turns.append(_message_turn(item, index))
        elif kind == "function_call":
            call = _call(item, index)
            known[call["id"]] = call["function"]["name"]
            _add_call(turns, call)
        elif kind == "function_call_output":
            turns.append(_tool_turn(item, index, known))
        elif kind != "reasoning":
            raise InvalidRequest(
                f"Input items of type '{kind}' are not supported: send messages, "
                "function_call and function_call_output items.",
                param=f"input[{index}].type",
            )
    return turns


def _message_turn(item: InputItem, index: int) -> dict[str, Any]:
    if item.role not in _ROLES:
        raise InvalidRequest(
            f"Invalid value for 'input[{index}].role': {item.role!r}; expected one of "
            "'user', 'assistant', 'system', 'developer'.",
            param=f"input[{index}].role",
        )
    if item.content is None:
        raise InvalidRequest(
            f"Missing required parameter: 'input[{index}].content'.",
            param=f"input[{index}].content",
        )
    return {"role": item.role, "content": _text(item.content, f"input[{index}].content")}


def _text(content: str | list[ContentPart], param: str) -> str:
    """A content string or text parts joined by newlines; a 400 naming the part for others."""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for position, part in enumerate(content):
        if part.type not in _TEXT_PARTS:
            raise UnsupportedParameter(
                f"content parts of type '{part.type}' are not supported: "
                "the custom endpoint takes text only",
                param=f"{param}[{position}].type",
            )
        if part.text is None:
            raise InvalidRequest(
                f"A content part of type '{part.type}' needs a 'text' string.",
                param=f"{param}[{position}].text",
            )
        texts.append(part.text)
    return "\n".join(texts)


def _call(item: InputItem, index: int) -> dict[str, Any]:
    call_id, name, arguments = item.call_id, item.name, item.arguments
    for field, value in (("call_id", call_id), ("name", name), ("arguments", arguments)):
        if value is None:
            raise InvalidRequest(
                f"Missing required parameter: 'input[{index}].{field}'.",
                param=f"input[{index}].{field}",
            )
    assert call_id is not None and name is not None and arguments is not None
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": _arguments(arguments, f"input[{index}].arguments")},
    }


def _arguments(text: str, param: str) -> dict[str, Any]:
    try:
        decoded = json.loads(text) if text.strip() else {}
    except ValueError:
        raise InvalidRequest(f"'{param}' is not valid JSON.", param=param) from None
    if not isinstance(decoded, dict):
        raise InvalidRequest(f"'{param}' must be a JSON object.", param=param)
    return decoded


def _add_call(turns: list[dict[str, Any]], call: dict[str, Any]) -> None:
    """A call joins the assistant turn just before it (the message it came with, or the
    calls made alongside it); otherwise it starts an assistant turn of its own."""
    last = turns[-1] if turns else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        turns.append({"role": "assistant", "content": "", "tool_calls": [call]})


def _tool_turn(item: InputItem, index: int, known: Mapping[str, str]) -> dict[str, Any]:
    if item.call_id is None:
        raise InvalidRequest(
            f"Missing required parameter: 'input[{index}].call_id'.",
            param=f"input[{index}].call_id",
        )
    if item.output is None:
        raise InvalidRequest(
            f"Missing required parameter: 'input[{index}].output'.",
            param=f"input[{index}].output",
        )
    turn = {
        "role": "tool",
        "tool_call_id": item.call_id,
        "content": _text(item.output, f"input[{index}].output"),
    }
    name = known.get(item.call_id, item.name)
    if name is not None:
        turn["name"] = name
    return turn


def to_output_spec(request: CreateResponse) -> OutputSpec:
    """What the request asks of the answer (the model's tool format and reasoning are the
    model's own: app.generation fills them in)."""
    tools = _tool_specs(request.tools or [])
    choice, name = _tool_choice(request.tool_choice, tools)
    mode, schema, schema_name, strict = _json_format(request)
    return OutputSpec(
        tools=tools,
        tool_choice=choice,
        tool_name=name,
        parallel_tool_calls=request.parallel_tool_calls is not False,
        json=mode,
        schema=schema,
        schema_name=schema_name,
        strict=strict,
    )


def _tool_specs(tools: Sequence[ResponseTool]) -> tuple[ToolSpec, ...]:
    """The function tools; the others are for tools only OpenAI runs, and are left out."""
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if tool.type != "function":
            continue
        if tool.name is None or not _TOOL_NAME.match(tool.name):
            problem = "is missing" if tool.name is None else f"{tool.name!r} is not a valid name"
            raise InvalidRequest(
                f"'tools[{index}].name' {problem}: 1-64 letters, digits, '_', '.', ':' or '-'.",
                param=f"tools[{index}].name",
            )
        specs.append(
            offered_tool(
                tool.name,
                tool.description,
                tool.parameters,
                strict=bool(tool.strict),
                seen=seen,
                where=f"tools[{index}]",
            )
        )
    return tuple(specs)


def _tool_choice(
    choice: str | NamedToolChoice | None, tools: tuple[ToolSpec, ...]
) -> tuple[ToolChoice, str | None]:
    if choice is None:
        return "auto", None
    if isinstance(choice, str):
        if choice == "required":
            check_tools_offered(choice, tools, "function 'tools'")
        return choice, None  # type: ignore[return-value]  # the schema's Literal
    if choice.type != "function":
        raise UnsupportedParameter(
            f"'tool_choice' of type '{choice.type}' is not supported: the custom endpoint "
            "runs function tools only.",
            param="tool_choice.type",
        )
    if choice.name is None:
        raise InvalidRequest(
            "Missing required parameter: 'tool_choice.name'.", param="tool_choice.name"
        )
    return "function", named_tool(choice.name, tools, "tool_choice.name")


def _json_format(
    request: CreateResponse,
) -> tuple[JsonMode, dict[str, Any] | None, str | None, bool]:
    form = request.text.format if request.text is not None else None
    if form is None:
        return "text", None, None, False
    return answer_format(form.type, form.schema_, form.name, form.strict, "text.format.schema")


def turns_to_store(
    request: CreateResponse,
    earlier_turns: Sequence[dict[str, Any]] | None,
    response: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """What a stored response keeps for the next `previous_response_id`: the conversation so
    far (earlier turns, this input, this output), without the instructions, which OpenAI
    does not carry over."""
    earlier = list(earlier_turns or ())
    new = to_turns(request.input or (), _call_names(earlier))
    return [*earlier, *new, *output_turns(response)]


def output_turns(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A finished response's output as turns (one assistant turn: its text and its calls),
    to keep with its input for a later `previous_response_id`. Reasoning is left out, as
    reasoning input items are."""
    turn: dict[str, Any] = {"role": "assistant", "content": ""}
    calls: list[dict[str, Any]] = []
    for item in response["output"]:
        if item["type"] == "message":
            turn["content"] = "".join(part["text"] for part in item["content"])
        elif item["type"] == "function_call":
            arguments = json.loads(item["arguments"]) if item["arguments"].strip() else {}
            calls.append(
                {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": arguments},
                }
            )
    if calls:
        turn["tool_calls"] = calls
    return [turn]
