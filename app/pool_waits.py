"""Requests waiting for an upstream connection, made visible: a metric, a warning per incident.

The upstream pool (app.http_client) makes a request wait only when `upstream_max_connections`
is set and that many connections to the request's upstream are in use. A wait is then a queue
the operator should know of: `proxy_upstream_pool_waiting` shows how many wait now,
`proxy_upstream_pool_wait_seconds` how long they waited (its `_count`: how many did), and the
log says so once per incident, when the first request waits after the upstream last had a free
connection. Incidents that follow each other closely (a load that hovers at the limit) are told
at most once per `quiet_seconds` per upstream, so the log cannot flood.
"""

from __future__ import annotations

import logging
import time

from app import metrics
from app.http_origin import Origin

log = logging.getLogger("app.upstream")


class PoolWaitReporter:
    """The proxy's `app.http_client.SlotWaits`: Prometheus figures and the warning."""

    def __init__(self, *, quiet_seconds: float = 60.0) -> None:
        self._quiet_seconds = quiet_seconds
        self._warned: dict[Origin, float] = {}  # origin → monotonic time of its last warning

    def wait_started(self, origin: Origin, limit: int, *, first: bool) -> None:
        metrics.POOL_WAITING.labels(_label(origin)).inc()
        if first:
            self._warn(origin, limit)

    def wait_ended(self, origin: Origin, seconds: float) -> None:
        upstream = _label(origin)
        metrics.POOL_WAITING.labels(upstream).dec()
        metrics.POOL_WAIT_SECONDS.labels(upstream).observe(seconds)

    def _warn(self, origin: Origin, limit: int) -> None:
        now = time.monotonic()
        last = self._warned.get(origin)
        if last is not None and now - last < self._quiet_seconds:
            return
        self._warned[origin] = now
        log.warning(
            "requests to %s wait for a connection: all %d that upstream_max_connections allows "
            "are in use (proxy_upstream_pool_waiting counts the waiting; raise the limit, or "
            "remove it and bound each deployment with max_concurrency)",
            _label(origin),
            limit,
        )


def _label(origin: Origin) -> str:
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    return f"{origin.scheme}://{host}:{origin.port}"
