"""The proxy's Prometheus metrics, declared once: every module records through these objects.

With several worker processes, prometheus-client's multiprocess mode must be on before this
module is imported (PROMETHEUS_MULTIPROC_DIR set: `serve --workers N` does it); `exposition()`
then aggregates every worker's files. Labels hold names (model, key name, deployment label),
never key material or free text, so their number stays bounded by the config.

The request path does not call these objects directly: `app.telemetry` counts in plain
per-process numbers and adds them here in bulk (see its docstring for why).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# prometheus-client chose its storage from this variable when it was imported, just above.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds: LLM calls take from milliseconds (a cache) to minutes.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
# The proxy's own share: well under a millisecond when all is well; seconds when requests
# queue for a deployment or back off between retries.
OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
)  # fmt: skip

REQUESTS = Counter(
    "proxy_requests",
    "API requests answered (not /health or /metrics), by model (empty before one is known), "
    "client key name (empty without a key) and HTTP status.",
    ["model", "key", "status"],
)
REQUEST_SECONDS = Histogram(
    "proxy_request_duration_seconds",
    "Time from the request's arrival to its answer, by model.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_SECONDS = Histogram(
    "proxy_upstream_duration_seconds",
    "Time of each upstream attempt, by model and deployment.",
    ["model", "deployment"],
    buckets=LATENCY_BUCKETS,
)
OVERHEAD_SECONDS = Histogram(
    "proxy_overhead_duration_seconds",
    "The proxy's own time per request: total minus the time spent waiting on upstreams.",
    ["model"],
    buckets=OVERHEAD_BUCKETS,
)
FIRST_BYTE_SECONDS = Histogram(
    "proxy_time_to_first_byte_seconds",
    "Time from the request's arrival to the first byte of its answer, by model.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
TOKENS = Counter(
    "proxy_tokens",
    "Tokens as in the usage figures, by model, client key name and kind (prompt, completion).",
    ["model", "key", "kind"],
)
IN_FLIGHT = Gauge(
    "proxy_requests_in_flight",
    "Generation requests being served now, by model.",
    ["model"],
    multiprocess_mode="livesum",
)
RETRIES = Counter(
    "proxy_upstream_retries",
    "Upstream attempts that failed and were retried, by model and the deployment that failed.",
    ["model", "deployment"],
)
FALLBACKS = Counter(
    "proxy_fallbacks",
    "Requests handed to a fallback model, by model and fallback.",
    ["model", "fallback"],
)
COOLDOWNS = Counter(
    "proxy_deployment_cooldowns",
    "Times a deployment was taken out of the choice after failing, by model and deployment.",
    ["model", "deployment"],
)
DEPLOYMENT_FAILURES = Counter(
    "proxy_deployment_failures",
    "Upstream attempts that failed in a way another attempt may fix (no connection, 429, "
    "5xx, a garbled answer, a timeout), by model and deployment.",
    ["model", "deployment"],
)
DEPLOYMENT_UP = Gauge(
    "proxy_deployment_up",
    "1 while a deployment is healthy, 0 from its cooldown until a request to it succeeds "
    "(lowest over live workers).",
    ["model", "deployment"],
    multiprocess_mode="livemin",
)
RATE_LIMITED = Counter(
    "proxy_rate_limited",
    "Requests refused with 429 by the proxy's own limits, by client key name, model and limit.",
    ["key", "model", "limit"],
)
LIMIT_BACKEND_ERRORS = Counter(
    "proxy_rate_limit_backend_errors",
    "Rate-limit checks the backend (Redis) could not answer, by the policy applied.",
    ["policy"],
)
# Seconds a request waited for an upstream connection: none at all unless the pool is capped.
POOL_WAIT_BUCKETS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
POOL_WAITING = Gauge(
    "proxy_upstream_pool_waiting",
    "Requests waiting now for a connection to an upstream (scheme://host:port) because "
    "upstream_max_connections of them are in use.",
    ["upstream"],
    multiprocess_mode="livesum",
)
POOL_WAIT_SECONDS = Histogram(
    "proxy_upstream_pool_wait_seconds",
    "Time requests waited for a connection to an upstream (scheme://host:port) at its "
    "upstream_max_connections; its _count is the number of waits.",
    ["upstream"],
    buckets=POOL_WAIT_BUCKETS,
)
CLIENT_DISCONNECTS = Counter(
    "proxy_client_disconnects",
    "Requests whose client went away before the answer, by model.",
    ["model"],
)
CACHE_REQUESTS = Counter(
    "proxy_cache_requests",
    "Requests of models with a response cache, by model and outcome: hit (answered from the "
    "cache, or by an identical request's upstream call in flight), miss (looked up, not "
    "found: the answer came from its own upstream call), bypass (not looked up: not at "
    "temperature 0, or Cache-Control: no-cache).",
    ["model", "outcome"],
)
CACHE_COALESCED = Counter(
    "proxy_cache_coalesced",
    "Cache hits that waited for an identical request's upstream call in flight (single "
    "flight) instead of making their own, by model.",
    ["model"],
)
CACHE_ERRORS = Counter(
    "proxy_cache_errors",
    "Response cache reads (get) or writes (put) its store (Redis) could not do, by model; a "
    "failed read is served as a miss.",
    ["model", "op"],
)

# Micro-batching (app.batching): prompts per upstream call, and how long a request waited for
# its batch to be sent (at most the model's max_wait_ms, unless the loop was busy).
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
BATCH_WAIT_BUCKETS = (
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
BATCH_SIZE = Histogram(
    "proxy_batch_size",
    "Prompts in each batch sent upstream by a model with batching, by model.",
    ["model"],
    buckets=BATCH_SIZE_BUCKETS,
)
BATCH_WAIT_SECONDS = Histogram(
    "proxy_batch_wait_seconds",
    "Time a request of a model with batching waited for its batch to be sent, by model.",
    ["model"],
    buckets=BATCH_WAIT_BUCKETS,
)
BATCHED_REQUESTS = Counter(
    "proxy_batched_requests",
    "Requests sent upstream in batches, by model (upstream calls per request: "
    "proxy_batch_upstream_calls_total / proxy_batched_requests_total).",
    ["model"],
)
BATCH_CALLS = Counter(
    "proxy_batch_upstream_calls",
    "Upstream calls that carried a batch, retries included, by model.",
    ["model"],
)


def exposition() -> bytes:
    """Every metric in Prometheus' text format: this process's, or with several workers the
    sum (or minimum, for gauges that say so) over all of them."""
    if MULTIPROCESS_DIR is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def mark_process_dead(pid: int) -> None:
    """A worker is exiting: its live gauges (in flight, deployment up) stop counting."""
    if MULTIPROCESS_DIR is not None:
        multiprocess.mark_process_dead(pid, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
