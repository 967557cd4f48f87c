"""Pure SSE framing shared by the streams: `data:` events, `[DONE]`, the keep-alive comment and
the headers every stream carries. Each API's own events are built in app.protocols.*.events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
SSE_MEDIA_TYPE = "text/event-stream"


def sse_event(payload: Any) -> bytes:
    """One `data:` event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_body(events: Iterable[dict[str, Any]]) -> bytes:
    """A whole stream: every event, then `[DONE]` (sse_event's framing, joined in one step)."""
    payloads = [orjson.dumps(event) for event in events]
    if not payloads:
        return DONE
    return b"data: " + b"\n\ndata: ".join(payloads) + b"\n\n" + DONE


def error_stream(envelope: dict[str, Any]) -> bytes:
    """An in-band error for a stream that has already started, then `[DONE]`."""
    return sse_event(envelope) + DONE
