"""The exact response cache: a model that says `cache` answers a request it answered before
from what it kept, without asking the upstream again.

What is kept is what `app.serving.generate` finished (the choices and the usage), so a hit
answers through any front door, as JSON or as a stream, exactly as a live answer would. The
key (`cache_key`) is a hash of everything that decides that answer once the model's defaults
are filled in: the model (its name, its `upstream_model`, how its outputs are finished), the
prompts as rendered, the sampling parameters, the stop sequences, the tools and answer format
asked for, the route's kind (chat or completions, echo), and whose entry it is: the client
key's label, or everybody's under `cache_scope: global`. A model that forwards the client's
own key upstream (`forward_client_auth`) keys on that key too: the upstream decides who may
ask. Only requests at temperature 0 are cached unless the model sets `any_temperature`.

Per request (`Cache-Control`): `no-cache` skips the lookup (x-cache BYPASS, the answer still
kept), `no-store` keeps nothing. Identical misses at the same time in one process make one
upstream call (`Flight`): the first runs it in a task of its own, the others wait for it; a
client that leaves stops waiting, and the call is cancelled only when nobody waits any more.
A call that fails fails every waiter the same way; one that was cancelled under them (the
proxy stopping) leaves each to make its own call.

Two stores: each model's entries in this process (an LRU with a TTL: cachetools' TTLCache),
or in Redis when the proxy has a Redis URL (shared by every replica: one compact JSON string
per entry, expiring after `ttl`). A Redis that does not answer makes a lookup a miss and a
write a no-op (counted in proxy_cache_errors); the request is served either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import fields
from typing import TYPE_CHECKING, Literal, Protocol

import orjson
from cachetools import TTLCache
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import CACHE_COALESCED, CACHE_ERRORS
from app.output.types import ToolCall
from app.translate import Choice

if TYPE_CHECKING:
    from app.config import CacheConfig
    from app.routing import ModelRoute
    from app.serving import Finished, Generation

log = logging.getLogger("app.response_cache")

Outcome = Literal["HIT", "MISS", "BYPASS"]
Clock = Callable[[], float]
Produce = Callable[[], Awaitable["Finished"]]

GLOBAL_OWNER = "*"  # never a key's label: labels start with a letter or digit
REDIS_TIMEOUT = 1.0  # seconds for one Redis call; a lookup that takes longer is a miss
_KEY_VERSION = b"clp-cache-1"  # changes when what an entry holds changes


def cache_directives(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bool, bool]:
    """(no-cache, no-store) from a request's raw headers: every Cache-Control line, each a
    comma-separated list of directives, any case (RFC 9111 §5.2.1)."""
    no_cache = no_store = False
    for name, value in headers:
        if name != b"cache-control":
            continue
        for part in value.split(b","):
            directive = part.partition(b"=")[0].strip().lower()
            no_cache = no_cache or directive == b"no-cache"
            no_store = no_store or directive == b"no-store"
    return no_cache, no_store


def model_fingerprint(route: ModelRoute) -> bytes:
    """What of a model's config decides its answers beyond the request: its name, the upstream
    model, how outputs are finished and counted. Deployments of one model are taken to serve
    the same model, whatever `upstream_model` each names."""
    config = route.config
    parts = [
        config.name,
        route.upstream_model,
        config.strip_prompt,
        str(config.tokenizer or ""),
        str(config.output_retries),
    ]
    return orjson.dumps(parts)


def cache_key(job: Generation, owner: str, fingerprint: bytes) -> str:
    """The entry's key: a BLAKE2b hash of everything that decides the answer (module
    docstring). `owner` is the client key's label ("" without keys) or GLOBAL_OWNER."""
    sampling = job.sampling
    forwarded = ""
    if job.route.config.forward_client_auth and job.client_key:
        forwarded = hashlib.sha256(job.client_key.encode()).hexdigest()
    material = orjson.dumps(
        [
            owner,
            forwarded,
            job.chat,
            job.echo,
            job.counted_prompts,
            _layout(job.prompts, job.counted_prompts),
            # as numbers of one type each: 0 and 0.0 are the same temperature
            [
                int(sampling.max_tokens),
                float(sampling.temperature),
                float(sampling.top_p),
                int(sampling.top_k),
            ],
            job.stops,
            job.output,  # a dataclass: orjson writes its fields (tools, format, schema, ...)
            job.prefill,
        ]
    )
    digest = hashlib.blake2b(_KEY_VERSION, digest_size=20)
    digest.update(fingerprint)
    digest.update(material)
    return digest.hexdigest()


def _layout(prompts: list[str], counted: list[str]) -> int | list[int | str]:
    """Which counted prompt each prompt sent is: the choices' count when all are the one
    prompt (chat with `n`), else their indexes (a text where a prompt is not among them)."""
    if len(counted) == 1 and all(prompt == counted[0] for prompt in prompts):
        return len(prompts)
    index = {text: position for position, text in enumerate(counted)}
    return [index.get(prompt, prompt) for prompt in prompts]


# The stores


class CacheStore(Protocol):
    async def get(self, key: str) -> Finished | None: ...

    async def put(self, key: str, finished: Finished) -> None: ...


class StoreUnavailable(Exception):
    """The store's backend (Redis) did not answer."""


class MemoryCacheStore:
    """One model's entries in this process: at most `max_entries`, the least recently used
    out first, each for `ttl` seconds by `clock`."""

    def __init__(self, *, max_entries: int, ttl: float, clock: Clock = time.monotonic) -> None:
        self._entries: TTLCache[str, Finished] = TTLCache(max_entries, ttl, timer=clock)

    async def get(self, key: str) -> Finished | None:
        finished = self._entries.get(key)
        if finished is None:
            return None
        # Each answer gets its own lists: a door may build on them; the choices are not changed.
        return type(finished)(list(finished.choices), dict(finished.usage))

    async def put(self, key: str, finished: Finished) -> None:
        self._entries[key] = type(finished)(list(finished.choices), dict(finished.usage))

    def __len__(self) -> int:
        return len(self._entries)


class RedisCacheStore:
    """One model's entries in Redis, shared by every replica: a string per entry, expiring
    after `ttl`."""

    def __init__(self, redis: Redis, *, ttl: float, prefix: str = "clp:cache:") -> None:
        self._redis = redis
        self._ttl_ms = max(1, int(ttl * 1000))
        self._prefix = prefix

    async def get(self, key: str) -> Finished | None:
        try:
            value = await self._redis.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc
        return None if value is None else decode_finished(value)

    async def put(self, key: str, finished: Finished) -> None:
        value = encode_finished(finished)
        try:
            await self._redis.set(self._prefix + key, value, px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis did not store the entry: {exc}") from exc


def encode_finished(finished: Finished) -> bytes:
    """A finished generation as compact JSON: [usage, [choice, ...]], each choice an object of
    its fields (orjson writes dataclasses), so that a field added to Choice later is kept and
    an entry written before it reads with its default."""
    usage = finished.usage
    counts = [usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]]
    return orjson.dumps([counts, finished.choices])


_CHOICE_FIELDS = frozenset(field.name for field in fields(Choice))


def decode_finished(value: bytes | str) -> Finished:
    """`encode_finished`'s inverse (fields this version does not know are left out)."""
    from app.serving import Finished

    (prompt, completion, total), rows = orjson.loads(value)
    choices = []
    for row in rows:
        known = {name: item for name, item in row.items() if name in _CHOICE_FIELDS}
        calls = known.get("calls")
        if calls is not None:
            known["calls"] = [ToolCall(**call) for call in calls]
        choices.append(Choice(**known))
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    return Finished(choices, usage)


# Single flight


class Flight:
    """One upstream call that identical requests wait for. It runs in a task of its own, so
    that the client who started it may leave without cancelling it for the others; it is
    cancelled when the last one waiting leaves."""

    __slots__ = ("task", "waiting")

    def __init__(self, task: asyncio.Task[Finished]) -> None:
        self.task = task
        self.waiting = 0

    async def join(self) -> Finished:
        """The call's answer, or its error; CancelledError when this request is cancelled, or
        when the call was (the caller then makes its own)."""
        self.waiting += 1
        try:
            return await asyncio.shield(self.task)
        finally:
            self.waiting -= 1
            if not self.waiting and not self.task.done():
                self.task.cancel()  # nobody wants the answer any more


# A model's cache and one request's run through it


class ModelCache:
    """One model's cache: its settings, its store, its identical calls in flight."""

    def __init__(self, route: ModelRoute, store: CacheStore) -> None:
        config = route.config
        settings = config.cache
        assert settings is not None
        self.model = config.name
        self.settings: CacheConfig = settings
        self.shared = config.cache_scope == "global"
        self.fingerprint = model_fingerprint(route)
        self.store = store
        self.flights: dict[str, Flight] = {}

    def run_for(self, job: Generation, owner: str, headers: Iterable[tuple[bytes, bytes]]) -> Run:
        """How this request goes through the cache; the key hashed now if it is to be used."""
        no_cache, no_store = cache_directives(headers)
        if (no_cache and no_store) or not (
            job.sampling.temperature == 0 or self.settings.any_temperature
        ):
            return Run(self, None, lookup=False, store=False)
        key = cache_key(job, GLOBAL_OWNER if self.shared else owner, self.fingerprint)
        return Run(self, key, lookup=not no_cache, store=not no_store)

    async def get(self, key: str) -> Finished | None:
        try:
            return await self.store.get(key)
        except StoreUnavailable as exc:
            CACHE_ERRORS.labels(self.model, "get").inc()
            log.warning("response cache of %s: lookup failed (a miss): %s", self.model, exc)
            return None

    async def put(self, key: str, finished: Finished) -> None:
        try:
            await self.store.put(key, finished)
        except StoreUnavailable as exc:
            CACHE_ERRORS.labels(self.model, "put").inc()
            log.warning("response cache of %s: answer not kept: %s", self.model, exc)

    def start_flight(self, key: str, produce: Produce) -> Flight:
        """The upstream call for `key`, which identical requests may join until it lands; its
        answer is kept (unless a fallback gave it)."""
        flight = Flight(asyncio.get_running_loop().create_task(self._call(key, produce)))
        self.flights[key] = flight
        flight.task.add_done_callback(lambda _: self._land(key, flight))
        return flight

    async def _call(self, key: str, produce: Produce) -> Finished:
        finished = await produce()
        if not finished.fallback:  # a fallback's answer is not the model's
            await self.put(key, finished)
        return finished

    def _land(self, key: str, flight: Flight) -> None:
        if self.flights.get(key) is flight:
            del self.flights[key]

    async def aclose(self) -> None:
        """Cancel the calls still in flight (the proxy is stopping)."""
        tasks = [flight.task for flight in self.flights.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class Run:
    """One request's way through its model's cache: `outcome` (the x-cache value) and whether
    the answer came from a call of its own (`own_call`: its tokens count for its limits)."""

    __slots__ = ("cache", "key", "lookup", "store", "outcome", "own_call", "shared")

    def __init__(self, cache: ModelCache, key: str | None, *, lookup: bool, store: bool) -> None:
        self.cache = cache
        self.key = key
        self.lookup = lookup
        self.store = store
        self.outcome: Outcome = "MISS" if lookup else "BYPASS"
        self.own_call = True
        self.shared = False  # the answer came from an identical request's call in flight

    async def generate(self, produce: Produce) -> Finished:
        """The answer: from the cache, from an identical call in flight, or from `produce`."""
        key = self.key
        cache = self.cache
        if key is None:
            return await produce()
        if self.lookup:
            found = await cache.get(key)
            if found is not None:
                self.outcome = "HIT"
                self.own_call = False
                return found
            flight = cache.flights.get(key)
            if flight is not None and not flight.task.done():
                self.outcome = "HIT"
                self.own_call = False
                self.shared = True
                CACHE_COALESCED.labels(cache.model).inc()
                return await self._join(flight, produce)
            if self.store:
                return await self._join(cache.start_flight(key, produce), produce)
        finished = await produce()  # no-cache: fresh; no-store: not to be shared or kept
        if self.store and not finished.fallback:
            await cache.put(key, finished)
        return finished

    async def _join(self, flight: Flight, produce: Produce) -> Finished:
        try:
            finished = await flight.join()
            if not self.shared:
                return finished
            # Each waiter its own lists, as a hit from the store gets: a door may build on them.
            return type(finished)(list(finished.choices), dict(finished.usage), finished.fallback)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this request is being cancelled (its client left)
        except Exception:
            self.outcome = "MISS"  # the call failed: no answer came from the cache
            raise
        # The call was cancelled under us (the proxy is stopping): make one of our own.
        self.outcome = "MISS"
        self.own_call = True
        self.shared = False
        return await produce()


class CacheHeader:
    """A streamed answer with its `x-cache` header, read when the headers go out (a stream's
    outcome is known only once its work has begun)."""

    __slots__ = ("app", "run")

    def __init__(self, app: ASGIApp, run: Run) -> None:
        self.app = app
        self.run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                header = (b"x-cache", self.run.outcome.encode())
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_header)


class ResponseCache:
    """The caches of every model that has one, by model name."""

    def __init__(self, models: dict[str, ModelCache], redis: Redis | None = None) -> None:
        self.models = models
        self._redis = redis
        self.description = "redis" if redis is not None else "memory"

    def run_for(
        self, job: Generation, owner: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> Run | None:
        """The request's run through its model's cache; None when its model has none (a
        fallback or a pass-through route)."""
        cache = self.models.get(job.route.config.name)
        return None if cache is None else cache.run_for(job, owner, headers)

    async def aclose(self) -> None:
        for cache in self.models.values():
            await cache.aclose()
        if self._redis is not None:
            await self._redis.aclose()


def build_response_cache(
    routes: Iterable[ModelRoute], redis_url: str | None, *, clock: Clock = time.monotonic
) -> ResponseCache | None:
    """The caches of the models that say `cache`, in Redis at `redis_url` or else in memory;
    None when no model has one."""
    cached = [route for route in routes if route.config.cache is not None]
    if not cached:
        return None
    redis = None
    if redis_url is not None:
        redis = Redis.from_url(
            redis_url,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            # One more try on a broken connection (a pooled one after a Redis restart), without
            # a backoff: a lookup waits for nothing longer than REDIS_TIMEOUT per try.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
    models: dict[str, ModelCache] = {}
    for route in cached:
        settings = route.config.cache
        assert settings is not None
        store: CacheStore
        if redis is not None:
            store = RedisCacheStore(redis, ttl=settings.ttl)
        else:
            store = MemoryCacheStore(
                max_entries=settings.max_entries, ttl=settings.ttl, clock=clock
            )
        models[route.config.name] = ModelCache(route, store)
    return ResponseCache(models, redis)
