"""The Responses stream as a list of events, built from the finished response (pure).

The custom endpoint does not stream, so the proxy synthesises OpenAI's event sequence:

    response.created, response.in_progress          (opening_events: sendable before the
                                                     upstream answers)
    per output item, at its output_index:
      response.output_item.added                    (a message with content [], a call with
                                                     arguments "")
      reasoning: response.reasoning_text.delta / .done
      message:   response.content_part.added, response.output_text.delta / .done,
                 response.content_part.done
      call:      response.function_call_arguments.delta / .done
      response.output_item.done
    response.completed | response.incomplete        (the full response, with usage)
    or response.failed                              (failed_event after the opening events,
                                                     or failed_events when nothing but
                                                     keep-alive comments went out)

Every event has `type` and a `sequence_number` counting from 0 across the whole stream; every
lifecycle event carries the same response id. `sse_frame` writes one event with its `event:`
line, which OpenAI's SDKs and Codex read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from app.protocols.responses.answers import failed, in_progress

OPENING_EVENTS = 2  # response.created, response.in_progress


def sse_frame(payload: Mapping[str, Any]) -> bytes:
    """One named event: `event: <type>`, then its JSON as `data:`."""
    return (
        b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
    )


def sse_body(events: Iterable[Mapping[str, Any]]) -> bytes:
    """A whole stream, framed (no `[DONE]`: the Responses API ends with its terminal event)."""
    return b"".join(sse_frame(event) for event in events)


def response_events(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The whole stream for a finished response."""
    return opening_events(response) + output_events(response, OPENING_EVENTS)


def opening_events(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """response.created and response.in_progress, numbered 0 and 1."""
    start = in_progress(response)
    return [
        {"type": "response.created", "sequence_number": 0, "response": start},
        {"type": "response.in_progress", "sequence_number": 1, "response": start},
    ]


def output_events(response: Mapping[str, Any], first: int) -> list[dict[str, Any]]:
    """Every output item's events, then the terminal event, numbered from `first`."""
    events: list[dict[str, Any]] = []
    for index, item in enumerate(response["output"]):
        events.extend(_item_events(index, item))
    terminal = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    events.append({"type": terminal, "response": dict(response)})
    for number, event in enumerate(events, start=first):
        event["sequence_number"] = number
    return events


def failed_event(
    response: Mapping[str, Any], sequence_number: int, code: str | None, message: str
) -> dict[str, Any]:
    """response.failed, for an error after the stream started (`response` may be the
    started one: only its id and request fields are used); `code` is the proxy's own
    (app.errors), mapped to one OpenAI's schema allows."""
    return {
        "type": "response.failed",
        "sequence_number": sequence_number,
        "response": failed(response, code, message),
    }


def failed_events(
    response: Mapping[str, Any], code: str | None, message: str
) -> list[dict[str, Any]]:
    """A whole stream that failed before any output: response.created, response.in_progress,
    response.failed (the SDK's accumulator wants response.created first, so an in-band error
    after keep-alives alone still opens the response)."""
    return [*opening_events(response), failed_event(response, OPENING_EVENTS, code, message)]


def _item_events(index: int, item: Mapping[str, Any]) -> list[dict[str, Any]]:
    kind = item["type"]
    where = {"item_id": item["id"], "output_index": index}
    if kind == "message":
        middle = _message_events(where, item)
        opened = {**item, "status": "in_progress", "content": []}
    elif kind == "function_call":
        middle = _call_events(where, item)
        opened = {**item, "status": "in_progress", "arguments": ""}
    else:  # reasoning
        middle = _reasoning_events(where, item)
        opened = {**item, "status": "in_progress", "content": []}
    return [
        {"type": "response.output_item.added", "output_index": index, "item": opened},
        *middle,
        {"type": "response.output_item.done", "output_index": index, "item": dict(item)},
    ]


def _message_events(where: dict[str, Any], item: Mapping[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for content_index, part in enumerate(item["content"]):
        at = {**where, "content_index": content_index}
        text = part["text"]
        events += [
            {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
            {"type": "response.output_text.delta", **at, "delta": text, "logprobs": []},
            {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **at, "part": dict(part)},
        ]
    return events


def _call_events(where: dict[str, Any], item: Mapping[str, Any]) -> list[dict[str, Any]]:
    arguments = item["arguments"]
    return [
        {"type": "response.function_call_arguments.delta", **where, "delta": arguments},
        {
            "type": "response.function_call_arguments.done",
            **where,
            "name": item["name"],
            "arguments": arguments,
        },
    ]


def _reasoning_events(where: dict[str, Any], item: Mapping[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for content_index, part in enumerate(item.get("content") or ()):
        at = {**where, "content_index": content_index}
        events += [
            {"type": "response.reasoning_text.delta", **at, "delta": part["text"]},
            {"type": "response.reasoning_text.done", **at, "text": part["text"]},
        ]
    return events
