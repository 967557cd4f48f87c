"""The proxy's Prometheus metrics, declared once: every module records through these objects.

With several worker processes, prometheus-client's multiprocess mode must be on before this
module is imported (PROMETHEUS_MULTIPROC_DIR set); `GET /metrics` then aggregates all workers.
Labels hold names (model, key name, deployment label), never key material or free text, so
their number stays bounded by the config.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Seconds: LLM calls take from milliseconds (a cache) to minutes.
_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
# The proxy's own share: well under a millisecond when all is well.
_OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
)  # fmt: skip

REQUESTS = Counter(
    "proxy_requests",
    "Requests answered, by model, client key name and HTTP status.",
    ["model", "key", "status"],
)
REQUEST_SECONDS = Histogram(
    "proxy_request_duration_seconds",
    "Time from the request's arrival to its answer, by model.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_SECONDS = Histogram(
    "proxy_upstream_duration_seconds",
    "Time of each upstream attempt, by model and deployment.",
    ["model", "deployment"],
    buckets=_LATENCY_BUCKETS,
)
OVERHEAD_SECONDS = Histogram(
    "proxy_overhead_duration_seconds",
    "The proxy's own time per request: total minus the time spent waiting on upstreams.",
    ["model"],
    buckets=_OVERHEAD_BUCKETS,
)
FIRST_BYTE_SECONDS = Histogram(
    "proxy_time_to_first_byte_seconds",
    "Time from the request's arrival to the first byte of its answer, by model.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
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
DEPLOYMENT_UP = Gauge(
    "proxy_deployment_up",
    "1 while a deployment may take requests, 0 while it cools down (lowest over workers).",
    ["model", "deployment"],
    multiprocess_mode="min",
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
CLIENT_DISCONNECTS = Counter(
    "proxy_client_disconnects",
    "Requests whose client went away before the answer, by model.",
    ["model"],
)
