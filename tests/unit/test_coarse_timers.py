"""CoarseTimers: never early, at most a slot late, in order; cancelled ones never run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.coarse_timers import CoarseTimers, coarse_timers
from tests.waiting import until

pytestmark = pytest.mark.timeout(10)


async def test_a_timer_runs_with_its_args_not_before_its_time() -> None:
    loop = asyncio.get_running_loop()
    timers = CoarseTimers(loop)
    ran: list[tuple[str, float]] = []
    when = loop.time() + 0.05
    timers.call_at(when, lambda name: ran.append((name, loop.time())), "a")
    await until(lambda: ran)
    assert ran[0][0] == "a"
    assert ran[0][1] >= when - 1e-6  # (a float division away from exact)
    assert len(timers) == 0


async def test_timers_run_in_time_order_whatever_order_they_were_set_in() -> None:
    loop = asyncio.get_running_loop()
    timers = CoarseTimers(loop)
    ran: list[str] = []
    now = loop.time()
    timers.call_at(now + 0.09, ran.append, "third")
    timers.call_at(now + 0.03, ran.append, "first")  # earlier than the armed slot: re-arms
    timers.call_at(now + 0.06, ran.append, "second")
    timers.call_at(now + 0.06, ran.append, "second, set later")  # same slot: in the order set
    await until(lambda: len(ran) == 4)
    assert ran == ["first", "second", "second, set later", "third"]


async def test_a_cancelled_timer_never_runs_and_cancelling_twice_or_late_is_harmless() -> None:
    loop = asyncio.get_running_loop()
    timers = CoarseTimers(loop)
    ran: list[str] = []
    dropped = timers.call_later(0.02, ran.append, "dropped")
    kept = timers.call_later(0.04, ran.append, "kept")
    assert len(timers) == 2
    dropped.cancel()
    dropped.cancel()
    assert len(timers) == 1
    await until(lambda: ran)
    kept.cancel()  # it ran already
    assert ran == ["kept"]
    assert len(timers) == 0


async def test_a_slot_emptied_by_cancels_wakes_nothing_and_later_timers_still_run() -> None:
    loop = asyncio.get_running_loop()
    timers = CoarseTimers(loop)
    ran: list[str] = []
    for _ in range(100):  # what requests do: set a deadline, finish, cancel it
        timers.call_later(0.01, ran.append, "early").cancel()
    timers.call_later(0.05, ran.append, "late")
    await until(lambda: ran)
    assert ran == ["late"]


async def test_a_failing_callback_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    timers = CoarseTimers(loop)
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    ran: list[str] = []
    when = loop.time() + 0.02

    def fail() -> None:
        raise RuntimeError("boom")

    try:
        timers.call_at(when, fail)
        timers.call_at(when, ran.append, "after")
        await until(lambda: ran)
    finally:
        loop.set_exception_handler(None)
    assert ran == ["after"]
    assert isinstance(reported[0]["exception"], RuntimeError)


async def test_a_timer_set_from_a_running_timer_runs_too() -> None:
    loop = asyncio.get_running_loop()
    timers = CoarseTimers(loop)
    ran: list[str] = []

    def chain() -> None:
        ran.append("first")
        timers.call_later(0.0, ran.append, "second")

    timers.call_later(0.01, chain)
    await until(lambda: len(ran) == 2)
    assert ran == ["first", "second"]


async def test_one_set_of_timers_per_loop() -> None:
    loop = asyncio.get_running_loop()
    assert coarse_timers(loop) is coarse_timers(loop)
