"""A finished choice as OpenAI's Response object (pure).

    started(head, request)                      the response before its output (in_progress:
                                                what the stream's first events carry)
    to_response(head, request, choice, usage)   the finished `response` object, with every
                                                field OpenAI's schema requires
    in_progress(response)                       a finished response as it was when started
    failed(response, code, message)             the same response, failed
    input_items(head, request)                  the request's input as the items
                                                GET /v1/responses/{id}/input_items lists

The output: a `reasoning` item when the model's reasoning parser found some (its text as
`reasoning_text` content; there is no summary to give), a `message` with one `output_text`
part when there is text (or nothing at all), one `function_call` item per call. Item ids are
derived from the response id, so a stream and its final response, and a stored response and
the `function_call_output` that answers it, agree.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.protocols.responses.schemas import ContentPart, CreateResponse, InputItem, ResponseTool
from app.translate import Choice

_RATE_LIMIT_CODES = frozenset({"rate_limit_exceeded", "upstream_rate_limited"})


@dataclass(slots=True)
class ResponseHead:
    """What identifies one response: its id ("resp_…"), creation time and model name."""

    id: str
    created_at: int
    model: str

    @property
    def digits(self) -> str:
        return self.id.removeprefix("resp_")


def call_id(head: ResponseHead, position: int) -> str:
    """The `call_id` of the response's call at `position` (what function_call_output names)."""
    return f"call_{head.digits}{position:02x}"


def started(head: ResponseHead, request: CreateResponse) -> dict[str, Any]:
    """The response before its output (status "in_progress", no output, no usage yet: OpenAI
    sends usage null, which its published schema does not allow, so it is left out). What
    response.created carries; it can be built before the upstream answers."""
    return {
        "id": head.id,
        "object": "response",
        "created_at": head.created_at,
        "status": "in_progress",
        "completed_at": None,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": None,
        "model": head.model,
        "output": [],
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": request.store is not False,
        "temperature": request.temperature,
        "text": _text_echo(request),
        "tool_choice": _tool_choice_echo(request),
        "tools": [_tool_echo(tool) for tool in request.tools or ()],
        "top_logprobs": 0,
        "top_p": request.top_p,
        "truncation": "disabled",
        "metadata": dict(request.metadata or {}),
    }


def to_response(
    head: ResponseHead,
    request: CreateResponse,
    choice: Choice,
    usage: Mapping[str, int],
    *,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """The Response object for a finished choice; `usage` in chat's terms (prompt_tokens,
    completion_tokens, total_tokens). Cut by the token limit: status "incomplete"."""
    cut = choice.finish_reason == "length"
    status = "incomplete" if cut else "completed"
    return {
        **started(head, request),
        "status": status,
        "completed_at": None if cut else (completed_at or head.created_at),
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "output": _output(head, choice, status),
        "usage": _usage(usage),
    }


def in_progress(response: Mapping[str, Any]) -> dict[str, Any]:
    """A finished response as it was before its output (what `started` gives)."""
    before = {key: value for key, value in response.items() if key != "usage"}
    return {
        **before,
        "status": "in_progress",
        "completed_at": None,
        "incomplete_details": None,
        "output": [],
    }


def failed(response: Mapping[str, Any], code: str | None, message: str) -> dict[str, Any]:
    """The response as failed (what response.failed carries). OpenAI's schema allows a
    fixed list of error codes: a rate limit keeps its code, anything else is a server_error
    whose message says what happened."""
    kind = "rate_limit_exceeded" if code in _RATE_LIMIT_CODES else "server_error"
    error = {"code": kind, "message": message}
    return {**in_progress(response), "status": "failed", "error": error}


def _output(head: ResponseHead, choice: Choice, status: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if choice.reasoning is not None:
        items.append(
            {
                "id": f"rs_{head.digits}",
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": choice.reasoning}],
                "status": status,
            }
        )
    if choice.text or not choice.calls:
        items.append(
            {
                "id": f"msg_{head.digits}",
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": choice.text, "annotations": [], "logprobs": []}
                ],
            }
        )
    for position, call in enumerate(choice.calls or ()):
        items.append(
            {
                "id": f"fc_{head.digits}{position:02x}",
                "type": "function_call",
                "status": "completed",
                "call_id": call_id(head, position),
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    return items


def _usage(usage: Mapping[str, int]) -> dict[str, Any]:
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage["total_tokens"],
    }


def _text_echo(request: CreateResponse) -> dict[str, Any]:
    form = request.text.format if request.text is not None else None
    if form is None or form.type != "json_schema":
        return {"format": {"type": form.type if form is not None else "text"}}
    echo: dict[str, Any] = {
        "type": "json_schema",
        "name": form.name or "response",
        "schema": form.schema_ or {"type": "object"},
        "strict": bool(form.strict),
    }
    if form.description is not None:
        echo["description"] = form.description
    return {"format": echo}


def _tool_choice_echo(request: CreateResponse) -> Any:
    choice = request.tool_choice
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return choice
    return {"type": choice.type, "name": choice.name}


def _tool_echo(tool: ResponseTool) -> dict[str, Any]:
    """Function tools in the response's shape; the others as the client sent them."""
    if tool.type != "function":
        return copy.deepcopy(tool.model_dump(exclude_none=True))
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters or {"type": "object", "properties": {}},
        "strict": bool(tool.strict),
    }


def input_items(head: ResponseHead, request: CreateResponse) -> list[dict[str, Any]]:
    """The request's `input` as OpenAI lists it back: each item with an id (the client's, or
    one derived from the response's) and a status; a string input is one user message.
    The input has passed `translate.to_ask`, so every item is of a kind it takes."""
    given = request.input
    if given is None:
        return []
    if isinstance(given, str):
        given = [InputItem(role="user", content=given)]
    return [_input_item(head, index, item) for index, item in enumerate(given)]


def _input_item(head: ResponseHead, index: int, item: InputItem) -> dict[str, Any]:
    kind = item.type or "message"
    made = f"{head.digits}i{index:03x}"
    if kind == "function_call":
        return {
            "id": item.id or f"fc_{made}",
            "type": "function_call",
            "call_id": item.call_id,
            "name": item.name,
            "arguments": item.arguments,
            "status": "completed",
        }
    if kind == "function_call_output":
        output = item.output
        return {
            "id": item.id or f"fco_{made}",
            "type": "function_call_output",
            "call_id": item.call_id,
            "output": output if isinstance(output, str) else _parts("user", output or []),
            "status": "completed",
        }
    if kind == "reasoning":
        return {**item.model_dump(exclude_none=True), "id": item.id or f"rs_{made}"} | {
            "summary": (item.model_extra or {}).get("summary") or []
        }
    content = item.content
    role = item.role or "user"
    parts = _parts(
        role,
        [ContentPart(type="input_text", text=content)]
        if isinstance(content, str)
        else content or [],
    )
    return {
        "id": item.id or f"msg_{made}",
        "type": "message",
        "role": role,
        "content": parts,
        "status": "completed",
    }


def _parts(role: str, parts: list[ContentPart]) -> list[dict[str, Any]]:
    if role == "assistant":
        return [
            {"type": "output_text", "text": part.text or "", "annotations": [], "logprobs": []}
            for part in parts
        ]
    return [{"type": "input_text", "text": part.text or ""} for part in parts]
