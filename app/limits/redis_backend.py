"""Budgets in Redis, shared by every worker and replica that uses the same Redis.

Each budget's log is a sorted set (member: the request's entry id, score: when, in ms by the
Redis server's clock, so replicas need no synchronised clocks); a token budget also has a hash
of each entry's units and their `_total`. One Lua script trims every budget of the request to
the last minute, checks them all and adds the request to all — or to none — atomically: Redis
runs a script alone, so concurrent requests from any number of processes are counted exactly.
A second script settles a token reservation. Keys expire a second after their last entry.

Every call has a short timeout; any failure is raised as `BackendUnavailable` (the limiter
applies the policy). redis-py reconnects by itself once Redis answers again, and reloads the
scripts (EVALSHA falls back to EVAL) after a Redis restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from app.ids import IdGenerator
from app.limits.backends import BackendUnavailable
from app.limits.window import WINDOW_SECONDS, Budget, Charge, Decision, Tally

log = logging.getLogger("app.limits")

# Shared by both scripts: the server's time in ms, and the window's start.
_CLOCK = """
local window = tonumber(ARGV[1])
local entry = ARGV[2]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local cutoff = now - window
"""

# KEYS: per charge, its log (sorted set) and its units hash. ARGV: window ms, entry id, then
# per charge: limit, units, weighted (1 for tokens). Returns: admitted (1/0), then per charge
# used, wait ms (-1: never fits), reset ms — times as strings, as Redis truncates numbers.
ACQUIRE = (
    _CLOCK
    + """
local n = #KEYS / 2

local function trim(log, units_key, weighted)
  if not weighted then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
    return redis.call('ZCARD', log)
  end
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
  for first = 1, #old, 512 do
    local chunk = {unpack(old, first, math.min(first + 511, #old))}
    local freed = 0
    for _, value in ipairs(redis.call('HMGET', units_key, unpack(chunk))) do
      freed = freed + (tonumber(value) or 0)
    end
    redis.call('HDEL', units_key, unpack(chunk))
    redis.call('HINCRBY', units_key, '_total', -freed)
  end
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
  end
  return tonumber(redis.call('HGET', units_key, '_total') or '0')
end

local function wait_for(log, units_key, need, weighted)
  if not weighted then
    local oldest = redis.call('ZRANGE', log, need - 1, need - 1, 'WITHSCORES')
    return tonumber(oldest[2]) + window - now
  end
  local freed, start = 0, 0
  while true do
    local page = redis.call('ZRANGE', log, start, start + 255, 'WITHSCORES')
    if #page == 0 then
      return -1
    end
    local members = {}
    for j = 1, #page, 2 do
      members[#members + 1] = page[j]
    end
    local values = redis.call('HMGET', units_key, unpack(members))
    for j = 1, #members do
      freed = freed + (tonumber(values[j]) or 0)
      if freed >= need then
        return tonumber(page[2 * j]) + window - now
      end
    end
    start = start + 256
  end
end

local function reset(log)
  local newest = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
  if #newest == 0 then
    return 0
  end
  return tonumber(newest[2]) + window - now
end

local used, admitted = {}, true
for i = 1, n do
  used[i] = trim(KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 * i + 2] == '1')
  if used[i] + tonumber(ARGV[3 * i + 1]) > tonumber(ARGV[3 * i]) then
    admitted = false
  end
end

local result = {admitted and 1 or 0}
for i = 1, n do
  local log, units_key = KEYS[2 * i - 1], KEYS[2 * i]
  local limit, units = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local weighted = ARGV[3 * i + 2] == '1'
  local wait = 0
  if admitted then
    redis.call('ZADD', log, now, entry)
    redis.call('PEXPIRE', log, window + 1000)
    if weighted then
      redis.call('HSET', units_key, entry, units)
      redis.call('HINCRBY', units_key, '_total', units)
      redis.call('PEXPIRE', units_key, window + 1000)
    end
    used[i] = used[i] + units
  elseif used[i] + units > limit then
    if units > limit then
      wait = -1
    else
      wait = wait_for(log, units_key, used[i] + units - limit, weighted)
    end
  end
  result[#result + 1] = used[i]
  result[#result + 1] = tostring(wait)
  result[#result + 1] = tostring(reset(log))
end
return result
"""
)

# KEYS: per token budget, its log and units hash. ARGV: window ms, entry id, units.
# Where the entry still counts, its units are replaced; otherwise `units` count from now.
SETTLE = (
    _CLOCK
    + """
local units = tonumber(ARGV[3])
for i = 1, #KEYS, 2 do
  local log, units_key = KEYS[i], KEYS[i + 1]
  local at = redis.call('ZSCORE', log, entry)
  local old = tonumber(redis.call('HGET', units_key, entry) or '0')
  if at and tonumber(at) > cutoff then
    redis.call('HSET', units_key, entry, units)
    redis.call('HINCRBY', units_key, '_total', units - old)
  else
    if at then
      redis.call('ZREM', log, entry)
      redis.call('HDEL', units_key, entry)
      redis.call('HINCRBY', units_key, '_total', -old)
    end
    if units > 0 then
      redis.call('ZADD', log, now, entry)
      redis.call('HSET', units_key, entry, units)
      redis.call('HINCRBY', units_key, '_total', units)
    end
  end
  redis.call('PEXPIRE', log, window + 1000)
  redis.call('PEXPIRE', units_key, window + 1000)
end
return 1
"""
)

_WINDOW_MS = str(int(WINDOW_SECONDS * 1000))


class RedisBackend:
    """The budgets' logs in Redis at `url`, under keys starting with `prefix`."""

    def __init__(self, url: str, *, timeout: float, prefix: str) -> None:
        self.description = f"redis at {redis_location(url)}"
        self._prefix = prefix
        self._client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One more try on a broken connection (a pooled one after a Redis restart); never
            # on a timeout, which would double the wait.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._acquire = self._client.register_script(ACQUIRE)
        self._settle = self._client.register_script(SETTLE)
        self._pending: set[asyncio.Task[None]] = set()
        self._ids = IdGenerator()  # entry ids unique across processes: members of shared sets

    def _keys(self, budget: Budget) -> tuple[str, str]:
        log_key = self._prefix + budget.name
        return log_key, log_key + ":units"

    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        entry_id = self._ids.next_hex()
        keys: list[str] = []
        args: list[str | int] = [_WINDOW_MS, entry_id]
        for charge in charges:
            keys.extend(self._keys(charge.budget))
            args += [charge.budget.limit, charge.units, int(charge.budget.kind == "tokens")]
        try:
            result = await self._acquire(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return _decision(result, entry_id)

    def settle(self, budgets: Sequence[Budget], entry_id: str, units: int) -> None:
        """Settle in the background: the answer does not wait for the bookkeeping."""
        keys = [key for budget in budgets for key in self._keys(budget)]
        task = asyncio.get_running_loop().create_task(self._settle_now(keys, entry_id, units))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle_now(self, keys: list[str], entry_id: str, units: int) -> None:
        try:
            await self._settle(keys=keys, args=[_WINDOW_MS, entry_id, units])
        except (RedisError, OSError) as exc:
            # The reservation stays until it leaves the window: counted high, never low.
            log.debug("could not settle token reservation %s: %s", entry_id, exc)

    async def aclose(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending, timeout=1.0)
        await self._client.aclose()


def _decision(result: list[bytes | int], entry_id: str) -> Decision:
    """The acquire script's answer: admitted, then used / wait ms / reset ms per charge."""
    tallies = []
    for index in range(1, len(result), 3):
        wait_ms = float(result[index + 1])
        tallies.append(
            Tally(
                used=int(result[index]),
                wait=math.inf if wait_ms < 0 else wait_ms / 1000,
                reset=float(result[index + 2]) / 1000,
            )
        )
    return Decision(bool(int(result[0])), tallies, entry_id)


def redis_location(url: str) -> str:
    """Where a Redis URL points, without its password: `host:port/db`."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}"
