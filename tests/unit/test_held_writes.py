"""HeldWrites: writes wait for the end of the step, but never more than `limit` of them."""

from __future__ import annotations

import asyncio
from typing import Any

from app.held_writes import LIMIT, HeldWrites, held_writes
from app.server_protocol import CoalescingTransport
from tests.recording_transport import RecordingTransport
from tests.waiting import next_step


async def test_held_writes_run_at_the_end_of_the_step_in_the_order_held() -> None:
    held = HeldWrites(asyncio.get_running_loop(), limit=10)
    ran: list[int] = []
    for n in range(3):
        held.hold(lambda n=n: ran.append(n))
    assert ran == []
    await next_step()
    assert ran == [0, 1, 2]


async def test_at_the_limit_the_held_writes_run_at_once_and_the_next_ones_wait_again() -> None:
    held = HeldWrites(asyncio.get_running_loop(), limit=3)
    ran: list[int] = []
    for n in range(7):
        held.hold(lambda n=n: ran.append(n))
        assert len(ran) == 3 * ((n + 1) // 3)  # released in threes, as each three are held
    await next_step()
    assert ran == list(range(7))


async def test_a_failing_write_does_not_keep_the_others_and_goes_to_the_loops_handler() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        held = HeldWrites(loop, limit=2)
        ran: list[str] = []

        def broken() -> None:
            raise ConnectionResetError("gone")

        held.hold(broken)
        held.hold(lambda: ran.append("next"))  # the limit: released inside this call, no raise
        assert ran == ["next"]
        assert [type(context["exception"]) for context in reported] == [ConnectionResetError]
    finally:
        loop.set_exception_handler(None)


async def test_one_loop_has_one() -> None:
    loop = asyncio.get_running_loop()
    assert held_writes(loop) is held_writes(loop)
    assert held_writes(loop).limit == LIMIT


async def test_answers_to_many_connections_in_one_step_leave_before_the_step_ends() -> None:
    loop = asyncio.get_running_loop()
    inners = [RecordingTransport() for _ in range(LIMIT + 1)]
    for n, inner in enumerate(inners):
        CoalescingTransport(inner, loop).write(b"answer %d" % n)
    assert [inner.writes for inner in inners[:LIMIT]] == [[b"answer %d" % n] for n in range(LIMIT)]
    assert inners[LIMIT].writes == []  # the next batch waits for the end of the step
    await next_step()
    assert inners[LIMIT].writes == [b"answer %d" % LIMIT]
