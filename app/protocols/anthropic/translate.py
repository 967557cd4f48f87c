"""An Anthropic Messages request as an `Ask` for the shared core (pure).

    to_ask(request)          the whole request (or a count_tokens request) as an Ask
    to_turns(request)        system + messages → turns in Hugging Face's chat form
    to_output_spec(request)  tools, tool_choice, output_config.format → OutputSpec

How Anthropic's blocks become turns: `system` (a string or text blocks) and any `role:
"system"` messages (Claude Code sends them) become the one system turn at the start; an
assistant's `tool_use` blocks become its `tool_calls` (arguments as dicts); each `tool_result`
becomes a tool turn named after the `tool_use` it answers (`is_error` results start with
"Error: "), and the user's text after them a user turn; `thinking` and `redacted_thinking`
blocks are dropped (the model's own reasoning is not shown back to it). `image` and
`document` blocks are a 400 naming the block: the custom endpoint takes text only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.errors import InvalidRequest, UnsupportedParameter
from app.generation import Ask, check_client_schema, check_tools_offered, offered_tool
from app.output.spec import PLAIN, OutputSpec, ToolChoice
from app.output.types import ToolSpec
from app.protocols.anthropic.schemas import (
    Block,
    CountTokensRequest,
    Message,
    MessagesRequest,
    Tool,
)

ERROR_PREFIX = "Error: "  # how a tool_result with is_error reads to the model
_DROPPED = frozenset({"thinking", "redacted_thinking"})
_MEDIA = frozenset({"image", "document"})


def to_ask(request: MessagesRequest | CountTokensRequest) -> Ask:
    """The request in no API's terms (app.generation); a count_tokens request has no
    sampling, only the prompt it would render."""
    if request.mcp_servers:
        raise UnsupportedParameter(
            "'mcp_servers' are not supported: the custom endpoint cannot reach MCP servers",
            param="mcp_servers",
        )
    spec = to_output_spec(request)
    turns = to_turns(request)
    if not isinstance(request, MessagesRequest):
        return Ask(turns=turns, spec=spec)
    return Ask(
        turns=turns,
        spec=spec,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        stops=tuple(stop for stop in request.stop_sequences or () if stop),
    )


def to_output_spec(request: MessagesRequest | CountTokensRequest) -> OutputSpec:
    """What the request asks of the answer (the model's tool format and reasoning are the
    model's own: app.generation fills them in)."""
    tools = _tool_specs(request.tools or [])
    choice, name, parallel = _tool_choice(request, tools)
    output_format = request.output_config.format if request.output_config else None
    if output_format is None:
        if not tools:
            return PLAIN
        return OutputSpec(
            tools=tools, tool_choice=choice, tool_name=name, parallel_tool_calls=parallel
        )
    check_client_schema(output_format.schema_, "output_config.format.schema")
    return OutputSpec(
        tools=tools,
        tool_choice=choice,
        tool_name=name,
        parallel_tool_calls=parallel,
        json="json_schema",
        schema=output_format.schema_,
        strict=True,  # Anthropic's structured outputs always match the schema
    )


def _is_shown(tool: Tool) -> bool:
    return tool.type in (None, "custom") and not tool.defer_loading


def _tool_specs(tools: Sequence[Tool]) -> tuple[ToolSpec, ...]:
    """The custom tools the model sees; Anthropic's own (bash, web search, …) have no schema
    to show the model and are left out, as Claude Code may offer them to any model, and so
    are deferred ones (`defer_loading`), which Anthropic does not show its model either."""
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if not _is_shown(tool):
            continue
        if tool.input_schema is None:
            raise InvalidRequest(
                f"Missing required parameter: 'tools[{index}].input_schema'.",
                param=f"tools[{index}].input_schema",
            )
        specs.append(
            offered_tool(
                tool.name,
                tool.description,
                tool.input_schema,
                seen=seen,
                where=f"tools[{index}]",
                schema_field="input_schema",
            )
        )
    return tuple(specs)


def _tool_choice(
    request: MessagesRequest | CountTokensRequest, tools: tuple[ToolSpec, ...]
) -> tuple[ToolChoice, str | None, bool]:
    """Anthropic's tool_choice as (choice, name, parallel): auto → auto, any → required,
    tool → function, none → none."""
    choice = request.tool_choice
    if choice is None:
        return "auto", None, True
    parallel = choice.disable_parallel_tool_use is not True
    if choice.type == "auto":
        return "auto", None, parallel
    if choice.type == "none":
        return "none", None, parallel
    check_tools_offered(choice.type, tools, "custom 'tools'")
    if choice.type == "any":
        return "required", None, parallel
    if choice.name is None:
        raise InvalidRequest(
            "Missing required parameter: 'tool_choice.name'.", param="tool_choice.name"
        )
    if not any(tool.name == choice.name for tool in tools):
        offered = ", ".join(tool.name for tool in tools)
        raise InvalidRequest(
            f"'tool_choice' names tool '{choice.name}', which is not among the custom tools "
            f"(offered: {offered}).",
            param="tool_choice.name",
        )
    return "function", choice.name, parallel


def to_turns(request: MessagesRequest | CountTokensRequest) -> list[dict[str, Any]]:
    """The system prompt and the messages as turns in Hugging Face's chat form."""
    system = _system_texts(request)
    turns: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_use id → tool name, for the results that answer it
    for index, message in enumerate(request.messages):
        if message.role == "system":
            text = _plain_text(message.content, f"messages[{index}]")
            if text:
                system.append(text)
        elif message.role == "assistant":
            turns.append(_assistant_turn(message, index, names))
        else:
            turns.extend(_user_turns(message, index, names))
    if system:
        turns.insert(0, {"role": "system", "content": "\n\n".join(system)})
    return turns


def _system_texts(request: MessagesRequest | CountTokensRequest) -> list[str]:
    system = request.system
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [system]
    text = "\n".join(block.text for block in system)
    return [text] if text else []


def _plain_text(content: str | list[Block], where: str) -> str:
    """Content that may hold text only (a system message, a tool result)."""
    if isinstance(content, str):
        return content
    texts = []
    for j, block in enumerate(content):
        if block.type in _DROPPED:
            continue
        if block.type != "text":
            raise _unsupported(block, f"{where}.content[{j}]")
        texts.append(_text(block, f"{where}.content[{j}]"))
    return "\n".join(texts)


def _text(block: Block, where: str) -> str:
    if block.text is None:
        raise InvalidRequest(f"Missing required parameter: '{where}.text'.", param=f"{where}.text")
    return block.text


def _unsupported(block: Block, where: str) -> InvalidRequest:
    if block.type in _MEDIA:
        return UnsupportedParameter(
            f"'{where}' is of type '{block.type}': the custom endpoint takes text only",
            param=f"{where}.type",
        )
    return InvalidRequest(
        f"'{where}' is of type '{block.type}', which is not allowed here.",
        param=f"{where}.type",
    )


def _assistant_turn(message: Message, index: int, names: dict[str, str]) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": "assistant", "content": message.content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        where = f"messages[{index}].content[{j}]"
        if block.type == "text":
            texts.append(_text(block, where))
        elif block.type == "tool_use":
            call = _call(block, where)
            names[call["id"]] = call["function"]["name"]
            calls.append(call)
        elif block.type not in _DROPPED:
            raise _unsupported(block, where)
    turn: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts)}
    if calls:
        turn["tool_calls"] = calls
    return turn


def _call(block: Block, where: str) -> dict[str, Any]:
    for field in ("id", "name"):
        if not getattr(block, field):
            raise InvalidRequest(
                f"Missing required parameter: '{where}.{field}'.", param=f"{where}.{field}"
            )
    return {
        "id": block.id,
        "type": "function",
        "function": {"name": block.name, "arguments": block.input or {}},
    }


def _user_turns(message: Message, index: int, names: dict[str, str]) -> list[dict[str, Any]]:
    """A user message's tool results as tool turns, in order, and its text as user turns."""
    if isinstance(message.content, str):
        return [{"role": "user", "content": message.content}]
    turns: list[dict[str, Any]] = []
    texts: list[str] = []
    for j, block in enumerate(message.content):
        where = f"messages[{index}].content[{j}]"
        if block.type == "text":
            texts.append(_text(block, where))
        elif block.type == "tool_result":
            if texts:  # text before a result keeps its place
                turns.append({"role": "user", "content": "\n".join(texts)})
                texts = []
            turns.append(_tool_turn(block, where, names))
        elif block.type not in _DROPPED:
            raise _unsupported(block, where)
    if texts or not turns:
        turns.append({"role": "user", "content": "\n".join(texts)})
    return turns


def _tool_turn(block: Block, where: str, names: dict[str, str]) -> dict[str, Any]:
    call_id = block.tool_use_id
    if not call_id:
        raise InvalidRequest(
            f"Missing required parameter: '{where}.tool_use_id'.", param=f"{where}.tool_use_id"
        )
    name = names.get(call_id)
    if name is None:
        raise InvalidRequest(
            f"'{where}.tool_use_id' is '{call_id}', which answers no tool_use block of an "
            "earlier assistant message.",
            param=f"{where}.tool_use_id",
        )
    content = "" if block.content is None else _plain_text(block.content, where)
    if block.is_error:
        content = ERROR_PREFIX + content
    return {"role": "tool", "content": content, "tool_call_id": call_id, "name": name}
