"""Cancel a request's work when its client goes away, at no cost to requests that finish fast.

Watching for a disconnect means a task blocked on `receive()`; making one per request would
cost as much as the rest of a short request. So `DisconnectWatch` only notes when the work
began: once it has run for `after` seconds, a watcher task starts; when the client disconnects,
it cancels the task that does the work, and `client_gone` tells that task why it was cancelled.

One timer per event loop and delay serves every watch (`_Sweeper`): arming and cancelling a
timer per request costs several times more than putting the watch in a dict and taking it out.
The sweep runs every `after` seconds while there are watches, so a watcher starts between
`after` and twice `after` into the work.
"""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType

from starlette.types import Receive

WATCH_AFTER_SECONDS = 0.25

_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _Sweeper]] = (
    weakref.WeakKeyDictionary()
)


class DisconnectWatch:
    """`with DisconnectWatch(receive): await work()` — cancelled if the client leaves."""

    __slots__ = ("_receive", "_after", "_owner", "_sweeper", "_watcher", "client_gone")

    def __init__(self, receive: Receive, *, after: float = WATCH_AFTER_SECONDS) -> None:
        self._receive = receive
        self._after = after
        self._owner: asyncio.Task[object] | None = None
        self._sweeper: _Sweeper | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.client_gone = False

    def __enter__(self) -> DisconnectWatch:
        loop = asyncio.get_running_loop()
        self._owner = asyncio.current_task(loop)
        self._sweeper = _sweeper(loop, self._after)
        self._sweeper.add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._sweeper is not None:
            self._sweeper.discard(self)
        if self._watcher is not None:
            self._watcher.cancel()

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


def _sweeper(loop: asyncio.AbstractEventLoop, after: float) -> _Sweeper:
    by_delay = _sweepers.get(loop)
    if by_delay is None:
        by_delay = _sweepers[loop] = {}
    sweeper = by_delay.get(after)
    if sweeper is None:
        sweeper = by_delay[after] = _Sweeper(loop, after)
    return sweeper


class _Sweeper:
    """The watches of one loop and delay, in the order they began; one timer for all."""

    __slots__ = ("_loop", "_after", "_began", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, after: float) -> None:
        self._loop = loop
        self._after = after
        self._began: dict[DisconnectWatch, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, watch: DisconnectWatch) -> None:
        self._began[watch] = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_later(self._after, self._sweep)

    def discard(self, watch: DisconnectWatch) -> None:
        self._began.pop(watch, None)

    def _sweep(self) -> None:
        self._timer = None
        due = self._loop.time() - self._after
        started = []
        for watch, began in self._began.items():  # oldest first: stop at the first not due
            if began > due:
                break
            started.append(watch)
        for watch in started:
            del self._began[watch]
            watch.start(self._loop)
        if self._began:
            self._timer = self._loop.call_later(self._after, self._sweep)
