"""Retries across deployments: what is retried, where, after how long, and when it stops.

The upstream is a scripted `UpstreamClient` (the proxy's own network boundary) answering per
deployment URL; the dispatcher's sleep is recorded instead of slept, so backoffs are data.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from app.config import ModelConfig
from app.dispatch import Dispatcher
from app.errors import (
    Overloaded,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamReadTimeout,
    UpstreamUnavailable,
)
from app.routing import ModelRoute, build_route
from app.schemas.custom import Sampling
from app.upstream import UpstreamRequest, UpstreamResponse

SAMPLING = Sampling(max_tokens=16, temperature=0.0, top_p=1.0, top_k=-1)
Outcome = UpstreamResponse | UpstreamError


def ok(text: str = "fine") -> UpstreamResponse:
    data = [{"prompt": "p", "output": [text]}]
    return UpstreamResponse(200, orjson.dumps({"data": data, "message": "ok"}))


def status(code: int, retry_after: float | None = None) -> UpstreamResponse:
    return UpstreamResponse(code, b'{"message": "no", "data": []}', retry_after)


class ScriptedUpstream:
    """Answers each URL from its script, in order; the last outcome repeats."""

    def __init__(self, scripts: dict[str, Sequence[Outcome]]) -> None:
        self.scripts = {url: list(outcomes) for url, outcomes in scripts.items()}
        self.sent: list[UpstreamRequest] = []

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.sent.append(request)
        script = self.scripts[request.endpoint.url]
        outcome = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(outcome, UpstreamError):
            raise outcome
        return outcome

    async def aclose(self) -> None:
        return None

    @property
    def urls(self) -> list[str]:
        return [request.endpoint.url for request in self.sent]


def route(*urls: str, **fields: Any) -> ModelRoute:
    fields.setdefault("routing", "weighted")  # deterministic order: a, b, c ...
    config = ModelConfig(
        name="m",
        deployments=[{"api_base": url} for url in urls],
        retry_backoff_seconds=0.1,
        retry_backoff_max_seconds=1.0,
        **fields,
    )
    return build_route(config, source="test", index=0)


class Sleeps(list[float]):
    """Time as data: each sleep is recorded and moves this clock on."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 10_000.0

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


async def run(
    upstream: ScriptedUpstream, model: ModelRoute, sleeps: Sleeps | None = None
) -> list[str]:
    time = Sleeps() if sleeps is None else sleeps
    dispatcher = Dispatcher(upstream, rng=random.Random(7), sleep=time, clock=time.clock)
    return await dispatcher.complete(model, ["p"], SAMPLING, "req-1")


A, B, C = "http://a.test/", "http://b.test/", "http://c.test/"


async def test_a_healthy_deployment_answers_in_one_attempt() -> None:
    upstream = ScriptedUpstream({A: [ok("hello")]})

    assert await run(upstream, route(A)) == ["hello"]
    assert upstream.urls == [A]
    assert upstream.sent[0].request_id == "req-1"


@pytest.mark.parametrize(
    "failure",
    [
        status(429),
        status(500),
        status(502),
        status(503),
        status(504),
        UpstreamUnavailable("connection refused"),
        UpstreamBadResponse("broke off"),
        UpstreamResponse(200, b"<html>"),
        UpstreamResponse(200, b'{"message": "busy", "data": []}'),
    ],
    ids=["429", "500", "502", "503", "504", "refused", "reset", "not-json", "not-ok"],
)
async def test_retryable_failures_go_to_the_next_deployment(failure: Outcome) -> None:
    upstream = ScriptedUpstream({A: [failure], B: [ok("from b")]})
    sleeps = Sleeps()

    assert await run(upstream, route(A, B), sleeps) == ["from b"]
    assert upstream.urls == [A, B]
    assert len(sleeps) == 1 and 0.05 <= sleeps[0] <= 0.1  # first backoff, with jitter


@pytest.mark.parametrize("code", [400, 401, 404, 422, 501])
async def test_a_refused_request_is_not_retried(code: int) -> None:
    upstream = ScriptedUpstream({A: [status(code)], B: [ok()]})

    with pytest.raises(UpstreamBadResponse, match=f"HTTP {code}"):
        await run(upstream, route(A, B))
    assert upstream.urls == [A]


async def test_a_refused_request_does_not_count_against_the_deployment() -> None:
    model = route(A, cooldown={"failures": 1})
    upstream = ScriptedUpstream({A: [status(400)]})
    with pytest.raises(UpstreamBadResponse):
        await run(upstream, model)

    assert model.deployments.members[0].state(0.0) == "healthy"


async def test_retries_stop_after_max_retries_with_the_last_error() -> None:
    upstream = ScriptedUpstream({A: [status(502)], B: [status(503)], C: [status(504)]})
    sleeps = Sleeps()

    with pytest.raises(UpstreamError) as caught:
        await run(upstream, route(A, B, C, max_retries=2), sleeps)

    assert upstream.urls == [A, B, C]
    assert caught.value.status == 504
    # exponential: 0.1, then 0.2, each with "equal jitter" (half to all of it)
    assert 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2


async def test_backoff_is_capped() -> None:
    upstream = ScriptedUpstream({A: [status(503)] * 6 + [ok()]})
    sleeps = Sleeps()

    await run(upstream, route(A, max_retries=6, cooldown={"failures": 100}), sleeps)

    assert len(sleeps) == 6
    assert max(sleeps) <= 1.0 and sleeps[-1] >= 0.5


async def test_with_one_deployment_the_retry_goes_to_it_again() -> None:
    upstream = ScriptedUpstream({A: [status(503), ok("second time")]})

    assert await run(upstream, route(A)) == ["second time"]
    assert upstream.urls == [A, A]


async def test_zero_retries_means_one_attempt() -> None:
    upstream = ScriptedUpstream({A: [status(503)], B: [ok()]})

    with pytest.raises(UpstreamUnavailable):
        await run(upstream, route(A, B, max_retries=0))
    assert upstream.urls == [A]


async def test_read_timeouts_are_retried_only_where_the_config_says() -> None:
    timeout = UpstreamReadTimeout("no answer within 5 s")
    upstream = ScriptedUpstream({A: [timeout], B: [ok("b")]})
    with pytest.raises(UpstreamReadTimeout):
        await run(upstream, route(A, B))
    assert upstream.urls == [A]

    upstream = ScriptedUpstream({A: [timeout], B: [ok("b")]})
    assert await run(upstream, route(A, B, retry_read_timeouts=True)) == ["b"]
    assert upstream.urls == [A, B]


async def test_read_timeouts_count_towards_cooldown() -> None:
    model = route(A, B, cooldown={"failures": 1}, retry_read_timeouts=True)
    upstream = ScriptedUpstream({A: [UpstreamReadTimeout("slow")], B: [ok()]})

    await run(upstream, model)

    assert [d.state(0.0) for d in model.deployments.members][0] in ("cooling_down", "probing")
    assert model.deployments.members[0].cooldowns == 1


async def test_a_cooling_deployment_is_skipped() -> None:
    model = route(A, B, cooldown={"failures": 1, "seconds": 60})
    upstream = ScriptedUpstream({A: [status(503)], B: [ok("b")]})
    await run(upstream, model)  # A fails and cools down, B answers
    assert model.deployments.members[0].cooldowns == 1
    upstream.sent.clear()

    for _ in range(3):
        assert await run(upstream, model) == ["b"]
    assert upstream.urls == [B, B, B]


async def test_a_lone_deployment_in_cooldown_still_gets_the_next_request() -> None:
    model = route(A, max_retries=0, cooldown={"failures": 3, "seconds": 60})
    upstream = ScriptedUpstream({A: [status(500), status(500), status(500), ok("back")]})
    for _ in range(3):
        with pytest.raises(UpstreamBadResponse, match="HTTP 500") as caught:
            await run(upstream, model)
        assert caught.value.status == 502 and caught.value.headers() is None
    (only,) = model.deployments.members
    assert only.state(10_000.0) == "cooling_down"

    assert await run(upstream, model) == ["back"]  # not a 503 "cooling down"

    assert upstream.urls == [A] * 4
    assert only.state(10_000.0) == "healthy"
    assert (only.failures, only.cooldowns) == (3, 1)


async def test_with_a_fallback_a_cooling_lone_deployment_is_skipped() -> None:
    model = route(A, max_retries=0, fallbacks=["backup"], cooldown={"failures": 1})
    upstream = ScriptedUpstream({A: [status(500), ok()]})
    with pytest.raises(UpstreamBadResponse):
        await run(upstream, model)

    with pytest.raises(UpstreamUnavailable, match="is cooling down") as caught:
        await run(upstream, model)  # for the caller to hand to the fallback at once

    assert upstream.urls == [A]
    assert caught.value.retry_after == pytest.approx(10.0)


async def test_a_lone_deployment_that_asked_to_wait_still_gets_the_next_request() -> None:
    model = route(A, cooldown={"failures": 3})
    upstream = ScriptedUpstream({A: [status(503, retry_after=30), ok("back")]})
    with pytest.raises(UpstreamUnavailable) as caught:
        await run(upstream, model)
    # the same request waits for no 30 s and does not ask again: the upstream's own answer
    assert upstream.urls == [A]
    assert caught.value.message.startswith("upstream answered HTTP 503")
    assert caught.value.headers() == {"retry-after": "30"}

    assert await run(upstream, model) == ["back"]
    assert upstream.urls == [A, A]


async def test_when_every_deployment_cools_down_the_one_back_soonest_is_asked() -> None:
    model = route(A, B, max_retries=1, cooldown={"failures": 1, "seconds": 60})
    upstream = ScriptedUpstream({A: [status(500), ok("a")], B: [status(500), ok("b")]})
    with pytest.raises(UpstreamBadResponse):
        await run(upstream, model)  # A fails, then B a backoff later: both cool down
    assert [d.state(10_001.0) for d in model.deployments.members] == ["cooling_down"] * 2

    assert await run(upstream, model) == ["a"]

    assert upstream.urls == [A, B, A]


async def test_when_every_deployment_cools_down_a_model_with_fallbacks_hands_over() -> None:
    model = route(A, B, max_retries=1, fallbacks=["backup"], cooldown={"failures": 1})
    upstream = ScriptedUpstream({A: [status(500), ok("a")], B: [status(500), ok("b")]})
    with pytest.raises(UpstreamBadResponse):
        await run(upstream, model)

    with pytest.raises(UpstreamUnavailable, match="is cooling down"):
        await run(upstream, model)
    assert upstream.urls == [A, B]


async def test_retry_after_is_waited_for_when_no_other_deployment_is_ready() -> None:
    upstream = ScriptedUpstream({A: [status(429, retry_after=0.8), ok("later")]})
    sleeps = Sleeps()

    assert await run(upstream, route(A, cooldown={"failures": 100}), sleeps) == ["later"]

    # the first retry finds A blocked (nothing sent), waits out the Retry-After, then sends
    assert upstream.urls == [A, A]
    assert sum(sleeps) == pytest.approx(0.8)


async def test_retry_after_longer_than_the_backoff_cap_is_passed_to_the_client() -> None:
    upstream = ScriptedUpstream({A: [status(429, retry_after=30)]})

    with pytest.raises(UpstreamRateLimited) as caught:
        await run(upstream, route(A, cooldown={"failures": 100}))

    assert upstream.urls == [A]
    assert caught.value.headers() == {"retry-after": "30"}


async def test_retry_after_moves_the_retry_to_another_deployment_at_once() -> None:
    upstream = ScriptedUpstream({A: [status(429, retry_after=30)], B: [ok("b")]})
    sleeps = Sleeps()

    assert await run(upstream, route(A, B), sleeps) == ["b"]
    assert sleeps[0] <= 0.1  # the usual backoff, not A's 30 s


async def test_no_retry_past_the_deadline() -> None:
    upstream = ScriptedUpstream({A: [status(503)], B: [ok()]})

    with pytest.raises(UpstreamUnavailable):
        # the first backoff (0.05-0.1 s) would end after the 0.01 s deadline
        await run(upstream, route(A, B, deadline=0.01))
    assert upstream.urls == [A]


async def test_each_attempt_gets_what_is_left_of_the_deadline() -> None:
    upstream = ScriptedUpstream({A: [ok()]})

    await run(upstream, route(A, deadline=2.0))

    assert 1.5 < upstream.sent[0].timeout <= 2.0  # under the deployment's 300 s


async def test_deployments_send_their_own_upstream_model_name() -> None:
    config = ModelConfig(
        name="m",
        upstream_model="shared-name",
        routing="weighted",
        deployments=[{"api_base": A}, {"api_base": B, "upstream_model": "b-name"}],
    )
    model = build_route(config, source="test", index=0)
    upstream = ScriptedUpstream({A: [status(503)], B: [ok()]})

    await run(upstream, model)

    assert [orjson.loads(r.body)["model"] for r in upstream.sent] == ["shared-name", "b-name"]


async def test_overloaded_is_not_retried() -> None:
    model = route(A, max_concurrency=1, queue={"size": 0, "timeout": 1.0})
    model.deployments.members[0].take()  # someone else's request holds the only slot
    upstream = ScriptedUpstream({A: [ok()]})

    with pytest.raises(Overloaded):
        await run(upstream, model)
    assert upstream.sent == []


async def test_the_slot_is_released_whatever_happened() -> None:
    model = route(A, B)
    upstream = ScriptedUpstream({A: [status(503)], B: [status(400)]})
    with pytest.raises(UpstreamBadResponse):
        await run(upstream, model)

    assert [d.in_flight for d in model.deployments.members] == [0, 0]
