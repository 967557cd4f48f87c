"""A request's work is cancelled when its client's connection is lost, on a real uvicorn server.

With the proxy's protocol (app.server_protocol) the connection tells the request's watch: no
task waits on `receive()`. On uvicorn's own protocol (the app run by another server) the watch
falls back to such a task, and the work is cancelled all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from app.disconnect import DisconnectWatch, client_connection
from app.server_protocol import CoalescingHttpToolsProtocol
from tests.waiting import until

pytestmark = pytest.mark.timeout(30)

REQUEST = b"POST /work HTTP/1.1\r\nhost: test\r\ncontent-length: 2\r\n\r\n{}"


@dataclass
class Worker:
    """An ASGI app whose every request works until its client leaves; what each one saw."""

    after: float  # when the fallback watch starts
    told: list[bool] = field(default_factory=list)  # had a ClientConnection in its scope
    watch_receives: list[int] = field(default_factory=list)  # receive() calls after the body
    outcome: list[str] = field(default_factory=list)
    working: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, _send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        calls = 0

        async def watched_receive() -> Message:
            nonlocal calls
            calls += 1
            return await receive()

        connection = client_connection(scope)
        self.told.append(connection is not None)
        with DisconnectWatch(watched_receive, connection, after=self.after) as watch:
            try:
                self.working.set()
                await asyncio.sleep(60)
                self.outcome.append("finished")
            except asyncio.CancelledError:
                self.outcome.append("client gone" if watch.client_gone else "cancelled")
                if not watch.client_gone:
                    raise
        self.watch_receives.append(calls)


@contextlib.asynccontextmanager
async def _serving(app: Worker, http: Any) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    config = uvicorn.Config(app, http=http, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started)  # uvicorn has no "started" event to wait on
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await serving


async def _leave_while_working(app: Worker, port: int) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    await app.working.wait()
    writer.close()
    await writer.wait_closed()


@pytest.fixture
async def ours() -> AsyncIterator[tuple[Worker, int]]:
    # A watch that fell back to receive() would start at once: none must.
    app = Worker(after=0.0)
    async with _serving(app, CoalescingHttpToolsProtocol) as port:
        yield app, port


@pytest.fixture
async def uvicorns() -> AsyncIterator[tuple[Worker, int]]:
    app = Worker(after=0.01)
    async with _serving(app, "httptools") as port:
        yield app, port


async def test_the_proxys_protocol_tells_the_work_its_client_left(
    ours: tuple[Worker, int],
) -> None:
    app, port = ours
    await _leave_while_working(app, port)
    await until(lambda: app.outcome)
    assert app.told == [True]
    assert app.outcome == ["client gone"]
    assert app.watch_receives == [0]  # no task waited on receive()


async def test_on_uvicorns_own_protocol_the_watch_falls_back_to_receive(
    uvicorns: tuple[Worker, int],
) -> None:
    app, port = uvicorns
    await _leave_while_working(app, port)
    await until(lambda: app.outcome)
    assert app.told == [False]
    assert app.outcome == ["client gone"]
    assert app.watch_receives == [1]
