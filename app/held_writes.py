"""Writes held to the end of the event loop's step, at most `LIMIT` of them at a time.

Under load the proxy sends an upstream request, and an answer to its client, at the end of the
step of the event loop that made it rather than at once: the step's other work runs first, the
writes go out together, and the replies come back in fewer, fuller turns of the loop (A/B pairs:
5-10 % more requests per second at c=64 and at c=256 × 50 ms than writing each at once).

Unbounded, that turns bursts into waves. With thousands of requests in flight on an upstream of
fixed latency, one step may run for a second: the replies and new requests of a whole burst
come in one turn, and every write of the turn waits for its end. The burst then goes to the
upstream as one, comes back as one 2 s later, and may never spread out: at 4,096 in flight × 2 s
(bench/inflight.py, 2026-12-04, six runs) requests waited up to ~0.4 s on top of the upstream's
2 s while the proxy's core stood idle 40-50 % of the time, and the proxy served 80-95 % of the
direct rate, depending on the run. Holding at most `LIMIT` writes bounds that wait to the work of
`LIMIT` writes (a few tens of milliseconds): 92.5-97.3 % in the same runs. `LIMIT` is 128 so that
a step at c=64 (an upstream request and an answer for each request) is held whole as before; at
32, the c=64 row lost 7 % (0.927× the requests per second in an ABBA run).

    held = held_writes(loop)
    held.hold(transport.flush)   # runs at the end of the step, or at once when LIMIT are held
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.loop_local import LoopLocal

LIMIT = 128


class HeldWrites:
    """Callbacks that write, run in the order held: at the end of the step, or at once when
    `limit` are waiting."""

    __slots__ = ("_loop", "_held", "limit")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = LIMIT) -> None:
        self._loop = loop
        self._held: list[Callable[[], None]] = []
        self.limit = limit

    def hold(self, write: Callable[[], None]) -> None:
        held = self._held
        held.append(write)
        if len(held) == 1:
            self._loop.call_soon(self.release)
        elif len(held) >= self.limit:
            self.release()

    def release(self) -> None:
        """Run every held write now (a release already scheduled then finds fewer, or none)."""
        held = self._held
        if held:
            self._held = []
            for write in held:
                try:
                    write()
                except Exception as exc:  # one connection's failure is not the next one's
                    self._loop.call_exception_handler(
                        {"message": "a held write failed", "exception": exc}
                    )


held_writes = LoopLocal(HeldWrites).get
"""The loop's held writes, made on first use."""
