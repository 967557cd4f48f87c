"""The upstream client: the one object that talks to custom endpoints, behind a small interface.

`UpstreamClient.send(UpstreamRequest) -> UpstreamResponse` is all the rest of the proxy sees,
so the client can be swapped and faked. Per-model URL, headers and timeout travel in the
request's `UpstreamEndpoint` (built once per model), never in the client. Two implementations:

- `PooledUpstream`, the production client, on the project's own `app.http_client` (asyncio +
  httptools, keep-alive pool). Chosen by measurement (`bench/clients.py`, README "Performance"):
  it costs a fraction of the CPU per request of aiohttp or httpx, which would otherwise be most
  of the proxy's own cost.
- `HttpxUpstream`, on httpx.AsyncClient with an injectable transport: tests drive it with
  `httpx.MockTransport`.

Transport failures map to the proxy's errors here, at one boundary: no connection (refused,
or not made within the connect timeout) → `UpstreamUnavailable` (503), sent but no answer in
time → `UpstreamReadTimeout` (504), a broken or oversized answer → `UpstreamBadResponse` (502).
HTTP statuses are judged by `app.schemas.custom`; an error answer's Retry-After travels in the
response.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from app.errors import UpstreamBadResponse, UpstreamReadTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    import httpx  # imported when an HttpxUpstream is made: it costs 0.1 s of start-up

from app.http_client import HTTPPool, prepare_post
from app.http_errors import ConnectFailed, ConnectionBroken, ResponseTooLarge
from app.http_origin import Proxy, Target
from app.http_slots import SlotWaits


@dataclass(frozen=True, eq=False, slots=True)
class UpstreamEndpoint:
    """Where and how to POST for one deployment; compared and hashed by identity. `proxy` and
    `tls` say how the upstream is reached (app.upstream_network); HttpxUpstream ignores them."""

    url: str
    headers: Mapping[str, str]
    timeout: float
    proxy: Proxy | None = None
    tls: ssl.SSLContext | None = None  # None: the system's CAs


@dataclass(slots=True)  # made per request: plain init is 4x cheaper than frozen
class UpstreamRequest:
    """One POST to a custom endpoint. `model` names the client's model, for error messages;
    `timeout` bounds the whole exchange (the endpoint's, or less when the deadline is near)."""

    endpoint: UpstreamEndpoint
    body: bytes
    request_id: str
    model: str
    timeout: float
    authorization: str | None = None  # the client's own key, for models that forward it


@dataclass(slots=True)  # made per request: plain init is 4x cheaper than frozen
class UpstreamResponse:
    status: int
    body: bytes
    retry_after: float | None = None  # seconds, from an error answer's Retry-After


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


class UpstreamClient(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class PooledUpstream:
    """The production client: one keep-alive pool for the process. `max_connections` caps the
    connections in use per upstream host:port (None: no cap); `slot_waits` hears of requests
    that wait for one."""

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        keepalive_seconds: float = 4.0,
        max_response_bytes: int = 8 * 1024 * 1024,
        connect_timeout: float = 5.0,
        slot_waits: SlotWaits | None = None,
    ) -> None:
        self._pool = HTTPPool(
            max_connections=max_connections,
            keepalive_seconds=keepalive_seconds,
            max_response_bytes=max_response_bytes,
            connect_timeout=connect_timeout,
            slot_waits=slot_waits,
        )
        self._targets: dict[UpstreamEndpoint, Target] = {}

    def _target(self, endpoint: UpstreamEndpoint) -> Target:
        target = self._targets.get(endpoint)
        if target is None:
            target = self._targets[endpoint] = prepare_post(
                endpoint.url, dict(endpoint.headers), proxy=endpoint.proxy, tls=endpoint.tls
            )
        return target

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        endpoint = request.endpoint
        extra = b"x-request-id: " + request.request_id.encode("ascii") + b"\r\n"
        if request.authorization is not None:
            extra += b"authorization: Bearer " + request.authorization.encode("latin-1") + b"\r\n"
        try:
            response = await self._pool.post(
                self._target(endpoint), extra, request.body, timeout=request.timeout
            )
        except TimeoutError as exc:
            raise _timed_out(request) from exc
        except ConnectFailed as exc:
            raise _unreachable(request, str(exc)) from exc
        except (ConnectionBroken, ResponseTooLarge) as exc:
            raise _broken(request, exc) from exc
        if response.status == 200:
            return UpstreamResponse(response.status, response.body)
        retry_after = response.header(b"retry-after")
        return UpstreamResponse(
            response.status,
            response.body,
            parse_retry_after(retry_after.decode("latin-1") if retry_after else None),
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class HttpxUpstream:
    """The same interface on httpx; pass `transport=httpx.MockTransport(handler)` in tests."""

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 1000,
        max_response_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        import httpx

        self._httpx = httpx
        self._max_response_bytes = max_response_bytes
        self._client = httpx.AsyncClient(
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=100),
            timeout=httpx.Timeout(None),
            follow_redirects=False,
        )

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        endpoint = request.endpoint
        headers = {**endpoint.headers, "x-request-id": request.request_id}
        if request.authorization is not None:
            headers["authorization"] = f"Bearer {request.authorization}"
        try:
            async with asyncio.timeout(request.timeout):
                response = await self._client.post(
                    endpoint.url, content=request.body, headers=headers
                )
        except (self._httpx.ConnectError, self._httpx.ConnectTimeout) as exc:
            raise _unreachable(request, str(exc) or type(exc).__name__) from exc
        except (TimeoutError, self._httpx.TimeoutException) as exc:
            raise _timed_out(request) from exc
        except self._httpx.HTTPError as exc:
            raise _broken(request, exc) from exc
        if len(response.content) > self._max_response_bytes:
            raise _broken(
                request, ValueError(f"the answer is larger than {self._max_response_bytes} bytes")
            )
        return UpstreamResponse(
            response.status_code,
            response.content,
            parse_retry_after(response.headers.get("retry-after")),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _timed_out(request: UpstreamRequest) -> UpstreamReadTimeout:
    return UpstreamReadTimeout(
        f"the upstream of model '{request.model}' did not answer within {request.timeout:.3g} s"
    )


def _unreachable(request: UpstreamRequest, reason: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"cannot connect to the upstream of model '{request.model}': {reason}"
    )


def _broken(request: UpstreamRequest, exc: Exception) -> UpstreamBadResponse:
    reason = str(exc) or type(exc).__name__
    return UpstreamBadResponse(
        f"the upstream of model '{request.model}' broke off its answer: {reason}"
    )
