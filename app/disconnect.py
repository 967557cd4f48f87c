"""Cancel a request's work when its client goes away, at no cost to requests that finish fast.

`with DisconnectWatch(receive, connection): await work()` cancels the task doing the work when
the client leaves, and `client_gone` tells that task why it was cancelled. It learns that the
client left in one of two ways:

- Under `serve`, the server protocol (app.server_protocol) puts the connection's
  `ClientConnection` in every request's scope (`scope[CONNECTION]`, read with
  `client_connection`) and tells it when the connection is lost. A watch is then an entry in
  the connection's set: no task, no timer. With thousands of requests in flight for seconds
  each, the task every request started otherwise was ~7 % of the proxy's CPU.
- Under another ASGI server (or httpx.ASGITransport in tests) there is only `receive()`, and a
  task blocked on it per request would cost as much as the rest of a short request. So the
  watch sets a coarse timer (app.coarse_timers): once the work has run for `after` seconds, a
  watcher task starts and waits for `http.disconnect`.

Either way the request's body has been read: the next message is the disconnect, whenever it
comes. (A stream's response, app.sse_response, watches the same way.) One difference: while a
pipelined request waits behind this one, uvicorn stops reading the socket, so the protocol
learns of the loss only when it reads again; `receive()` resumed reading. No common client
pipelines.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from starlette.types import Receive, Scope

from app.coarse_timers import CoarseTimer, coarse_timers

WATCH_AFTER_SECONDS = 0.25
CONNECTION = "app.connection"  # the scope's key for the request's ClientConnection


class ClientConnection:
    """A client's connection as its requests see it: `lost` once it is, and the watches of
    the requests still working on it, told then."""

    __slots__ = ("lost", "watches")

    def __init__(self) -> None:
        self.lost = False
        self.watches: set[DisconnectWatch] = set()

    def __len__(self) -> int:
        """How many watches wait."""
        return len(self.watches)

    def connection_lost(self) -> None:
        """The client's connection is gone: every request still working on it is cancelled."""
        self.lost = True
        watches, self.watches = self.watches, set()
        for watch in watches:
            watch.client_left()


def client_connection(scope: Scope) -> ClientConnection | None:
    """The request's connection when the server protocol tells its loss (app.server_protocol)."""
    connection: ClientConnection | None = scope.get(CONNECTION)
    return connection


class DisconnectWatch:
    """`with DisconnectWatch(receive, connection): await work()` — cancelled if the client
    leaves (module docstring); without a connection, watched through `receive` after `after` s."""

    __slots__ = ("_receive", "_connection", "_after", "_owner", "_timer", "_watcher", "client_gone")

    def __init__(
        self,
        receive: Receive,
        connection: ClientConnection | None = None,
        *,
        after: float = WATCH_AFTER_SECONDS,
    ) -> None:
        self._receive = receive
        self._connection = connection
        self._after = after
        self._owner: asyncio.Task[object] | None = None
        self._timer: CoarseTimer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.client_gone = False

    def __enter__(self) -> DisconnectWatch:
        connection = self._connection
        if connection is not None and not connection.lost:
            self._owner = asyncio.current_task()
            connection.watches.add(self)
            return self
        loop = asyncio.get_running_loop()
        self._owner = asyncio.current_task(loop)
        if connection is None:
            self._timer = coarse_timers(loop).call_later(self._after, self.start, loop)
        else:
            # Gone before the work began: cancel it at its first wait, inside the block.
            self._timer = coarse_timers(loop).call_later(0.0, self.client_left)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            self._connection.watches.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None  # it holds self.start: a cycle that would keep the request alive
        if self._watcher is not None:
            self._watcher.cancel()
            # The cancelled watcher keeps its CancelledError, whose traceback holds the frame of
            # `_watch` (self): a cycle back to the watcher through `_watcher`, which would keep
            # the request's objects, its connection's too, until a full collection (33 objects
            # a request, measured).
            self._watcher = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The work has run for `after` seconds: from now on, watch the client."""
        self._watcher = loop.create_task(self._watch())

    def client_left(self) -> None:
        """The client is gone: cancel the work."""
        self.client_gone = True
        if self._owner is not None:
            self._owner.cancel()

    async def _watch(self) -> None:
        # The body has been read: the next message is the disconnect, whenever it comes.
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.client_left()
