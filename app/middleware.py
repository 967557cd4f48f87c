"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers streams and hides disconnects)."""

from __future__ import annotations

import asyncio
import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.handlers import error_dialect, internal_error_response
from app.ids import IdGenerator
from app.telemetry import Telemetry

log = logging.getLogger("app.errors")

_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


class TelemetryMiddleware:
    """Give every request an id; record what each API request did (app.telemetry).

    The id is the client's `x-request-id` when it is safe, else a new one. It is put in
    `scope["request_id"]` (forwarded upstream, logged) and returned in the `x-request-id`
    response header (and Anthropic's `request-id` on its paths). An unsafe id (too long, odd
    characters, a header-injection attempt) is replaced, never echoed.

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
        id_headers = _id_headers(scope["path"], request_id)
        record = self.telemetry.start(scope, request_id)
        started = False

        async def send_observed(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                timing = () if record is None else record.response_started(message["status"])
                message["headers"] = [*message.get("headers", ()), *id_headers, *timing]
            await send(message)

        if record is not None:
            scope["record"] = record
        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            if started:
                raise  # the answer is half out: only closing the connection can end it
            # Answered here rather than by Starlette's outer error middleware, which re-raises
            # after its 500, so that the server would close a keep-alive connection the
            # client may be about to reuse.
            log.error("unexpected error handling request %s", request_id, exc_info=True)
            await internal_error_response(scope["path"], request_id)(scope, receive, send_observed)
        except BaseException as exc:
            if record is not None and not record.status:
                record.status = 499 if isinstance(exc, asyncio.CancelledError) else 500
            raise
        finally:
            if record is not None:
                self.telemetry.finish(record, scope.get("key_name") or "")


def _id_headers(path: str, request_id: str) -> tuple[tuple[bytes, bytes], ...]:
    """`x-request-id`, and the API's own name for it where it has one (Anthropic's
    `request-id`)."""
    encoded = request_id.encode("ascii")
    names = _ID_NAMES.get(path)
    if names is None:
        names = error_dialect(path).id_headers
        if len(_ID_NAMES) < _ID_NAMES_KEPT:
            _ID_NAMES[path] = names
    if not names:  # the OpenAI routes: no generator on the hot path
        return ((b"x-request-id", encoded),)
    return ((b"x-request-id", encoded), *((name, encoded) for name in names))


# The id header names by path, as error_dialect gives them: the proxy's paths are few, and a
# client's made-up paths stop being kept after the first few hundred.
_ID_NAMES: dict[str, tuple[bytes, ...]] = {}
_ID_NAMES_KEPT = 256


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("ascii") if _SAFE_REQUEST_ID.fullmatch(value) else None
    return None
