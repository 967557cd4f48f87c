"""A small pooled HTTP/1.1 client for the proxy's one job: POST a body, read the whole answer.

Why the project has its own: measured on the project's machine (`bench/clients.py`), aiohttp's
ClientSession spends about 230 µs of CPU per request and httpx's AsyncClient more, while the
whole proxy must stay near 300 µs. This client writes each request with one `transport.write`,
parses the answer with httptools (the parser uvicorn uses) and keeps connections alive per
origin: about 16 µs per request.

Scope, on purpose: HTTP/1.1 over TCP or TLS; Content-Length, chunked and close-delimited bodies;
gzip and deflate. No redirects, cookies or `Expect: 100-continue`: upstreams are URLs an
operator configured.

Forward proxies (HTTP proxies, as httpx, aiohttp and curl use them): a `Target` prepared with a
`Proxy` goes through it. For https the pool opens a tunnel (`CONNECT host:port`, then TLS to
the upstream inside it, the upstream's certificate checked as without a proxy); for http it
sends the request to the proxy in absolute form (`POST http://host:port/path`). The proxy's
credentials travel as `Proxy-Authorization: Basic`; `Proxy.display`, the URL without them, is
all that error messages show. Which proxy, if any, is decided per deployment at start-up
(`app.upstream_network`: the config's `proxy`, or HTTPS_PROXY / HTTP_PROXY / NO_PROXY).
TLS: a Target may carry its own `ssl.SSLContext` (private CA, client certificate for mutual
TLS, no verification); else the pool's, by default the system's CAs. The proxy and the TLS
context are part of the `Origin` (app.http_origin), the key of the pool's connections:
deployments that differ in either never share a connection. Errors: app.http_errors.

Timeouts: a connection not made within `connect_timeout` is `ConnectFailed` (the request
never left, so it is safe to send elsewhere); `post(..., timeout=s)` bounds the whole request
(waiting for a free slot, connecting, the exchange) and raises `TimeoutError` when it runs out.
It is one coarse timer on the exchange (app.coarse_timers: up to 10 ms late), not an
`asyncio.timeout` around it: on the hot path that costs a dict entry instead of a timeout
object, a loop timer, task bookkeeping and a cancellation.
A connection interrupted by a timeout or a cancellation is closed, never reused, and its slot
is freed.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools

from app.coarse_timers import coarse_timers
from app.held_writes import held_writes
from app.http_errors import (
    ConnectFailed,
    ConnectionBroken,
    HTTPClientError,
    ResponseTooLarge,
    connect_error,
)
from app.http_origin import Origin, Proxy, Target
from app.http_slots import Slots, SlotWaits, expire
from app.http_tunnel import Tunnel, proxy_unreachable

_IDLE_POLL_LIMIT = 64  # stale idle connections dropped per acquire, at most


def prepare_post(
    url: str,
    headers: dict[str, str],
    *,
    proxy: Proxy | None = None,
    tls: ssl.SSLContext | None = None,
) -> Target:
    """Build a Target once per upstream; header names and values are checked by the config.
    `proxy`: the forward proxy to go through; `tls`: the context for an https URL (None: the
    pool's)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default_port = port == (443 if parts.scheme == "https" else 80)
    authority = host if default_port else f"{host}:{port}"
    lines = [f"POST {path} HTTP/1.1", f"host: {authority}"]
    if proxy is not None and parts.scheme == "http":
        # Through a proxy, plain http names the whole URL; the proxy reads its own header.
        lines[0] = f"POST http://{authority}{path} HTTP/1.1"
        if proxy.authorization is not None:
            lines.append(f"proxy-authorization: {proxy.authorization}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
    origin = Origin(
        parts.scheme, parts.hostname, port, proxy, tls if parts.scheme == "https" else None
    )
    return Target(origin, head)


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header, by lower-case name."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


@dataclass(slots=True)
class _Exchange:
    """What one request on a connection has received so far."""

    waiter: asyncio.Future[Response]
    limit: int
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    headers_done: bool = False
    length_known: bool = False  # Content-Length or chunked; else the body ends with the connection
    answered: bool = False


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one exchange at a time."""

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.loop = loop
        self.timers = coarse_timers(loop)
        self.held = held_writes(loop)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = False
        self.idle_since = 0.0
        self.served = False  # whether an answer has come on this connection
        self._exchange: _Exchange | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._unsent = b""  # a request held for the end of the step (app.held_writes)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        exchange = self._exchange
        if exchange is None or self._parser is None:
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        exchange.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # httptools wraps what our callbacks raise; unwrap the client's own errors.
            cause = exc.__context__
            if isinstance(cause, HTTPClientError):
                self._fail(cause)
            else:
                self._fail(ConnectionBroken(f"invalid HTTP answer: {exc}", answered=True))
        except httptools.HttpParserError as exc:
            self._fail(ConnectionBroken(f"invalid HTTP answer: {exc}", answered=True))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost finishes the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange = self._exchange
        if exchange is None or exchange.waiter.done():
            return
        if exchange.headers_done and not exchange.length_known:
            self.keep_alive = False
            self._finish(exchange)  # a close-delimited body ends here
            return
        reason = f": {exc}" if exc else ""
        if not exchange.answered and not self.served and self.origin.scheme == "https":
            # With TLS 1.3 a server that wants a client certificate says so only now, and
            # asyncio reports its alert as a plain close.
            reason += " (a new TLS connection closed unanswered: if the upstream requires a "
            reason += "client certificate, set tls.cert_file)"
        self._fail(
            ConnectionBroken(
                f"the upstream closed the connection before a full answer{reason}",
                answered=exchange.answered,
            )
        )

    # httptools callbacks
    def on_message_begin(self) -> None:
        exchange = self._exchange
        if exchange is not None and exchange.waiter.done():
            # A second answer to one request: the stream cannot be trusted any more.
            raise ConnectionBroken("the upstream sent more than one answer", answered=True)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._exchange is not None
        self._exchange.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self._exchange
        assert exchange is not None and self._parser is not None
        exchange.status = self._parser.get_status_code()
        exchange.headers_done = True
        for name, value in exchange.headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                exchange.length_known = True

    def on_body(self, body: bytes) -> None:
        exchange = self._exchange
        assert exchange is not None
        exchange.size += len(body)
        if exchange.size > exchange.limit:
            raise ResponseTooLarge(f"the answer is larger than {exchange.limit} bytes")
        exchange.chunks.append(body)

    def on_message_complete(self) -> None:
        exchange = self._exchange
        assert exchange is not None and self._parser is not None
        if 100 <= exchange.status < 200:  # an interim answer; the real one follows
            exchange.headers.clear()
            exchange.headers_done = False
            return
        self.keep_alive = self._parser.should_keep_alive()
        self._finish(exchange)

    # use
    async def exchange(
        self, request: bytes, limit: int, deadline: float | None, *, defer: bool = False
    ) -> Response:
        """Send the request, wait for its answer; TimeoutError at `deadline` (loop time).

        `defer`: write the request at the end of this step of the event loop rather than now
        (app.held_writes: cheaper under load); alone, it only adds a turn of the loop (3-8 %
        fewer requests per second at c=1), so the pool defers only while another request is in
        flight."""
        assert self.transport is not None
        waiter = self.loop.create_future()
        self._exchange = _Exchange(waiter=waiter, limit=limit)
        self._parser = httptools.HttpResponseParser(self)
        self.keep_alive = False
        if defer:
            self._unsent = request
            self.held.hold(self._write_unsent)
        else:
            self.transport.write(request)
        timer = None if deadline is None else self.timers.call_at(deadline, expire, waiter)
        try:
            response: Response = await waiter
            return response
        finally:
            if timer is not None:
                timer.cancel()
            self._exchange = None
            self._parser = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close without flushing or TLS close_notify."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _write_unsent(self) -> None:
        request, self._unsent = self._unsent, b""
        if request and self.transport is not None and not self.transport.is_closing():
            self.transport.write(request)  # else the exchange was given up meanwhile

    def _finish(self, exchange: _Exchange) -> None:
        body = b"".join(exchange.chunks)
        try:
            body = _decode(exchange.headers, body, exchange.limit)
        except ResponseTooLarge as exc:
            self._fail(exc)
            return
        except (zlib.error, ValueError) as exc:
            self._fail(ConnectionBroken(f"cannot decode the answer: {exc}", answered=True))
            return
        if not exchange.waiter.done():
            self.served = True
            exchange.waiter.set_result(Response(exchange.status, list(exchange.headers), body))

    def _fail(self, error: HTTPClientError) -> None:
        exchange = self._exchange
        if exchange is not None and not exchange.waiter.done():
            exchange.waiter.set_exception(error)
        self.close()


def _decode(headers: list[tuple[bytes, bytes]], body: bytes, limit: int) -> bytes:
    for name, value in headers:
        if name.lower() == b"content-encoding":
            encoding = value.strip().lower()
            if encoding == b"gzip":
                return _inflate(body, 16 + zlib.MAX_WBITS, limit)
            if encoding == b"deflate":
                return _inflate(body, zlib.MAX_WBITS, limit)
            if encoding not in (b"", b"identity"):
                raise ValueError(f"unsupported content-encoding {encoding.decode('latin-1')}")
    return body


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    """Decompress, holding the result to `limit` bytes (a small bomb must not pass the limit)."""
    inflater = zlib.decompressobj(wbits)
    data = inflater.decompress(body, limit + 1)
    if len(data) > limit or inflater.unconsumed_tail:
        raise ResponseTooLarge(f"the decoded answer is larger than {limit} bytes")
    if not inflater.eof:
        raise ValueError("truncated compressed body")
    return data


class HTTPPool:
    """Keep-alive connections per origin; with `max_connections`, at most that many of them in
    use at once per origin (the requests beyond wait their turn, and `slot_waits` hears of
    it); without, as many as there are requests.

    Idle connections are reused newest first and dropped after `keepalive_seconds` (keep it
    under the upstream's own keep-alive timeout: uvicorn's is 5 s, nginx's 75 s). A request
    that fails on a reused connection before any answer arrived is sent once more on a new
    connection: the upstream closed an idle connection, it did not see the request.
    """

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        keepalive_seconds: float = 4.0,
        max_response_bytes: int = 8 * 1024 * 1024,
        connect_timeout: float = 5.0,
        tls: ssl.SSLContext | None = None,
        slot_waits: SlotWaits | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.keepalive_seconds = keepalive_seconds
        self.max_response_bytes = max_response_bytes
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots: dict[Origin, Slots] = {}
        self._slot_waits = slot_waits
        self._tls = tls  # None: the system's trusted CAs, made on first https use
        self._closed = False
        self._in_flight = 0  # requests between a slot and their answer, every origin

    async def post(
        self, target: Target, extra_head: bytes, body: bytes, *, timeout: float | None = None
    ) -> Response:
        """Send `target.head + extra_head` with `body`; extra_head is whole header lines.
        TimeoutError when the answer is not complete within `timeout` seconds."""
        request = b"%s%scontent-length: %d\r\n\r\n%s" % (target.head, extra_head, len(body), body)
        origin = target.origin
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        slots = self._slots_of(origin)
        if slots is not None:
            await slots.acquire(loop, deadline)
        self._in_flight += 1
        try:
            connection = self._take_idle(origin)
            if connection is not None:
                try:
                    return await self._exchange(connection, request, deadline)
                except ConnectionBroken as exc:
                    if exc.answered:
                        raise
            connection = await self._connect(origin, loop, deadline)
            return await self._exchange(connection, request, deadline)
        finally:
            self._in_flight -= 1
            if slots is not None:
                slots.release()

    def _slots_of(self, origin: Origin) -> Slots | None:
        if self.max_connections is None:
            return None
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = Slots(self.max_connections, origin, self._slot_waits)
        return slots

    async def _exchange(
        self, connection: _Connection, request: bytes, deadline: float | None
    ) -> Response:
        try:
            response = await connection.exchange(
                request, self.max_response_bytes, deadline, defer=self._in_flight > 1
            )
        except BaseException:
            connection.close()  # an interrupted exchange leaves the stream in an unknown state
            raise
        if connection.keep_alive and not connection.closed and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            connection.close()
        return response

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        expired_before = time.monotonic() - self.keepalive_seconds
        for _ in range(_IDLE_POLL_LIMIT):
            if not idle:
                return None
            connection = idle.pop()
            if not connection.closed and connection.idle_since >= expired_before:
                return connection
            connection.close()
        return None

    async def _connect(
        self, origin: Origin, loop: asyncio.AbstractEventLoop, deadline: float | None
    ) -> _Connection:
        give_up = loop.time() + self.connect_timeout
        whole_request_ends = deadline is not None and deadline < give_up
        try:
            async with asyncio.timeout_at(deadline if whole_request_ends else give_up):
                return await self._open(origin, loop)
        except TimeoutError as exc:
            if whole_request_ends:
                raise  # the request's own time ran out, not the connect timeout
            via = f" (through the proxy {origin.proxy.display})" if origin.proxy else ""
            raise ConnectFailed(f"no connection within {self.connect_timeout:g} s{via}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(connect_error(exc)) from exc

    async def _open(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> _Connection:
        """A new connection to the origin: direct, or through its proxy (a CONNECT tunnel for
        https, the proxy itself for http)."""
        tls = (origin.tls or self._tls_context()) if origin.scheme == "https" else None
        proxy = origin.proxy
        if proxy is None:
            _, connection = await loop.create_connection(
                lambda: _Connection(origin, loop),
                origin.host,
                origin.port,
                ssl=tls,
                server_hostname=origin.host if tls else None,
            )
            return connection
        if tls is None:
            try:
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin, loop), proxy.host, proxy.port
                )
            except OSError as exc:
                raise proxy_unreachable(proxy, exc) from exc
            return connection
        try:
            transport, tunnel = await loop.create_connection(
                lambda: Tunnel(loop), proxy.host, proxy.port
            )
        except OSError as exc:
            raise proxy_unreachable(proxy, exc) from exc
        try:
            await tunnel.open(origin, proxy)
            connection = _Connection(origin, loop)
            tls_transport = await loop.start_tls(
                transport, connection, tls, server_hostname=origin.host
            )
        except BaseException:
            transport.close()
            raise
        if tls_transport is None:  # typed Optional; only None when the loop is closing
            raise ConnectFailed("the TLS connection through the proxy was closed")
        connection.connection_made(tls_transport)
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def aclose(self) -> None:
        """Close every idle connection (busy ones close when their exchange ends). Idle ones
        are dropped at once: a TLS close handshake (through a proxy, several hops) would
        outlive the event loop, and nothing is in flight on them."""
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.abort()
        self._idle.clear()
