"""Deployment health and choice: cooldown, probe, Retry-After, least-busy, weighted, queue,
and the last resort (cooldown skips a deployment only while something else can take it)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

import pytest

from app.config import CooldownConfig, QueueConfig
from app.deployments import Deployment, DeploymentGroup, Routing
from app.errors import Overloaded, UpstreamUnavailable
from app.upstream import UpstreamEndpoint

NOW = 1000.0
FAR = NOW + 3600.0


def deployment(
    label: str,
    *,
    weight: int = 1,
    max_concurrency: int | None = None,
    failures: int = 3,
    seconds: float = 10.0,
) -> Deployment:
    return Deployment(
        label=label,
        endpoint=UpstreamEndpoint(url=f"http://{label}.test/", headers={}, timeout=5.0),
        upstream_model=None,
        weight=weight,
        max_concurrency=max_concurrency,
        cooldown=CooldownConfig(failures=failures, seconds=seconds),
    )


def group(
    *members: Deployment,
    routing: Routing = "least-busy",
    size: int = 10,
    timeout: float = 5.0,
    fallbacks: bool = False,
) -> DeploymentGroup:
    queue = QueueConfig(size=size, timeout=timeout)
    return DeploymentGroup(list(members), routing, queue, "m", has_fallbacks=fallbacks)


# health


def test_cools_down_after_failures_in_a_row_then_probes_once() -> None:
    d = deployment("a", failures=3, seconds=10.0)
    d.failed(NOW, None, d.epoch)
    d.failed(NOW, None, d.epoch)
    assert d.state(NOW) == "healthy" and d.ready(NOW)

    d.failed(NOW, None, d.epoch)

    assert d.state(NOW) == "cooling_down" and not d.ready(NOW)
    assert d.ready(NOW + 9.9) is False
    assert d.state(NOW + 10.0) == "probing" and d.ready(NOW + 10.0)
    d.take()  # the probe
    assert not d.ready(NOW + 10.0), "only one probe at a time"
    d.release(d.epoch)
    d.succeeded(d.epoch)
    assert d.state(NOW + 10.0) == "healthy"
    assert d.cooldowns == 1


def test_a_failed_probe_cools_down_again_at_once() -> None:
    d = deployment("a", failures=3, seconds=10.0)
    for _ in range(3):
        d.failed(NOW, None, d.epoch)
    d.take()
    d.release(d.epoch)
    d.failed(NOW + 10.0, None, d.epoch)

    assert d.state(NOW + 10.0) == "cooling_down"
    assert d.ready(NOW + 19.9) is False and d.ready(NOW + 20.0)
    assert d.cooldowns == 2


def test_a_success_resets_the_failures_in_a_row() -> None:
    d = deployment("a", failures=3)
    d.failed(NOW, None, d.epoch)
    d.failed(NOW, None, d.epoch)
    d.succeeded(d.epoch)
    d.failed(NOW, None, d.epoch)
    d.failed(NOW, None, d.epoch)

    assert d.state(NOW) == "healthy"


def test_retry_after_keeps_it_out_of_the_choice_for_that_long() -> None:
    d = deployment("a", failures=100)
    d.failed(NOW, 2.5, d.epoch)

    assert not d.ready(NOW + 2.4)
    assert d.ready(NOW + 2.5)
    assert d.state(NOW) == "healthy"  # asked to wait, not broken


def test_retry_after_is_capped() -> None:
    d = deployment("a", failures=100)
    d.failed(NOW, 86_400, d.epoch)

    assert d.ready(NOW + 60.0)


def test_requests_in_flight_before_a_cooldown_do_not_decide_it() -> None:
    d = deployment("a", failures=2, seconds=10.0)
    old = d.epoch
    for _ in range(3):
        d.take()  # three requests go out while it looks healthy
    d.failed(NOW, None, old)
    d.failed(NOW, None, old)  # the second failure in a row: cooling down, a new epoch
    assert d.state(NOW) == "cooling_down" and d.epoch == old + 1

    d.succeeded(old)  # the third, sent before the cooldown, answers: says nothing about now
    assert d.state(NOW) == "cooling_down"
    d.failed(NOW, None, old)  # nor does a late failure start another cooldown
    assert d.cooldowns == 1 and d.failures == 3
    d.release(old)
    d.release(old)
    d.release(old)
    assert d.in_flight == 0

    d.take()  # the probe, after the cooldown
    assert not d.ready(NOW + 10.0)
    d.release(old)  # a late release of an old request does not open the door to a second
    assert not d.ready(NOW + 10.0)
    d.succeeded(d.epoch)
    d.release(d.epoch)
    assert d.state(NOW + 10.0) == "healthy" and d.ready(NOW + 10.0)


def test_release_ends_a_probe_that_was_cancelled() -> None:
    d = deployment("a", failures=1, seconds=1.0)
    d.failed(NOW, None, d.epoch)
    d.take()
    d.release(d.epoch)  # the client left: neither success nor failure

    assert d.ready(NOW + 1.0) and d.state(NOW + 1.0) == "probing"


# choice


def test_weighted_picks_in_proportion_interleaved() -> None:
    a, b, c = deployment("a", weight=5), deployment("b", weight=1), deployment("c", weight=1)
    g = group(a, b, c, routing="weighted")

    picks = [g.pick(NOW) for _ in range(14)]

    assert Counter(d.label for d in picks if d) == {"a": 10, "b": 2, "c": 2}
    # smooth: the light ones are spread through each window of 7, not bunched at its end
    labels = "".join(d.label for d in picks if d)
    assert labels == "aabacaa" * 2


def test_least_busy_picks_the_fewest_in_flight_per_weight() -> None:
    a, b = deployment("a", weight=1), deployment("b", weight=2)
    g = group(a, b)
    a.in_flight, b.in_flight = 2, 3  # 2/1 against 3/2

    assert g.pick(NOW) is b
    b.in_flight = 5
    assert g.pick(NOW) is a


def test_least_busy_spreads_ties() -> None:
    members = [deployment(label) for label in "abc"]
    g = group(*members)

    assert {d.label for d in (g.pick(NOW) for _ in range(3)) if d} == {"a", "b", "c"}


def test_pick_passes_over_tried_deployments_while_others_can_serve() -> None:
    a, b = deployment("a"), deployment("b")
    g = group(a, b)

    assert g.pick(NOW, exclude=[a]) is b
    assert g.pick(NOW, exclude=[b]) is a
    assert g.pick(NOW, exclude=[a, b]) in (a, b), "all tried: any may serve again"


def test_pick_skips_cooling_and_full_deployments() -> None:
    a, b, c = deployment("a", failures=1), deployment("b", max_concurrency=1), deployment("c")
    g = group(a, b, c, fallbacks=True)
    a.failed(NOW, None, a.epoch)
    b.take()

    assert all(g.pick(NOW) is c for _ in range(5))
    c.failed(NOW, 30, c.epoch)
    assert g.pick(NOW) is None


async def test_acquire_when_every_deployment_cools_down_says_when_one_is_back() -> None:
    a, b = deployment("a", failures=1, seconds=4.0), deployment("b", failures=1, seconds=9.0)
    g = group(a, b, fallbacks=True)  # the fallbacks take the request
    a.failed(NOW, None, a.epoch)
    b.failed(NOW, None, b.epoch)

    with pytest.raises(UpstreamUnavailable) as caught:
        await g.acquire(NOW + 1.0, FAR, [])

    assert caught.value.retry_after == pytest.approx(3.0)
    assert "cooling down" in caught.value.message


# the last resort: cooldown skips a deployment only while something else can take the request


def in_state(label: str, state: str) -> Deployment:
    """A deployment as of NOW + 1: `healthy`, `cooling:S` (its cooldown of S s began at NOW),
    `blocked:S` (its upstream said Retry-After: S at NOW), `probing` (its probe is in flight),
    `full` (at its max_concurrency)."""
    kind, _, seconds = state.partition(":")
    room = 1 if kind == "full" else None
    d = deployment(label, failures=1, seconds=float(seconds or 1), max_concurrency=room)
    if kind == "cooling":
        d.failed(NOW, None, d.epoch)
    elif kind == "blocked":
        d.cooldown = CooldownConfig(failures=100, seconds=10.0)
        d.failed(NOW, float(seconds), d.epoch)
    elif kind == "probing":
        d.failed(NOW, None, d.epoch)  # a cooldown of 1 s: probing from NOW + 1
        d.take()
    elif kind == "full":
        d.take()
    else:
        assert kind == "healthy"
    return d


LAST_RESORT = [
    # (each deployment's state, the model has fallbacks, the pick at NOW + 1)
    (["cooling:10"], False, "a"),  # a lone deployment keeps its requests ...
    (["cooling:10"], True, None),  # ... unless a fallback can take them
    (["blocked:30"], False, "a"),
    (["blocked:30"], True, None),
    (["probing"], False, "a"),
    (["probing"], True, None),
    (["full"], False, None),  # room is never overridden: that is the queue's business
    (["cooling:10", "healthy"], False, "b"),  # another deployment can take it
    (["cooling:10", "healthy"], True, "b"),
    (["cooling:9", "cooling:4"], False, "b"),  # all held back: the one back soonest
    (["cooling:4", "blocked:9"], False, "a"),
    (["blocked:3", "cooling:9"], False, "a"),
    (["cooling:4", "cooling:9"], True, None),
    (["cooling:4", "full"], False, "a"),  # the full one would take it once it has room
    (["full", "cooling:4"], True, None),
]


@pytest.mark.parametrize(
    ("states", "fallbacks", "expected"),
    LAST_RESORT,
    ids=[",".join(states) + (" with fallbacks" if fb else "") for states, fb, _ in LAST_RESORT],
)
def test_cooldown_skips_a_deployment_only_while_something_else_can_take_the_request(
    states: list[str], fallbacks: bool, expected: str | None
) -> None:
    members = [in_state(label, state) for label, state in zip("ab", states, strict=False)]
    g = group(*members, fallbacks=fallbacks)

    picked = g.pick(NOW + 1.0)

    assert (picked.label if picked else None) == expected


def test_a_retry_after_of_a_deployment_this_request_tried_is_kept() -> None:
    a = in_state("a", "blocked:30")
    b = in_state("b", "cooling:5")

    assert group(a).pick(NOW + 1.0) is a  # a new request goes to it
    assert group(a).pick(NOW + 1.0, exclude=[a]) is None  # its retry waits, or gives up
    assert group(a, b).pick(NOW + 1.0, exclude=[a]) is b
    assert group(a).pick(NOW + 30.0, exclude=[a]) is a  # the wait is over


def test_the_last_resort_prefers_a_deployment_not_yet_tried() -> None:
    a, b = in_state("a", "cooling:4"), in_state("b", "cooling:9")

    assert group(a, b).pick(NOW + 1.0, exclude=[a]) is b


async def test_acquire_without_fallbacks_takes_a_cooling_deployment() -> None:
    a, b = deployment("a", failures=1, seconds=4.0), deployment("b", failures=1, seconds=9.0)
    a.failed(NOW, None, a.epoch)
    b.failed(NOW, None, b.epoch)

    assert await group(a, b).acquire(NOW + 1.0, FAR, []) is a
    assert a.in_flight == 1


async def test_acquire_when_the_deployment_tried_asked_to_wait_says_how_long() -> None:
    d = deployment("a", failures=100)
    d.failed(NOW, 30.0, d.epoch)

    with pytest.raises(UpstreamUnavailable) as caught:
        await group(d).acquire(NOW + 1.0, FAR, [d])

    assert caught.value.retry_after == pytest.approx(29.0)
    assert caught.value.message == "every deployment of model 'm' asked to wait"


def test_a_request_during_the_cooldown_heals_the_deployment_when_it_succeeds() -> None:
    d = deployment("a", failures=3, seconds=10.0)
    for _ in range(3):
        d.failed(NOW, None, d.epoch)
    assert d.state(NOW + 1.0) == "cooling_down"

    d.take()  # nothing else could take this request
    d.release(d.epoch)
    d.succeeded(d.epoch)

    assert d.state(NOW + 1.0) == "healthy" and d.ready(NOW + 1.0)
    assert d.failures == 3 and d.cooldowns == 1


def test_failures_during_the_cooldown_are_counted_without_starting_it_anew() -> None:
    d = deployment("a", failures=3, seconds=10.0)
    for _ in range(3):
        d.failed(NOW, None, d.epoch)

    for offset in (1.0, 2.0, 9.0):
        d.take()
        d.release(d.epoch)
        d.failed(NOW + offset, None, d.epoch)

    assert d.failures == 6 and d.cooldowns == 1
    assert d.state(NOW + 9.9) == "cooling_down" and d.state(NOW + 10.0) == "probing"
    d.failed(NOW + 10.0, None, d.epoch)  # after the cooldown: a failed probe, as ever
    assert d.cooldowns == 2 and d.state(NOW + 19.9) == "cooling_down"


# the queue (real time: these run on the event loop with short timeouts)


async def test_a_full_deployment_queues_requests_and_serves_them_in_order() -> None:
    d = deployment("a", max_concurrency=1)
    g = group(d, size=5, timeout=5.0)
    first = await g.acquire(time.monotonic(), math.inf, [])
    served: list[int] = []

    async def waiter(index: int) -> None:
        taken = await g.acquire(time.monotonic(), math.inf, [])
        served.append(index)
        g.release(taken, taken.epoch)

    tasks = [asyncio.create_task(waiter(index)) for index in range(3)]
    await asyncio.sleep(0)  # let them queue
    assert g.waiting == 3 and d.in_flight == 1
    g.release(first, first.epoch)
    await asyncio.gather(*tasks)

    assert served == [0, 1, 2]
    assert d.in_flight == 0 and g.waiting == 0


async def test_a_newcomer_does_not_overtake_the_queue() -> None:
    d = deployment("a", max_concurrency=1)
    g = group(d)
    first = await g.acquire(time.monotonic(), math.inf, [])
    queued = asyncio.create_task(g.acquire(time.monotonic(), math.inf, []))
    await asyncio.sleep(0)
    g.release(first, first.epoch)  # the slot is the queued one's now
    newcomer = asyncio.create_task(g.acquire(time.monotonic(), math.inf, []))
    await asyncio.sleep(0)

    assert (await queued) is d
    assert not newcomer.done()
    g.release(d, d.epoch)
    assert (await newcomer) is d


async def test_a_full_queue_is_overloaded_at_once() -> None:
    d = deployment("a", max_concurrency=1)
    g = group(d, size=1)
    await g.acquire(time.monotonic(), math.inf, [])
    queued = asyncio.create_task(g.acquire(time.monotonic(), math.inf, []))
    await asyncio.sleep(0)

    with pytest.raises(Overloaded) as caught:
        await g.acquire(time.monotonic(), math.inf, [])

    assert caught.value.status == 503 and caught.value.code == "overloaded"
    assert caught.value.headers() == {"retry-after": "1"}
    queued.cancel()


async def test_a_wait_past_the_queue_timeout_is_overloaded() -> None:
    d = deployment("a", max_concurrency=1)
    g = group(d, timeout=0.05)
    await g.acquire(time.monotonic(), math.inf, [])

    started = time.monotonic()
    with pytest.raises(Overloaded, match="stayed at capacity"):
        await g.acquire(time.monotonic(), math.inf, [])

    assert time.monotonic() - started >= 0.04
    assert g.waiting == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_passes_its_turn_on() -> None:
    d = deployment("a", max_concurrency=1)
    g = group(d)
    first = await g.acquire(time.monotonic(), math.inf, [])
    leaving = asyncio.create_task(g.acquire(time.monotonic(), math.inf, []))
    staying = asyncio.create_task(g.acquire(time.monotonic(), math.inf, []))
    await asyncio.sleep(0)
    g.release(first, first.epoch)  # wakes `leaving` ...
    leaving.cancel()  # ... which goes away before it runs
    with pytest.raises(asyncio.CancelledError):
        await leaving

    assert (await asyncio.wait_for(staying, 1.0)) is d
    assert g.waiting == 0 and d.in_flight == 1
