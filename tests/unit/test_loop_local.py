"""LoopLocal: one object per loop, made on first use; closed loops' objects dropped."""

from __future__ import annotations

import asyncio

from app.loop_local import LoopLocal


def test_one_object_per_loop_and_closed_loops_are_dropped_when_a_new_loop_asks() -> None:
    made: list[asyncio.AbstractEventLoop] = []

    def make(loop: asyncio.AbstractEventLoop) -> list[int]:
        made.append(loop)
        return []

    local = LoopLocal(make)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert local.get(first) is local.get(first)
        assert local.get(second) is not local.get(first)
        assert made == [first, second]
        second.close()
        assert local.loops() == [first, second]  # nobody asked since
        third = asyncio.new_event_loop()
        try:
            local.get(third)  # a new loop's first use drops the closed ones
            assert local.loops() == [first, third]
            local.get(first)
            assert made == [first, second, third]  # the open loop's object was kept
        finally:
            third.close()
    finally:
        first.close()
        second.close()
