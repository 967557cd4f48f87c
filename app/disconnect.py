"""Cancel a request's work when its client goes away, at no cost to requests that finish fast.

Watching for a disconnect means a task blocked on `receive()`; making one per request would
cost as much as the rest of a short request. So `DisconnectWatch` only sets a coarse timer
(app.coarse_timers): once the work has run for `after` seconds, a watcher task starts; when the
client disconnects, it cancels the task that does the work, and `client_gone` tells that task
why it was cancelled. (A stream's response, app.sse_response, watches the same way from the
same delay, with its keep-alives in the same task.)
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from starlette.types import Receive

from app.coarse_timers import CoarseTimer, coarse_timers

WATCH_AFTER_SECONDS = 0.25


class DisconnectWatch:
    """`with DisconnectWatch(receive): await work()` — cancelled if the client leaves."""

    __slots__ = ("_receive", "_after", "_owner", "_timer", "_watcher", "client_gone")

    def __init__(self, receive: Receive, *, after: float = WATCH_AFTER_SECONDS) -> None:
        self._receive = receive
        self._after = after
        self._owner: asyncio.Task[object] | None = None
        self._timer: CoarseTimer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.client_gone = False

    def __enter__(self) -> DisconnectWatch:
        loop = asyncio.get_running_loop()
        self._owner = asyncio.current_task(loop)
        self._timer = coarse_timers(loop).call_later(self._after, self.start, loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
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

    async def _watch(self) -> None:
        # The body has been read: the next message is the disconnect, whenever it comes.
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.client_gone = True
        if self._owner is not None:
            self._owner.cancel()
