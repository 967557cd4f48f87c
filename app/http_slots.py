"""Connection slots per origin, for a pool with `max_connections`: who waits, in what order,
until when, and who is told about the waits (app.pool_waits)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Protocol

from app.coarse_timers import coarse_timers
from app.http_origin import Origin


def expire(waiter: asyncio.Future[Any]) -> None:
    """A deadline passed: the waiter fails with TimeoutError (unless it is already done)."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class SlotWaits(Protocol):
    """Told when a request must wait for a connection slot: its origin has `max_connections`
    exchanges in flight. The pool calls it only then, never on the way of a request that finds
    a free slot."""

    def wait_started(self, origin: Origin, limit: int, *, first: bool) -> None:
        """A request starts waiting. `first`: the first wait since the origin last had a free
        slot, i.e. once per incident."""

    def wait_ended(self, origin: Origin, seconds: float) -> None:
        """A waiting request got its slot, or gave up (timeout, cancellation), after `seconds`."""


class Slots:
    """At most `limit` holders at once, first come first served; like asyncio.Semaphore
    without its per-acquire scan of the waiters, and with a deadline (loop time).

    `congested` is True from the first wait until a slot is free again: a waiting incident."""

    __slots__ = ("limit", "taken", "congested", "_waiters", "_origin", "_waits")

    def __init__(self, limit: int, origin: Origin, waits: SlotWaits | None = None) -> None:
        self.limit = limit
        self.taken = 0
        self.congested = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._origin = origin
        self._waits = waits

    async def acquire(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        if self.taken < self.limit and not self._waiters:
            self.taken += 1
            return
        first = not self.congested
        self.congested = True
        waits = self._waits
        if waits is None:
            await self._wait(loop, deadline)
            return
        waits.wait_started(self._origin, self.limit, first=first)
        started = loop.time()
        try:
            await self._wait(loop, deadline)
        finally:
            waits.wait_ended(self._origin, loop.time() - started)

    async def _wait(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        waiter = loop.create_future()
        self._waiters.append(waiter)
        timer = None if deadline is None else coarse_timers(loop).call_at(deadline, expire, waiter)
        try:
            await waiter  # the releaser handed its slot over: `taken` is already counted
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # handed over just as this waiter gave up: pass it on
            elif waiter in self._waiters:  # a release may already have dropped it
                self._waiters.remove(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        self.taken -= 1
        self.congested = False  # a slot is free: the incident, if any, is over
