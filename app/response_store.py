"""Stored responses of the Responses API: what `previous_response_id` continues from, and what
`GET` / `DELETE /v1/responses/{id}` read and remove.

A stored response is the Response object as it was answered and the conversation up to and
including it (turns in Hugging Face's form, app.generation), so the next request continues
without the client sending the history again. Each is stored under its owner, the label of the
API key that made it ("" when the proxy is open): a response is visible only to that key, and
an id under another owner is simply not found.

Two stores: in memory (one process; bounded by `max_entries`, oldest first out, each entry
for `ttl` seconds), or in Redis when the proxy has a Redis URL (shared by replicas; each entry
a string that expires after `ttl`). A Redis that does not answer raises StoreUnavailable.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError


class StoreUnavailable(Exception):
    """The store's backend (Redis) did not answer."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: dict[str, Any]  # the Response object as answered; its "id" is the key
    turns: list[dict[str, Any]]  # the conversation through this response's output
    input_items: list[dict[str, Any]] = field(default_factory=list)  # its input, as listed back

    @property
    def id(self) -> str:
        return str(self.response["id"])


class ResponseStore(Protocol):
    async def put(self, owner: str, stored: StoredResponse) -> None: ...

    async def get(self, owner: str, response_id: str) -> StoredResponse | None: ...

    async def delete(self, owner: str, response_id: str) -> bool: ...

    async def aclose(self) -> None: ...


def open_response_store(
    redis_url: str | None,
    *,
    ttl: float,
    max_entries: int,
    timeout: float = 1.0,
    prefix: str = "clp:response",
) -> ResponseStore:
    """The store the proxy keeps responses in: Redis when it has a URL, else this process's
    memory. Nothing is connected yet: redis-py connects on the first call."""
    if redis_url is None:
        return MemoryResponseStore(max_entries=max_entries, ttl=ttl)
    redis = Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    return RedisResponseStore(redis, ttl=ttl, prefix=prefix)


class MemoryResponseStore:
    """In this process: at most `max_entries`, each for `ttl` seconds."""

    def __init__(
        self, *, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[float, StoredResponse]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl
        self._clock = clock

    async def put(self, owner: str, stored: StoredResponse) -> None:
        key = (owner, stored.id)
        self._entries[key] = (self._clock() + self._ttl, stored)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        entry = self._entries.get((owner, response_id))
        if entry is None:
            return None
        expires, stored = entry
        if expires <= self._clock():
            del self._entries[(owner, response_id)]
            return None
        return stored

    async def delete(self, owner: str, response_id: str) -> bool:
        if await self.get(owner, response_id) is None:  # absent, or expired just now
            return False
        del self._entries[(owner, response_id)]
        return True

    async def aclose(self) -> None:
        self._entries.clear()


class RedisResponseStore:
    """In Redis, shared by every replica on it: one string per response, expiring after `ttl`."""

    def __init__(self, redis: Redis, *, ttl: float, prefix: str = "clp:response") -> None:
        self._redis = redis
        self._ttl_ms = max(1, int(ttl * 1000))
        self._prefix = prefix

    def _key(self, owner: str, response_id: str) -> str:
        # The owner's label may be any name: hashed, it makes a key of fixed form.
        digest = hashlib.sha256(owner.encode()).hexdigest()[:16]
        return f"{self._prefix}:{digest}:{response_id}"

    async def put(self, owner: str, stored: StoredResponse) -> None:
        value = orjson.dumps(
            {"response": stored.response, "turns": stored.turns, "items": stored.input_items}
        )
        try:
            await self._redis.set(self._key(owner, stored.id), value, px=self._ttl_ms)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis did not store the response: {exc}") from exc

    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        try:
            value = await self._redis.get(self._key(owner, response_id))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc
        if value is None:
            return None
        data = orjson.loads(value)
        return StoredResponse(
            response=data["response"], turns=data["turns"], input_items=data.get("items", [])
        )

    async def delete(self, owner: str, response_id: str) -> bool:
        try:
            removed = await self._redis.delete(self._key(owner, response_id))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc
        return bool(removed)

    async def aclose(self) -> None:
        await self._redis.aclose()
