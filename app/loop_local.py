"""One object per event loop, made on the loop's first use: the coarse timers, the held writes.

A process runs one loop, a test suite many; when a new loop asks, the objects of closed loops
are dropped.

    timers_of = LoopLocal(CoarseTimers).get
    timers = timers_of(loop)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """`get(loop)`: the loop's object, made by `make(loop)` the first time."""

    __slots__ = ("_make", "_by_loop")

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], T]) -> None:
        self._make = make
        self._by_loop: dict[asyncio.AbstractEventLoop, T] = {}

    def get(self, loop: asyncio.AbstractEventLoop) -> T:
        made = self._by_loop.get(loop)
        if made is None:
            for closed in [other for other in self._by_loop if other.is_closed()]:
                del self._by_loop[closed]
            made = self._by_loop[loop] = self._make(loop)
        return made

    def loops(self) -> list[asyncio.AbstractEventLoop]:
        """The loops that have an object now."""
        return list(self._by_loop)
