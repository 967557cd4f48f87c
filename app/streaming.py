"""Pure SSE framing: finished choices → `chat.completion.chunk` / `text_completion` events.

The custom endpoint does not stream, so the proxy synthesises OpenAI's event sequence from the
finished answer: per choice a role delta, the content, a finish chunk; then, when the client set
`stream_options.include_usage`, a usage chunk with `choices: []`; then `data: [DONE]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from app.translate import Choice

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
    *,
    completion_id: str,
    created: int,
    model: str,
    fingerprint: str,
    choices: Sequence[Choice],
    usage: dict[str, int] | None,
) -> list[dict[str, Any]]:
    """The chunk sequence for chat; `usage` is given only when the client asked for it."""
    head: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
    }
    if usage is not None:
        head["usage"] = None  # OpenAI sends usage: null on every chunk but the last
    chunks: list[dict[str, Any]] = []
    for choice in choices:
        for delta, finish in (
            ({"role": "assistant", "content": "", "refusal": None}, None),
            ({"content": choice.text}, None),
            ({}, choice.finish_reason),
        ):
            chunk_choice = {
                "index": choice.index,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish,
            }
            chunks.append({**head, "choices": [chunk_choice]})
    if usage is not None:
        chunks.append({**head, "choices": [], "usage": usage})
    return chunks


def text_chunks(
    *,
    completion_id: str,
    created: int,
    model: str,
    fingerprint: str,
    choices: Sequence[Choice],
    usage: dict[str, int] | None,
) -> list[dict[str, Any]]:
    """The chunk sequence for legacy completions: the text, then a finish chunk, per choice.

    As OpenAI does, content chunks carry `finish_reason: null` (its published schema, shared
    with the non-streamed answer, says string) and no `usage` key until the usage chunk.
    """
    head: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
    }
    chunks: list[dict[str, Any]] = []
    for choice in choices:
        for text, finish in ((choice.text, None), ("", choice.finish_reason)):
            chunk_choice = {
                "index": choice.index,
                "text": text,
                "logprobs": None,
                "finish_reason": finish,
            }
            chunks.append({**head, "choices": [chunk_choice]})
    if usage is not None:
        chunks.append({**head, "choices": [], "usage": usage})
    return chunks
