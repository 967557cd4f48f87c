"""What one request did, kept as it happens and reported once: metrics, an access line, headers.

`TelemetryMiddleware` (app.middleware) starts a `RequestRecord` for every API request and puts
it in `scope["record"]`. Serving and dispatch fill in what they learn: the model, each upstream
attempt (deployment, duration), retries, the fallback that answered, the tokens, and the prompt
and completion where the model's `log_content` asks for them. Once the response is out,
`Telemetry.finish` counts the request and logs one line on the `app.access` logger.

Times, one `perf_counter()` per boundary:

    latency     arrival at the middleware → the last byte handed to the server
    upstream    the upstream attempts added up (each: request sent → answer read)
    overhead    latency − upstream: reading the request, queueing for a deployment, backoff
                between retries, template and translation, writing the answer
    first byte  arrival → the response's headers

Counting is cheap on purpose. prometheus-client takes a lock for every `inc` and `observe` (and
writes an mmapped file in multiprocess mode): 1.7–9 µs each on this project's machine, and a
request would need a dozen. So the request path adds to plain numbers here, and `flush` moves
them into the metric objects of app.metrics in bulk: before every scrape, and every second
when several workers share their metrics through files. Rare events (retries, fallbacks,
cooldowns) go to the metric objects directly.
"""

from __future__ import annotations

import asyncio
import logging
import os
from bisect import bisect_left
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

from prometheus_client import Histogram
from starlette.types import Scope

from app import metrics
from app.logs import AccessHandler, FieldsRecord

if TYPE_CHECKING:
    from app.config import ModelConfig
    from app.deployments import Deployment
    from app.routing import ModelRoute

access_log = logging.getLogger("app.access")

# Probes and scrapes come every few seconds and say nothing about the traffic.
UNOBSERVED_PATHS = frozenset({"/health", "/health/ready", "/metrics"})
FLUSH_SECONDS = 1.0  # with several workers: how stale another worker's figures may be
OVERHEAD_HEADER = b"x-proxy-overhead-ms"
UPSTREAM_HEADER = b"x-upstream-latency-ms"


class LocalHistogram:
    """Observations for one histogram child since the last flush, in the metric's buckets."""

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one: +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # bucket i: value <= bounds[i]
        self._sum += value

    @property
    def pending(self) -> bool:
        return any(self._counts)

    def flush_into(self, child: Histogram) -> None:
        """Add the observations to a prometheus-client histogram child, then start over.

        prometheus-client has no public call that adds many observations at once; a child keeps
        one value per bucket (not cumulative) and its sum, which its own `observe` increments.
        tests/unit/test_telemetry.py checks the result against `observe`."""
        buckets = child._buckets
        if len(buckets) != len(self._counts):
            raise ValueError("the local histogram's buckets differ from the metric's")
        for index, count in enumerate(self._counts):
            if count:
                buckets[index].inc(count)
                self._counts[index] = 0
        child._sum.inc(self._sum)
        self._sum = 0.0


class ModelStats:
    """One model's counts since the last flush; model "" holds requests that never got one."""

    __slots__ = (
        "model",
        "log_content",
        "in_flight",
        "requests",
        "tokens",
        "latency",
        "overhead",
        "first_byte",
        "disconnects",
        "cache",
        "_in_flight_flushed",
    )

    def __init__(self, model: str, *, log_content: bool) -> None:
        self.model = model
        self.log_content = log_content
        self.in_flight = 0
        self.requests: dict[tuple[str, int], int] = {}  # (key name, status) → count
        self.tokens: dict[str, list[int]] = {}  # key name → [prompt, completion]
        self.latency = LocalHistogram(metrics.LATENCY_BUCKETS)
        self.overhead = LocalHistogram(metrics.OVERHEAD_BUCKETS)
        self.first_byte = LocalHistogram(metrics.LATENCY_BUCKETS)
        self.disconnects = 0
        self.cache: dict[str, int] = {}  # response cache outcome (HIT, MISS, BYPASS) → count
        self._in_flight_flushed = -1 if model else 0  # a model's gauge shows from the start

    def flush(self) -> None:
        model = self.model
        if self.in_flight != self._in_flight_flushed:
            metrics.IN_FLIGHT.labels(model).set(self.in_flight)
            self._in_flight_flushed = self.in_flight
        if not self.requests:  # every other figure comes with a finished request
            return
        for (key, status), count in self.requests.items():
            metrics.REQUESTS.labels(model, key, str(status)).inc(count)
        self.requests.clear()
        for key, (prompt, completion) in self.tokens.items():
            metrics.TOKENS.labels(model, key, "prompt").inc(prompt)
            metrics.TOKENS.labels(model, key, "completion").inc(completion)
        self.tokens.clear()
        self.latency.flush_into(metrics.REQUEST_SECONDS.labels(model))
        self.overhead.flush_into(metrics.OVERHEAD_SECONDS.labels(model))
        if self.first_byte.pending:
            self.first_byte.flush_into(metrics.FIRST_BYTE_SECONDS.labels(model))
        if self.disconnects:
            metrics.CLIENT_DISCONNECTS.labels(model).inc(self.disconnects)
            self.disconnects = 0
        if self.cache:
            for outcome, count in self.cache.items():
                metrics.CACHE_REQUESTS.labels(model, outcome.lower()).inc(count)
            self.cache.clear()


@dataclass(slots=True, eq=False)  # made per request: plain init, no frozen checks
class RequestRecord:
    """One request as it goes: filled in by serving and dispatch, reported by `finish`."""

    telemetry: Telemetry
    request_id: str
    method: str
    path: str
    started: float  # perf_counter()
    status: int = 0
    first_byte: float = 0.0  # perf_counter() when the headers went out; 0: not yet
    stats: ModelStats | None = None
    model: str = ""  # the name the client asked for, once it resolved
    stream: bool = False
    log_content: bool = False
    deployment: str = ""  # the last deployment tried
    attempt_started: float = 0.0  # 0: no attempt in progress
    upstream_seconds: float = 0.0
    retries: int = 0
    fallback: str = ""  # the fallback model that answered
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt: list[str] | None = None  # only with log_content
    completion: list[str] | None = None
    cache: str = ""  # the response cache's outcome (HIT, MISS, BYPASS); "": the model has none

    def bind(self, route: ModelRoute, *, stream: bool) -> None:
        """The request resolved to a model and will be served."""
        stats = self.telemetry.model_stats(route.config)
        stats.in_flight += 1
        self.stats = stats
        self.model = route.name
        self.stream = stream
        self.log_content = stats.log_content

    def begin_attempt(self, deployment: Deployment) -> None:
        self.deployment = deployment.label
        self.attempt_started = perf_counter()

    def end_attempt(self, deployment: Deployment) -> None:
        seconds = perf_counter() - self.attempt_started
        self.attempt_started = 0.0
        self.upstream_seconds += seconds
        self.telemetry.observe_upstream(deployment, seconds)

    def client_left(self) -> None:
        """The client went away before the whole answer was out (its work was cancelled):
        499, nginx's code, whatever status the headers already carried."""
        self.status = 499

    def count_tokens(self, usage: dict[str, int]) -> None:
        self.prompt_tokens = usage["prompt_tokens"]
        self.completion_tokens = usage["completion_tokens"]

    def response_started(self, status: int) -> list[tuple[bytes, bytes]]:
        """Note the status and the time; the timing headers so far (a stream's headers may
        go out while the upstream still works: its time so far counts as upstream)."""
        now = perf_counter()
        self.status = status
        self.first_byte = now
        upstream = self.upstream_seconds
        if self.attempt_started:
            upstream += now - self.attempt_started
        headers = [(OVERHEAD_HEADER, _header_ms(now - self.started - upstream))]
        if self.deployment:
            headers.append((UPSTREAM_HEADER, _header_ms(upstream)))
        return headers


class Telemetry:
    """The process's request counts, timings and access log; see the module docstring."""

    def __init__(self, *, log_content: bool = False) -> None:
        self.log_content = log_content  # the config's top-level default
        self._unrouted = ModelStats("", log_content=False)
        self._models: dict[str, ModelStats] = {}
        self._upstream: dict[Deployment, LocalHistogram] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self, scope: Scope, request_id: str) -> RequestRecord | None:
        """A record for this request, or None for probes and scrapes."""
        path: str = scope["path"]
        if path in UNOBSERVED_PATHS:
            return None
        return RequestRecord(self, request_id, scope["method"], path, perf_counter())

    def model_stats(self, config: ModelConfig) -> ModelStats:
        stats = self._models.get(config.name)
        if stats is None:
            log_content = self.log_content if config.log_content is None else config.log_content
            stats = self._models[config.name] = ModelStats(config.name, log_content=log_content)
        return stats

    def observe_upstream(self, deployment: Deployment, seconds: float) -> None:
        histogram = self._upstream.get(deployment)
        if histogram is None:
            histogram = self._upstream[deployment] = LocalHistogram(metrics.LATENCY_BUCKETS)
        histogram.observe(seconds)

    def finish(self, record: RequestRecord, key_name: str) -> None:
        """Count the answered request and log its line."""
        latency = perf_counter() - record.started
        upstream = record.upstream_seconds
        stats = record.stats
        if stats is None:
            stats = self._unrouted
        else:
            stats.in_flight -= 1
        requests = stats.requests
        outcome = (key_name, record.status)
        requests[outcome] = requests.get(outcome, 0) + 1
        stats.latency.observe(latency)
        stats.overhead.observe(latency - upstream)
        if record.first_byte:
            stats.first_byte.observe(record.first_byte - record.started)
        if record.prompt_tokens or record.completion_tokens:
            tokens = stats.tokens.get(key_name)
            if tokens is None:
                tokens = stats.tokens[key_name] = [0, 0]
            tokens[0] += record.prompt_tokens
            tokens[1] += record.completion_tokens
        disconnected = record.status == 499
        if disconnected:
            stats.disconnects += 1
        if record.cache:
            stats.cache[record.cache] = stats.cache.get(record.cache, 0) + 1
        if access_log.isEnabledFor(logging.INFO):
            log_access(record, key_name, latency, disconnected)

    def flush(self) -> None:
        """Move everything counted since the last flush into the metric objects."""
        self._unrouted.flush()
        for stats in self._models.values():
            stats.flush()
        for deployment, histogram in self._upstream.items():
            if histogram.pending:
                child = metrics.UPSTREAM_SECONDS.labels(deployment.model, deployment.label)
                histogram.flush_into(child)

    def in_flight(self) -> int:
        """Requests being served now, every model."""
        return sum(stats.in_flight for stats in self._models.values())

    def start_flushing(self) -> None:
        """With several workers, flush every FLUSH_SECONDS: a scrape reads the other workers'
        figures from their files. (With one, the scrape's own flush is enough.)"""
        if metrics.MULTIPROCESS_DIR is not None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._tick)

    def _tick(self) -> None:
        try:
            self.flush()
        finally:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._tick)

    def close(self) -> None:
        """The process stops serving: last flush; its live gauges stop counting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        metrics.mark_process_dead(os.getpid())


def log_access(record: RequestRecord, key_name: str, latency: float, disconnected: bool) -> None:
    """The request's line on `app.access`: message `METHOD PATH STATUS`, the rest as fields."""
    upstream = record.upstream_seconds
    fields: dict[str, object] = {
        "request_id": record.request_id,
        "method": record.method,
        "path": record.path,
        "status": record.status,
        "key_name": key_name,
        "model": record.model,
        "deployment": record.deployment,
        "fallback": record.fallback,
        "stream": record.stream,
        "latency_ms": _log_ms(latency),
        "upstream_ms": _log_ms(upstream),
        "overhead_ms": _log_ms(latency - upstream),
        "ttfb_ms": _log_ms(record.first_byte - record.started) if record.first_byte else None,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "retries": record.retries,
        "client_disconnected": disconnected,
    }
    if record.cache:
        fields["cache"] = record.cache
    if record.prompt is not None:
        fields["prompt"] = record.prompt
        fields["completion"] = record.completion
    handler = access_log.handlers[0] if access_log.handlers else None
    if isinstance(handler, AccessHandler) and handler.fast_path(access_log):
        message = f"{record.method} {record.path} {record.status}"
        handler.write_fields(access_log.name, message, fields)
        return
    # Logger.info would also walk the stack for the caller's file and line, which no format
    # here shows, and LogRecord would look up the process and thread.
    access_log.handle(
        FieldsRecord(
            access_log.name,
            logging.INFO,
            "%s %s %d",
            (record.method, record.path, record.status),
            fields,
        )
    )


def _header_ms(seconds: float) -> bytes:
    return b"%.3f" % (seconds * 1000)


def _log_ms(seconds: float) -> float:
    return int(seconds * 1_000_000 + 0.5) / 1000  # to the microsecond; cheaper than round()
