"""The one place errors become responses: every error is an OpenAI envelope, never a traceback."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.errors import (
    ClientClosedRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProxyError,
    UpstreamError,
    error_envelope,
    internal_error_envelope,
)

log = logging.getLogger("app.errors")

# Starlette's own HTTP errors, answered as the proxy's errors of the same status.
_HTTP_ERRORS: dict[int, type[ProxyError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


class JSONBytesResponse(Response):
    """A Starlette Response of JSON bytes, its raw headers built directly: Starlette's
    `init_headers` (a dict walk, a charset check, encoding) costs more than the answer's
    serialisation. Extra `headers` are names and values in latin-1, as in Starlette."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int, headers: dict[str, str] | None) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        raw = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
        if headers:
            raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.raw_headers = raw


def json_response(
    payload: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson."""
    return JSONBytesResponse(orjson.dumps(payload), status, headers)


async def handle_proxy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    return proxy_error_response(request, exc)


def proxy_error_response(request: Request, exc: ProxyError) -> Response:
    """The envelope response for a ProxyError, logged as its kind deserves."""
    if isinstance(exc, ClientClosedRequest):
        log.info("%s (request %s)", exc.message, request.scope.get("request_id"))
    elif isinstance(exc, UpstreamError):
        log.warning("upstream error: %s (request %s)", exc.message, request.scope.get("request_id"))
    # The proxy's own refusals (overloaded, limits unavailable) are in the access log; their
    # causes are logged once where they start, not once per request.
    return json_response(exc.envelope(), exc.status, exc.headers())


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
    else:
        message = str(exc.detail)
    error_class = _HTTP_ERRORS.get(exc.status_code)
    envelope = (
        error_class(message).envelope()
        if error_class is not None
        else error_envelope(message, "invalid_request_error")
    )
    return json_response(envelope, exc.status_code, dict(exc.headers or {}))


async def handle_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(part) for part in first["loc"][1:]) or None
    return json_response(error_envelope(str(first["msg"]), "invalid_request_error", param), 400)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    request_id = request.scope.get("request_id")
    log.error("unexpected error handling request %s", request_id, exc_info=exc)
    # This handler runs outside the middleware stack, so it sets the request id header itself.
    headers = {"x-request-id": str(request_id)} if request_id else None
    return json_response(internal_error_envelope(str(request_id)), 500, headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProxyError, handle_proxy_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(Exception, handle_unexpected)
