"""RedisBackend against a real redis-server of the test's own: the Lua scripts decide as the
in-memory window does, exactly under concurrency from several clients, settle reservations, and
survive Redis going away and coming back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.limits.backends import BackendUnavailable, MemoryBackend
from app.limits.redis_backend import RedisBackend
from app.limits.window import Charge, budget
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

RPM = budget("key", "alice", "requests", 3)
TPM = budget("key", "alice", "tokens", 100)
MODEL_RPM = budget("model", "llama", "requests", 20)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer.start(tmp_path) as server:
        yield server


def backend(server: RedisServer, prefix: str = "t:") -> RedisBackend:
    # What these tests check is the budget arithmetic, not the timeout: a generous one, so that
    # 100 connections opened at once on a loaded machine are not a failure (0.5 s was, once).
    return RedisBackend(server.url, timeout=5.0, prefix=prefix)


async def test_decisions_match_the_memory_backend(redis_server: RedisServer) -> None:
    redis = backend(redis_server)
    memory = MemoryBackend()
    steps = [  # (charges, admitted?)
        ([Charge(RPM, 1), Charge(TPM, 40)], True),
        ([Charge(RPM, 1), Charge(TPM, 40)], True),
        ([Charge(RPM, 1), Charge(TPM, 40)], False),  # tokens: 80 + 40 > 100
        ([Charge(RPM, 1), Charge(TPM, 20)], True),
        ([Charge(RPM, 1), Charge(TPM, 1)], False),  # requests: 3 of 3
        ([Charge(TPM, 101)], False),  # never fits
    ]
    try:
        for index, (charges, admitted) in enumerate(steps):
            got = await redis.acquire(charges)
            expected = await memory.acquire(charges)
            assert got.admitted is expected.admitted is admitted, index
            assert [t.used for t in got.tallies] == [t.used for t in expected.tallies], index
            for mine, theirs in zip(got.tallies, expected.tallies, strict=True):
                assert mine.wait == pytest.approx(theirs.wait, abs=0.5), index
                assert mine.reset == pytest.approx(theirs.reset, abs=0.5), index
        refused = await redis.acquire([Charge(RPM, 1)])
        assert 55 < refused.tallies[0].wait <= 60  # the oldest of the 3 leaves in ~60 s
    finally:
        await redis.aclose()


async def test_concurrent_clients_share_one_budget_exactly(redis_server: RedisServer) -> None:
    clients = [backend(redis_server) for _ in range(4)]  # as four worker processes would

    async def one(index: int) -> bool:
        decision = await clients[index % 4].acquire([Charge(MODEL_RPM, 1)])
        return decision.admitted

    try:
        results = await asyncio.gather(*(one(i) for i in range(100)))
    finally:
        for client in clients:
            await client.aclose()

    assert results.count(True) == 20
    assert redis_server.client().zcard("t:model:llama:requests") == 20


async def test_settle_replaces_the_reservation(redis_server: RedisServer) -> None:
    redis = backend(redis_server)
    store = redis_server.client()
    try:
        first = await redis.acquire([Charge(TPM, 90)])
        assert first.admitted
        assert not (await redis.acquire([Charge(TPM, 20)])).admitted

        redis.settle([TPM], first.entry_id, 15)
        await_settled = time.monotonic() + 5
        while int(store.hget("t:key:alice:tokens:units", "_total") or 0) != 15:
            assert time.monotonic() < await_settled, "settle never arrived"
            await asyncio.sleep(0.01)

        second = await redis.acquire([Charge(TPM, 20)])
        assert second.admitted
        assert second.tallies[0].used == 35
        assert store.hget("t:key:alice:tokens:units", first.entry_id) == b"15"
        assert 0 < store.pttl("t:key:alice:tokens") <= 61_000  # idle budgets expire
    finally:
        await redis.aclose()


async def test_redis_down_then_back(redis_server: RedisServer) -> None:
    redis = backend(redis_server)
    try:
        assert (await redis.acquire([Charge(RPM, 1)])).admitted
        redis_server.kill()

        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="Error"):
            await redis.acquire([Charge(RPM, 1)])
        assert time.monotonic() - started < 2.0  # refused fast, not hung

        redis_server.restart()  # same port, empty, and without the scripts
        decision = await redis.acquire([Charge(RPM, 1)])
        assert decision.admitted
        assert decision.tallies[0].used == 1  # the budget started again
    finally:
        await redis.aclose()
