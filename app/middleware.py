"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers streams and hides disconnects)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ids import IdGenerator

_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


class RequestIdMiddleware:
    """Give every request an id: the client's `x-request-id` when it is safe, else a new one.

    The id is put in `scope["request_id"]` (forwarded upstream, logged) and returned in the
    `x-request-id` response header. An unsafe id (too long, odd characters, a header-injection
    attempt) is replaced, never echoed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._ids = IdGenerator()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or self._ids.next_hex()
        scope["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("ascii") if _SAFE_REQUEST_ID.fullmatch(value) else None
    return None
