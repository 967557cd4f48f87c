"""Micro-batching: concurrent requests for one model go upstream as one call of many prompts.

The custom format carries a list of prompts per call, and a GPU server runs that list as one
batch for little more than the cost of one prompt. For a model with `batching` (app.config
`BatchingConfig`), `Dispatcher.complete` hands each request to the `Batcher` instead of
sending it. Requests join the open batch of their key: the same deployments, upstream model,
forwarded client key and sampling parameters (after defaults), so a batch is exactly one
call's body. A batch is sent when it holds `max_batch` prompts (a request with n prompts
counts n; one with `max_batch` or more goes alone, at once) or `max_wait_ms` after its first
request joined (0: on the event loop's next turn, with only the requests already waiting).
When that time comes and every deployment of the model is at its `max_concurrency` (all
busy with earlier batches), the batch is held open instead, still taking requests up to
`max_batch`, and sent as soon as one of the model's batch calls ends: a busy GPU gets fuller
batches rather than a queue of small ones (Triton's dynamic batcher forms a batch when a
model instance is free, likewise). Without `max_concurrency` a deployment is never full.

Sending is one `Dispatcher.complete` call for all the prompts, in join order, with the ids of
all its requests in `x-request-id`, comma-separated (a request id never holds a comma), and
the deadline of its first request. Retries, deployments, cooldown and the deployment queue
work as for a single request, for the batch as a whole; each request's telemetry record sees
every attempt and retry. Each request gets back its own slice of the outputs; a failure
reaches every request of the batch (as its own copy of the error), and each then goes on as
a failed single request does (fallbacks; a re-ask, which may batch again). An answer with
another number of outputs than prompts sent fails the whole batch (502,
`app.schemas.custom.parse_custom_response`).

Cancellation: a request whose client leaves before its batch is sent is taken out of it (an
emptied batch is never sent). Once sent, the call is shared: a request that leaves drops only
its own result, and the call itself is cancelled only when every request of it has left.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from app import metrics
from app.config import BatchingConfig

if TYPE_CHECKING:
    from app.deployments import Deployment, DeploymentGroup
    from app.routing import ModelRoute
    from app.schemas.custom import Sampling


class AttemptLog(Protocol):
    """What dispatch tells a request's record (app.telemetry.RequestRecord) as it works."""

    retries: int

    def begin_attempt(self, deployment: Deployment) -> None: ...

    def end_attempt(self, deployment: Deployment) -> None: ...


class SendBatch(Protocol):
    """`Dispatcher.complete` with an explicit deadline: sends without batching again."""

    def __call__(
        self,
        route: ModelRoute,
        prompts: list[str],
        sampling: Sampling,
        request_id: str,
        record: AttemptLog | None,
        client_key: str | None,
        *,
        deadline: float,
    ) -> Awaitable[list[str]]: ...


# deployments, upstream model, forwarded key, max_tokens, temperature, top_p, top_k
BatchKey = tuple["DeploymentGroup", str, str | None, int, float, float, int]


class BatchRecords:
    """The records of a batch's requests as one: each attempt and retry reaches all of them;
    each attempt also counts one upstream call of the model's batches."""

    __slots__ = ("_records", "_calls", "_retries")

    def __init__(self, records: list[AttemptLog], model: str) -> None:
        self._records = records
        self._calls = metrics.BATCH_CALLS.labels(model)
        self._retries = 0

    @property
    def retries(self) -> int:
        return self._retries

    @retries.setter
    def retries(self, value: int) -> None:
        added = value - self._retries
        self._retries = value
        for record in self._records:
            record.retries += added

    def begin_attempt(self, deployment: Deployment) -> None:
        self._calls.inc()
        for record in self._records:
            record.begin_attempt(deployment)

    def end_attempt(self, deployment: Deployment) -> None:
        for record in self._records:
            record.end_attempt(deployment)


class _Waiter:
    """One request in a batch: its prompts and where its outputs go."""

    __slots__ = ("prompts", "request_id", "record", "future", "joined")

    def __init__(
        self,
        prompts: list[str],
        request_id: str,
        record: AttemptLog | None,
        future: asyncio.Future[list[str]],
        joined: float,
    ) -> None:
        self.prompts = prompts
        self.request_id = request_id
        self.record = record
        self.future = future
        self.joined = joined


class _Batch:
    """Requests that will share one upstream call; `closed` once no other may join."""

    __slots__ = (
        "key", "route", "sampling", "client_key", "opened",
        "waiters", "size", "closed", "timer", "task",
    )  # fmt: skip

    def __init__(
        self, key: BatchKey, route: ModelRoute, sampling: Sampling, client_key: str | None
    ) -> None:
        self.key = key
        self.route = route
        self.sampling = sampling
        self.client_key = client_key
        self.opened = 0.0
        self.waiters: list[_Waiter] = []
        self.size = 0  # prompts
        self.closed = False
        self.timer: asyncio.Handle | None = None
        self.task: asyncio.Task[None] | None = None


def batch_key(route: ModelRoute, sampling: Sampling, client_key: str | None) -> BatchKey:
    """Requests with equal keys would send equal calls but for their prompts."""
    authorization = client_key if route.config.forward_client_auth else None
    return (
        route.deployments,
        route.upstream_model,
        authorization,
        sampling.max_tokens,
        sampling.temperature,
        sampling.top_p,
        sampling.top_k,
    )


class Batcher:
    """The open batches of every batching model, sent through `send`. `clock` is monotonic
    seconds (the deadlines' clock: the dispatcher's)."""

    def __init__(self, send: SendBatch, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._send = send
        self._clock = clock
        self._open: dict[BatchKey, _Batch] = {}
        # Batches past their wait while their deployments were full, oldest first.
        self._held: dict[DeploymentGroup, deque[_Batch]] = {}
        self._sending: set[asyncio.Task[None]] = set()  # strong references to running calls

    @property
    def open_batches(self) -> int:
        """Batches still taking requests (for tests and diagnostics)."""
        return len(self._open)

    async def complete(
        self,
        route: ModelRoute,
        prompts: list[str],
        sampling: Sampling,
        request_id: str,
        record: AttemptLog | None,
        client_key: str | None,
        limits: BatchingConfig,
    ) -> list[str]:
        """The outputs of `prompts`, sent upstream in a batch with other requests'."""
        if len(prompts) >= limits.max_batch:
            return await self._send_alone(route, prompts, sampling, request_id, record, client_key)
        key = batch_key(route, sampling, client_key)
        batch = self._open.get(key)
        if batch is not None and batch.size + len(prompts) > limits.max_batch:
            self._close(batch)
            batch = None
        loop = asyncio.get_running_loop()
        now = self._clock()
        if batch is None:
            batch = self._open[key] = _Batch(key, route, sampling, client_key)
            batch.opened = now
            if limits.max_wait_ms > 0:
                batch.timer = loop.call_later(limits.max_wait_ms / 1000, self._expire, batch)
            else:
                batch.timer = loop.call_soon(self._expire, batch)
        waiter = _Waiter(prompts, request_id, record, loop.create_future(), now)
        batch.waiters.append(waiter)
        batch.size += len(prompts)
        if batch.size >= limits.max_batch:
            self._close(batch)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._leave(batch, waiter)
            raise

    async def _send_alone(
        self,
        route: ModelRoute,
        prompts: list[str],
        sampling: Sampling,
        request_id: str,
        record: AttemptLog | None,
        client_key: str | None,
    ) -> list[str]:
        model = route.config.name
        metrics.BATCH_SIZE.labels(model).observe(len(prompts))
        metrics.BATCH_WAIT_SECONDS.labels(model).observe(0.0)
        metrics.BATCHED_REQUESTS.labels(model).inc()
        records = BatchRecords([record] if record is not None else [], model)
        deadline = self._clock() + route.config.deadline
        try:
            return await self._send(
                route, prompts, sampling, request_id, records, client_key, deadline=deadline
            )
        finally:
            self._send_held(route.deployments)

    def _expire(self, batch: _Batch) -> None:
        """The batch's wait is over: it goes now, or when one of its deployments has room."""
        group = batch.route.deployments
        if any(member.has_room() for member in group.members):
            self._close(batch)
            return
        batch.timer = None
        held = self._held.get(group)
        if held is None:
            held = self._held[group] = deque()
        held.append(batch)

    def _send_held(self, group: DeploymentGroup) -> None:
        """A batch call of `group` ended, so a deployment has room: the oldest held batch
        still waiting (not filled up and sent, not emptied) goes."""
        held = self._held.get(group)
        while held:
            batch = held.popleft()
            if not batch.closed and batch.waiters:
                self._close(batch)
                return

    def _close(self, batch: _Batch) -> None:
        """No more requests join `batch`; its call starts (on the loop's next turn)."""
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        if batch.timer is not None:
            batch.timer.cancel()
        if batch.closed or not batch.waiters:
            return
        batch.closed = True
        task = asyncio.get_running_loop().create_task(self._run(batch))
        batch.task = task
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _leave(self, batch: _Batch, waiter: _Waiter) -> None:
        """A request's client left (its task was cancelled)."""
        if not batch.closed:
            batch.waiters.remove(waiter)
            batch.size -= len(waiter.prompts)
            if not batch.waiters:
                self._close(batch)  # nothing to send: only forgets the batch
        elif batch.task is not None and all(w.future.done() for w in batch.waiters):
            batch.task.cancel()  # nobody wants the answer any more

    async def _run(self, batch: _Batch) -> None:
        # Requests that left between the close and now are not sent either.
        waiters = batch.waiters = [w for w in batch.waiters if not w.future.done()]
        if not waiters:
            return
        route = batch.route
        model = route.config.name
        prompts = [prompt for waiter in waiters for prompt in waiter.prompts]
        now = self._clock()
        metrics.BATCH_SIZE.labels(model).observe(len(prompts))
        waited = metrics.BATCH_WAIT_SECONDS.labels(model)
        for waiter in waiters:
            waited.observe(now - waiter.joined)
        metrics.BATCHED_REQUESTS.labels(model).inc(len(waiters))
        records = BatchRecords([w.record for w in waiters if w.record is not None], model)
        try:
            outputs = await self._send(
                route,
                prompts,
                batch.sampling,
                ",".join(waiter.request_id for waiter in waiters),
                records,
                batch.client_key,
                deadline=batch.opened + route.config.deadline,
            )
        except asyncio.CancelledError:
            for waiter in waiters:  # all have left, unless the loop itself is stopping
                waiter.future.cancel()
            raise
        except Exception as error:  # every request of the batch hears it, whatever it is
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(_own_copy(error))
            return
        finally:
            self._send_held(route.deployments)
        start = 0
        for waiter in waiters:
            end = start + len(waiter.prompts)
            if not waiter.future.done():
                waiter.future.set_result(outputs[start:end])
            start = end


def _own_copy(error: Exception) -> Exception:
    """A copy of `error` for one request, so that requests raising it at the same time do not
    share (and grow) one traceback; the error itself if it cannot be copied."""
    try:
        return copy.copy(error)
    except Exception:  # an exception class whose constructor copy cannot call
        return error
