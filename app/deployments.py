"""A model's deployments at run time: health, load, and which one takes the next attempt.

Each configured deployment becomes one `Deployment` shared by the whole process. It counts the
requests it has in flight and its failures in a row; after `cooldown.failures` of them it is
skipped for `cooldown.seconds`, then exactly one request probes it: success makes it healthy
again, failure cools it down once more. A Retry-After from the upstream keeps it out of the
choice for that long as well.

Cooldown and Retry-After only skip a deployment while something else can take the request:
another deployment of the model that is ready, or the model's fallbacks. A model without
fallbacks whose deployments are all held back (its only one, most often) still sends each new
request, to the deployment that is back soonest: the client then hears the upstream's own
answer, not the proxy's refusal, and the first success ends the cooldown. Its failures are
counted all the same (the state, `/health/ready`, the metrics); failures while it cools down
do not start the cooldown anew. Only a Retry-After of a deployment the same request already
tried is kept: the dispatcher waits it out, or gives the client the upstream's error.

Only requests sent in the deployment's current `epoch` speak for its health: entering a
cooldown starts a new epoch, so the outcomes of requests that were already in flight (they
went out before the failures that cooled it down) change nothing, and the one probe is the only
request of its epoch until it has answered.

A model's `DeploymentGroup` picks a deployment for each attempt (`least-busy`: fewest in
flight per unit of weight; `weighted`: smooth weighted round-robin, as nginx does it) and, when
every deployment that could serve is at its `max_concurrency`, holds the request in a bounded
queue. Everything runs on the event loop, so no locks: state changes between awaits only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from app.config import CooldownConfig, QueueConfig
from app.errors import Overloaded, UpstreamUnavailable
from app.metrics import COOLDOWNS, DEPLOYMENT_FAILURES, DEPLOYMENT_UP
from app.upstream import UpstreamEndpoint

log = logging.getLogger("app.deployments")

Routing = Literal["least-busy", "weighted"]
DeploymentState = Literal["healthy", "cooling_down", "probing"]

MAX_RETRY_AFTER = 60.0  # an upstream's Retry-After is honoured up to this many seconds
OVERLOADED_RETRY_AFTER = 1.0


@dataclass(eq=False, slots=True)
class Deployment:
    """One upstream of one model, with its health and load; compared by identity."""

    label: str  # "model[index]", for logs and /health/ready
    endpoint: UpstreamEndpoint
    upstream_model: str | None  # None: the route's upstream model
    weight: int
    max_concurrency: int | None
    cooldown: CooldownConfig
    in_flight: int = 0
    failures_in_row: int = 0
    cooling_until: float = 0.0  # time.monotonic(); skipped until then
    blocked_until: float = 0.0  # the upstream's Retry-After
    probing: bool = False  # a cooldown ended: the next request decides
    probe_in_flight: bool = False
    epoch: int = 0  # one more at each cooldown; an attempt reports with the epoch it began in
    current_weight: int = 0  # smooth weighted round-robin
    requests: int = 0
    failures: int = 0
    cooldowns: int = 0
    model: str = ""  # set by its DeploymentGroup; with the label, it names the metrics

    def state(self, now: float) -> DeploymentState:
        if now < self.cooling_until:
            return "cooling_down"
        return "probing" if self.probing else "healthy"

    def ready(self, now: float) -> bool:
        """Whether it may take a request now, load aside."""
        if now < self.cooling_until or now < self.blocked_until:
            return False
        return not (self.probing and self.probe_in_flight)

    def back_at(self) -> float:
        """When its cooldown and the upstream's Retry-After are both over."""
        return max(self.cooling_until, self.blocked_until)

    def has_room(self) -> bool:
        return self.max_concurrency is None or self.in_flight < self.max_concurrency

    def take(self) -> None:
        self.in_flight += 1
        self.requests += 1
        if self.probing:
            self.probe_in_flight = True

    def release(self, epoch: int) -> None:
        self.in_flight -= 1
        if epoch == self.epoch:  # while probing, only the probe is of the current epoch
            self.probe_in_flight = False

    def succeeded(self, epoch: int) -> None:
        if epoch != self.epoch:
            return  # sent before the last cooldown began: says nothing about now
        self.failures_in_row = 0
        if self.probing:
            self.probing = False
            self.cooling_until = 0.0  # sent while it cooled down, nothing else could take it
            log.info("deployment %s is healthy again", self.label)
            DEPLOYMENT_UP.labels(self.model, self.label).set(1)

    def failed(self, now: float, retry_after: float | None, epoch: int) -> None:
        self.failures += 1
        DEPLOYMENT_FAILURES.labels(self.model, self.label).inc()
        if retry_after is not None and retry_after > 0:
            self.blocked_until = max(self.blocked_until, now + min(retry_after, MAX_RETRY_AFTER))
        if epoch != self.epoch:
            return  # sent before the last cooldown began: already counted in it
        if now < self.cooling_until:
            return  # sent while it cools down (nothing else could take it): no new cooldown
        self.failures_in_row += 1
        if self.probing or self.failures_in_row >= self.cooldown.failures:
            log.warning(
                "deployment %s %s; cooling down for %g s",
                self.label,
                "failed its probe" if self.probing else f"failed {self.failures_in_row} in a row",
                self.cooldown.seconds,
            )
            self.cooling_until = now + self.cooldown.seconds
            self.probing = True
            self.probe_in_flight = False
            self.epoch += 1
            self.failures_in_row = 0
            self.cooldowns += 1
            COOLDOWNS.labels(self.model, self.label).inc()
            DEPLOYMENT_UP.labels(self.model, self.label).set(0)

    def snapshot(self, now: float) -> dict[str, object]:
        """Its state for /health/ready."""
        return {
            "deployment": self.label,
            "api_base": self.endpoint.url,
            "state": self.state(now),
            "in_flight": self.in_flight,
            "max_concurrency": self.max_concurrency,
            "requests": self.requests,
            "failures": self.failures,
            "cooldowns": self.cooldowns,
        }


@dataclass(eq=False)
class DeploymentGroup:
    """The deployments of one model, the choice among them and the wait queue.

    `has_fallbacks`: the model's fallbacks take a request its deployments cannot, so a
    deployment that cools down or asked to wait is skipped even when no other is ready."""

    members: list[Deployment]
    routing: Routing
    queue: QueueConfig
    model: str
    has_fallbacks: bool = False
    _waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    _turn: int = 0  # rotates the start of least-busy's scan, so ties spread

    def __post_init__(self) -> None:
        for member in self.members:
            member.model = self.model
            DEPLOYMENT_UP.labels(self.model, member.label).set(1)

    # choosing
    def pick(self, now: float, exclude: Collection[Deployment] = ()) -> Deployment | None:
        """The deployment for the next attempt, or None when none can take it with room.

        Deployments in `exclude` (those already tried) are passed over while any other can
        serve. When none is ready and the model has no fallbacks, the one back soonest takes
        it all the same (`_last_resort`)."""
        members = self.members
        if len(members) == 1:
            only = members[0]
            if only.has_room() and (only.ready(now) or self._may_take_anyway(only, now, exclude)):
                return only
            return None
        excluded = set(exclude)
        candidates = [d for d in members if d not in excluded and d.ready(now) and d.has_room()]
        if not candidates and excluded:
            candidates = [d for d in members if d.ready(now) and d.has_room()]
        if not candidates:
            return self._last_resort(now, excluded)
        if self.routing == "weighted":
            return _smooth_weighted(candidates)
        self._turn = (self._turn + 1) % len(candidates)
        rotated = candidates[self._turn :] + candidates[: self._turn]
        return min(rotated, key=lambda d: d.in_flight / d.weight)

    def take_now(self, now: float, exclude: list[Deployment]) -> Deployment | None:
        """Take a deployment for one attempt if one has room now and nobody is queueing
        (newcomers do not overtake the queue); release it after. The common case, without
        the cost of a coroutine."""
        if self._waiters:
            return None
        deployment = self.pick(now, exclude)
        if deployment is not None:
            deployment.take()
        return deployment

    async def acquire(self, now: float, deadline: float, exclude: list[Deployment]) -> Deployment:
        """Take a deployment for one attempt (release it after): at once when one has room,
        else after waiting in the queue. Raises UpstreamUnavailable when none is ready at all
        (all cooling down) and Overloaded when the queue is full or the wait times out."""
        deployment = self.take_now(now, exclude)
        if deployment is not None:
            return deployment
        if not self._could_take(now, exclude):
            raise self._none_ready(now)
        return await self._wait(now, deadline, exclude)

    def release(self, deployment: Deployment, epoch: int) -> None:
        """End an attempt taken in `epoch` (the deployment's epoch when it was taken)."""
        deployment.release(epoch)
        if self._waiters:
            self._pass_on()

    async def _wait(self, now: float, deadline: float, exclude: list[Deployment]) -> Deployment:
        if len(self._waiters) >= self.queue.size:
            raise Overloaded(
                f"Model '{self.model}' is at capacity and its queue is full; "
                "retry after a short wait.",
                retry_after=OVERLOADED_RETRY_AFTER,
            )
        loop = asyncio.get_running_loop()
        give_up = min(now + self.queue.timeout, deadline)
        waited = give_up - now
        first = True
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            # A woken waiter that lost the slot to a newcomer keeps its place at the front.
            if first:
                self._waiters.append(waiter)
                first = False
            else:
                self._waiters.appendleft(waiter)
            try:
                async with asyncio.timeout(give_up - time.monotonic()):
                    await waiter
            except BaseException as exc:  # the wait timed out, or the client went away
                if waiter.done() and not waiter.cancelled():
                    self._pass_on()  # woken as it gave up: the slot goes to the next one
                else:
                    self._discard(waiter)
                if isinstance(exc, TimeoutError):
                    raise Overloaded(
                        f"Model '{self.model}' stayed at capacity for "
                        f"{waited:.3g} s; retry after a short wait.",
                        retry_after=OVERLOADED_RETRY_AFTER,
                    ) from None
                raise
            now = time.monotonic()
            deployment = self.pick(now, exclude)
            if deployment is not None:
                deployment.take()
                if self._waiters and self.pick(now) is not None:
                    self._pass_on()  # more room than this one waiter needed
                return deployment
            if not self._could_take(now, exclude):
                raise self._none_ready(now)

    def _pass_on(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _discard(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # already taken off by a release
            self._waiters.remove(waiter)

    # the last resort: cooldown skips a deployment only while something else can take it
    def _may_take_anyway(
        self, deployment: Deployment, now: float, exclude: Collection[Deployment]
    ) -> bool:
        """Whether a deployment that is not ready may take the request all the same: when the
        model has no fallbacks, unless this request tried it and it asked to wait (a
        Retry-After is the dispatcher's to wait out)."""
        if self.has_fallbacks:
            return False
        return not (now < deployment.blocked_until and deployment in exclude)

    def _last_resort(self, now: float, excluded: set[Deployment]) -> Deployment | None:
        """With nothing ready: the deployment back soonest (one this request has not tried
        first, then the least busy), or None when the model has fallbacks to take it."""
        usable = [
            d for d in self.members if d.has_room() and self._may_take_anyway(d, now, excluded)
        ]
        return min(
            usable,
            key=lambda d: (d in excluded, max(d.back_at(), now), d.in_flight / d.weight),
            default=None,
        )

    def _could_take(self, now: float, exclude: Collection[Deployment]) -> bool:
        """Whether any deployment could take the request once it has room."""
        return any(d.ready(now) or self._may_take_anyway(d, now, exclude) for d in self.members)

    def _none_ready(self, now: float) -> UpstreamUnavailable:
        if self.has_fallbacks:
            back = min(d.back_at() for d in self.members)
            held = "is cooling down or asked to wait"
        else:  # each one was tried by this request and asked to wait
            back = min(d.blocked_until for d in self.members)
            held = "asked to wait"
        return UpstreamUnavailable(
            f"every deployment of model '{self.model}' {held}", retry_after=max(back - now, 0.0)
        )

    # reporting
    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def can_serve(self, now: float) -> bool:
        """Whether any deployment is not cooling down (for /health/ready)."""
        return any(now >= d.cooling_until for d in self.members)

    def snapshot(self, now: float) -> list[dict[str, object]]:
        return [deployment.snapshot(now) for deployment in self.members]


def _smooth_weighted(candidates: list[Deployment]) -> Deployment:
    """nginx's smooth weighted round-robin: over any window, picks in proportion to weight,
    interleaved rather than in bursts."""
    total = 0
    best = candidates[0]
    for deployment in candidates:
        deployment.current_weight += deployment.weight
        total += deployment.weight
        if deployment.current_weight > best.current_weight:
            best = deployment
    best.current_weight -= total
    return best
