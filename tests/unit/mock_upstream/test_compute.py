"""The mock upstream as a GPU server: each call computes for call_ms + prompt_ms per prompt,
at most max_calls at once. Its sleeps are replaced by waits the test releases, so the times
and the turns are data."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import orjson
import pytest

from app.mock_upstream import FaultPlan, create_mock_app
from tests.waiting import until

_REAL_SLEEP = asyncio.sleep
_COMPUTE = 0.05  # the tests' compute times are longer; shorter sleeps are the loop's turns


class HeldSleeps:
    """Each sleep of a call's compute time is recorded and waits until the test releases it;
    shorter ones (the tests' own turns of the loop) pass."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.release = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        if seconds < _COMPUTE:
            await _REAL_SLEEP(seconds)
            return
        self.seconds.append(seconds)
        await self.release.wait()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> HeldSleeps:
    held = HeldSleeps()
    monkeypatch.setattr(asyncio, "sleep", held)  # the server calls asyncio.sleep(...)
    return held


def body(count: int) -> dict[str, Any]:
    return {"model": "m", "params": {"prompt": [f"p{i}" for i in range(count)]}}


async def post_all(plan: FaultPlan, counts: list[int], sleeps: HeldSleeps) -> list[int]:
    """Send one call per count of prompts at once; once the sleeps so far are recorded,
    release them all; the answers' numbers of outputs."""
    transport = httpx.ASGITransport(app=create_mock_app(plan=plan))
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        calls = [asyncio.ensure_future(client.post("/", json=body(n))) for n in counts]
        await until(lambda: len(sleeps.seconds) >= min(len(counts), plan.max_calls or 99))
        sleeps.release.set()
        answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [200] * len(counts)
    return [len(orjson.loads(a.content)["data"]) for a in answers]


async def test_a_call_computes_for_its_cost_plus_each_prompts(sleeps: HeldSleeps) -> None:
    plan = FaultPlan(call_ms=100, prompt_ms=2)

    assert await post_all(plan, [1, 10], sleeps) == [1, 10]
    assert sorted(sleeps.seconds) == [pytest.approx(0.102), pytest.approx(0.12)]


async def test_calls_beyond_max_calls_wait_for_a_turn(sleeps: HeldSleeps) -> None:
    plan = FaultPlan(call_ms=100, max_calls=2)
    transport = httpx.ASGITransport(app=create_mock_app(plan=plan))
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        calls = [asyncio.ensure_future(client.post("/", json=body(1))) for _ in range(3)]
        await until(lambda: len(sleeps.seconds) == 2)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(sleeps.seconds) == 2  # the third call queues
        sleeps.release.set()
        answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [200] * 3
    assert sleeps.seconds == [0.1] * 3


def test_the_plan_says_what_calls_cost() -> None:
    plan = FaultPlan(call_ms=100, prompt_ms=2, max_calls=4)
    assert "calls compute 100 ms + 2 ms per prompt (4 at once)" in str(plan)
    assert not FaultPlan().computes


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"call_ms": -1}, "the call time must be a finite number of milliseconds >= 0"),
        ({"prompt_ms": float("inf")}, "the prompt time must be a finite number"),
        ({"max_calls": 0}, "max calls must be at least 1, not 0"),
    ],
)
def test_bad_costs_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        FaultPlan(**fields)
