"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers streams and hides disconnects)."""

from __future__ import annotations

import asyncio
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ids import IdGenerator
from app.telemetry import Telemetry

_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


class TelemetryMiddleware:
    """Give every request an id; record what each API request did (app.telemetry).

    The id is the client's `x-request-id` when it is safe, else a new one. It is put in
    `scope["request_id"]` (forwarded upstream, logged) and returned in the `x-request-id`
    response header. An unsafe id (too long, odd characters, a header-injection attempt) is
    replaced, never echoed.

    API requests (all but probes and scrapes) also get a `RequestRecord` in `scope["record"]`,
    the timing headers `x-proxy-overhead-ms` and `x-upstream-latency-ms`, and, once the response
    is out, their metrics and access-log line. The key name is what authentication left in
    `scope["key_name"]`.
    """

    def __init__(self, app: ASGIApp, *, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry
        self._ids = IdGenerator()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or self._ids.next_hex()
        scope["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode("ascii"))
        record = self.telemetry.start(scope, request_id)
        if record is None:

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), id_header]
                await send(message)

            await self.app(scope, receive, send_with_id)
            return

        scope["record"] = record

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                timing = record.response_started(message["status"])
                message["headers"] = [*message.get("headers", ()), id_header, *timing]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except BaseException as exc:
            if not record.status:  # nothing was sent; the server answers 500 or nothing
                record.status = 499 if isinstance(exc, asyncio.CancelledError) else 500
            raise
        finally:
            self.telemetry.finish(record, scope.get("key_name") or "")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("ascii") if _SAFE_REQUEST_ID.fullmatch(value) else None
    return None
