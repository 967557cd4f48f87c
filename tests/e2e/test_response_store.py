"""Stored responses: in memory (bounded, expiring, per owner) and in a real redis-server
(shared, expiring, per owner; a dead Redis is StoreUnavailable, never a wrong answer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.response_store import (
    MemoryResponseStore,
    RedisResponseStore,
    ResponseStore,
    StoredResponse,
    StoreUnavailable,
)
from tests.redis_server import RedisServer

ALICE, BOB = "alice", "key-0a1b2c3d"


def stored(response_id: str, text: str = "hi") -> StoredResponse:
    response = {"id": response_id, "object": "response", "output": [{"type": "message"}]}
    turns = [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]
    return StoredResponse(response=response, turns=turns)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer.start(tmp_path) as server:
        yield server


@pytest.fixture
async def redis_store(redis_server: RedisServer) -> AsyncIterator[RedisResponseStore]:
    client = Redis.from_url(redis_server.url, socket_timeout=5.0)
    try:
        yield RedisResponseStore(client, ttl=600)
    finally:
        await client.aclose()


async def check_owner_and_delete(store: ResponseStore) -> None:
    await store.put(ALICE, stored("resp_1", "Zürich ☀"))
    found = await store.get(ALICE, "resp_1")
    assert found == stored("resp_1", "Zürich ☀")
    assert await store.get(BOB, "resp_1") is None  # another key's response is not found
    assert await store.delete(BOB, "resp_1") is False
    assert await store.delete(ALICE, "resp_1") is True
    assert await store.get(ALICE, "resp_1") is None
    assert await store.delete(ALICE, "resp_1") is False


async def test_memory_store_keeps_each_owners_responses_apart() -> None:
    await check_owner_and_delete(MemoryResponseStore(max_entries=10, ttl=60))


async def test_memory_store_forgets_the_oldest_beyond_its_bound_and_after_the_ttl() -> None:
    clock = Clock()
    store = MemoryResponseStore(max_entries=2, ttl=60, clock=clock)
    for name in ("resp_a", "resp_b", "resp_c"):
        await store.put(ALICE, stored(name))
    assert await store.get(ALICE, "resp_a") is None
    assert await store.get(ALICE, "resp_b") is not None
    clock.now += 59.9
    assert await store.get(ALICE, "resp_c") is not None
    clock.now += 0.2
    assert await store.get(ALICE, "resp_c") is None


async def test_redis_store_keeps_each_owners_responses_apart(
    redis_store: RedisResponseStore,
) -> None:
    await check_owner_and_delete(redis_store)


async def test_redis_store_is_shared_by_every_client_of_the_same_redis(
    redis_server: RedisServer, redis_store: RedisResponseStore
) -> None:
    await redis_store.put(ALICE, stored("resp_shared"))
    other = Redis.from_url(redis_server.url, socket_timeout=5.0)
    try:
        replica = RedisResponseStore(other, ttl=600)
        assert await replica.get(ALICE, "resp_shared") == stored("resp_shared")
    finally:
        await other.aclose()


async def test_redis_entries_expire(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url, socket_timeout=5.0)
    try:
        store = RedisResponseStore(client, ttl=0.2)
        await store.put(ALICE, stored("resp_short"))
        ttl_ms = await client.pttl(store._key(ALICE, "resp_short"))
        assert 0 < ttl_ms <= 200
        for _ in range(200):  # Redis expires it by its own clock: wait for that, at most 10 s
            if await store.get(ALICE, "resp_short") is None:
                break
            await asyncio.sleep(0.05)
        assert await store.get(ALICE, "resp_short") is None
    finally:
        await client.aclose()


async def test_a_dead_redis_is_store_unavailable(
    redis_server: RedisServer, redis_store: RedisResponseStore
) -> None:
    redis_server.kill()
    with pytest.raises(StoreUnavailable):
        await redis_store.get(ALICE, "resp_1")
    with pytest.raises(StoreUnavailable):
        await redis_store.put(ALICE, stored("resp_1"))
