"""Where budgets are counted: the interface, and the in-memory backend.

    LimitBackend.acquire(charges) -> Decision          admit all charges or none, atomically
    LimitBackend.settle(budgets, entry_id, units)      a token reservation → the real count
    LimitBackend.aclose()

`MemoryBackend` counts in this process: exact, and free of I/O, but each worker process and
each replica has its own budgets, so with `--workers 2` a key gets twice its limit. Several
processes share one budget through `RedisBackend` (`app.limits.redis_backend`). A backend that
cannot answer raises `BackendUnavailable`; the limiter applies the configured policy.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from app.limits.window import Budget, Charge, Decision, SlidingWindow, decide


class BackendUnavailable(Exception):
    """The backend could not answer (Redis down, or too slow); the message says why."""


class LimitBackend(Protocol):
    description: str  # for logs: "memory", "redis at host:port/0"

    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        """Admit all of a request's charges or none; the decision names the request's entries."""
        ...

    def settle(self, budgets: Sequence[Budget], entry_id: str, units: int) -> None:
        """Replace the request's token reservation in `budgets` by `units` (never waits)."""
        ...

    async def aclose(self) -> None: ...


class MemoryBackend:
    """Budgets in this process's memory: a dict lookup and a deque operation per budget.

    `acquire` has no await inside, so under asyncio it is atomic: concurrent requests are
    counted exactly. `clock` (monotonic seconds) is for tests.
    """

    description = "memory (per process)"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, SlidingWindow] = {}
        self._ids = itertools.count()  # entry ids: unique within the process is enough

    def window(self, budget: Budget) -> SlidingWindow:
        window = self._windows.get(budget.name)
        if window is None:
            window = self._windows[budget.name] = SlidingWindow()
        return window

    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        known = self._windows
        windows = [known.get(c.budget.name) or self.window(c.budget) for c in charges]
        return decide(windows, charges, self._clock(), str(next(self._ids)))

    def settle(self, budgets: Sequence[Budget], entry_id: str, units: int) -> None:
        now = self._clock()
        for budget in budgets:
            self.window(budget).settle(now, entry_id, units)

    async def aclose(self) -> None:
        self._windows.clear()
