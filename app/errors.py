"""The proxy's errors, each carrying the OpenAI error envelope it becomes.

    ProxyError                      (status, type, code)
    ├── InvalidRequest              400 invalid_request_error
    │   └── UnsupportedParameter    400 invalid_request_error / unsupported_parameter
    ├── AuthenticationFailed        401 invalid_request_error / invalid_api_key
    ├── PermissionDenied            403 invalid_request_error / model_not_allowed
    ├── NotFound                    404 invalid_request_error / not_found
    │   └── ModelNotFound           404 invalid_request_error / model_not_found
    ├── MethodNotAllowed            405 invalid_request_error / method_not_allowed
    ├── PayloadTooLarge             413 invalid_request_error / request_too_large
    ├── RateLimited                 429 rate_limit_error / rate_limit_exceeded (the proxy's limits)
    ├── ClientClosedRequest         499 (nginx's code; the client is gone and never sees it)
    ├── Overloaded                  503 server_error / overloaded (the proxy's own queue is full)
    ├── LimitsUnavailable           503 server_error / rate_limit_backend_unavailable (fail_closed)
    ├── StoreUnavailable            503 server_error / response_store_unavailable (its Redis)
    └── UpstreamError               the custom endpoint failed; message says how
        ├── UpstreamBadResponse     502 upstream_error / bad_upstream_response
        ├── InvalidModelOutput      502 upstream_error / invalid_model_output
        ├── UpstreamRateLimited     429 rate_limit_error / upstream_rate_limited
        ├── UpstreamUnavailable     503 upstream_error / upstream_unavailable
        └── UpstreamTimeout         504 upstream_error / upstream_timeout
            └── UpstreamReadTimeout the request was sent and no answer came in time

An `UpstreamError` says whether another attempt may succeed (`retryable`) and how long the
upstream asked to be left alone (`retry_after`, from its Retry-After header). A `ProxyError`
with `retry_after` set answers with a `retry-after` header, which the OpenAI SDKs honour; one
made with `headers` sends those too (a 429's `x-ratelimit-*`).

Foreign exceptions (the HTTP client's, Jinja's, pydantic's) are mapped to these at one boundary
each, and `app.handlers` turns any ProxyError into its JSON response.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar


class ProxyError(Exception):
    """Base: an error with an HTTP status and an OpenAI-style envelope."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.extra_headers = headers
        if code is not None:
            self.code = code  # type: ignore[misc]  # an instance may refine its class's code

    def headers(self) -> dict[str, str] | None:
        """Response headers the error carries: `retry-after` in whole seconds, when set, and
        the `headers` it was made with."""
        if self.retry_after is None and not self.extra_headers:
            return None
        headers = dict(self.extra_headers or {})
        if self.retry_after is not None:
            headers["retry-after"] = str(max(1, math.ceil(self.retry_after)))
        return headers

    def envelope(self) -> dict[str, Any]:
        """The OpenAI error body: {"error": {"message", "type", "param", "code"}}."""
        return error_envelope(self.message, self.type, self.param, self.code)


def error_envelope(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The OpenAI error body for any message, type, param and code."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def internal_error_envelope(request_id: str) -> dict[str, Any]:
    """A 500's body: the request id to find the logged details by, and no details."""
    return error_envelope(
        f"The proxy hit an internal error (request id {request_id}); it has been logged.",
        "server_error",
        None,
        "internal_error",
    )


class InvalidRequest(ProxyError):
    status = 400
    type = "invalid_request_error"


class UnsupportedParameter(InvalidRequest):
    code = "unsupported_parameter"


class AuthenticationFailed(ProxyError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(ProxyError):
    """The key is valid but may not use what it asked for (a model outside its `models`)."""

    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class RateLimited(ProxyError):
    """A per-key or per-model limit of the proxy's own is used up; `retry-after` says when
    the request would fit."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class LimitsUnavailable(ProxyError):
    """The rate-limit backend (Redis) cannot answer and the policy is `fail_closed`."""

    status = 503
    type = "server_error"
    code = "rate_limit_backend_unavailable"


class StoreUnavailable(ProxyError):
    """The store of the Responses API's responses (Redis) cannot answer."""

    status = 503
    type = "server_error"
    code = "response_store_unavailable"


class NotFound(ProxyError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(ProxyError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(ProxyError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ClientClosedRequest(ProxyError):
    """The client went away before the proxy could answer."""

    status = 499
    type = "invalid_request_error"
    code = "client_closed_request"


class Overloaded(ProxyError):
    """Every deployment of the model is at its concurrency limit and the wait queue is full
    (or the wait timed out): try again later. 429 stays for per-key rate limits."""

    status = 503
    type = "server_error"
    code = "overloaded"


class UpstreamError(ProxyError):
    """The custom endpoint did not give a usable answer."""

    status = 502
    type = "upstream_error"
    code = "bad_upstream_response"
    retryable: bool = True  # another attempt (on another deployment) may succeed


class UpstreamBadResponse(UpstreamError):
    pass


class InvalidModelOutput(UpstreamError):
    """The model's answer broke the form the client asked for (a required tool call, JSON that
    validates), and asking again did not help. Another deployment of the same model would
    write the same; the message says what did not validate."""

    code = "invalid_model_output"
    retryable = False


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamReadTimeout(UpstreamTimeout):
    """The request went out and no full answer came in time: the upstream may still be
    computing it, so it is retried only where the model's config allows."""
