"""A tunnel through an HTTP forward proxy: `CONNECT host:port`, then TLS to the upstream inside
it (app.http_client opens one for each https connection that goes through a proxy)."""

from __future__ import annotations

import asyncio
from typing import cast

from app.http_errors import ConnectFailed, connect_error
from app.http_origin import Origin, Proxy

_TUNNEL_HEAD_LIMIT = 16 * 1024  # bytes of a proxy's answer to CONNECT, at most


class Tunnel(asyncio.Protocol):
    """A connection to a proxy until its answer to CONNECT; then TLS starts on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[bytes] = loop.create_future()
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._answer.done():
            return
        if b"\r\n\r\n" in self._buffer:
            self._answer.set_result(self._buffer)
        elif len(self._buffer) > _TUNNEL_HEAD_LIMIT:
            self._answer.set_exception(ConnectFailed("the proxy's answer to CONNECT is too long"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._answer.done():
            reason = f": {exc}" if exc else ""
            self._answer.set_exception(
                ConnectFailed(f"the proxy closed the connection before answering CONNECT{reason}")
            )

    async def open(self, origin: Origin, proxy: Proxy) -> None:
        """Ask the proxy for a tunnel to the origin; ConnectFailed unless it answers 2xx."""
        assert self.transport is not None
        lines = [f"CONNECT {origin.authority} HTTP/1.1", f"host: {origin.authority}"]
        if proxy.authorization is not None:
            lines.append(f"proxy-authorization: {proxy.authorization}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        answer = await self._answer
        head, _, rest = answer.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].startswith("2"):
            raise ConnectFailed(
                f"the proxy {proxy.display} refused the tunnel to {origin.authority}: "
                f"{status_line[:200]!r}"
            )
        if rest:  # the upstream speaks only after the client's TLS hello
            raise ConnectFailed(f"the proxy {proxy.display} sent bytes after its CONNECT answer")


def proxy_unreachable(proxy: Proxy, exc: OSError) -> ConnectFailed:
    return ConnectFailed(f"cannot connect to the proxy {proxy.display}: {connect_error(exc)}")
