"""Waiting on a condition in async tests: poll it each millisecond, never a fixed sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    """Return once `condition()` is true; fail the test after `seconds`."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + seconds
    while not condition():
        assert loop.time() < give_up, "condition not met in time"
        await asyncio.sleep(0.001)


async def next_step() -> None:
    """Let the event loop finish its current step: what it runs at the step's end (call_soon)
    has run when this returns. A turn of the loop, not a wait for time to pass."""
    await asyncio.sleep(0)
