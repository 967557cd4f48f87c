"""Pure SSE framing: finished choices → `chat.completion.chunk` / `text_completion` events.

The custom endpoint does not stream, so the proxy synthesises OpenAI's event sequence from the
finished answer: per choice a role delta, the content, a finish chunk; then, when the client set
`stream_options.include_usage`, a usage chunk with `choices: []`; then `data: [DONE]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from app.translate import AnswerHead, Choice

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
SSE_MEDIA_TYPE = "text/event-stream"


def sse_event(payload: Any) -> bytes:
    """One `data:` event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_body(events: Iterable[dict[str, Any]]) -> bytes:
    """A whole stream: every event, then `[DONE]`."""
    return b"".join(sse_event(event) for event in events) + DONE


def error_stream(envelope: dict[str, Any]) -> bytes:
    """An in-band error for a stream that has already started, then `[DONE]`."""
    return sse_event(envelope) + DONE


def chat_chunks(
    head: AnswerHead, choices: Sequence[Choice], usage: dict[str, int] | None
) -> list[dict[str, Any]]:
    """The chunk sequence for chat; `usage` is given only when the client asked for it."""
    fields = head.fields("chat.completion.chunk")
    if usage is not None:
        fields["usage"] = None  # OpenAI sends usage: null on every chunk but the last
    chunks = []
    for choice in choices:
        for delta, finish in (
            ({"role": "assistant", "content": "", "refusal": None}, None),
            ({"content": choice.text}, None),
            ({}, choice.finish_reason),
        ):
            chunks.append({**fields, "choices": [_chat_choice(choice.index, delta, finish)]})
    if usage is not None:
        chunks.append({**fields, "choices": [], "usage": usage})
    return chunks


def _chat_choice(index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def text_chunks(
    head: AnswerHead, choices: Sequence[Choice], usage: dict[str, int] | None
) -> list[dict[str, Any]]:
    """The chunk sequence for legacy completions: the text, then a finish chunk, per choice.

    As OpenAI does, content chunks carry `finish_reason: null` (its published schema, shared
    with the non-streamed answer, says string) and no `usage` key until the usage chunk.
    """
    fields = head.fields("text_completion")
    chunks = [
        {**fields, "choices": [_text_choice(choice.index, text, finish)]}
        for choice in choices
        for text, finish in ((choice.text, None), ("", choice.finish_reason))
    ]
    if usage is not None:
        chunks.append({**fields, "choices": [], "usage": usage})
    return chunks


def _text_choice(index: int, text: str, finish: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
