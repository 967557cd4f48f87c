"""A scripted HTTP server for client tests: each test writes exactly the bytes it wants.

`Upstream` reads each request and hands it to the test's handler with a `Peer`; it counts the
connections it accepts (how connection reuse is observed from outside the pool) and the most
open at once, and notes which connections saw EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from app.http_client import prepare_post
from app.http_origin import Target

Handler = Callable[["Peer"], Awaitable[None]]


# The scripted server


class Peer:
    """The server's end of one accepted connection."""

    def __init__(
        self, server: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.requests: list[bytes] = []
        self.eof = asyncio.Event()  # the client closed or reset its end
        self.done = asyncio.Event()  # the server closed its end

    @property
    def first(self) -> bool:
        return self is self.server.peers[0]

    async def read_request(self) -> bytes | None:
        """The next whole request (head and Content-Length body); None once the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            body = await self.reader.readexactly(content_length(head))
        except (asyncio.IncompleteReadError, OSError):
            self.eof.set()
            return None
        request = head + body
        self.requests.append(request)
        await self.server.record(request)
        return request

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self) -> None:
        """Read and ignore whatever comes until the client closes its end."""
        with contextlib.suppress(OSError):
            while await self.reader.read(65536):
                pass
        self.eof.set()

    def reset(self) -> None:
        """Drop the connection with a TCP reset."""
        self.writer.transport.abort()


def content_length(head: bytes) -> int:
    """The Content-Length of a message head; 0 when it has none."""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class Upstream:
    """A server on 127.0.0.1, port 0; `handler(peer)` runs once per accepted connection."""

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.port = 0
        self.peers: list[Peer] = []
        self.requests: list[bytes] = []
        self.open_now = 0
        self.max_open = 0
        self.errors: list[Exception] = []
        self._seen = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    @property
    def accepted(self) -> int:
        return len(self.peers)

    def url(self, path: str = "/generate", *, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def target(self, path: str = "/generate", *, scheme: str = "http") -> Target:
        return prepare_post(self.url(path, scheme=scheme), {})

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        if self.errors and exc_info[0] is None:
            raise self.errors[0]

    async def record(self, request: bytes) -> None:
        async with self._seen:
            self.requests.append(request)
            self._seen.notify_all()

    async def wait_requests(self, count: int) -> None:
        """Until the server has read `count` requests in all."""
        async with self._seen:
            await self._seen.wait_for(lambda: len(self.requests) >= count)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(self, reader, writer)
        self.peers.append(peer)
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        try:
            await self.handler(peer)
        except OSError:
            pass  # the client went away while the script wrote; some tests make it do so
        except Exception as exc:  # a broken script: surfaced when the server closes
            self.errors.append(exc)
        finally:
            self.open_now -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            peer.done.set()
            self._tasks.discard(task)


def answer(
    body: bytes = b"ok",
    *,
    status: bytes = b"200 OK",
    headers: Sequence[bytes] = (),
    version: bytes = b"HTTP/1.1",
    length: bool = True,
) -> bytes:
    """The bytes of one answer; with `length`, a Content-Length header for the body."""
    lines = [version + b" " + status, *headers]
    if length:
        lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def reply(*answers: bytes) -> Handler:
    """Answer the server's n-th request with answers[n] (the last one repeats), keep-alive."""

    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            index = min(len(peer.server.requests), len(answers)) - 1
            await peer.write(answers[index])

    return handler


def held(release: asyncio.Event, response: bytes) -> Handler:
    """Answer every request with `response`, each only once `release` is set, keep-alive."""

    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await release.wait()
            await peer.write(response)

    return handler


def refused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: it was bound and closed just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


ServeFactory = Callable[..., Coroutine[Any, Any, Upstream]]


@contextlib.asynccontextmanager
async def upstreams() -> AsyncIterator[ServeFactory]:
    """`start(handler, tls=...)` starts an `Upstream`; all of them stop when the block ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(handler: Handler, *, tls: ssl.SSLContext | None = None) -> Upstream:
            return await stack.enter_async_context(Upstream(handler, tls=tls))

        yield start
