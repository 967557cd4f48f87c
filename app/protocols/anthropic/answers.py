"""Finished choices as Anthropic `message` objects, and errors in Anthropic's envelope (pure).

    to_message(message_id, model, choice, usage)   the answer to POST /v1/messages
    content_blocks(message_id, choice)             its blocks: thinking, text, tool_use
    error_body(exc)                                (status, {"type": "error", "error": …})

Stop reasons: a choice cut by the token limit is `max_tokens`, one that called tools is
`tool_use`, one cut by a stop sequence is `stop_sequence` (the core records which one matched:
`Choice.stop_sequence`), anything else `end_turn`.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.errors import Overloaded, ProxyError
from app.translate import Choice

# Anthropic's error type for each status; any other 5xx is an api_error, any other 4xx an
# invalid_request_error.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
OVERLOADED_STATUS = 529  # Anthropic's "overloaded", where the OpenAI routes send 503


def new_message_id(hex_digits: str) -> str:
    """A message id from the proxy's id digits (app.ids)."""
    return f"msg_{hex_digits}"


def tool_use_id(message_id: str, position: int) -> str:
    """`toolu_`, the message's own id digits and the call's position: unique in the answer
    and the same in a stream as in the JSON answer."""
    return f"toolu_{message_id.removeprefix('msg_')}{position:02x}"


def stop_reason(choice: Choice) -> str:
    """Anthropic's stop_reason for a finished choice."""
    if choice.calls:
        return "tool_use"
    if choice.finish_reason == "length":
        return "max_tokens"
    return "stop_sequence" if choice.stop_sequence is not None else "end_turn"


def matched_stop(choice: Choice) -> str | None:
    """The stop sequence the answer ended at: set only when that is its stop_reason."""
    return None if choice.calls else choice.stop_sequence


def message_usage(usage: dict[str, int]) -> dict[str, int]:
    """The core's usage ({prompt_tokens, completion_tokens}) in Anthropic's names; the proxy
    caches nothing, so the cache counts are 0 (as Anthropic sends them)."""
    return {
        "input_tokens": usage["prompt_tokens"],
        "output_tokens": usage["completion_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def to_message(
    message_id: str,
    model: str,
    choice: Choice,
    usage: dict[str, int],
) -> dict[str, Any]:
    """The `message` object for one finished choice (Anthropic has no `n`)."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": content_blocks(message_id, choice),
        "model": model,
        "stop_reason": stop_reason(choice),
        "stop_sequence": matched_stop(choice),
        "stop_details": None,  # Anthropic's refusal details: the custom endpoint has none
        "usage": message_usage(usage),
    }


def content_blocks(message_id: str, choice: Choice) -> list[dict[str, Any]]:
    """The thinking (when the model's reasoning parser found some), the text (left out when
    empty and there are calls), each tool_use with its input as an object."""
    blocks: list[dict[str, Any]] = []
    if choice.reasoning:  # an empty thought is no block
        # The custom endpoint signs nothing; clients send the block back and it is dropped.
        blocks.append({"type": "thinking", "thinking": choice.reasoning, "signature": ""})
    if choice.text or not choice.calls:
        blocks.append({"type": "text", "text": choice.text})
    for position, call in enumerate(choice.calls or ()):
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_use_id(message_id, position),
                "name": call.name,
                "input": orjson.loads(call.arguments),
            }
        )
    return blocks


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_status(exc: ProxyError) -> int:
    """The status the Anthropic routes answer with: the proxy's own overload (queue full) is
    Anthropic's 529, which its SDK and Claude Code retry; everything else keeps its status
    (an upstream's 502/503 stay api_error, its 504 a timeout_error)."""
    return OVERLOADED_STATUS if isinstance(exc, Overloaded) else exc.status


def error_envelope(message: str, type_: str, request_id: str | None = None) -> dict[str, Any]:
    """Anthropic's error body for any message and type."""
    body: dict[str, Any] = {"type": "error", "error": {"type": type_, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def error_body(exc: ProxyError, request_id: str | None = None) -> tuple[int, dict[str, Any]]:
    """The status and Anthropic's envelope for a proxy error. Anthropic's envelope has no
    `param`: the message names it when it does not already."""
    status = error_status(exc)
    message = exc.message
    if exc.param is not None and exc.param not in message:
        message = f"{exc.param}: {message}"
    return status, error_envelope(message, error_type(status), request_id)


def internal_error_body(request_id: str) -> tuple[int, dict[str, Any]]:
    """A 500's body: the request id to find the logged details by, and no details."""
    message = f"The proxy hit an internal error (request id {request_id}); it has been logged."
    return 500, error_envelope(message, "api_error", request_id)
