"""DisconnectWatch: the work is cancelled when its client leaves, and fast work costs no task."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from app import disconnect
from app.disconnect import DisconnectWatch

pytestmark = pytest.mark.timeout(10)


class Client:
    """An ASGI receive channel whose client leaves when told to; counts the calls."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.calls = 0

    async def receive(self) -> Message:
        self.calls += 1
        await self.gone.wait()
        return {"type": "http.disconnect"}


def watches_of(after: float) -> int:
    sweeper = disconnect._sweepers[asyncio.get_running_loop()][after]
    return len(sweeper._began)


async def test_fast_work_never_watches_the_client() -> None:
    client = Client()
    for _ in range(100):
        with DisconnectWatch(client.receive, after=0.05) as watch:
            await asyncio.sleep(0)
        assert not watch.client_gone
    assert client.calls == 0  # no watcher task ever started
    assert watches_of(0.05) == 0


async def test_slow_work_is_cancelled_when_the_client_leaves() -> None:
    client = Client()
    work_started = asyncio.Event()

    async def request() -> str:
        with DisconnectWatch(client.receive, after=0.01) as watch:
            try:
                work_started.set()
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                return "cancelled, client gone" if watch.client_gone else "cancelled"
        return "finished"

    task = asyncio.create_task(request())
    await work_started.wait()
    while client.calls == 0:  # the sweep started the watcher
        await asyncio.sleep(0.005)
    client.gone.set()
    assert await task == "cancelled, client gone"


async def test_slow_work_that_ends_stops_its_watcher() -> None:
    client = Client()
    with DisconnectWatch(client.receive, after=0.01) as watch:
        while client.calls == 0:
            await asyncio.sleep(0.005)
        watcher = watch._watcher
    assert watcher is not None
    with pytest.raises(asyncio.CancelledError):
        await watcher
    assert not watch.client_gone


async def test_the_sweep_starts_only_the_watches_that_are_due() -> None:
    old, new = Client(), Client()
    with DisconnectWatch(old.receive, after=0.2):
        while old.calls == 0:
            await asyncio.sleep(0.005)  # about 0.2 s: `old` is due at the first sweep …
        with DisconnectWatch(new.receive, after=0.2):
            await asyncio.sleep(0)
            assert new.calls == 0  # … `new` is not, and waits for a later one
            assert watches_of(0.2) == 1
    assert watches_of(0.2) == 0
