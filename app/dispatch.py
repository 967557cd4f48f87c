"""One generation sent upstream with retries: deployment choice, backoff, deadline.

`Dispatcher.complete` asks a model's deployments for the outputs of a list of prompts. Each
attempt takes a deployment from the model's `DeploymentGroup` (waiting in its queue when all
are busy), POSTs the custom-format body and parses the answer. A failure another attempt may
fix (no connection, 429, 500/502/503/504, a garbled answer; a read timeout only where the
model says `retry_read_timeouts`) is retried on another deployment where there is one, after
an exponential backoff with jitter, or after the upstream's Retry-After where no other
deployment is ready. The model's `deadline` bounds the whole: attempts, waits and backoffs.

A model with `batching` sends its requests in batches (app.batching): `complete` hands them
to the `Batcher`, which sends each batch through `complete` again with the batch's deadline.

Retries happen only here, before anything was sent to the client, and a client that goes
away cancels the task and with it any further attempt. Fallback models are tried by the
caller (`app.serving`), which renders the prompt anew for each model's template.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from app.batching import AttemptLog, Batcher
from app.config import ModelConfig
from app.deployments import Deployment
from app.errors import UpstreamError, UpstreamReadTimeout, UpstreamUnavailable
from app.metrics import RETRIES
from app.routing import ModelRoute
from app.schemas.custom import Sampling, parse_custom_response, to_custom_request
from app.upstream import UpstreamClient, UpstreamRequest, UpstreamResponse

log = logging.getLogger("app.dispatch")


Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class Dispatcher:
    """Sends generations through one upstream client. `rng`, `sleep` and `clock` (monotonic
    seconds) are for tests, which replace time with data."""

    def __init__(
        self,
        upstream: UpstreamClient,
        *,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock
        self.batcher = Batcher(self.complete, clock=clock)

    async def complete(
        self,
        route: ModelRoute,
        prompts: list[str],
        sampling: Sampling,
        request_id: str,
        record: AttemptLog | None = None,
        client_key: str | None = None,
        *,
        deadline: float | None = None,
    ) -> list[str]:
        """The first output for each prompt, or the last attempt's error. The request's
        `record` gets each attempt's deployment and time, and the retries. `client_key` goes
        upstream only if the model says `forward_client_auth`. `deadline` (the clock's
        seconds) is given by a batch, which is sent as it is; without one, the model's
        `deadline` counts from now and a model with `batching` joins a batch."""
        config = route.config
        if deadline is None:
            if config.batching is not None:
                limits = config.batch_limits
                assert limits is not None
                return await self.batcher.complete(
                    route, prompts, sampling, request_id, record, client_key, limits
                )
            deadline = self._clock() + config.deadline
        authorization = client_key if config.forward_client_auth else None
        group = route.deployments
        tried: list[Deployment] = []
        bodies: dict[str, bytes] = {}
        last_failure: UpstreamError | None = None  # of an attempt that reached an upstream
        attempt = 0
        while True:
            attempt += 1
            deployment: Deployment | None = None
            epoch = 0
            try:
                now = self._clock()
                deployment = group.take_now(now, tried) or await group.acquire(now, deadline, tried)
                epoch = deployment.epoch  # taken just now: the epoch it reports in
                upstream_model = deployment.upstream_model or route.upstream_model
                body = _body(bodies, upstream_model, prompts, sampling)
                request = UpstreamRequest(
                    deployment.endpoint, body, request_id, route.name, 0.0, authorization
                )
                return await self._attempt(
                    route, deployment, epoch, request, len(prompts), deadline, record
                )
            except UpstreamError as error:
                none_ready = deployment is None
                delay = self._retry_delay(config, error, attempt, deadline, none_ready)
                if delay is None:
                    if none_ready and last_failure is not None:
                        # What the client should hear is what the upstream said, not that
                        # the proxy then found nobody ready to ask again.
                        last_failure.retry_after = max(
                            last_failure.retry_after or 0.0, error.retry_after or 0.0
                        )
                        raise last_failure from None
                    raise
                if not none_ready:
                    last_failure = error
                RETRIES.labels(group.model, "" if deployment is None else deployment.label).inc()
                if record is not None:
                    record.retries += 1
                log.info(
                    "retrying model %s (attempt %d of %d) in %.3f s after: %s (request %s)",
                    route.name,
                    attempt + 1,
                    config.max_retries + 1,
                    delay,
                    error.message,
                    request_id,
                )
            finally:
                if deployment is not None:
                    group.release(deployment, epoch)
                    tried.append(deployment)
            await self._sleep(delay)

    async def _attempt(
        self,
        route: ModelRoute,
        deployment: Deployment,
        epoch: int,
        request: UpstreamRequest,
        expected: int,
        deadline: float,
        record: AttemptLog | None,
    ) -> list[str]:
        request.timeout = timeout = min(deployment.endpoint.timeout, deadline - self._clock())
        if timeout <= 0:
            raise UpstreamReadTimeout(
                f"model '{route.name}' found no answer within its deadline of "
                f"{route.config.deadline:g} s"
            )
        response = None
        try:
            response = await self._send(request, deployment, record)
            outputs = parse_custom_response(response.status, response.body, expected)
        except UpstreamError as error:
            if response is not None and error.retry_after is None:
                error.retry_after = response.retry_after
            if error.retryable:
                deployment.failed(self._clock(), error.retry_after, epoch)
            else:
                deployment.succeeded(epoch)  # it answered; the request itself was refused
            raise
        deployment.succeeded(epoch)
        return outputs

    async def _send(
        self, request: UpstreamRequest, deployment: Deployment, record: AttemptLog | None
    ) -> UpstreamResponse:
        if record is None:
            return await self.upstream.send(request)
        record.begin_attempt(deployment)
        try:
            return await self.upstream.send(request)
        finally:
            record.end_attempt(deployment)

    def _retry_delay(
        self,
        config: ModelConfig,
        error: UpstreamError,
        attempt: int,
        deadline: float,
        none_ready: bool,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when there is to be none."""
        if attempt > config.max_retries or not error.retryable:
            return None
        if isinstance(error, UpstreamReadTimeout) and not config.retry_read_timeouts:
            return None
        backoff = min(
            config.retry_backoff_max_seconds,
            config.retry_backoff_seconds * 2 ** (attempt - 1),
        )
        delay: float = backoff * (0.5 + self._rng.random() / 2)  # "equal jitter"
        if none_ready and isinstance(error, UpstreamUnavailable) and error.retry_after:
            # Every deployment is cooling down or asked to wait: wait for the first to be back,
            # if that comes soon enough to be worth holding the client.
            if error.retry_after > config.retry_backoff_max_seconds:
                return None
            delay = max(delay, error.retry_after)
        if self._clock() + delay >= deadline:
            return None
        return delay


def _body(
    bodies: dict[str, bytes], upstream_model: str, prompts: list[str], sampling: Sampling
) -> bytes:
    """The request body for `upstream_model`, made once per generation."""
    body = bodies.get(upstream_model)
    if body is None:
        body = bodies[upstream_model] = to_custom_request(upstream_model, prompts, sampling)
    return body
