"""The exact response cache through real `serve` processes and a real upstream socket.

The upstream (tests/scripted_upstream.py) answers every call "answer <n>", n counting its
calls, so a hit is seen twice over: the upstream got no new call, and the client got the
earlier answer word for word. It can hold its answers (`gate`) until the test has seen every
request of a burst wait in the proxy (proxy_cache_coalesced), so single flight is proven
without sleeping. Each test asks its own question (`marker`), so tests share the processes
without sharing entries. Two more proxies share a redis-server of the test's own.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import orjson
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.servers import Server, access_line, clean_env, serve_config
from tests.redis_server import RedisServer
from tests.scripted_upstream import Peer, Upstream, answer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

ALICE, BOB = "sk-alice-cache", "sk-bob-cache"
BURST = 8
_markers = itertools.count()


@dataclass
class CountingUpstream:
    """Answers each call "answer <n>"; notes every call's prompts; holds answers while
    `gate` is set and not yet released."""

    upstream: Upstream | None = None
    calls: list[list[str]] = field(default_factory=list)
    answered: list[list[str]] = field(default_factory=list)
    gate: asyncio.Event | None = None

    async def serve(self, peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            body = orjson.loads(request.partition(b"\r\n\r\n")[2])
            prompts: list[str] = body["params"]["prompt"]
            self.calls.append(prompts)
            number = len(self.calls)
            if self.gate is not None:
                await self.gate.wait()
            if "fail" in prompts[0]:
                await peer.write(answer(b"overloaded", status=b"500 Internal Server Error"))
                self.answered.append(prompts)
                continue
            data = [{"output": [f"answer {number}"]} for _ in prompts]
            payload = orjson.dumps({"message": "ok", "data": data})
            await peer.write(answer(payload, headers=[b"content-type: application/json"]))
            self.answered.append(prompts)

    def calls_with(self, marker: str) -> int:
        return sum(1 for prompts in self.calls if marker in prompts[0])

    def url(self) -> str:
        assert self.upstream is not None
        return self.upstream.url("/generate")


def _config(upstream: CountingUpstream) -> dict[str, Any]:
    def model(name: str, cache: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
        entry = {"name": name, "api_base": upstream.url(), "defaults": {"temperature": 0}}
        if cache is not None:
            entry["cache"] = cache
        return {**entry, **extra}

    warm = {"temperature": 0.7}
    return {
        "models": [
            model("cached", {"ttl": 600}),
            model("shared", {}, cache_scope="global"),
            model("warm", {}, defaults=warm),
            model("warm-any", {"any_temperature": True}, defaults=warm),
            model("uncached", None),
            # One attempt, never cooled down: a failure reaches the clients as it is.
            model("fragile", {}, max_retries=0, cooldown={"failures": 1_000_000}),
        ],
        "api_keys": [{"key": ALICE, "name": "alice"}, {"key": BOB, "name": "bob"}],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstream() -> AsyncIterator[CountingUpstream]:
    counting = CountingUpstream()
    async with Upstream(counting.serve) as server:
        counting.upstream = server
        yield counting


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy(
    upstream: CountingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    log_dir = tmp_path_factory.mktemp("cache")
    env = clean_env(PROXY_LOG_FORMAT="json")
    server = await asyncio.to_thread(serve_config, log_dir, "cache", _config(upstream), env)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replicas(
    upstream: CountingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Server, Server, RedisServer]]:
    """Two proxies sharing one redis-server."""
    log_dir = tmp_path_factory.mktemp("cache-redis")
    redis = await asyncio.to_thread(RedisServer.start, log_dir)
    env = clean_env(PROXY_LOG_FORMAT="json", PROXY_REDIS_URL=redis.url)
    config = _config(upstream)
    try:
        first, second = await asyncio.gather(
            asyncio.to_thread(serve_config, log_dir, "replica-a", config, env),
            asyncio.to_thread(serve_config, log_dir, "replica-b", config, env),
        )
    except BaseException:
        redis.stop()
        raise
    try:
        yield first, second, redis
    finally:
        await asyncio.gather(asyncio.to_thread(first.stop), asyncio.to_thread(second.stop))
        await asyncio.to_thread(redis.stop)


def new_marker() -> str:
    return f"question-{next(_markers)}"


async def ask(
    proxy: Server,
    model: str,
    marker: str,
    *,
    key: str = ALICE,
    headers: dict[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
    **body: Any,
) -> httpx.Response:
    request = {"model": model, "messages": [{"role": "user", "content": marker}], **body}
    sent = {"authorization": f"Bearer {key}", **(headers or {})}
    if client is not None:
        return await client.post(f"{proxy.url}/v1/chat/completions", json=request, headers=sent)
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"{proxy.url}/v1/chat/completions", json=request, headers=sent)


def text_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


async def metric(proxy: Server, name: str, **labels: str) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{proxy.url}/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def metric_reaches(proxy: Server, name: str, value: float, **labels: str) -> None:
    """Poll /metrics until the metric is at least `value` (a deadline, never a fixed wait)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 10
    while await metric(proxy, name, **labels) < value:
        assert loop.time() < give_up, f"{name} {labels} never reached {value}"
        await asyncio.sleep(0.02)


async def test_the_second_identical_request_is_answered_from_the_cache(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker()
    hits = await metric(proxy, "proxy_cache_requests_total", model="cached", outcome="hit")
    first = await ask(proxy, "cached", marker)
    second = await ask(proxy, "cached", marker, headers={"x-request-id": f"{marker}-again"})
    assert first.headers["x-cache"] == "MISS" and second.headers["x-cache"] == "HIT"
    assert text_of(second) == text_of(first)
    assert upstream.calls_with(marker) == 1
    assert second.json()["usage"] == first.json()["usage"]  # a hit reports its usage
    assert second.json()["id"] != first.json()["id"]  # and is an answer of its own
    line = await asyncio.to_thread(access_line, proxy, f"{marker}-again")
    assert line["cache"] == "HIT" and line["status"] == 200 and line["upstream_ms"] == 0
    assert line["completion_tokens"] == second.json()["usage"]["completion_tokens"]
    after = await metric(proxy, "proxy_cache_requests_total", model="cached", outcome="hit")
    assert after == hits + 1


async def test_another_key_does_not_see_the_entry_unless_the_scope_is_global(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker()
    alice = await ask(proxy, "cached", marker)
    bob = await ask(proxy, "cached", marker, key=BOB)
    assert bob.headers["x-cache"] == "MISS" and text_of(bob) != text_of(alice)
    assert upstream.calls_with(marker) == 2

    marker = new_marker()
    alice = await ask(proxy, "shared", marker)
    bob = await ask(proxy, "shared", marker, key=BOB)
    assert (alice.headers["x-cache"], bob.headers["x-cache"]) == ("MISS", "HIT")
    assert text_of(bob) == text_of(alice) and upstream.calls_with(marker) == 1


async def test_cache_control_no_cache_and_no_store(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker()
    kept = await ask(proxy, "cached", marker)
    fresh = await ask(proxy, "cached", marker, headers={"cache-control": "no-cache"})
    assert fresh.headers["x-cache"] == "BYPASS" and text_of(fresh) != text_of(kept)
    later = await ask(proxy, "cached", marker)  # no-cache still keeps the fresh answer
    assert later.headers["x-cache"] == "HIT" and text_of(later) == text_of(fresh)
    assert upstream.calls_with(marker) == 2

    marker = new_marker()
    unkept = await ask(proxy, "cached", marker, headers={"cache-control": "no-store"})
    after = await ask(proxy, "cached", marker)
    assert (unkept.headers["x-cache"], after.headers["x-cache"]) == ("MISS", "MISS")
    assert upstream.calls_with(marker) == 2
    hit = await ask(proxy, "cached", marker, headers={"cache-control": "no-store"})
    assert hit.headers["x-cache"] == "HIT" and upstream.calls_with(marker) == 2


async def test_only_temperature_zero_is_cached_unless_any_temperature(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker()
    counted = {"model": "warm", "outcome": "bypass"}
    bypassed = await metric(proxy, "proxy_cache_requests_total", **counted)
    warm = [await ask(proxy, "warm", marker) for _ in range(2)]
    assert [r.headers["x-cache"] for r in warm] == ["BYPASS", "BYPASS"]
    assert upstream.calls_with(marker) == 2
    assert await metric(proxy, "proxy_cache_requests_total", **counted) == bypassed + 2
    cold = [await ask(proxy, "warm", marker, temperature=0) for _ in range(2)]
    assert [r.headers["x-cache"] for r in cold] == ["MISS", "HIT"]
    assert upstream.calls_with(marker) == 3

    marker = new_marker()
    lenient = [await ask(proxy, "warm-any", marker) for _ in range(2)]
    assert [r.headers["x-cache"] for r in lenient] == ["MISS", "HIT"]
    assert upstream.calls_with(marker) == 1
    outcomes = ("hit", "miss", "bypass")
    counts = [
        await metric(proxy, "proxy_cache_requests_total", model="warm-any", outcome=outcome)
        for outcome in outcomes
    ]
    assert counts == [1, 1, 0]


async def test_a_model_without_a_cache_says_nothing(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker()
    answers = [await ask(proxy, "uncached", marker) for _ in range(2)]
    assert all("x-cache" not in r.headers for r in answers)
    assert upstream.calls_with(marker) == 2


def _events(body: str) -> list[Any]:
    """A stream's data events, without what differs per answer (id, created)."""
    events: list[Any] = []
    for line in body.splitlines():
        if not line.startswith("data: "):
            assert line in ("", ": keep-alive"), line
            continue
        data = line.removeprefix("data: ")
        if data == "[DONE]":
            events.append(data)
            continue
        event = orjson.loads(data)
        event.pop("id")
        event.pop("created")
        events.append(event)
    return events


async def test_a_hit_streams_like_the_live_answer(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker()
    options = {"stream": True, "stream_options": {"include_usage": True}}
    live = await ask(proxy, "cached", marker, **options)
    hit = await ask(proxy, "cached", marker, **options)
    assert (live.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert hit.headers["content-type"].startswith("text/event-stream")
    assert _events(hit.text) == _events(live.text) and _events(hit.text)[-1] == "[DONE]"
    assert upstream.calls_with(marker) == 1

    # The SDK reads the hit as it reads any stream; a JSON answer hits the streamed entry.
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key=ALICE, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="cached",
            messages=[{"role": "user", "content": marker}],
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    as_json = await ask(proxy, "cached", marker)
    assert text == text_of(as_json) == "answer " + text.split()[-1]
    assert as_json.headers["x-cache"] == "HIT" and upstream.calls_with(marker) == 1


async def _burst(
    proxy: Server,
    upstream: CountingUpstream,
    marker: str,
    *,
    leader_leaves: bool,
    model: str = "cached",
) -> list[httpx.Response]:
    """The first request goes upstream and is held there; BURST - 1 identical ones follow,
    and once every one of them waits in the proxy the upstream answers."""
    coalesced = await metric(proxy, "proxy_cache_coalesced_total", model=model)
    left = await metric(proxy, "proxy_client_disconnects_total", model=model)
    upstream.gate = gate = asyncio.Event()
    try:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
            leader_http = httpx.AsyncClient(timeout=30)
            leader = asyncio.create_task(ask(proxy, model, marker, client=leader_http))
            await _until_called(upstream, marker)
            followers = [
                asyncio.create_task(ask(proxy, model, marker, client=http))
                for _ in range(BURST - 1)
            ]
            await metric_reaches(
                proxy, "proxy_cache_coalesced_total", coalesced + BURST - 1, model=model
            )
            if leader_leaves:
                leader.cancel()
                await asyncio.gather(leader, return_exceptions=True)
                await leader_http.aclose()  # the connection is closed: the proxy sees it go
                await metric_reaches(proxy, "proxy_client_disconnects_total", left + 1, model=model)
            gate.set()
            answers = await asyncio.gather(*followers)
            if not leader_leaves:
                answers.insert(0, await leader)
            await leader_http.aclose()
            return answers
    finally:
        upstream.gate = None
        gate.set()


async def _until_called(upstream: CountingUpstream, marker: str) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 10
    while not upstream.calls_with(marker):
        assert loop.time() < give_up, "the upstream was never called"
        await asyncio.sleep(0.005)


async def test_identical_requests_at_once_make_one_upstream_call(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker()
    answers = await _burst(proxy, upstream, marker, leader_leaves=False)
    assert len({text_of(r) for r in answers}) == 1
    assert [r.headers["x-cache"] for r in answers] == ["MISS"] + ["HIT"] * (BURST - 1)
    assert upstream.calls_with(marker) == 1
    again = await ask(proxy, "cached", marker)
    assert again.headers["x-cache"] == "HIT" and text_of(again) == text_of(answers[0])


async def test_the_first_client_leaving_does_not_cancel_the_call_for_the_others(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker()
    answers = await _burst(proxy, upstream, marker, leader_leaves=True)
    assert len(answers) == BURST - 1 and len({text_of(r) for r in answers}) == 1
    assert all(r.headers["x-cache"] == "HIT" for r in answers)
    assert upstream.calls_with(marker) == 1
    assert sum(1 for prompts in upstream.answered if marker in prompts[0]) == 1


async def test_a_failed_shared_call_fails_every_waiter_once_and_keeps_nothing(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker() + " fail"
    answers = await _burst(proxy, upstream, marker, leader_leaves=False, model="fragile")
    assert {r.status_code for r in answers} == {502}
    assert len({r.json()["error"]["message"] for r in answers}) == 1
    assert upstream.calls_with(marker) == 1
    again = await ask(proxy, "fragile", marker)
    assert again.status_code == 502 and upstream.calls_with(marker) == 2


async def test_replicas_share_the_cache_through_redis(
    replicas: tuple[Server, Server, RedisServer], upstream: CountingUpstream
) -> None:
    first, second, redis = replicas
    marker = new_marker()
    miss = await ask(first, "cached", marker)
    hit = await ask(second, "cached", marker)
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert text_of(hit) == text_of(miss) and upstream.calls_with(marker) == 1
    streamed = await ask(second, "cached", marker, stream=True)
    assert streamed.headers["x-cache"] == "HIT" and text_of(miss) in streamed.text
    other_key = await ask(second, "cached", marker, key=BOB)
    assert other_key.headers["x-cache"] == "MISS" and upstream.calls_with(marker) == 2

    client = redis.client()
    try:
        keys = client.keys("clp:cache:*")
        assert len(keys) >= 2
        ttls = [client.pttl(key) for key in keys]
        assert all(0 < ttl <= 600_000 for ttl in ttls)  # every entry expires (ttl: 600)
    finally:
        client.close()


async def test_a_redis_that_does_not_answer_makes_misses_not_errors(
    upstream: CountingUpstream, tmp_path: Any
) -> None:
    redis = await asyncio.to_thread(RedisServer.start, tmp_path)
    env = clean_env(PROXY_LOG_FORMAT="json", PROXY_REDIS_URL=redis.url)
    try:
        proxy = await asyncio.to_thread(serve_config, tmp_path, "lonely", _config(upstream), env)
    except BaseException:
        redis.stop()
        raise
    try:
        marker = new_marker()
        assert (await ask(proxy, "cached", marker)).headers["x-cache"] == "MISS"
        assert (await ask(proxy, "cached", marker)).headers["x-cache"] == "HIT"
        await asyncio.to_thread(redis.kill)
        loop = asyncio.get_running_loop()
        began = loop.time()
        served = await ask(proxy, "cached", marker)
        assert served.headers["x-cache"] == "MISS" and text_of(served).startswith("answer ")
        assert loop.time() - began < 5  # no retry storm: one quick refusal per Redis call
        assert upstream.calls_with(marker) == 2
        for op in ("get", "put"):
            assert await metric(proxy, "proxy_cache_errors_total", model="cached", op=op) == 1
    finally:
        await asyncio.to_thread(proxy.stop)
        await asyncio.to_thread(redis.stop)


async def test_legacy_completions_are_cached_apart_from_chat(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker()
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key=ALICE, max_retries=0) as sdk:
        raw = [
            await sdk.completions.with_raw_response.create(model="cached", prompt=marker)
            for _ in range(2)
        ]
        texts = [r.parse().choices[0].text for r in raw]
    assert [r.headers["x-cache"] for r in raw] == ["MISS", "HIT"]
    assert texts[0] == texts[1] and upstream.calls_with(marker) == 1
    # The chat route with the raw template sends the same prompt: another answer all the same.
    chat = await ask(proxy, "cached", marker)
    assert chat.headers["x-cache"] == "MISS" and upstream.calls_with(marker) == 2
    assert upstream.calls[-1] == upstream.calls[-2]  # the very same upstream call, twice


async def test_an_answer_kept_from_chat_answers_the_messages_and_responses_doors(
    proxy: Server, upstream: CountingUpstream
) -> None:
    marker = new_marker()
    chat = await ask(proxy, "cached", marker, max_tokens=64)
    assert chat.headers["x-cache"] == "MISS"
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
        messages = await http.post(
            "/v1/messages",
            json={
                "model": "cached",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": marker}],
            },
            headers={"x-api-key": ALICE, "anthropic-version": "2023-06-01"},
        )
        streamed = await http.post(
            "/v1/messages",
            json={
                "model": "cached",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": marker}],
                "stream": True,
            },
            headers={"x-api-key": ALICE, "anthropic-version": "2023-06-01"},
        )
        responses = await http.post(
            "/v1/responses",
            json={"model": "cached", "input": marker, "max_output_tokens": 64},
            headers={"authorization": f"Bearer {ALICE}"},
        )
    assert messages.status_code == 200, messages.text
    assert responses.status_code == 200, responses.text
    assert (messages.headers["x-cache"], responses.headers["x-cache"]) == ("HIT", "HIT")
    assert messages.json()["content"][0]["text"] == text_of(chat)
    assert streamed.headers["x-cache"] == "HIT"
    assert "event: message_stop" in streamed.text and text_of(chat) in streamed.text
    message = next(item for item in responses.json()["output"] if item["type"] == "message")
    assert message["content"][0]["text"] == text_of(chat)
    assert upstream.calls_with(marker) == 1
