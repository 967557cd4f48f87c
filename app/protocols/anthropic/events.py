"""A finished choice as Anthropic's stream of named events, and their SSE framing (pure).

The custom endpoint does not stream, so the proxy synthesises Anthropic's sequence from the
finished answer: `message_start` (the message with no content yet, and the input tokens),
per content block `content_block_start`, its deltas (`thinking_delta` then `signature_delta`,
`text_delta`, `input_json_delta` pieces that join to the call's exact arguments JSON) and
`content_block_stop`, with indexes 0, 1, 2 …; then `message_delta` (stop reason, stop
sequence, the whole usage) and `message_stop`. `start_event` and `answer_events` are the two
halves, for a route that opens the stream before the upstream has answered. The blocks are
those of the JSON answer (`answers.content_blocks`), so the SDK's accumulator rebuilds
exactly that message.

Every frame has an `event:` line: Anthropic's SDK skips data without one. `PING` keeps a
quiet connection alive; `error_frame` reports a failure after the stream has started.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from app.errors import ProxyError
from app.protocols.anthropic.answers import (
    content_blocks,
    error_body,
    matched_stop,
    message_usage,
    stop_reason,
)
from app.translate import Choice

Event = tuple[str, dict[str, Any]]
JSON_PIECE = 512  # characters of tool input per input_json_delta, cut after a comma


def sse_frame(name: str, payload: Any) -> bytes:
    """One named event: `event: NAME`, its JSON `data:` line, a blank line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


PING = sse_frame("ping", {"type": "ping"})


def sse_body(events: Iterable[Event]) -> bytes:
    """A whole stream's frames (Anthropic's stream has no `[DONE]`: `message_stop` ends it)."""
    return b"".join(sse_frame(name, payload) for name, payload in events)


def error_frame(exc: ProxyError, request_id: str | None = None) -> bytes:
    """A failure after the stream started, as Anthropic sends it: `event: error` with the
    error envelope (its SDK raises it as an APIStatusError)."""
    return sse_frame("error", error_body(exc, request_id)[1])


def message_events(
    message_id: str,
    model: str,
    choice: Choice,
    usage: dict[str, int],
    piece: int = JSON_PIECE,
) -> list[Event]:
    """The whole event sequence for one finished choice."""
    start = start_event(message_id, model, usage["prompt_tokens"])
    return [start, *answer_events(message_id, choice, usage, piece)]


def start_event(message_id: str, model: str, input_tokens: int = 0) -> Event:
    """`message_start`: the message with no content yet. A route may send it before the
    answer is known (then pings); `message_delta` brings the final counts."""
    usage = message_usage({"prompt_tokens": input_tokens, "completion_tokens": 0})
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "stop_details": None,
        "usage": usage,
    }
    return _event("message_start", message=message)


def answer_events(
    message_id: str,
    choice: Choice,
    usage: dict[str, int],
    piece: int = JSON_PIECE,
) -> list[Event]:
    """Everything after `message_start`: the blocks, `message_delta`, `message_stop`."""
    events: list[Event] = []
    arguments = iter([call.arguments for call in choice.calls or ()])  # the JSON as written
    for index, block in enumerate(content_blocks(message_id, choice)):
        events.append(_event("content_block_start", index=index, content_block=_opening(block)))
        deltas = _deltas(block, arguments, piece)
        events.extend(_event("content_block_delta", index=index, delta=d) for d in deltas)
        events.append(_event("content_block_stop", index=index))
    delta = {
        "stop_reason": stop_reason(choice),
        "stop_sequence": matched_stop(choice),
        "stop_details": None,
    }
    # The whole usage, not only output_tokens: the SDK overwrites message_start's counts
    # with these, so message_start may go out before the prompt is counted.
    events.append(_event("message_delta", delta=delta, usage=message_usage(usage)))
    events.append(_event("message_stop"))
    return events


def _event(name: str, **fields: Any) -> Event:
    return name, {"type": name, **fields}


def _opening(block: dict[str, Any]) -> dict[str, Any]:
    """A block as content_block_start shows it: empty, to be filled by its deltas."""
    if block["type"] == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if block["type"] == "text":
        return {"type": "text", "text": ""}
    return {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}


def _deltas(
    block: dict[str, Any], arguments: Iterator[str], piece: int
) -> Iterator[dict[str, Any]]:
    kind = block["type"]
    if kind == "thinking":
        if block["thinking"]:
            yield {"type": "thinking_delta", "thinking": block["thinking"]}
        yield {"type": "signature_delta", "signature": block["signature"]}
    elif kind == "text":
        if block["text"]:
            yield {"type": "text_delta", "text": block["text"]}
    else:
        for part in json_pieces(next(arguments), piece):
            yield {"type": "input_json_delta", "partial_json": part}


def json_pieces(text: str, size: int) -> list[str]:
    """JSON text in pieces of about `size` characters that join to it exactly, each cut just
    after a comma outside any string, so no piece ends inside a string or an escape."""
    pieces: list[str] = []
    start = 0
    in_string = escaped = False
    for position, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "," and position + 1 - start >= size:
            pieces.append(text[start : position + 1])
            start = position + 1
    pieces.append(text[start:])
    return pieces
