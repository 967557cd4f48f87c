"""The one place errors become responses: every error is an envelope, never a traceback.

Which envelope depends on the API the path belongs to (`ErrorDialect`, chosen by path prefix
in `_DIALECTS`): OpenAI's `{"error": {...}}` everywhere but under `/v1/messages`, which
answers in Anthropic's `{"type": "error", "error": {...}}` with Anthropic's statuses (529 for
the proxy's overload). A new front door with its own envelope adds one line to the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.errors import (
    ClientClosedRequest,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProxyError,
    UpstreamError,
    error_envelope,
    internal_error_envelope,
)
from app.protocols.anthropic import answers as anthropic

log = logging.getLogger("app.errors")

Body = tuple[int, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ErrorDialect:
    """How one client API's paths answer errors: the status and body for a proxy error, for a
    500 (by request id) and for an HTTP error of any status; `id_headers` name the request id
    in the response (besides the `x-request-id` every answer has)."""

    error: Callable[[ProxyError, str | None], Body]
    internal: Callable[[str], Body]
    http: Callable[[int, str], dict[str, Any]]
    id_headers: tuple[bytes, ...] = ()


def _openai_error(exc: ProxyError, _request_id: str | None) -> Body:
    return exc.status, exc.envelope()


OPENAI_ERRORS = ErrorDialect(
    error=_openai_error,
    internal=lambda request_id: (500, internal_error_envelope(request_id)),
    http=lambda _status, message: error_envelope(message, "invalid_request_error"),
)
ANTHROPIC_ERRORS = ErrorDialect(
    error=anthropic.error_body,
    internal=anthropic.internal_error_body,
    http=lambda status, message: anthropic.error_envelope(message, anthropic.error_type(status)),
    id_headers=(b"request-id",),  # where Anthropic's SDK reads it (`_request_id`)
)
# (path prefix, dialect): a path is under a prefix when it equals it or continues with "/".
_DIALECTS: tuple[tuple[str, ErrorDialect], ...] = (("/v1/messages", ANTHROPIC_ERRORS),)


def error_dialect(path: str) -> ErrorDialect:
    """The error dialect of the API `path` belongs to; OpenAI's by default."""
    for prefix, dialect in _DIALECTS:
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            return dialect
    return OPENAI_ERRORS


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
    """The envelope response for a ProxyError in the path's dialect, logged as its kind
    deserves."""
    if isinstance(exc, ClientClosedRequest):
        log.info("%s (request %s)", exc.message, request.scope.get("request_id"))
    elif isinstance(exc, UpstreamError):
        log.warning("upstream error: %s (request %s)", exc.message, request.scope.get("request_id"))
    # The proxy's own refusals (overloaded, limits unavailable) are in the access log; their
    # causes are logged once where they start, not once per request.
    request_id = request.scope.get("request_id")
    status, body = error_dialect(request.scope["path"]).error(exc, request_id)
    return json_response(body, status, exc.headers())


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
    else:
        message = str(exc.detail)
    dialect = error_dialect(request.scope["path"])
    error_class = _HTTP_ERRORS.get(exc.status_code)
    if error_class is not None:
        status, body = dialect.error(error_class(message), request.scope.get("request_id"))
    else:
        status, body = exc.status_code, dialect.http(exc.status_code, message)
    return json_response(body, status, dict(exc.headers or {}))


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(part) for part in first["loc"][1:]) or None
    error = InvalidRequest(str(first["msg"]), param=param)
    dialect = error_dialect(request.scope["path"])
    status, body = dialect.error(error, request.scope.get("request_id"))
    return json_response(body, status)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    request_id = str(request.scope.get("request_id"))
    log.error("unexpected error handling request %s", request_id, exc_info=exc)
    return internal_error_response(request.scope["path"], request_id, outside=True)


def internal_error_response(path: str, request_id: str, *, outside: bool = False) -> Response:
    """A 500 in the path's dialect, naming the request id. `outside`: the response does not
    pass the telemetry middleware, so it sets the request id headers itself."""
    dialect = error_dialect(path)
    status, body = dialect.internal(request_id)
    headers = None
    if outside:
        names = ("x-request-id", *(name.decode() for name in dialect.id_headers))
        headers = dict.fromkeys(names, request_id)
    return json_response(body, status, headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProxyError, handle_proxy_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(Exception, handle_unexpected)
