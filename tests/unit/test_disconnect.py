"""DisconnectWatch: the work is cancelled when its client leaves, and fast work costs no task;
on a ClientConnection (the server protocol's), no work costs a task or a timer."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from starlette.types import Message

from app.coarse_timers import coarse_timers
from app.disconnect import ClientConnection, DisconnectWatch
from tests.waiting import until

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


def waiting_watches() -> int:
    return len(coarse_timers(asyncio.get_running_loop()))


async def test_fast_work_never_watches_the_client() -> None:
    client = Client()
    for _ in range(100):
        with DisconnectWatch(client.receive, after=0.05) as watch:
            await asyncio.sleep(0)
        assert not watch.client_gone
    assert client.calls == 0  # no watcher task ever started
    assert waiting_watches() == 0


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


async def test_a_watch_starts_once_the_work_has_run_for_after_seconds() -> None:
    loop = asyncio.get_running_loop()
    old, new = Client(), Client()
    began = loop.time()
    with DisconnectWatch(old.receive, after=0.1):
        while old.calls == 0:
            await asyncio.sleep(0.005)
        assert loop.time() - began >= 0.1  # never early
        with DisconnectWatch(new.receive, after=0.1):
            await asyncio.sleep(0)
            assert new.calls == 0  # begun just now: not due yet
            assert waiting_watches() == 1
    assert waiting_watches() == 0


async def test_a_watch_that_watched_is_freed_without_the_garbage_collector() -> None:
    """Its cancelled watcher must not keep a cycle: with thousands of requests in flight, each
    request's objects (its connection's too) would wait for a full collection (app.main tunes
    the collector to run those rarely)."""

    async def watch_once() -> weakref.ref[Client]:
        client = Client()
        with DisconnectWatch(client.receive, after=0):
            await until(lambda: client.calls == 1)  # the watcher is waiting for the client
        return weakref.ref(client)  # the watch holds the client (its receive) while it lives

    gc.collect()
    gc.disable()
    try:
        freed = await watch_once()
        await until(lambda: freed() is None)  # by reference counting, once the watcher ended
    finally:
        gc.enable()


async def test_a_watch_on_a_connection_costs_no_task_and_no_timer() -> None:
    client, connection = Client(), ClientConnection()
    tasks = len(asyncio.all_tasks())
    for _ in range(100):
        with DisconnectWatch(client.receive, connection, after=0) as watch:
            assert len(connection) == 1
            assert waiting_watches() == 0
            await asyncio.sleep(0)
            assert len(asyncio.all_tasks()) == tasks  # and none to come: no timer is armed
        assert not watch.client_gone
    assert client.calls == 0
    assert len(connection) == 0


async def test_work_is_cancelled_when_its_connection_is_lost() -> None:
    client, connection, other = Client(), ClientConnection(), ClientConnection()
    work_started = asyncio.Event()

    async def request(on: ClientConnection) -> str:
        with DisconnectWatch(client.receive, on, after=60) as watch:
            try:
                work_started.set()
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                return "cancelled, client gone" if watch.client_gone else "cancelled"
        return "finished"

    task, bystander = asyncio.create_task(request(connection)), asyncio.create_task(request(other))
    await work_started.wait()
    await until(lambda: len(connection) == len(other) == 1)
    connection.connection_lost()
    assert await task == "cancelled, client gone"
    assert client.calls == 0 and connection.lost and len(connection) == 0
    assert not bystander.done()  # another connection's request goes on
    bystander.cancel()
    assert await bystander == "cancelled"


async def test_work_that_begins_after_its_connection_was_lost_is_cancelled() -> None:
    client, connection = Client(), ClientConnection()
    connection.connection_lost()
    with (
        DisconnectWatch(client.receive, connection) as watch,
        pytest.raises(asyncio.CancelledError),
    ):
        await asyncio.sleep(60)
    assert watch.client_gone
    task = asyncio.current_task()
    assert task is not None and task.uncancel() == 0  # as serving does, having caught it
    assert client.calls == 0


async def test_work_that_ends_before_its_lost_connection_is_noticed_is_not_cancelled() -> None:
    client, connection = Client(), ClientConnection()
    connection.connection_lost()
    with DisconnectWatch(client.receive, connection) as watch:
        assert waiting_watches() == 1  # the notice, due at the next wait
    # No wait inside: the notice is taken back on the way out, so no later wait is cancelled.
    assert waiting_watches() == 0
    assert not watch.client_gone
