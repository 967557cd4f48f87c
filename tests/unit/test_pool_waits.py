"""app.pool_waits: requests that wait for an upstream connection show in the metrics, and the
log warns once per incident; driven by a real pool against a scripted server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest
from prometheus_client import REGISTRY

from app.http_client import HTTPPool
from app.http_origin import Origin
from app.pool_waits import PoolWaitReporter
from tests.scripted_upstream import Upstream, answer, held

pytestmark = pytest.mark.timeout(10)


def sample(name: str, upstream: str) -> float:
    return REGISTRY.get_sample_value(name, {"upstream": upstream}) or 0.0


@pytest.fixture
async def server() -> AsyncIterator[tuple[Upstream, asyncio.Event]]:
    release = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        yield await stack.enter_async_context(Upstream(held(release, answer()))), release


def label_of(server: Upstream) -> str:
    origin = server.target().origin
    return f"http://{origin.host}:{origin.port}"


async def waiting_burst(pool: HTTPPool, server: Upstream, release: asyncio.Event) -> None:
    """Five requests at once on a pool of two: three wait, then all are answered."""
    release.clear()
    before = len(server.requests)
    posts = [asyncio.create_task(pool.post(server.target(), b"", b"{}")) for _ in range(5)]
    await server.wait_requests(before + 2)
    upstream = label_of(server)
    assert sample("proxy_upstream_pool_waiting", upstream) == 3
    release.set()
    await asyncio.gather(*posts)
    assert sample("proxy_upstream_pool_waiting", upstream) == 0


async def test_waits_are_counted_and_timed(
    server: tuple[Upstream, asyncio.Event], caplog: pytest.LogCaptureFixture
) -> None:
    upstream, release = server
    label = label_of(upstream)
    count_before = sample("proxy_upstream_pool_wait_seconds_count", label)
    async with aclosing(HTTPPool(max_connections=2, slot_waits=PoolWaitReporter())) as pool:
        with caplog.at_level(logging.WARNING, logger="app.upstream"):
            await waiting_burst(pool, upstream, release)
    assert sample("proxy_upstream_pool_wait_seconds_count", label) == count_before + 3
    assert sample("proxy_upstream_pool_wait_seconds_sum", label) > 0
    (warning,) = [r for r in caplog.records if r.name == "app.upstream"]
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert f"requests to {label} wait for a connection" in message
    assert "all 2 that upstream_max_connections allows are in use" in message


async def test_one_warning_per_incident_and_at_most_one_per_quiet_period(
    server: tuple[Upstream, asyncio.Event], caplog: pytest.LogCaptureFixture
) -> None:
    upstream, release = server
    quiet = PoolWaitReporter()  # 60 s between warnings for one upstream
    chatty = PoolWaitReporter(quiet_seconds=0.0)
    for reporter, expected in ((quiet, 1), (chatty, 2)):
        caplog.clear()
        async with aclosing(HTTPPool(max_connections=2, slot_waits=reporter)) as pool:
            with caplog.at_level(logging.WARNING, logger="app.upstream"):
                await waiting_burst(pool, upstream, release)  # incident 1: three waits
                await waiting_burst(pool, upstream, release)  # incident 2
        warnings = [r for r in caplog.records if r.name == "app.upstream"]
        assert len(warnings) == expected


def test_the_label_is_scheme_host_and_port() -> None:
    reporter = PoolWaitReporter()
    origin = Origin("https", "::1", 8443)
    reporter.wait_started(origin, 1, first=False)
    assert sample("proxy_upstream_pool_waiting", "https://[::1]:8443") == 1
    reporter.wait_ended(origin, 0.5)
    assert sample("proxy_upstream_pool_waiting", "https://[::1]:8443") == 0
    assert sample("proxy_upstream_pool_wait_seconds_sum", "https://[::1]:8443") == 0.5
