"""The exact response cache as data: what its key depends on (and what not), how a request's
Cache-Control reads, the memory store's TTL and LRU on a clock the test moves, the Redis
encoding, and one request's way through a model's cache (hit, miss, bypass, single flight)
with the upstream played by a coroutine the test holds and releases."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from app.config import ModelConfig
from app.errors import UpstreamUnavailable
from app.generation import Ask, plan_generation
from app.output.spec import OutputSpec
from app.output.types import ToolCall, ToolSpec
from app.protocols.openai.schemas import CompletionRequest
from app.response_cache import (
    MemoryCacheStore,
    ModelCache,
    Run,
    build_response_cache,
    cache_directives,
    cache_key,
    decode_finished,
    encode_finished,
    model_fingerprint,
)
from app.routes.completions import completion_generation
from app.routing import ModelRoute, build_route
from app.serving import Finished, Generation
from app.translate import Choice

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
WEATHER = ToolSpec("get_weather", "Current weather", {"type": "object", "properties": {}})


def route(name: str = "m", **fields: Any) -> ModelRoute:
    fields.setdefault("cache", {})
    fields.setdefault("defaults", {"temperature": 0})
    if "deployments" not in fields:
        fields["api_base"] = "http://127.0.0.1:1/x"
    config = ModelConfig(name=name, **fields)
    return build_route(config, source="test", index=0)


def chat_job(model: ModelRoute | None = None, **ask: Any) -> Generation:
    return plan_generation(Ask(turns=ask.pop("turns", QUESTION), **ask), model or route())


def key_of(job: Generation, owner: str = "alice") -> str:
    return cache_key(job, owner, model_fingerprint(job.route))


# The key


BASE = key_of(chat_job())


@pytest.mark.parametrize(
    ("what", "job", "owner"),
    [
        ("another key", chat_job(), "bob"),
        ("everybody's entry", chat_job(), "*"),
        ("the open proxy's entry", chat_job(), ""),
        ("another model", chat_job(route("other")), "alice"),
        ("another upstream model", chat_job(route(upstream_model="big")), "alice"),
        ("another template", chat_job(route(prompt_template="chatml")), "alice"),
        ("prompt stripped otherwise", chat_job(route(strip_prompt="always")), "alice"),
        ("another prompt", chat_job(turns=[{"role": "user", "content": "2 + 3?"}]), "alice"),
        ("n", chat_job(n=2), "alice"),
        ("max_tokens", chat_job(max_tokens=5), "alice"),
        ("temperature", chat_job(temperature=0.5), "alice"),
        ("top_p", chat_job(top_p=0.9), "alice"),
        ("top_k", chat_job(top_k=3), "alice"),
        ("a stop sequence", chat_job(stops=("\n",)), "alice"),
        ("a tool", chat_job(spec=OutputSpec(tools=(WEATHER,))), "alice"),
        ("a JSON answer", chat_job(spec=OutputSpec(json="json_object")), "alice"),
        (
            "the tool choice",
            chat_job(spec=OutputSpec(tools=(WEATHER,), tool_choice="required")),
            "alice",
        ),
        ("the model's defaults", chat_job(route(defaults={"temperature": 0, "top_k": 7})), "alice"),
    ],
)
def test_what_decides_the_answer_changes_the_key(what: str, job: Generation, owner: str) -> None:
    assert key_of(job, owner) != BASE, what


def test_the_same_request_again_has_the_same_key() -> None:
    again = chat_job()
    again.record = None
    again.client_key = "sk-something"  # not forwarded by this model: not part of the answer
    assert key_of(again) == BASE
    # Defaults are resolved first: asking for the default explicitly is the same request.
    assert key_of(chat_job(max_tokens=256, temperature=0, top_p=1.0, top_k=40)) == BASE


def test_a_deployments_upstream_model_does_not_split_the_cache() -> None:
    model = route(
        deployments=[
            {"api_base": "http://127.0.0.1:1/a", "upstream_model": "a"},
            {"api_base": "http://127.0.0.1:1/b", "upstream_model": "b"},
        ]
    )
    assert key_of(chat_job(model)) == key_of(chat_job(model))


def test_a_forwarded_client_key_is_part_of_the_key() -> None:
    model = route(forward_client_auth=True)
    first, second = chat_job(model), chat_job(model)
    first.client_key, second.client_key = "sk-one", "sk-two"
    assert key_of(first) != key_of(second)
    second.client_key = "sk-one"
    assert key_of(first) == key_of(second)


def _legacy(**fields: Any) -> Generation:
    request = CompletionRequest.model_validate({"model": "m", "prompt": "2 + 2 =", **fields})
    return completion_generation(request, route())


def test_the_route_kind_and_echo_change_the_key() -> None:
    legacy = _legacy()
    raw_chat = chat_job(route(prompt_template="raw"))
    assert legacy.prompts != raw_chat.prompts or legacy.chat != raw_chat.chat
    assert key_of(_legacy()) == key_of(_legacy())
    assert key_of(_legacy(echo=True)) != key_of(legacy)
    as_chat = replace(legacy, chat=True)
    assert key_of(as_chat) != key_of(legacy)


def test_prompts_times_n_differ_from_as_many_prompts() -> None:
    # [a, a] from n=2 counts the prompt once; the list [a, a] counts it twice: other usage.
    twice = _legacy(prompt=["2 + 2 =", "2 + 2 ="])
    n_two = _legacy(n=2)
    assert twice.prompts == n_two.prompts
    assert key_of(twice) != key_of(n_two)


# Cache-Control


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], (False, False)),
        ([b"no-cache"], (True, False)),
        ([b"no-store"], (False, True)),
        ([b"No-Cache, NO-STORE"], (True, True)),
        ([b"max-age=0", b"no-store"], (False, True)),
        ([b'no-cache="set-cookie"'], (True, False)),
        ([b"no-cachex, private"], (False, False)),
    ],
)
def test_cache_control_directives(values: list[bytes], expected: tuple[bool, bool]) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(b"cache-control", value) for value in values]
    assert cache_directives(headers) == expected


# Stores


def finished(text: str = "4", **choice: Any) -> Finished:
    usage = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    return Finished([Choice(0, text, "stop", 1, **choice)], usage)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_entry_lives_for_its_ttl() -> None:
    clock = Clock()
    store = MemoryCacheStore(max_entries=10, ttl=60, clock=clock)
    await store.put("k", finished())
    clock.now += 59.9
    assert await store.get("k") == finished()
    clock.now += 0.1
    assert await store.get("k") is None


async def test_the_least_recently_used_entry_goes_first() -> None:
    store = MemoryCacheStore(max_entries=2, ttl=60, clock=Clock())
    await store.put("a", finished("a"))
    await store.put("b", finished("b"))
    assert await store.get("a") is not None  # a is now the most recently used
    await store.put("c", finished("c"))
    assert await store.get("b") is None
    assert [await store.get(k) for k in "ac"] == [finished("a"), finished("c")]
    assert len(store) == 2


async def test_a_hit_gets_its_own_lists() -> None:
    store = MemoryCacheStore(max_entries=2, ttl=60)
    await store.put("k", finished())
    first = await store.get("k")
    assert first is not None
    first.choices.append(first.choices[0])
    first.usage["total_tokens"] = 0
    assert await store.get("k") == finished()


def test_the_redis_encoding_keeps_every_field() -> None:
    calls = [ToolCall("get_weather", '{"city":"Paris"}')]
    original = finished(
        "", calls=calls, reasoning="think", raw="<tool_call>…</tool_call>", problems=[]
    )
    original.choices.append(Choice(1, "second", "length", 3))
    assert decode_finished(encode_finished(original)) == original


def test_an_entry_of_another_version_still_reads() -> None:
    older = b'[[9,1,10],[{"index":0,"text":"4","finish_reason":"stop","completion_tokens":1}]]'
    assert decode_finished(older) == finished()
    newer = older.replace(b'"completion_tokens":1}', b'"completion_tokens":1,"mood":"happy"}')
    assert decode_finished(newer) == finished()


# One request's way through the cache


class Upstream:
    """Plays the upstream: each call waits for `release`, then answers "answer <n>"."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()
        self.failure: Exception | None = None
        self.cancelled = 0

    async def produce(self) -> Finished:
        self.calls += 1
        number = self.calls
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.failure is not None:
            raise self.failure
        return finished(f"answer {number}")


def model_cache(**fields: Any) -> ModelCache:
    cache = build_response_cache([route(**fields)], None)
    assert cache is not None
    return cache.models["m"]


def run(cache: ModelCache, job: Generation | None = None, *headers: bytes) -> Run:
    return cache.run_for(job or chat_job(), "alice", [(b"cache-control", h) for h in headers])


async def test_the_second_identical_request_is_a_hit() -> None:
    cache, upstream = model_cache(), Upstream()
    first, second = run(cache), run(cache)
    assert (await first.generate(upstream.produce)).choices[0].text == "answer 1"
    assert (await second.generate(upstream.produce)).choices[0].text == "answer 1"
    assert (first.outcome, first.own_call) == ("MISS", True)
    assert (second.outcome, second.own_call) == ("HIT", False)
    assert upstream.calls == 1


async def test_a_request_not_at_temperature_zero_bypasses() -> None:
    cache, upstream = model_cache(), Upstream()
    for _ in range(2):
        warm = run(cache, chat_job(temperature=0.5))
        await warm.generate(upstream.produce)
        assert warm.outcome == "BYPASS"
    assert upstream.calls == 2
    lenient = model_cache(cache={"any_temperature": True})
    outcomes = []
    for _ in range(2):
        warm = run(lenient, chat_job(temperature=0.5))
        await warm.generate(upstream.produce)
        outcomes.append(warm.outcome)
    assert outcomes == ["MISS", "HIT"] and upstream.calls == 3


async def test_no_cache_skips_the_lookup_and_keeps_the_fresh_answer() -> None:
    cache, upstream = model_cache(), Upstream()
    await run(cache).generate(upstream.produce)
    fresh = run(cache, None, b"no-cache")
    assert (await fresh.generate(upstream.produce)).choices[0].text == "answer 2"
    assert fresh.outcome == "BYPASS"
    again = run(cache)
    assert (await again.generate(upstream.produce)).choices[0].text == "answer 2"
    assert again.outcome == "HIT" and upstream.calls == 2


async def test_no_store_keeps_nothing_but_may_hit() -> None:
    cache, upstream = model_cache(), Upstream()
    unkept = run(cache, None, b"no-store")
    await unkept.generate(upstream.produce)
    assert unkept.outcome == "MISS"
    kept = run(cache)
    await kept.generate(upstream.produce)
    assert kept.outcome == "MISS" and upstream.calls == 2
    hit = run(cache, None, b"no-store")
    await hit.generate(upstream.produce)
    assert hit.outcome == "HIT" and upstream.calls == 2


async def test_a_fallbacks_answer_is_not_kept() -> None:
    cache, upstream = model_cache(), Upstream()

    async def from_fallback() -> Finished:
        answer = await upstream.produce()
        answer.fallback = "backup"
        return answer

    await run(cache).generate(from_fallback)
    second = run(cache)
    await second.generate(upstream.produce)
    assert second.outcome == "MISS" and upstream.calls == 2


async def test_identical_misses_in_flight_make_one_call() -> None:
    cache, upstream = model_cache(), Upstream()
    upstream.release.clear()
    runs = [run(cache) for _ in range(5)]
    tasks = [asyncio.create_task(r.generate(upstream.produce)) for r in runs]
    await _until(lambda: cache.flights and next(iter(cache.flights.values())).waiting == 5)
    upstream.release.set()
    answers = await asyncio.gather(*tasks)
    assert {a.choices[0].text for a in answers} == {"answer 1"} and upstream.calls == 1
    assert [r.outcome for r in runs] == ["MISS", "HIT", "HIT", "HIT", "HIT"]
    assert [r.own_call for r in runs] == [True, False, False, False, False]
    assert not cache.flights


async def test_the_first_client_leaving_does_not_cancel_the_others_call() -> None:
    cache, upstream = model_cache(), Upstream()
    upstream.release.clear()
    leader = asyncio.create_task(run(cache).generate(upstream.produce))
    await _until(lambda: upstream.calls == 1)
    waiters = [asyncio.create_task(run(cache).generate(upstream.produce)) for _ in range(3)]
    flight = next(iter(cache.flights.values()))
    await _until(lambda: flight.waiting == 4)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert flight.waiting == 3 and not flight.task.done()
    upstream.release.set()
    answers = await asyncio.gather(*waiters)
    assert [a.choices[0].text for a in answers] == ["answer 1"] * 3
    assert upstream.calls == 1 and upstream.cancelled == 0


async def test_the_call_is_cancelled_when_nobody_waits_any_more() -> None:
    cache, upstream = model_cache(), Upstream()
    upstream.release.clear()
    tasks = [asyncio.create_task(run(cache).generate(upstream.produce)) for _ in range(2)]
    await _until(lambda: cache.flights and next(iter(cache.flights.values())).waiting == 2)
    flight = next(iter(cache.flights.values()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await _until(lambda: flight.task.done())
    assert flight.task.cancelled() and upstream.cancelled == 1
    assert not cache.flights  # the next identical request makes a new call
    upstream.release.set()
    await run(cache).generate(upstream.produce)
    assert upstream.calls == 2


async def test_a_failed_call_fails_every_waiter_and_is_not_kept() -> None:
    cache, upstream = model_cache(), Upstream()
    upstream.release.clear()
    upstream.failure = UpstreamUnavailable("upstream answered 503")
    tasks = [asyncio.create_task(run(cache).generate(upstream.produce)) for _ in range(3)]
    await _until(lambda: cache.flights and next(iter(cache.flights.values())).waiting == 3)
    runs = [run(cache) for _ in range(2)]
    tasks += [asyncio.create_task(r.generate(upstream.produce)) for r in runs]
    await _until(lambda: next(iter(cache.flights.values())).waiting == 5)
    upstream.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, UpstreamUnavailable) for r in results) and upstream.calls == 1
    assert [r.outcome for r in runs] == ["MISS", "MISS"]  # nothing came from the cache
    upstream.failure = None
    after = run(cache)
    assert (await after.generate(upstream.produce)).choices[0].text == "answer 2"
    assert after.outcome == "MISS"


async def test_requests_whose_call_was_cancelled_make_their_own() -> None:
    cache, upstream = model_cache(), Upstream()
    upstream.release.clear()
    runs = [run(cache), run(cache)]
    tasks = [asyncio.create_task(r.generate(upstream.produce)) for r in runs]
    await _until(lambda: upstream.calls == 1 and next(iter(cache.flights.values())).waiting == 2)
    await cache.aclose()  # the proxy stopping cancels the calls in flight
    assert upstream.cancelled == 1
    upstream.release.set()
    answers = await asyncio.gather(*tasks)
    assert sorted(a.choices[0].text for a in answers) == ["answer 2", "answer 3"]
    assert [(r.outcome, r.own_call) for r in runs] == [("MISS", True)] * 2


async def _until(condition: Any, steps: int = 1000) -> None:
    """Let the loop run until `condition()` holds (each step one pass of the loop)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not met")


# The config


def test_cache_true_takes_the_defaults_and_false_is_off() -> None:
    on = ModelConfig(name="m", api_base="http://127.0.0.1:1/x", cache=True)
    assert on.cache is not None
    assert (on.cache.ttl, on.cache.max_entries, on.cache.any_temperature) == (600, 10_000, False)
    assert ModelConfig(name="m", api_base="http://127.0.0.1:1/x", cache=False).cache is None
    assert ModelConfig(name="m", api_base="http://127.0.0.1:1/x").cache_scope == "key"


@pytest.mark.parametrize(
    "fields",
    [
        {"cache": {"ttl": 0}},
        {"cache": {"max_entries": 0}},
        {"cache": {"size": 10}},
        {"cache": "yes please"},
        {"cache_scope": "tenant"},
    ],
)
def test_a_wrong_cache_setting_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="cache"):
        ModelConfig(name="m", api_base="http://127.0.0.1:1/x", **fields)


def test_models_without_a_cache_build_none() -> None:
    plain = build_route(
        ModelConfig(name="p", api_base="http://127.0.0.1:1/x"), source="test", index=0
    )
    assert build_response_cache([plain], None) is None
    both = build_response_cache([plain, route("c")], None)
    assert both is not None and list(both.models) == ["c"]
